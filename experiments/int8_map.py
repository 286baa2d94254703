"""What does static int8 cost in mAP? The pipeline's own stage-3 ONNX export of a dataset, quantised with
onnxruntime (uint8 activations calibrated on training images, per-channel weights), scored with the standard
protocol against the same export in fp32, on the same test images; with each path's images/s.

    python experiments/int8_map.py synthetic                  # after `dvc repro`; any trained dataset of the project
    python experiments/int8_map.py cuhk01 --project /path/to/a/clone --out int8_cuhk01.json

The bar for a reduced-precision `extract`: mAP moves by less than 0.1 points. Not used by maskreid.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from maskreid.data.build import load_split
from maskreid.evaluation.scoring import Scoring, score_features
from maskreid.params import load_params
from maskreid.paths import DatasetPaths
from maskreid.serve.inference import OnnxEmbedder, preprocess

# (weights, calibration): MinMax takes the calibration's extremes; Percentile (99.999) and Entropy clip outliers
VARIANTS = {"int8 weights, MinMax": (QuantType.QInt8, CalibrationMethod.MinMax),
            "uint8 weights, MinMax": (QuantType.QUInt8, CalibrationMethod.MinMax),
            "int8 weights, Percentile": (QuantType.QInt8, CalibrationMethod.Percentile),
            "int8 weights, Entropy": (QuantType.QInt8, CalibrationMethod.Entropy)}
BATCH = 64


class Calibration(CalibrationDataReader):
    """Evenly spaced training images (never test images), preprocessed as `extract` does, in batches."""

    def __init__(self, batches: list[np.ndarray], input_name: str) -> None:
        self.feeds = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


def embed(session: ort.InferenceSession, batches: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Embeddings of every batch, and images/s over them (after one warm-up batch)."""
    name = session.get_inputs()[0].name
    session.run(None, {name: batches[0]})
    began = time.perf_counter()
    out = [session.run(None, {name: b})[0] for b in batches]
    return np.concatenate(out).astype(np.float32), sum(len(b) for b in batches) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--params", type=Path, help="the params file (default: the project's params.yaml)")
    parser.add_argument("--calibration", type=int, default=256,
                        help="training images for the calibration (Entropy and Percentile keep every activation "
                             "of them in memory: use 64 for ResNet-50 at 224x112)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON")
    args = parser.parse_args()

    params = load_params(args.params or args.project / "params.yaml")
    paths = DatasetPaths(args.dataset, args.project)
    fp32 = OnnxEmbedder(paths.onnx)
    spec, name = fp32.spec, fp32.input_name

    def batches_of(images: torch.Tensor) -> list[np.ndarray]:
        return [preprocess(images[i:i + BATCH], spec).numpy() for i in range(0, len(images), BATCH)]

    train = load_split(paths, "train", params.input.resize)
    calibration = batches_of(train.evenly_spaced(args.calibration).images)
    query = load_split(paths, "query", params.input.resize)
    gallery = load_split(paths, "gallery", params.input.resize, drop_junk=False)
    test = batches_of(torch.cat([query.images, gallery.images]))

    def score(features: np.ndarray) -> dict[str, float]:
        q, g = features[:len(query)], features[len(query):]
        return score_features(q, g, query.pids, gallery.pids, query.camids, gallery.camids,
                              Scoring.of(params.evaluation)).summary

    def report(row: dict) -> None:
        row["mAP_change"] = round(row["mAP"] - rows[0]["mAP"], 4)
        print(f"{args.dataset} | {spec.backbone} {spec.crop[0]}x{spec.crop[1]} | {row['variant']} | "
              f"{row['mAP']:.2f} | {row['rank1']:.2f} | {row['mAP_change']:+.2f} | {row['images_per_s']:.1f} | "
              f"{row['max_abs_diff']:.2e}", flush=True)

    reference, speed = embed(fp32.session, test)
    rows = [{"variant": "fp32 (onnxruntime)", **score(reference), "images_per_s": round(speed, 1),
             "max_abs_diff": 0.0}]
    report(rows[0])
    work = Path(tempfile.mkdtemp())
    quant_pre_process(str(paths.onnx), str(work / "pre.onnx"))
    for i, (label, (weights, method)) in enumerate(VARIANTS.items()):
        out = work / f"q{i}.onnx"
        quantize_static(str(work / "pre.onnx"), str(out), Calibration(calibration, name),
                        quant_format=QuantFormat.QOperator, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=weights, calibrate_method=method)
        features, speed = embed(ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]), test)
        rows.append({"variant": f"static int8, QOperator, per-channel {label}", **score(features),
                     "images_per_s": round(speed, 1),
                     "max_abs_diff": float(np.abs(features - reference).max())})
        report(rows[-1])
    if args.out:
        args.out.write_text(json.dumps({"dataset": args.dataset, "backbone": spec.backbone, "crop": spec.crop,
                                        "query": len(query), "gallery": len(gallery), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
