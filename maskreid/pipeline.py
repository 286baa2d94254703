"""What each DVC stage does, as library functions the thin scripts in stages/ call (and tests can too)."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from maskreid.checkpoints import load_checkpoint, save_checkpoint
from maskreid.data import synthetic
from maskreid.data.checks import find_bad_images
from maskreid.data.cuhk03 import prepare_cuhk03
from maskreid.data.datasets import SPECS, check_counts, find_market_root, market_folder_for, prepare_cuhk01
from maskreid.data.loading import ImageCache, Normalizer
from maskreid.data.manifest import read_manifest, summarize, write_manifest
from maskreid.data.market import JUNK_PID, DatasetFormatError, scan_market_folder
from maskreid.data.sampler import PKSampler
from maskreid.evaluation import euclidean_distances, evaluate, summarize_percent
from maskreid.features import color_histograms, extract_features
from maskreid.io import atomic_write_text
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.unet import UNet
from maskreid.params import Params
from maskreid.paths import DatasetPaths
from maskreid.precision import MixedPrecision
from maskreid.resume import Progress, TrainingState, fingerprint
from maskreid.training import BatchMaker, train_extractor_epoch, train_joint_epoch, train_mask_epoch

log = logging.getLogger("maskreid")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------------------------- prepare
def prepare(params: Params, paths: DatasetPaths) -> dict[str, Any]:
    """Build (for `synthetic`, first generate) the dataset's manifest; validate it and compare its counts
    with the published ones."""
    ds = paths.dataset
    spec = SPECS.get(ds)
    interim = paths.root / "data" / "interim"
    accept = params.data.accept_checksum_mismatch
    if ds == "synthetic":
        images_root = paths.prepared / "images"
        if images_root.exists():
            shutil.rmtree(images_root)
        count = synthetic.generate(images_root, params.synthetic, params.seed)
        log.info("generated %d synthetic images under %s", count, images_root)
        manifest = scan_market_folder(images_root, max_camera=params.synthetic.cameras)
    elif ds in ("market1501", "dukemtmcreid"):
        folder = market_folder_for(spec, paths.raw, interim, accept)
        manifest = scan_market_folder(folder, max_camera=spec.cameras)
    elif ds in ("cuhk03_labeled", "cuhk03_detected"):
        manifest = prepare_cuhk03(ds.split("_")[1], paths.root / "data" / "raw" / "cuhk03", interim,
                                  spec.archive.md5, accept)
    elif ds == "cuhk01":
        t = params.data.cuhk01_test_ids
        manifest = prepare_cuhk01(paths.raw, interim, t, params.seed)
        spec = dataclasses.replace(spec, expected={"train": (971 - t, 4 * (971 - t)), "query": (t, 2 * t),
                                                   "gallery": (t, 2 * t)})
    elif ds == "custom":
        custom = Path(params.data.custom_path)
        folder = find_market_root(custom) if custom.is_dir() else None
        if folder is None:
            raise DatasetFormatError(f"custom: {custom} is not a folder in Market-1501 layout (bounding_box_train/, "
                                     "bounding_box_test/, query/ with names starting PPPP_cC); set data.custom_path")
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


def _split(manifest: pd.DataFrame, split: str, drop_junk: bool = True) -> pd.DataFrame:
    part = manifest[manifest.split == split]
    return part[part.pid != JUNK_PID] if drop_junk else part


def load_split(paths: DatasetPaths, split: str, size: tuple[int, int], drop_junk: bool = True) -> ImageCache:
    part = _split(read_manifest(paths.manifest), split, drop_junk)
    root = paths.root
    name = split if drop_junk else f"{split}_with_junk"
    return ImageCache.load_or_build([str(root / p) for p in part.path], part.pid.tolist(), part.camid.tolist(),
                                    size, paths.decoded, name, desc=f"decoding {paths.dataset}/{split}")


# ------------------------------------------------------------------------------------------------ models
def build_extractor(params: Params) -> FeatureExtractor:
    m = params.model
    return FeatureExtractor(m.backbone, m.embedding_dim, m.pretrained)


def build_mask_net(params: Params) -> UNet:
    return UNet(params.model.unet_width)


def layout(params: Params) -> torch.memory_format:
    """channels_last (NHWC) lets oneDNN / cuDNN run convolutions without reordering: faster with bf16."""
    return torch.channels_last if params.channels_last else torch.contiguous_format


def _batch_maker(params: Params, cache: ImageCache, device: torch.device, seed_offset: int) -> BatchMaker:
    generator = torch.Generator().manual_seed(params.seed + seed_offset)
    amp = MixedPrecision(params.precision, device)
    log.info("training precision: %s on %s", amp.name, device)
    return BatchMaker(cache, params.input.crop, params.input.flip, device, generator, Normalizer(device), amp,
                      layout(params))


class LossLog:
    """Per-epoch losses, rewritten (atomically) after every epoch as a CSV that DVC plots."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns, self.rows = path, ["epoch"] + columns, []

    def add(self, epoch: int, values: dict[str, float]) -> None:
        self.rows.append({"epoch": epoch + 1, **{k: round(v, 6) for k, v in values.items()}})
        self.write()

    def write(self) -> None:
        atomic_write_text(self.path, pd.DataFrame(self.rows, columns=self.columns).to_csv(index=False))


