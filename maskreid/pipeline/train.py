"""DVC stages train_extractor@, train_mask@, train_joint@<dataset>: the paper's three training stages, each
resumable after a kill from its last complete epoch, on one process or several (maskreid.train.distributed)."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from pydantic import BaseModel

from maskreid.data.build import load_split
from maskreid.data.loading import ImageCache
from maskreid.data.sampler import PKSampler
from maskreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Normalizer
from maskreid.models.build import build_extractor, build_mask_net, layout, load_extractor
from maskreid.models.checkpoints import load_checkpoint, save_checkpoint
from maskreid.models.spec import ModelSpec, settings_hash
from maskreid.params import RESNET_WIDTH, Params
from maskreid.paths import DatasetPaths
from maskreid.runtime.device import pick_device, seed_everything, stream_seed
from maskreid.runtime.precision import MixedPrecision
from maskreid.runtime.provenance import device_name
from maskreid.train.distributed import Cluster, start, stop, sync_batchnorm
from maskreid.train.epochs import BatchMaker, train_extractor_epoch, train_joint_epoch, train_mask_epoch
from maskreid.train.log import TrainingLog
from maskreid.train.resume import Progress, TrainingState, fingerprint
from maskreid.train.schedule import learning_rate
from maskreid.train.validation import hold_out, validation_scores

log = logging.getLogger("maskreid")


@contextmanager
def _processes(params: Params, stage: int) -> Iterator[tuple[Cluster, torch.device]]:
    """Join the torchrun process group when there is one, pick this rank's device, and seed: every rank with
    the same seeds, so they build the same models and draw the same batches (a run is reproducible for any
    number of processes; no rank has random draws of its own)."""
    cluster, device_setting = start(params.distributed.backend, params.distributed.timeout_s, params.device)
    try:
        seed_everything(stream_seed(params.seed, stage, "init"))
        if cluster.enabled:
            log.info("rank %d of %d", cluster.rank, cluster.world)
        yield cluster, pick_device(device_setting)
    finally:
        stop(cluster)


def _load_train_split(params: Params, paths: DatasetPaths, cluster: Cluster) -> tuple[ImageCache, ImageCache | None]:
    """The images to train on, and the held-out ones to validate on (None when validation is off). Rank 0
    decodes (or reads) the image cache first, so ranks do not decode the same images at once."""
    if not cluster.is_main:
        cluster.barrier()
    cache = load_split(paths, "train", params.input.resize)
    if cluster.is_main:
        cluster.barrier()
    if params.validation.eval_every == 0:
        return cache, None
    return hold_out(cache, params.validation.ids, stream_seed(params.seed, 0, "held_out"), params.stage1.ids_per_batch)


def _validator(params: Params, extractor: torch.nn.Module, held_out: ImageCache | None,
               device: torch.device) -> Callable[[int], dict[str, float]]:
    """Every eval_every epochs (and never when validation is off): F's mAP and rank-1 on the held-out ids.
    A fixed extraction batch (128): the evaluation params are not a dependency of the training stages."""
    def scores(epoch: int) -> dict[str, float]:
        if held_out is None or (epoch + 1) % params.validation.eval_every:
            return {}
        return validation_scores(extractor, held_out, params.input.crop, 128, device, layout(params))
    return scores


def _trainable(module: torch.nn.Module, params: Params, device: torch.device, cluster: Cluster) -> torch.nn.Module:
    """A module to train on this device: global-batch BatchNorm with several processes, in channels_last."""
    return sync_batchnorm(module, device, cluster).to(device, memory_format=layout(params))


def _batch_maker(params: Params, cache: ImageCache, device: torch.device, stage: int, cluster: Cluster,
                 purpose: str = "augment") -> BatchMaker:
    generator = torch.Generator().manual_seed(stream_seed(params.seed, stage, purpose))
    amp = MixedPrecision(params.precision, device, params.input.crop)
    if cluster.is_main:
        log.info("training precision: %s on %s", amp.name, device)
    return BatchMaker(cache, params.input.crop, params.input.flip, device, generator, Normalizer(device), amp,
                      layout(params), cluster=cluster)


def _stage_settings(params: Params, stage: int) -> dict[str, Any]:
    """The parameters a training stage reads (what its progress file must agree with)."""
    settings: dict[str, Any] = {"seed": params.seed, "precision": params.precision,
                                "channels_last": params.channels_last, "model": params.model,
                                "input": params.input, "triplet_margin": params.triplet_margin,
                                "stage1": params.stage1}
    if params.validation.eval_every:      # held-out ids change every stage's training data
        settings["validation"] = params.validation
    if stage >= 2:
        settings.update(lambda2=params.lambda2, sparsity_weight=params.sparsity_weight, stage2=params.stage2)
        if params.mask_space != "pixel":     # settings added later join the hash only away from their default,
            settings["mask_space"] = params.mask_space    # so earlier checkpoints and progress files stay valid
        if params.mask_upsampling_init != "default":
            settings["mask_upsampling_init"] = params.mask_upsampling_init
    if stage == 3:
        settings.update(lambda1=params.lambda1, drop_ratio=params.drop_ratio, hiding=params.hiding,
                        mask_update_every=params.mask_update_every, stage3=params.stage3)
        if not params.freeze_hidden_bn:
            settings["freeze_hidden_bn"] = False
    return {k: (_dump(v) if isinstance(v, BaseModel) else v) for k, v in settings.items()}


# fields added to a block after checkpoints were saved: in the settings hash only away from their default
_LATER_FIELDS = {"schedule": "constant", "warmup_epochs": 0, "lr": None, "last_stride": 2, "width": RESNET_WIDTH}


def _dump(block: BaseModel) -> dict[str, Any]:
    later = {k: d for k, d in _LATER_FIELDS.items() if k in type(block).model_fields
             and type(block).model_fields[k].default == d}
    return {k: v for k, v in block.model_dump().items() if not (k in later and v == later[k])}


def _f_rate(params: Params, stage: int) -> Callable[[int], float]:
    """F's learning rate in each epoch of stage 1 or 3: stage 1's schedule, restarted in stage 3."""
    s1 = params.stage1
    base, epochs = (s1.lr, s1.epochs) if stage == 1 else (params.stage3.lr or s1.lr, params.stage3.epochs)
    return lambda epoch: learning_rate(base, epoch, epochs, s1.schedule, s1.warmup_epochs)


def inference_spec(params: Params, dataset: str, stage: int) -> ModelSpec:
    """What a user of the saved F needs (maskreid extract/search/export), so the file stands alone."""
    return ModelSpec(backbone=params.model.backbone, embedding_dim=params.model.embedding_dim,
                     resize=tuple(params.input.resize), crop=tuple(params.input.crop), mean=IMAGENET_MEAN,
                     std=IMAGENET_STD, dataset=dataset, stage=stage, last_stride=params.model.last_stride,
                     width=params.model.width,
                     params_hash=settings_hash(_stage_settings(params, stage)))


def _train(name: str, epochs: int, step: Callable[[int], dict[str, float]], state: TrainingState,
           progress: Progress, training_log: TrainingLog, final: Path, final_payload: Callable[[], dict],
           make: BatchMaker, optimizer: torch.optim.Optimizer,
           validate: Callable[[int], dict[str, float]] = lambda epoch: {},
           rate: Callable[[int], float] | None = None) -> None:
    """Run epochs from the last complete one; log each (dvclive: losses, learning rate, wall time, validation
    scores when due) and save progress after it; write the final checkpoint, then mark the stage done.
    Each epoch's log line gives its wall time and the share spent making batches (the input pipeline); the
    checkpoint records the total training wall time (summed over resumed runs), precision and device.
    `rate`: the optimizer's learning rate for an epoch, set before it (None: the optimizer's own, constant).
    Every rank resumes from the same progress file; rank 0 alone writes."""
    main = make.cluster.is_main
    start = 0
    saved = progress.load()
    rows: list[dict] = []
    if saved is not None and isinstance(saved["logs"], dict) and "rows" in saved["logs"] \
            and state.fits(saved["state"]):
        state.restore(saved["state"])
        rows, start = list(saved["logs"]["rows"]), int(saved["epoch"])
        log.info("%s: resuming after epoch %d of %d (%s)", name, start, epochs, progress.path)
    elif saved is not None:
        log.info("%s: %s has a log of an older maskreid; starting over", name, progress.path)
    training_log.start(rows)
    for epoch in range(start, epochs):
        began, make.seconds = time.perf_counter(), 0.0
        if rate is not None:
            for group in optimizer.param_groups:
                group["lr"] = rate(epoch)
        values = step(epoch)
        seconds = time.perf_counter() - began
        scores = validate(epoch)
        training_log.add({"epoch": epoch + 1, **values, **scores, "lr": optimizer.param_groups[0]["lr"],
                      "epoch_seconds": round(seconds, 3)})
        if main:
            progress.save(epoch + 1, state, {"rows": training_log.rows})
            log.info("%s epoch %d/%d: %s (%.1f s, input pipeline %.1f%%)", name, epoch + 1, epochs,
                     ", ".join(f"{k}={v:.4f}" for k, v in {**values, **scores}.items()), seconds,
                     100 * make.seconds / seconds)
    training_log.close()
    if not main:
        return
    record = {"wall_seconds": round(training_log.total("epoch_seconds"), 1),
              "epochs": epochs, "precision": make.amp.name, "device": device_name(make.device),
              "cpu_threads": torch.get_num_threads(), "processes": make.cluster.world}
    save_checkpoint(final, {**final_payload(), "training": record})
    progress.save(epochs, state, {"rows": training_log.rows}, complete=True)


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    """Names in the log: loss terms under `loss/` (mask_mean, not a loss, stays as it is); M's stage-3 updates
    all under `mask_update/`, so the two series of M's terms stay apart."""
    if prefix == "loss":
        return {k if k == "mask_mean" else f"loss/{k}": v for k, v in values.items()}
    return {f"{prefix}/{k}": v for k, v in values.items()}


