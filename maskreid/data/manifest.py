"""The manifest: one row per image (path, pid, camid, split), validated against the re-ID protocol."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from maskreid.data.market import DISTRACTOR_PID, JUNK_PID, DatasetFormatError
from maskreid.io import atomic_write_text

COLUMNS = ["path", "pid", "camid", "split"]


@dataclass
class ManifestSummary:
    """Counts a user compares with the published ones, and the protocol checks."""

    dataset: str
    images: dict[str, int]
    ids: dict[str, int]
    cameras: int
    junk_gallery_images: int
    distractor_gallery_images: int
    queries_without_cross_camera_match: int
    warnings: list[str] = field(default_factory=list)
    skipped_bad_images: list[str] = field(default_factory=list)


def summarize(manifest: pd.DataFrame, dataset: str) -> ManifestSummary:
    """Validate the manifest and count it; raises DatasetFormatError on a protocol violation."""
    missing = [c for c in COLUMNS if c not in manifest.columns]
    if missing:
        raise DatasetFormatError(f"manifest for {dataset}: missing column(s) {missing}; expected {COLUMNS}")
    splits = {s: manifest[manifest.split == s] for s in ("train", "query", "gallery")}
    for name, part in splits.items():
        if part.empty:
            raise DatasetFormatError(f"{dataset}: the {name} split is empty")
    real = lambda df: df[(df.pid != JUNK_PID) & (df.pid != DISTRACTOR_PID)]  # noqa: E731
    train_ids = set(real(splits["train"]).pid)
    test_ids = set(real(splits["query"]).pid) | set(real(splits["gallery"]).pid)
    overlap = train_ids & test_ids
    if overlap:
        raise DatasetFormatError(f"{dataset}: {len(overlap)} person id(s) in both train and test, "
                                 f"e.g. {sorted(overlap)[:5]}; train and test identities must be disjoint")
    gallery = splits["gallery"][splits["gallery"].pid != JUNK_PID]
    cams_by_pid = gallery.groupby("pid").camid.apply(set).to_dict()
    query = splits["query"]
    unmatched = sum(1 for pid, cam in zip(query.pid, query.camid) if not (cams_by_pid.get(pid, set()) - {cam}))
    warnings = []
    if unmatched:
        warnings.append(f"{unmatched} of {len(query)} queries have no gallery image of their id under another "
                        "camera; the standard protocol skips them")
    return ManifestSummary(
        dataset=dataset,
        images={s: int(len(p)) for s, p in splits.items()},
        ids={s: int(p[p.pid != JUNK_PID].pid.nunique()) for s, p in splits.items()},
        cameras=int(manifest.camid.nunique()),
        junk_gallery_images=int((splits["gallery"].pid == JUNK_PID).sum()),
        distractor_gallery_images=int((splits["gallery"].pid == DISTRACTOR_PID).sum()),
        queries_without_cross_camera_match=unmatched,
        warnings=warnings,
    )


def write_manifest(manifest: pd.DataFrame, summary: ManifestSummary, out_dir: Path) -> None:
    """Write manifest.csv and summary.json atomically (a killed run never leaves half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "manifest.csv", manifest[COLUMNS].to_csv(index=False))
    atomic_write_text(out_dir / "summary.json", json.dumps(asdict(summary), indent=2) + "\n")


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest written by the prepare stage, with a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found; run `dvc repro` (the prepare stage writes it)")
    df = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DatasetFormatError(f"{path}: missing column(s) {missing}; expected {COLUMNS}")
    return df