STAGE1_LOSSES = ["triplet"]
MASK_LOSSES = ["mask", "identity", "sparsity", "contiguity", "mask_mean"]
STAGE3_LOSSES = ["extractor", "triplet_original", "triplet_hidden"]


def _stage_settings(params: Params, stage: int) -> dict[str, Any]:
    """The parameters a training stage reads (what its progress file must agree with)."""
    settings: dict[str, Any] = {"seed": params.seed, "precision": params.precision,
                                "channels_last": params.channels_last, "model": params.model,
                                "input": params.input, "triplet_margin": params.triplet_margin,
                                "stage1": params.stage1}
    if stage >= 2:
        settings.update(lambda2=params.lambda2, sparsity_weight=params.sparsity_weight, stage2=params.stage2)
    if stage == 3:
        settings.update(lambda1=params.lambda1, drop_ratio=params.drop_ratio,
                        mask_update_every=params.mask_update_every, stage3=params.stage3)
    return {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in settings.items()}


def _train(name: str, epochs: int, step: Callable[[int], dict[str, float]], state: TrainingState,
           progress: Progress, logs: dict[str, LossLog], final: Path, final_payload: Callable[[], dict],
           make: BatchMaker) -> None:
    """Run epochs from the last complete one; save progress after each; the final checkpoint, then mark done.
    Each epoch's log line gives its wall time and the share spent making batches (the input pipeline)."""
    start = 0
    saved = progress.load()
    if saved is not None:
        state.restore(saved["state"])
        for key, rows in saved["logs"].items():
            logs[key].rows = list(rows)
        start = int(saved["epoch"])
        log.info("%s: resuming after epoch %d of %d (%s)", name, start, epochs, progress.path)
    for epoch in range(start, epochs):
        began, make.seconds = time.perf_counter(), 0.0
        values = step(epoch)
        seconds = time.perf_counter() - began
        logs["main"].add(epoch, values)
        progress.save(epoch + 1, state, {k: v.rows for k, v in logs.items()})
        log.info("%s epoch %d/%d: %s (%.1f s, input pipeline %.1f%%)", name, epoch + 1, epochs,
                 ", ".join(f"{k}={v:.4f}" for k, v in values.items()), seconds, 100 * make.seconds / seconds)
    for loss_log in logs.values():
        loss_log.write()   # also present when resumed after the last epoch, or when a log stayed empty
    save_checkpoint(final, final_payload())
    progress.save(epochs, state, {k: v.rows for k, v in logs.items()}, complete=True)


# ---------------------------------------------------------------------------------------------- training
def train_stage1(params: Params, paths: DatasetPaths) -> None:
    """Stage 1: F alone with the batch-hard triplet loss."""
    seed_everything(params.seed)
    device = pick_device()
    extractor = build_extractor(params).to(device, memory_format=layout(params))
    cache = load_split(paths, "train", params.input.resize)
    s1 = params.stage1
    sampler = PKSampler(cache.pids, s1.ids_per_batch, s1.images_per_id, params.seed)
    optimizer = torch.optim.Adam(extractor.parameters(), lr=s1.lr)
    make = _batch_maker(params, cache, device, 1)
    state = TrainingState({"extractor": extractor}, {"extractor": optimizer}, {"augment": make.generator},
                          {"sampler": sampler.rng})
    progress = Progress(paths.progress(1), fingerprint(_stage_settings(params, 1), [paths.manifest]))
    _train("stage1", s1.epochs,
           lambda e: train_extractor_epoch(extractor, optimizer, make, sampler, params.triplet_margin, e),
           state, progress, {"main": LossLog(paths.losses("stage1"), STAGE1_LOSSES)}, paths.checkpoint(1),
           lambda: {"extractor": extractor.state_dict(), "model": dataclasses.asdict(params.model)}, make)