def train_stage1(params: Params, paths: DatasetPaths) -> None:
    """Stage 1: F alone with the batch-hard triplet loss."""
    with _processes(params, 1) as (cluster, device):
        extractor = _trainable(build_extractor(params), params, device, cluster)
        model = cluster.wrap(extractor, device)
        cache, held_out = _load_train_split(params, paths, cluster)
        s1 = params.stage1
        sampler = PKSampler(cache.pids, s1.ids_per_batch, s1.images_per_id, stream_seed(params.seed, 1, "sampler"))
        optimizer = torch.optim.Adam(extractor.parameters(), lr=s1.lr)
        make = _batch_maker(params, cache, device, 1, cluster)
        state = TrainingState({"extractor": extractor}, {"extractor": optimizer}, {"augment": make.generator},
                              {"sampler": sampler.rng})
        progress = Progress(paths.progress(1), fingerprint(_stage_settings(params, 1), [paths.manifest]))
        _train("stage1", s1.epochs,
               lambda e: _prefixed("loss", train_extractor_epoch(model, optimizer, make, sampler,
                                                                 params.triplet_margin, e)),
               state, progress, TrainingLog(paths.live(1), cluster.is_main), paths.checkpoint(1),
               lambda: {"extractor": extractor.state_dict(), "model": params.model.model_dump(),
                        "inference": inference_spec(params, paths.dataset, 1).to_dict()}, make, optimizer,
               _validator(params, extractor, held_out, device), _f_rate(params, 1))


