"""Any trained F scored on any query and gallery folders (torchreid's `test_only`, fast-reid's `--eval-only`):
the images are labelled by their Market-1501 file names (`0002_c1s1_000451_03.jpg`: person 2, camera 1) or by a
CSV of path,pid,camid; decoded and resized as the model file says; embedded by the checkpoint or its ONNX
export; scored by the one scoring path the evaluate stage uses (maskreid.evaluation.scoring)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from maskreid.data.loading import ImageCache
from maskreid.data.market import DatasetFormatError, parse_market_name
from maskreid.evaluation.bootstrap import intervals
from maskreid.evaluation.scoring import Score, Scoring, score_features
from maskreid.serve.gallery import GalleryError, collect_images, decode_problem
from maskreid.serve.inference import Embedder

LABEL_COLUMNS = ("path", "pid", "camid")


@dataclass
class FolderScore:
    score: Score
    query: ImageCache
    gallery: ImageCache
    intervals: dict[str, tuple[float, float]]


def read_labels(csv: Path) -> dict[Path, tuple[int, int]]:
    """{absolute image path: (pid, camid)} from a CSV with columns path,pid,camid (others ignored). A relative
    path is taken from the working folder when it exists there, else from the CSV's folder."""
    try:
        table = pd.read_csv(csv)
    except (OSError, ValueError) as err:
        raise GalleryError(f"{csv}: not a readable CSV file ({str(err).splitlines()[0]})") from err
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise GalleryError(f"{csv}: missing column(s) {missing}; expected a header path,pid,camid "
                           "(one row per image: its file, person id, camera id)")
    labels = {}
    for row, (path, pid, camid) in enumerate(table[list(LABEL_COLUMNS)].itertuples(index=False), start=2):
        if not (isinstance(pid, (int, np.integer)) and isinstance(camid, (int, np.integer))):
            raise GalleryError(f"{csv}: line {row}: pid and camid must be integers, got {pid!r}, {camid!r}")
        file = Path(str(path))
        if not file.is_absolute():
            file = file if file.exists() else csv.parent / file
        labels[file.resolve()] = (int(pid), int(camid))
    return labels


def labelled_files(folder: Path, labels: dict[Path, tuple[int, int]] | None) -> tuple[list[Path], np.ndarray,
                                                                                           np.ndarray]:
    """Every image in `folder` (recursively, sorted) with its person and camera id; an image without one is an
    error listing the first such files."""
    files = collect_images([folder])
    pids, camids, problems = [], [], []
    for file in files:
        if labels is not None:
            found = labels.get(file.resolve())
            if found is None:
                problems.append(f"{file}: not in the labels CSV")
                continue
            pid, camid = found
        else:
            try:
                parsed = parse_market_name(file.name)
            except DatasetFormatError as err:
                problems.append(str(err))
                continue
            pid, camid = parsed.pid, parsed.camid
        pids.append(pid)
        camids.append(camid)
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise GalleryError(f"{len(problems)} image(s) in {folder} have no person and camera id (name them as "
                           "Market-1501 does, or pass --labels path,pid,camid):\n  " + "\n  ".join(problems[:10])
                           + more)
    return files, np.asarray(pids, dtype=np.int64), np.asarray(camids, dtype=np.int64)


def decode_folder(folder: Path, labels: dict[Path, tuple[int, int]] | None, size: tuple[int, int]) -> ImageCache:
    """The folder's labelled images, decoded and resized; every undecodable file is listed in one error."""
    files, pids, camids = labelled_files(folder, labels)
    images = torch.empty((len(files), 3, *size), dtype=torch.uint8)
    bad = []
    for i, file in enumerate(files):
        pixels, problem = decode_problem(file, size)
        if problem is not None:
            bad.append(f"{file}: {problem}")
        else:
            images[i] = torch.from_numpy(pixels).permute(2, 0, 1)
    if bad:
        raise GalleryError(f"{len(bad)} image(s) in {folder} cannot be used:\n  " + "\n  ".join(bad[:10]))
    return ImageCache(images, pids, camids, [str(f) for f in files])


def embed_cache(embedder: Embedder, cache: ImageCache, batch_size: int, flip: bool = False) -> np.ndarray:
    return np.concatenate([embedder(cache.images[i:i + batch_size], flip=flip)
                           for i in range(0, len(cache), batch_size)])


def score_folders(embedder: Embedder, query_dir: Path, gallery_dir: Path, scoring: Scoring,
                  protocol: str = "standard", labels_csv: Path | None = None, batch_size: int = 128,
                  flip: bool = False, resamples: int = 1000, seed: int = 0) -> FolderScore:
    """Embed and score; intervals: the bootstrap over query identities (maskreid.evaluation.bootstrap)."""
    labels = read_labels(labels_csv) if labels_csv is not None else None
    query = decode_folder(query_dir, labels, embedder.spec.resize)
    gallery = decode_folder(gallery_dir, labels, embedder.spec.resize)
    q_feat, g_feat = embed_cache(embedder, query, batch_size, flip), embed_cache(embedder, gallery, batch_size, flip)
    score = score_features(q_feat, g_feat, query.pids, gallery.pids, query.camids, gallery.camids, scoring, protocol)
    metrics = ("mAP", *(f"rank{k}" for k in scoring.ranks))
    return FolderScore(score, query, gallery, intervals(score.queries, metrics, resamples, seed))