def train_stage2(params: Params, paths: DatasetPaths) -> None:
    """Stage 2: M alone with L_mask, F (from stage 1) frozen."""
    seed_everything(params.seed + 2)
    device = pick_device()
    extractor = build_extractor_from(paths.checkpoint(1), params, device)
    mask_net = build_mask_net(params).to(device, memory_format=layout(params))
    cache = load_split(paths, "train", params.input.resize)
    optimizer = torch.optim.Adam(mask_net.parameters(), lr=params.stage2.lr)
    make = _batch_maker(params, cache, device, 2)
    rng = np.random.default_rng(params.seed + 2)
    state = TrainingState({"mask": mask_net}, {"mask": optimizer}, {"augment": make.generator}, {"batches": rng})
    progress = Progress(paths.progress(2), fingerprint(_stage_settings(params, 2),
                                                       [paths.manifest, paths.checkpoint(1)]))
    _train("stage2", params.stage2.epochs,
           lambda e: train_mask_epoch(mask_net, extractor, optimizer, make, params.stage2.batch_size,
                                      params.lambda2, params.sparsity_weight, rng, e),
           state, progress, {"main": LossLog(paths.losses("stage2"), MASK_LOSSES)}, paths.checkpoint(2),
           lambda: {"mask": mask_net.state_dict(), "mask_optimizer": optimizer.state_dict(),
                    "model": dataclasses.asdict(params.model)}, make)


def train_stage3(params: Params, paths: DatasetPaths) -> None:
    """Stage 3: F with L_extractor (top drop_ratio mask pixels hidden), M with L_mask every few epochs."""
    seed_everything(params.seed + 3)
    device = pick_device()
    extractor = build_extractor_from(paths.checkpoint(1), params, device)
    stage2 = load_checkpoint(paths.checkpoint(2), required=("mask", "mask_optimizer"))
    mask_net = build_mask_net(params).to(device, memory_format=layout(params))
    mask_net.load_state_dict(stage2["mask"])
    cache = load_split(paths, "train", params.input.resize)
    s1 = params.stage1
    sampler = PKSampler(cache.pids, s1.ids_per_batch, s1.images_per_id, params.seed + 3)
    opt_f = torch.optim.Adam(extractor.parameters(), lr=s1.lr)
    opt_m = torch.optim.Adam(mask_net.parameters(), lr=params.stage2.lr)
    opt_m.load_state_dict(stage2["mask_optimizer"])
    make = _batch_maker(params, cache, device, 3)
    rng = np.random.default_rng(params.seed + 3)
    logs = {"main": LossLog(paths.losses("stage3"), STAGE3_LOSSES),
            "mask": LossLog(paths.losses("stage3_mask"), MASK_LOSSES)}
    state = TrainingState({"extractor": extractor, "mask": mask_net}, {"extractor": opt_f, "mask": opt_m},
                          {"augment": make.generator}, {"sampler": sampler.rng, "batches": rng})
    progress = Progress(paths.progress(3), fingerprint(_stage_settings(params, 3), [
        paths.manifest, paths.checkpoint(1), paths.checkpoint(2)]))

    def epoch_step(epoch: int) -> dict[str, float]:
        values = train_joint_epoch(extractor, mask_net, opt_f, make, sampler, params.lambda1, params.drop_ratio,
                                   params.triplet_margin, epoch)
        if (epoch + 1) % params.mask_update_every == 0:
            logs["mask"].add(epoch, train_mask_epoch(mask_net, extractor, opt_m, make, params.stage2.batch_size,
                                                     params.lambda2, params.sparsity_weight, rng, epoch,
                                                     stage="train_joint (stage 3, M update)"))
        return values

    _train("stage3", params.stage3.epochs, epoch_step, state, progress, logs, paths.checkpoint(3),
           lambda: {"extractor": extractor.state_dict(), "mask": mask_net.state_dict(),
                    "model": dataclasses.asdict(params.model)}, make)


def build_extractor_from(checkpoint: Path, params: Params, device: torch.device) -> FeatureExtractor:
    """F with the weights of a checkpoint (its ImageNet init is not re-fetched: the weights replace it)."""
    payload = load_checkpoint(checkpoint, required=("extractor",))
    m = params.model
    extractor = FeatureExtractor(m.backbone, m.embedding_dim, "none")
    extractor.load_state_dict(payload["extractor"])
    return extractor.to(device, memory_format=layout(params))


def load_mask_net(checkpoint: Path, params: Params, device: torch.device) -> UNet:
    payload = load_checkpoint(checkpoint, required=("mask",))
    mask_net = build_mask_net(params)
    mask_net.load_state_dict(payload["mask"])
    return mask_net.to(device, memory_format=layout(params)).eval()


