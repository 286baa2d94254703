"""DVC stage cross_evaluate@<name>: the standard generalisation test of re-ID. F trained on one dataset (stage 1
and stage 3) is scored, unchanged, on another dataset's query/gallery under the standard protocol."""

from __future__ import annotations

import json
from typing import Any

from maskreid.data.build import load_split
from maskreid.evaluation.features import extract_features
from maskreid.evaluation.scoring import Scoring, score_features
from maskreid.io import atomic_write_text
from maskreid.models.build import layout, load_extractor
from maskreid.params import Params
from maskreid.paths import DatasetPaths, cross_metrics_path
from maskreid.runtime.device import pick_device

HEADLINE = ("mAP", "rank1", "rank5", "mINP")


def cross_evaluate(params: Params, name: str) -> dict[str, Any]:
    """metrics/cross/<name>.json: stage-1 and stage-3 F of the train set on the test set. The test images get
    the train set's input transform (the model's), as a user deploying it would."""
    train, test = params.cross_domain[name]
    device = pick_device(params.device)
    ev = params.evaluation
    scoring = Scoring.of(ev)
    source, target = DatasetPaths(train), DatasetPaths(test)
    query = load_split(target, "query", params.input.resize)
    gallery = load_split(target, "gallery", params.input.resize)
    result: dict[str, Any] = {"train": train, "test": test}
    for stage in (1, 3):
        model = load_extractor(source.checkpoint(stage), params, device)
        q, g = (extract_features(model, cache, params.input.crop, ev.batch_size, device, layout(params))
                for cache in (query, gallery))
        summary = score_features(q, g, query.pids, gallery.pids, query.camids, gallery.camids, scoring).summary
        result[f"stage{stage}"] = {k: summary[k] for k in HEADLINE}
    result["reranked"] = scoring.rerank
    atomic_write_text(cross_metrics_path(name), json.dumps(result, indent=2) + "\n")
    return result
