"""Ranked-list pictures: a query, then its nearest gallery images with their distances; green frame: same
person, red: another person, grey: identity unknown. One picture can hold several queries (rows) and
several models side by side (blocks), which is how evaluate@ shows what stage 3 changed against stage 1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskreid.io import atomic_path

SAME, OTHER, UNKNOWN, QUERY = (0, 170, 0), (220, 30, 30), (150, 150, 150), (40, 90, 220)
FRAME, CAPTION, GAP, HEADER = 3, 14, 14, 18


@dataclass
class Hit:
    image: np.ndarray            # HWC uint8
    distance: float
    same_person: bool | None     # None: the identity of the query or this image is unknown


def ranked_hits(distances: np.ndarray, query_pid: int, query_camid: int, gallery_pids: np.ndarray,
                gallery_camids: np.ndarray, image_at: Callable[[int], Any], top: int,
                same_camera_listed: bool = False) -> list[Hit]:
    """One query's `top` nearest gallery images (`distances`: its row), ties in gallery order, as the standard
    protocol ranks them: the same person under the same camera is not listed unless `same_camera_listed` (the
    authors' protocol). `image_at(i)`: gallery image i as CHW uint8. The one rule behind every ranked-list
    picture and page."""
    listed = np.ones(len(gallery_pids), dtype=bool) if same_camera_listed else \
        ~((gallery_pids == query_pid) & (gallery_camids == query_camid))
    order = [i for i in np.argsort(distances, kind="stable") if listed[i]][:top]
    return [Hit(np.asarray(image_at(i).permute(1, 2, 0)), float(distances[i]), bool(gallery_pids[i] == query_pid))
            for i in order]


@dataclass
class RankedRow:
    query: np.ndarray            # HWC uint8
    query_label: str
    blocks: list[list[Hit]]      # one list of hits per model, nearest first


def draw_ranked_lists(rows: list[RankedRow], out: Path, block_titles: list[str] | None = None,
                      thumb: tuple[int, int] = (128, 64)) -> None:
    """Write the rows as one PNG (atomically). thumb = (h, w) of every thumbnail."""
    if not rows:
        raise ValueError("no ranked lists to draw")
    th, tw = thumb
    cell_w, cell_h = tw + 2 * FRAME + 4, th + 2 * FRAME + CAPTION
    blocks = len(rows[0].blocks)
    per_block = max(len(b) for row in rows for b in row.blocks)
    width = cell_w + blocks * (GAP + per_block * cell_w)
    height = HEADER + len(rows) * (cell_h + 4)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((2, 2), "query", fill=QUERY, font=font)
    for b, title in enumerate(block_titles or []):
        draw.text((cell_w + b * (GAP + per_block * cell_w) + GAP, 2), title, fill="black", font=font)
    for r, row in enumerate(rows):
        y = HEADER + r * (cell_h + 4)
        _cell(canvas, draw, font, row.query, row.query_label, QUERY, 0, y, thumb)
        for b, hits in enumerate(row.blocks):
            x0 = cell_w + b * (GAP + per_block * cell_w) + GAP
            for i, hit in enumerate(hits):
                colour = UNKNOWN if hit.same_person is None else (SAME if hit.same_person else OTHER)
                _cell(canvas, draw, font, hit.image, f"{hit.distance:.3g}", colour, x0 + i * cell_w, y, thumb)
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")


def _cell(canvas: Image.Image, draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont, image: np.ndarray,
          caption: str, colour: tuple[int, int, int], x: int, y: int, thumb: tuple[int, int]) -> None:
    th, tw = thumb
    draw.rectangle([x, y, x + tw + 2 * FRAME - 1, y + th + 2 * FRAME - 1], fill=colour)
    canvas.paste(Image.fromarray(image).convert("RGB").resize((tw, th), Image.BILINEAR), (x + FRAME, y + FRAME))
    draw.text((x + 1, y + th + 2 * FRAME), caption, fill="black", font=font)
