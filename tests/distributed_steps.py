"""One training step of stage 1, of stage 3 (F's step with learned and with random-block hiding) and of M's
L_mask step, on small nets and generated images, for tests/test_distributed.py: run in-process as one
process, and under torchrun as several; the results must agree.

    torchrun --nproc-per-node=2 tests/distributed_steps.py OUT.pt    # rank 0 writes OUT.pt

MASKREID_TEST_FAULT=raise:1 (or hang:1) makes rank 1 raise (or stop answering) before the first step: how a
failing rank must stop the whole run.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import torch

from maskreid.data.loading import ImageCache
from maskreid.data.transforms import Normalizer
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.unet import UNet
from maskreid.runtime.precision import MixedPrecision
from maskreid.train.distributed import Cluster, start, stop, sync_batchnorm
from maskreid.train.epochs import BatchMaker, train_extractor_epoch, train_joint_epoch, train_mask_epoch

RESIZE, CROP = (72, 40), (64, 32)


def _cache(n_ids: int, per_id: int) -> ImageCache:
    g = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (n_ids * per_id, 3, *RESIZE), dtype=torch.uint8, generator=g)
    pids = np.repeat(np.arange(n_ids), per_id)
    return ImageCache(images, pids, np.zeros_like(pids), [f"{i}.jpg" for i in range(len(pids))])


def _maker(cache: ImageCache, cluster: Cluster, seed: int) -> BatchMaker:
    device = torch.device("cpu")
    return BatchMaker(cache, CROP, 0.5, device, torch.Generator().manual_seed(seed), Normalizer(device),
                      MixedPrecision("fp32", device), cluster=cluster)


def _models(cluster: Cluster) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    extractor = sync_batchnorm(FeatureExtractor("resnet18", 32), cpu, cluster)
    mask_net = sync_batchnorm(UNet(4), cpu, cluster)
    return extractor, mask_net


def _state(module: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Weights and buffers after the step, and the gradients of the step (left in .grad by the optimizer step)."""
    return {"after": {k: v.detach().clone() for k, v in module.state_dict().items()},
            "grad": {k: v.grad.detach().clone() for k, v in module.named_parameters() if v.grad is not None}}


def run_steps(cluster: Cluster) -> dict[str, Any]:
    """Each step from the same seeded start; returns its logged losses and the weights and buffers after it."""
    cpu = torch.device("cpu")
    out: dict[str, Any] = {}
    # stage 1: a PK batch of 5 ids x 3 images (15 rows: 8 + 7 with two processes)
    extractor, _ = _models(cluster)
    model = cluster.wrap(extractor, cpu)
    optimizer = torch.optim.Adam(extractor.parameters(), lr=2e-4)
    cache = _cache(6, 3)
    batch = [0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    seen: list[torch.Tensor] = []           # this rank's rows of F's output: the embeddings the loss mines
    hook = extractor.register_forward_hook(lambda module, args, output: seen.append(output.detach().clone()))
    losses = train_extractor_epoch(model, optimizer, _maker(cache, cluster, 1), [batch], 1.0, 0)
    hook.remove()
    out["stage1"] = {"losses": losses, "extractor": _state(extractor), "embeddings": seen[0],
                     "pids": torch.as_tensor(cache.pids[batch])}
    # the same step with plain SGD: the update is proportional to the gradient, so every weight must agree
    extractor, _ = _models(cluster)
    model = cluster.wrap(extractor, cpu)
    losses = train_extractor_epoch(model, torch.optim.SGD(extractor.parameters(), lr=0.1), _maker(cache, cluster, 1),
                                   [batch], 1.0, 0)
    out["stage1_sgd"] = {"losses": losses, "extractor": _state(extractor)}
    # stage 3, F's step (4 ids x 3 = 12 rows), with M's top 30% hidden and with random blocks
    for hiding in ("learned", "random_blocks"):
        extractor, mask_net = _models(cluster)
        model = cluster.wrap(extractor, cpu)
        opt_f = torch.optim.Adam(extractor.parameters(), lr=2e-4)
        losses = train_joint_epoch(model, mask_net if hiding == "learned" else None, opt_f,
                                   _maker(cache, cluster, 3), [batch[:12]], 0.9, 0.3, 1.0, 0, hiding,
                                   torch.Generator().manual_seed(4))
        out[f"stage3_{hiding}"] = {"losses": losses, "extractor": _state(extractor)}
    # M's L_mask step (stage 2, and stage 3's M update): one shuffled batch of 11 images (6 + 5 rows)
    extractor, mask_net = _models(cluster)
    mask_model = cluster.wrap(mask_net, cpu)
    opt_m = torch.optim.Adam(mask_net.parameters(), lr=1e-3)
    losses = train_mask_epoch(mask_model, extractor, opt_m, _maker(_cache(11, 1), cluster, 2), 11, 0.95, 1.0,
                              np.random.default_rng(0), 0)
    out["mask"] = {"losses": losses, "mask": _state(mask_net), "extractor": _state(extractor)}
    # the same M step with plain SGD: every weight of M must agree (Adam's first step hides small gradients)
    extractor, mask_net = _models(cluster)
    mask_model = cluster.wrap(mask_net, cpu)
    losses = train_mask_epoch(mask_model, extractor, torch.optim.SGD(mask_net.parameters(), lr=0.1),
                              _maker(_cache(11, 1), cluster, 2), 11, 0.95, 1.0, np.random.default_rng(0), 0)
    out["mask_sgd"] = {"losses": losses, "mask": _state(mask_net)}
    return out


def _fault(cluster: Cluster) -> None:
    kind, _, rank = os.environ.get("MASKREID_TEST_FAULT", "").partition(":")
    if kind and cluster.rank == int(rank):
        if kind == "raise":
            raise RuntimeError(f"rank {cluster.rank} failed on purpose")
        time.sleep(3600)   # alive but silent: the others' collectives must time out


if __name__ == "__main__":
    torch.set_num_threads(1)
    cluster, _ = start("gloo", int(os.environ.get("MASKREID_TEST_TIMEOUT_S", "120")), "cpu")
    try:
        _fault(cluster)
        result = run_steps(cluster)
        if cluster.is_main:
            torch.save({"world": cluster.world, **result}, sys.argv[1])
    finally:
        stop(cluster)
