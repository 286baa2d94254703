"""A page of ranked lists to look at failures (torchreid's `visrank`, as one file): for each chosen query its
image, identity, AP and the rank of its first true match, then its top matches framed green (same person), red
(another) or grey (unknown), with distances. Static HTML, every image inlined as a JPEG data URI (a few kB
each), no script, no external file: it opens offline, travels as one file, and is one DVC out."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskreid.figures.ranked_lists import Hit
from maskreid.io import atomic_write_text

_FRAMES = {True: "#00aa00", False: "#dc1e1e", None: "#969696"}
_STYLE = """body{font-family:sans-serif;margin:1em;color:#222}h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse}td{padding:2px 3px;vertical-align:top;text-align:center;font-size:11px}
td.info{text-align:left;min-width:10em;font-size:12px}img{display:block;border:3px solid;margin:auto}
img.q{border-color:#285adc}p.note{font-size:12px;color:#555}"""


@dataclass
class PageRow:
    query: np.ndarray            # HWC uint8
    label: str                   # e.g. "person 12, camera 3 (query 0001_c3_0002.jpg)"
    ap: float                    # percent; NaN: no true match (not scored)
    first_rank: int              # rank of the first true match; 0: none in the gallery
    hits: list[Hit]              # nearest first


def _data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).convert("RGB").save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _row(row: PageRow) -> str:
    ap = "not scored" if np.isnan(row.ap) else f"AP {row.ap:.1f}%"
    first = f"first match at rank {row.first_rank}" if row.first_rank else "no match in the gallery"
    cells = [f'<td class="info">{html.escape(row.label)}<br><b>{ap}</b><br>{first}</td>',
             f'<td><img class="q" src="{_data_uri(row.query)}" alt="query"><br>query</td>']
    for rank, hit in enumerate(row.hits, 1):
        verdict = {True: "same person", False: "another person", None: "unknown"}[hit.same_person]
        cells.append(f'<td><img style="border-color:{_FRAMES[hit.same_person]}" src="{_data_uri(hit.image)}" '
                     f'alt="rank {rank}: {verdict}" title="rank {rank}: {verdict}"><br>{rank}: {hit.distance:.3g}</td>')
    return "<tr>" + "".join(cells) + "</tr>"


def ranked_page(sections: dict[str, list[PageRow]], out: Path, title: str, note: str = "") -> None:
    """Write the page atomically: one table per section (e.g. 'The 20 worst queries by AP', '20 random queries')."""
    if not any(sections.values()):
        raise ValueError("no ranked lists to put on the page")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if note:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    for heading, rows in sections.items():
        parts.append(f"<h2>{html.escape(heading)}</h2><table>" + "".join(_row(r) for r in rows) + "</table>")
    parts.append("</body></html>\n")
    atomic_write_text(out, "".join(parts))
