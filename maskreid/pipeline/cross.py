"""DVC stage cross_evaluate@<name>: the standard generalisation test of re-ID. F trained on one dataset (stage 1
and stage 3) is scored, unchanged, on another dataset's query/gallery under the standard protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maskreid.data.market import JUNK_PID
from maskreid.evaluation import euclidean_distances, evaluate, summarize_percent
from maskreid.features import extract_features
from maskreid.io import atomic_write_text
from maskreid.params import Params
from maskreid.paths import DatasetPaths
from maskreid.pipeline.common import build_extractor_from, layout, load_split, pick_device

HEADLINE = ("mAP", "rank1", "rank5", "mINP")


def cross_metrics_path(name: str, root: Path = Path(".")) -> Path:
    return root / "metrics" / "cross" / f"{name}.json"


def cross_evaluate(params: Params, name: str) -> dict[str, Any]:
    """metrics/cross/<name>.json: stage-1 and stage-3 F of the train set on the test set. The test images get
    the train set's input transform (the model's), as a user deploying it would."""
    train, test = params.cross_domain[name]
    device = pick_device(params.device)
    ev = params.evaluation
    source, target = DatasetPaths(train), DatasetPaths(test)
    query = load_split(target, "query", params.input.resize)
    gallery = load_split(target, "gallery", params.input.resize)
    scored = gallery.pids != JUNK_PID
    result: dict[str, Any] = {"train": train, "test": test}
    for stage in (1, 3):
        model = build_extractor_from(source.checkpoint(stage), params, device)
        q, g = (extract_features(model, cache, params.input.crop, ev.batch_size, device, layout(params))
                for cache in (query, gallery))
        raw = evaluate(euclidean_distances(q, g)[:, scored], query.pids, gallery.pids[scored], query.camids,
                       gallery.camids[scored], ev.max_rank)
        summary = summarize_percent(raw, ev.ranks)
        result[f"stage{stage}"] = {k: summary[k] for k in HEADLINE}
    atomic_write_text(cross_metrics_path(name), json.dumps(result, indent=2) + "\n")
    return result
