"""The paper profile end to end on a GPU, on the embedded synthetic set, through the pipeline's own stage
functions (the same ones `dvc repro` runs; DVC and Hydra are not needed for this check):

    python experiments/gpu_pipeline_run.py OUT_DIR [--epochs 50 25 100]

prepare -> stage 1 -> stage 2 -> stage 3 -> evaluate (metrics, ranked lists, embeddings) -> mask figure -> ONNX
export, with params.yaml's paper profile (ResNet-50, 224x112, U-Net width 32, fp32, PK 20x3) except
`pretrained: none` (no network to fetch ImageNet weights). Prints each stage's wall time and the metrics, and
copies metrics and pictures to OUT_DIR. Finds what only a GPU run would find: tensors left on the wrong device,
checkpoints that do not load on the CPU, an export that needs the CPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maskreid.params import load_params  # noqa: E402
from maskreid.paths import DatasetPaths  # noqa: E402
from maskreid.pipeline.chain import dataset_chain  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--epochs", type=int, nargs=3, default=[50, 25, 100])
    ap.add_argument("--profile", default="paper", help="quick: a smoke run of this script on a CPU")
    ap.add_argument("--hidings", nargs="+", default=["learned"],
                    help="stage 3 and evaluation once per value, from the same stage-1 and stage-2 models")
    args = ap.parse_args()
    profile = f"profiles.{args.profile}"
    params = load_params(REPO / "params.yaml", [f"profile={args.profile}", "datasets=[synthetic]",
                                                f"{profile}.model.pretrained=none",
                                                *(f"{profile}.stage{n}.epochs={e}" for n, e in zip((1, 2, 3), args.epochs))])
    root = Path(tempfile.mkdtemp(prefix="maskreid-gpu-"))
    paths = DatasetPaths("synthetic", root)
    chain = dataset_chain(REPO)                         # dvc.yaml's stages, in its order
    split = [name for name, _ in chain].index("train_joint")

    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}; "
          f"epochs {args.epochs}; project in {root}", flush=True)
    times: dict[str, float] = {}
    by_hiding: dict[str, dict] = {}

    def timed(name: str, step, p) -> None:
        began = time.perf_counter()
        step(p, paths)
        times[name] = round(time.perf_counter() - began, 1)
        print(f"{name}: {times[name]} s", flush=True)

    for name, step in chain[:split]:                    # prepare, stage 1, stage 2: once
        timed(name, step, params)
    for i, hiding in enumerate(args.hidings):
        p = params.model_copy(update=dict(hiding=hiding))
        for stale in (paths.checkpoint(3), paths.progress(3)):
            stale.unlink(missing_ok=True)
        suffix = "" if i == 0 else f"_{hiding}"
        for name, step in chain[split:]:                # stage 3, evaluate, masks, export: per hiding
            if name in ("train_joint", "evaluate"):
                timed(name + suffix, step, p)
            if name == "evaluate":
                by_hiding[hiding] = json.loads(paths.metrics.read_text())
                print(hiding, json.dumps({k: by_hiding[hiding][k] for k in ("stage1", "stage3")}), flush=True)
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / "gpu_pipeline_hidings.json").write_text(json.dumps(
                    {"seconds": times, "by_hiding": by_hiding, "epochs": args.epochs}, indent=1))
            if name not in ("train_joint", "evaluate") and i == 0:   # the figure and the export: first hiding
                timed(name, step, p)
    for stage in (1, 3):   # a GPU-trained checkpoint loads on a CPU-only machine
        payload = torch.load(paths.checkpoint(stage), map_location="cpu", weights_only=True)
        assert all(t.device.type == "cpu" for t in payload["extractor"].values())
    metrics = by_hiding[args.hidings[0]]
    print(json.dumps({"seconds": times, "metrics": metrics}, indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_pipeline_metrics.json").write_text(json.dumps({"seconds": times, "metrics": metrics,
                                                                     "epochs": args.epochs}, indent=1))
    for src, name in ((paths.mask_figure, "masks.png"), (paths.ranked_lists, "ranked.png")):
        if src.is_file():
            shutil.copy(src, args.out / name)


if __name__ == "__main__":
    main()