# -------------------------------------------------------------------------------------------- evaluation
def evaluate_dataset(params: Params, paths: DatasetPaths) -> dict[str, Any]:
    """Score the untrained F, a colour histogram, the stage-1 F (no masks) and the final stage-3 F under the
    standard protocol, and the two trained models under the authors' protocol (whole gallery, junk
    included, no same-camera removal) for the audit. With `evaluation.rerank` the standard-protocol numbers
    are after k-reciprocal re-ranking over the scored gallery (as torchreid does); the metrics file says so."""
    device = pick_device()
    ev = params.evaluation
    query = load_split(paths, "query", params.input.resize)
    gallery = load_split(paths, "gallery", params.input.resize, drop_junk=False)
    scored = gallery.pids != JUNK_PID                 # the standard protocol never ranks junk
    crop = params.input.crop

    seed_everything(params.seed)  # the same initial F as stage 1 starts from
    models: dict[str, Callable[[ImageCache], np.ndarray]] = {
        "untrained": _embedder(build_extractor(params).to(device, memory_format=layout(params)), params, device),
        "color_histogram": lambda cache: color_histograms(cache, crop),
        "stage1": _embedder(build_extractor_from(paths.checkpoint(1), params, device), params, device),
        "stage3": _embedder(build_extractor_from(paths.checkpoint(3), params, device), params, device),
    }
    results: dict[str, Any] = {}
    authors: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    for name, embed in models.items():
        q_feat, g_feat = embed(query), embed(gallery)
        distmat = euclidean_distances(q_feat, g_feat)
        ranked = distmat[:, scored]
        if ev.rerank:
            from maskreid.reranking import k_reciprocal_rerank   # SciPy: imported only when used

            scored_feat = g_feat[scored]
            ranked = k_reciprocal_rerank(ranked, euclidean_distances(q_feat, q_feat),
                                         euclidean_distances(scored_feat, scored_feat),
                                         ev.rerank_k1, ev.rerank_k2, ev.rerank_lambda)
        raw = evaluate(ranked, query.pids, gallery.pids[scored], query.camids, gallery.camids[scored], ev.max_rank)
        results[name] = summarize_percent(raw, ev.ranks)
        curves[name] = raw["cmc"]
        log.info("%s %s: mAP %.2f rank-1 %.2f", paths.dataset, name, results[name]["mAP"], results[name]["rank1"])
        if name in ("stage1", "stage3"):
            whole = evaluate(distmat, query.pids, gallery.pids, query.camids, gallery.camids, ev.max_rank,
                             same_camera_removal=False)
            authors[name] = summarize_percent(whole, ev.ranks)
            log.info("%s %s (authors' protocol): mAP %.2f rank-1 %.2f", paths.dataset, name,
                     authors[name]["mAP"], authors[name]["rank1"])
    final = results["stage3"]
    reranking = ({"used": True, "k1": ev.rerank_k1, "k2": ev.rerank_k2, "lambda": ev.rerank_lambda}
                 if ev.rerank else {"used": False})
    metrics = {"mAP": final["mAP"], "rank1": final["rank1"], "protocol": "standard", "reranking": reranking,
               "query_images": len(query), "gallery_images": int(scored.sum()), **results,
               "authors_protocol": {"description": "whole gallery ranked, junk included, same-id same-camera "
                                                   "images kept (the authors' public code); not the standard; "
                                                   "never re-ranked",
                                    "gallery_images": len(gallery), **authors}}
    cmc = pd.DataFrame({"rank": np.arange(1, ev.max_rank + 1), **{k: np.round(v, 6) for k, v in curves.items()}})
    atomic_write_text(paths.cmc, cmc.to_csv(index=False))
    atomic_write_text(paths.metrics, json.dumps(metrics, indent=2) + "\n")
    return metrics


def _embedder(model: torch.nn.Module, params: Params, device: torch.device) -> Callable[[ImageCache], np.ndarray]:
    return lambda cache: extract_features(model, cache, params.input.crop, params.evaluation.batch_size, device,
                                          layout(params))


def masks_figure(params: Params, paths: DatasetPaths) -> None:
    """Fig. 1 of the paper for this dataset: query images, the stage-3 M's masks, the hidden images."""
    from maskreid.figures import mask_figure

    device = pick_device()
    query = load_split(paths, "query", params.input.resize)
    mask_net = load_mask_net(paths.checkpoint(3), params, device)
    mask_figure(mask_net, query, params.input.crop, params.drop_ratio, paths.mask_figure, device=device)
