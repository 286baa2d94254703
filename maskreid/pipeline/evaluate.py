"""DVC stage evaluate@<dataset>: the untrained F, a colour histogram, stage-1 F and stage-3 F on the test split
(standard protocol, and the authors' protocol for the audit); metrics/<ds>.json and the CMC curves."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from maskreid.data.build import load_split
from maskreid.data.loading import ImageCache
from maskreid.data.market import JUNK_PID
from maskreid.evaluation.bootstrap import intervals, paired_difference
from maskreid.evaluation.features import color_histograms, extract_features
from maskreid.evaluation.scoring import Score, Scoring, score_features
from maskreid.evaluation.verification import FPRS, fpr_key
from maskreid.figures.embeddings import embedding_figure
from maskreid.figures.failures import failure_page
from maskreid.io import atomic_write_text
from maskreid.masks.measures import input_dependence, masks_of, person_measures, silhouettes_of
from maskreid.models.build import build_extractor, layout, load_extractor, load_mask_net
from maskreid.models.checkpoints import load_checkpoint
from maskreid.params import Params
from maskreid.paths import DatasetPaths
from maskreid.runtime.device import pick_device, seed_everything, stream_seed
from maskreid.runtime.provenance import provenance
from maskreid.tables.compare import per_query_table

log = logging.getLogger("maskreid")


def evaluate_dataset(params: Params, paths: DatasetPaths) -> dict[str, Any]:
    """Score the untrained F, a colour histogram, the stage-1 F (no masks) and the final stage-3 F under the
    standard protocol, and the two trained models under the authors' protocol (whole gallery, junk
    included, no same-camera removal) for the audit. With `evaluation.rerank` the standard-protocol numbers
    are after k-reciprocal re-ranking over the scored gallery (as torchreid does); the metrics file says so.
    metrics/<ds>.json keeps the numbers people compare; metrics/<ds>.details.json (not a DVC metric) the
    baselines, every rank, the counts, the protocol notes and where and with what it was computed."""
    began = time.perf_counter()
    device = pick_device(params.device)
    ev = params.evaluation
    scoring = Scoring.of(ev)
    query = load_split(paths, "query", params.input.resize)
    gallery = load_split(paths, "gallery", params.input.resize, drop_junk=False)
    scored = gallery.pids != JUNK_PID                 # the standard protocol never ranks junk
    crop = params.input.crop

    seed_everything(stream_seed(params.seed, 1, "init"))  # the same initial F as stage 1 starts from
    models: dict[str, Callable[[ImageCache], np.ndarray]] = {
        "untrained": _embedder(build_extractor(params).to(device, memory_format=layout(params)), params, device),
        "color_histogram": lambda cache: color_histograms(cache, crop),
        "stage1": _embedder(load_extractor(paths.checkpoint(1), params, device), params, device),
        "stage3": _embedder(load_extractor(paths.checkpoint(3), params, device), params, device),
    }
    results: dict[str, Any] = {}
    authors: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    scored_distances: dict[str, np.ndarray] = {}
    trained: dict[str, Score] = {}
    test_features: dict[str, np.ndarray] = {}
    for name, embed in models.items():
        q_feat, g_feat = embed(query), embed(gallery)
        score = score_features(q_feat, g_feat, query.pids, gallery.pids, query.camids, gallery.camids, scoring)
        results[name] = score.summary
        scored_distances[name] = score.distances
        curves[name] = score.raw["cmc"]
        log.info("%s %s: mAP %.2f rank-1 %.2f", paths.dataset, name, results[name]["mAP"], results[name]["rank1"])
        if name in ("stage1", "stage3"):
            trained[name] = score
            results[name].update(_interval_keys(intervals(score.queries, ("mAP", "rank1"),
                                                          ev.bootstrap_resamples, params.seed)))
            test_features[name] = np.concatenate([q_feat, g_feat[scored]])
            authors[name] = score_features(q_feat, g_feat, query.pids, gallery.pids, query.camids, gallery.camids,
                                           scoring.without_reranking(), protocol="authors").summary
            log.info("%s %s (authors' protocol): mAP %.2f rank-1 %.2f", paths.dataset, name,
                     authors[name]["mAP"], authors[name]["rank1"])
    mask_net = load_mask_net(paths.checkpoint(3), params, device)
    query_masks = masks_of(mask_net, query, crop, device, ev.batch_size, layout(params))
    dependence = input_dependence(query_masks)
    log.info("%s stage-3 masks: input dependence %.4f (0: the same mask on every image)", paths.dataset, dependence)
    person = silhouettes_of(query, paths.prepared / "images", paths.silhouettes, params.input.resize, crop)
    on_person = {}
    if person is not None:
        shares = person_measures(query_masks, person, params.drop_ratio)
        on_person = {"mask_hidden_on_person": round(100 * shares["hidden_on_person"], 4),
                     "mask_hidden_on_person_fixed": round(100 * shares["hidden_on_person_fixed"], 4),
                     "person_share": round(100 * shares["person_share"], 4)}
        log.info("%s stage-3 masks: %.1f%% of the hidden pixels are on the person (M's average mask on every "
                 "image: %.1f%%; random hiding: %.1f%%, the person's share of the image)", paths.dataset,
                 *(100 * shares[k] for k in ("hidden_on_person", "hidden_on_person_fixed", "person_share")))
    final = results["stage3"]
    headline = [k for k in ("mAP", "mAP_ci95_low", "mAP_ci95_high", "rank1", "rank1_ci95_low", "rank1_ci95_high",
                            "rank5", "mINP", *map(fpr_key, FPRS)) if k in final]
    gain = paired_difference(trained["stage1"].queries, trained["stage3"].queries, ("mAP", "rank1"),
                             ev.bootstrap_resamples, params.seed)
    log.info("%s stage 3 - stage 1: mAP %+.2f (95%% interval %+.2f to %+.2f), rank-1 %+.2f (%+.2f to %+.2f)",
             paths.dataset, *(v for m in ("mAP", "rank1") for v in (gain[m]["difference"], *gain[m]["interval"])))
    training = {f"stage{n}": load_checkpoint(paths.checkpoint(n)).get("training") for n in (1, 2, 3)}
    # metrics/<ds>.json: only the numbers people compare (dvc exp show / metrics diff columns)
    metrics = {"mAP": final["mAP"], "rank1": final["rank1"],
               **{name: {k: results[name][k] for k in headline} for name in ("stage1", "stage3")},
               "stage3_minus_stage1": {k: v for m in ("mAP", "rank1") for k, v in (
                   (m, gain[m]["difference"]), (f"{m}_ci95_low", gain[m]["interval"][0]),
                   (f"{m}_ci95_high", gain[m]["interval"][1]))},
               "authors_protocol": {name: {k: authors[name][k] for k in ("mAP", "rank1")} for name in authors},
               "mask_input_dependence": round(dependence, 6), **on_person, "reranked": bool(ev.rerank),
               "trained_in": _training_precision(training)}
    details = {"protocol": "standard", "reranking": scoring.reranking_record(),
               "query_expansion": scoring.query_expansion_record(), "flip_tta": ev.flip_tta,
               "intervals": {"method": "bootstrap over query identities, percentile 95% interval",
                             "resamples": ev.bootstrap_resamples, "seed": params.seed,
                             "stage3_minus_stage1": gain},
               "query_images": len(query), "gallery_images": int(scored.sum()), "models": results,
               "authors_protocol": {"description": "whole gallery ranked, junk included, same-id same-camera "
                                                   "images kept (the authors' public code); not the standard; "
                                                   "never re-ranked",
                                    "gallery_images": len(gallery), **authors},
               "training": training,
               "provenance": {**provenance(device, params.precision, params.input.crop),
                              "evaluate_seconds": round(time.perf_counter() - began, 1)}}
    draw_ranked_samples(query, gallery, scored, {k: scored_distances[k] for k in ("stage1", "stage3")},
                        paths.ranked_lists, params.seed)
    embedding_figure(test_features, np.concatenate([query.pids, gallery.pids[scored]]), paths.embedding_figure,
                     params.seed)
    if ev.page_queries:
        failure_page(query, gallery, trained["stage3"], paths.failure_page,
                     f"{paths.dataset}: stage-3 F, ranked lists", ev.page_queries, ev.page_queries, params.seed)
    else:
        atomic_write_text(paths.failure_page, "<!DOCTYPE html><p>evaluation.page_queries is 0: no queries shown.\n")
    atomic_write_text(paths.queries, per_query_table(query.paths, query.camids,
                                                     {k: v.queries for k, v in trained.items()}).to_csv(index=False))
    cmc = pd.DataFrame({"rank": np.arange(1, ev.max_rank + 1), **{k: np.round(v, 6) for k, v in curves.items()}})
    atomic_write_text(paths.cmc, cmc.to_csv(index=False))
    atomic_write_text(paths.details, json.dumps(details, indent=2) + "\n")
    atomic_write_text(paths.metrics, json.dumps(metrics, indent=2) + "\n")
    return metrics


RANKED_QUERIES, RANKED_TOP = 8, 10


def draw_ranked_samples(query: ImageCache, gallery: ImageCache, scored: np.ndarray,
                        distances: dict[str, np.ndarray], out: Path, seed: int) -> None:
    """The top 10 of the same seeded sample of 8 queries under each model, side by side, ranked as the
    standard protocol ranks them (junk and same-person same-camera images left out): where people see
    what stage 3 changed."""
    from maskreid.figures.ranked_lists import RankedRow, draw_ranked_lists, ranked_hits

    g_pids, g_camids = gallery.pids[scored], gallery.camids[scored]
    g_images = gallery.images[torch.from_numpy(np.flatnonzero(scored))]
    picks = np.sort(np.random.default_rng(seed).choice(len(query), min(RANKED_QUERIES, len(query)), replace=False))
    rows = [RankedRow(_hwc(query.images[q]), f"person {query.pids[q]}",
                      [ranked_hits(dist[q], query.pids[q], query.camids[q], g_pids, g_camids, g_images.__getitem__,
                                   RANKED_TOP) for dist in distances.values()]) for q in picks]
    draw_ranked_lists(rows, out, [f"{name}: top {RANKED_TOP}" for name in distances],
                      thumb=tuple(query.images.shape[-2:]))


def _training_precision(training: dict[str, dict | None]) -> str:
    """The precision the training stages ran in ("fp32", "bf16", or e.g. "bf16/fp32/bf16" when they differ), from
    their checkpoints' training records: in the metrics file, because results move between bf16 and fp32
    machines (`maskreid check-reproduction`)."""
    found = [(record or {}).get("precision", "unknown") for record in training.values()]
    return found[0] if len(set(found)) == 1 else "/".join(found)


def _interval_keys(found: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Flat keys (DVC metrics compare scalars): mAP_ci95_low, mAP_ci95_high, ..."""
    return {f"{m}_ci95_{side}": v for m, (low, high) in found.items() for side, v in (("low", low), ("high", high))}


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def _embedder(model: torch.nn.Module, params: Params, device: torch.device) -> Callable[[ImageCache], np.ndarray]:
    return lambda cache: extract_features(model, cache, params.input.crop, params.evaluation.batch_size, device,
                                          layout(params), params.evaluation.flip_tta)
