"""Validation during training: identities held out of the training split (never the test set, which would
make the test numbers a tuned result), scored with the standard protocol every `eval_every` epochs."""

from __future__ import annotations

import numpy as np
import torch

from maskreid.data.loading import ImageCache
from maskreid.evaluation.features import extract_features
from maskreid.evaluation.metrics import euclidean_distances, evaluate


def hold_out(cache: ImageCache, ids: int, seed: int, min_train_ids: int) -> tuple[ImageCache, ImageCache]:
    """(training images, held-out images): `ids` identities drawn with `seed`, the same in every stage, so M
    and F never train on them. Refuses a split that leaves fewer than `min_train_ids` (P) to train on."""
    identities = np.unique(cache.pids)
    if len(identities) - ids < min_train_ids:
        raise ValueError(f"validation.ids={ids}: the training split has {len(identities)} identities and a PK "
                         f"batch needs {min_train_ids}; hold out at most {len(identities) - min_train_ids}")
    held = np.random.default_rng(seed).choice(identities, size=ids, replace=False)
    is_held = np.isin(cache.pids, held)
    return cache.subset(~is_held), cache.subset(is_held)


@torch.no_grad()
def validation_scores(model: torch.nn.Module, held_out: ImageCache, crop: tuple[int, int], batch_size: int,
                      device: torch.device, memory_format: torch.memory_format) -> dict[str, float]:
    """mAP and rank-1 (percent) of the held-out images searched among themselves: each image is a query, the
    others the gallery, same-identity same-camera images removed (the standard protocol; the query itself is
    one of them). Leaves the model in eval mode; training epochs put it back in train mode. Scored with
    the metrics directly, not maskreid.evaluation.scoring: no junk, never re-ranked, and the training stages
    stay independent of the re-ranking code."""
    features = extract_features(model, held_out, crop, batch_size, device, memory_format)
    distances = euclidean_distances(features, features)
    result = evaluate(distances, held_out.pids, held_out.pids, held_out.camids, held_out.camids,
                      max_rank=1)
    return {"val/mAP": round(100 * result["mAP"], 4), "val/rank1": round(100 * result["cmc"][0], 4)}
