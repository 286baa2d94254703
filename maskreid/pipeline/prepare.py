"""DVC stage prepare@<dataset>: raw files -> data/prepared/<dataset>/ (manifest.csv, summary.json, and the
images the manifest points to when they had to be generated or extracted). Needs no torch."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from maskreid.data import synthetic
from maskreid.data.checks import find_bad_images
from maskreid.data.cuhk03 import prepare_cuhk03
from maskreid.data.datasets import SPECS, check_counts, find_market_root, market_folder_for, prepare_cuhk01
from maskreid.data.manifest import summarize, write_manifest
from maskreid.data.market import DatasetFormatError, scan_market_folder
from maskreid.params import Params
from maskreid.paths import DatasetPaths

log = logging.getLogger("maskreid")


def prepare(params: Params, paths: DatasetPaths) -> dict[str, Any]:
    """Build (for `synthetic`, first generate) the dataset's manifest; validate it and compare its counts
    with the published ones. Everything the manifest points to is under data/raw/<ds> (a DVC dependency)
    or data/prepared/<ds> (this stage's output), so DVC knows every file training will read."""
    ds = paths.dataset
    spec = SPECS.get(ds)
    extracted = paths.extracted
    accept = params.data.accept_checksum_mismatch
    if ds == "synthetic":
        images_root, silhouettes = paths.prepared / "images", paths.silhouettes
        for folder in (images_root, silhouettes):
            if folder.exists():
                shutil.rmtree(folder)
        count = synthetic.generate(images_root, params.synthetic, silhouettes)
        log.info("generated %d synthetic images under %s (silhouettes: %s)", count, images_root, silhouettes)
        manifest = scan_market_folder(images_root, max_camera=params.synthetic.cameras)
    elif ds in ("market1501", "dukemtmcreid"):
        folder = market_folder_for(spec, paths.raw, extracted, accept)
        manifest = scan_market_folder(folder, max_camera=spec.cameras)
    elif ds in ("cuhk03_labeled", "cuhk03_detected"):
        manifest = prepare_cuhk03(ds.split("_")[1], paths.raw, extracted, spec.archive.md5, accept)
    elif ds == "cuhk01":
        t = params.cuhk01.test_ids
        manifest = prepare_cuhk01(paths.raw, extracted, t, params.cuhk01.split_seed)
        spec = dataclasses.replace(spec, expected={"train": (971 - t, 4 * (971 - t)), "query": (t, 2 * t),
                                                   "gallery": (t, 2 * t)})
    elif ds == "custom":
        folder = find_market_root(paths.raw) if paths.raw.is_dir() else None
        if folder is None:
            raise DatasetFormatError(f"custom: {paths.raw} is not a folder in Market-1501 layout (bounding_box_train/, "
                                     "bounding_box_test/, query/ with names starting PPPP_cC); put (or `dvc add`) "
                                     "your dataset there")
        manifest = scan_market_folder(folder)
    else:
        raise ValueError(f"unknown dataset {ds!r}")
    manifest["path"] = [_relative(p, paths.root) for p in manifest.path]
    bad = find_bad_images(manifest.path.tolist(), paths.root)
    if bad and params.data.on_bad_image == "error":
        listing = "\n  ".join(f"{p}: {reason}" for p, reason in bad)
        raise DatasetFormatError(f"{ds}: {len(bad)} image file(s) cannot be used:\n  {listing}\n"
                                 "Remove or replace them, or set data.on_bad_image: skip in params.yaml.")
    if bad:
        manifest = manifest[~manifest.path.isin({p for p, _ in bad})].reset_index(drop=True)
        log.warning("%s: skipped %d undecodable image(s) (data.on_bad_image: skip)", ds, len(bad))
    summary = summarize(manifest, ds)
    summary.skipped_bad_images = [f"{p}: {reason}" for p, reason in bad]
    if spec is not None:
        check_counts(summary, spec)
    for warning in summary.warnings:
        log.warning("%s: %s", ds, warning)
    write_manifest(manifest, summary, paths.prepared)
    return summary.__dict__


def _relative(path: str, root: Path) -> str:
    """Paths under the project are stored relative to it, so a moved checkout keeps working."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(Path(path).resolve())