def train_stage2(params: Params, paths: DatasetPaths) -> None:
    """Stage 2: M alone with L_mask, F (from stage 1) frozen."""
    with _processes(params, 2) as (cluster, device):
        extractor = load_extractor(paths.checkpoint(1), params, device)
        mask_net = _trainable(build_mask_net(params), params, device, cluster)
        mask_model = cluster.wrap(mask_net, device)
        cache, _ = _load_train_split(params, paths, cluster)
        optimizer = torch.optim.Adam(mask_net.parameters(), lr=params.stage2.lr)
        make = _batch_maker(params, cache, device, 2, cluster)
        rng = np.random.default_rng(stream_seed(params.seed, 2, "batches"))
        state = TrainingState({"mask": mask_net}, {"mask": optimizer}, {"augment": make.generator},
                              {"batches": rng})
        progress = Progress(paths.progress(2), fingerprint(_stage_settings(params, 2),
                                                           [paths.manifest, paths.checkpoint(1)]))
        _train("stage2", params.stage2.epochs,
               lambda e: _prefixed("loss", train_mask_epoch(mask_model, extractor, optimizer, make,
                                                            params.stage2.batch_size, params.lambda2,
                                                            params.sparsity_weight, rng, e,
                                                            mask_space=params.mask_space)),
               state, progress, TrainingLog(paths.live(2), cluster.is_main), paths.checkpoint(2),
               lambda: {"mask": mask_net.state_dict(), "mask_optimizer": optimizer.state_dict(),
                        "model": params.model.model_dump()}, make, optimizer)


