"""Validation during training (held-out training identities) and its dvclive log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from maskreid.data.loading import ImageCache
from maskreid.params import load_params
from maskreid.paths import DatasetPaths
from maskreid.pipeline.prepare import prepare
from maskreid.train.validation import hold_out
from tests.conftest import REPO
from tests.test_pipeline import TINY, TINY_PROFILE


def _cache(pids: list[int]) -> ImageCache:
    n = len(pids)
    return ImageCache(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone(),
                      np.asarray(pids), np.arange(n) % 3, [f"{i}.jpg" for i in range(n)])


def test_held_out_identities_are_whole_disjoint_and_the_same_every_time() -> None:
    cache = _cache([p for p in range(20) for _ in range(3)])
    train, held = hold_out(cache, 5, seed=7, min_train_ids=8)
    assert len(np.unique(held.pids)) == 5 and len(np.unique(train.pids)) == 15
    assert not set(held.pids) & set(train.pids) and len(train) + len(held) == len(cache)
    assert all(int(img[0, 0, 0]) == int(path[:-4]) for img, path in zip(held.images, held.paths))   # rows kept together
    again = hold_out(cache, 5, seed=7, min_train_ids=8)[1]
    assert np.array_equal(again.pids, held.pids)                        # stages 1, 2, 3 hold out the same ids
    with pytest.raises(ValueError, match="validation.ids=13: the training split has 20 identities and a PK batch "
                                         "needs 8; hold out at most 12"):
        hold_out(cache, 13, seed=7, min_train_ids=8)


@pytest.mark.slow
def test_stage1_with_validation_logs_held_out_scores_that_match_the_saved_model(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """eval_every=1: each epoch's val/mAP and val/rank1 are in dvclive's log; the last equals what the saved F
    scores on the held-out ids; those ids never reach the PK sampler."""
    import maskreid.pipeline.train as train
    from maskreid.data.build import load_split
    from maskreid.models.build import load_extractor
    from maskreid.runtime.device import stream_seed
    from maskreid.train.validation import validation_scores

    sampled: list[np.ndarray] = []
    real_sampler = train.PKSampler
    monkeypatch.setattr(train, "PKSampler", lambda pids, *a: sampled.append(pids) or real_sampler(pids, *a))

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(TINY)
    raw["profiles"]["quick"] = {**TINY_PROFILE, "precision": "fp32", "validation": {"eval_every": 1, "ids": 6}}
    root = tmp_path / "p"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params, paths = load_params(root / "params.yaml"), DatasetPaths("synthetic", root)
    prepare(params, paths)
    train.train_stage1(params, paths)

    metrics = paths.live(1) / "plots" / "metrics"
    rows = [line.split("\t") for line in (metrics / "val" / "mAP.tsv").read_text().splitlines()]
    assert rows[0] == ["step", "mAP"] and [int(r[0]) for r in rows[1:]] == [1, 2]
    summary = json.loads((paths.live(1) / "metrics.json").read_text())
    assert summary["step"] == 2 and set(summary) >= {"loss", "lr", "epoch_seconds", "val"}
    assert summary["lr"] == params.stage1.lr

    cache = load_split(paths, "train", params.input.resize)
    _, held = hold_out(cache, 6, stream_seed(params.seed, 0, "held_out"), params.stage1.ids_per_batch)
    model = load_extractor(paths.checkpoint(1), params, torch.device("cpu"))
    again = validation_scores(model, held, params.input.crop, 128, torch.device("cpu"), torch.contiguous_format)
    assert summary["val"]["mAP"] == pytest.approx(again["val/mAP"], abs=1e-3)
    assert summary["val"]["rank1"] == pytest.approx(again["val/rank1"], abs=1e-3)
    assert float(rows[-1][1]) == pytest.approx(again["val/mAP"], abs=1e-3)
    assert len(sampled) == 1 and not set(sampled[0]) & set(held.pids)          # held-out ids never trained on
    assert len(set(sampled[0])) + 6 == len(set(cache.pids))