def train_stage3(params: Params, paths: DatasetPaths) -> None:
    """Stage 3: F with L_extractor, drop_ratio of each image hidden (M's top pixels with `hiding: learned`,
    the paper; random ones, or none, for the controls); with `learned`, M trained with L_mask every
    mask_update_every epochs. The controls leave M as stage 2 made it: it is not used."""
    with _processes(params, 3) as (cluster, device):
        learned = params.hiding == "learned"
        extractor = _trainable(load_extractor(paths.checkpoint(1), params, device), params, device, cluster)
        model = cluster.wrap(extractor, device)
        stage2 = load_checkpoint(paths.checkpoint(2), required=("mask", "mask_optimizer"))
        mask_net = build_mask_net(params)
        mask_net.load_state_dict(stage2["mask"])
        mask_net = _trainable(mask_net, params, device, cluster)
        mask_model = cluster.wrap(mask_net, device) if learned else mask_net
        cache, held_out = _load_train_split(params, paths, cluster)
        s1 = params.stage1
        sampler = PKSampler(cache.pids, s1.ids_per_batch, s1.images_per_id, stream_seed(params.seed, 3, "sampler"))
        opt_f = torch.optim.Adam(extractor.parameters(), lr=params.stage3.lr or s1.lr)
        opt_m = torch.optim.Adam(mask_net.parameters(), lr=params.stage2.lr)
        opt_m.load_state_dict(stage2["mask_optimizer"])
        make = _batch_maker(params, cache, device, 3, cluster)
        # M's updates augment with a generator of their own: F's batches are then the same draws whether or not
        # M is updated (learned hiding against the controls differ in the hiding alone)
        mask_make = _batch_maker(params, cache, device, 3, cluster, "mask_augment")
        hide_generator = torch.Generator().manual_seed(stream_seed(params.seed, 3, "hiding"))
        rng = np.random.default_rng(stream_seed(params.seed, 3, "batches"))
        state = TrainingState({"extractor": extractor, "mask": mask_net}, {"extractor": opt_f, "mask": opt_m},
                              {"augment": make.generator, "mask_augment": mask_make.generator, "hiding": hide_generator},
                              {"sampler": sampler.rng, "batches": rng})
        progress = Progress(paths.progress(3), fingerprint(_stage_settings(params, 3), [
            paths.manifest, paths.checkpoint(1), paths.checkpoint(2)]))
        if cluster.is_main:
            log.info("stage 3 hiding: %s", params.hiding)

        def epoch_step(epoch: int) -> dict[str, float]:
            # F's steps through its DistributedDataParallel wrapper; M (eval, no gradient) and, in M's updates,
            # the frozen F are used directly: only the module being trained goes through DDP
            values = _prefixed("loss", train_joint_epoch(model, mask_net if learned else None, opt_f, make, sampler,
                                       params.lambda1, params.drop_ratio, params.triplet_margin, epoch,
                                       params.hiding, hide_generator, params.mask_space, params.freeze_hidden_bn))
            if learned and (epoch + 1) % params.mask_update_every == 0:
                values.update(_prefixed("mask_update", train_mask_epoch(
                    mask_model, extractor, opt_m, mask_make, params.stage2.batch_size, params.lambda2,
                    params.sparsity_weight, rng, epoch, stage="train_joint (stage 3, M update)",
                    mask_space=params.mask_space)))
            return values

        _train("stage3", params.stage3.epochs, epoch_step, state, progress,
               TrainingLog(paths.live(3), cluster.is_main), paths.checkpoint(3),
               lambda: {"extractor": extractor.state_dict(), "mask": mask_net.state_dict(),
                        "model": params.model.model_dump(), "hiding": params.hiding,
                        "inference": inference_spec(params, paths.dataset, 3).to_dict()}, make, opt_f,
               _validator(params, extractor, held_out, device), _f_rate(params, 3))
