"""The masks ablation on one GPU: every `hiding` control and the mask settings, several seeds, the full
quick schedule, on the synthetic set and CUHK01, through the pipeline's own stage functions (the ones
`dvc repro` runs; DVC itself is not needed, so it runs on a machine that has only torch):

    python experiments/gpu_ablation.py OUT_DIR [--datasets synthetic cuhk01] [--seeds 0 1 2] [--cuhk01 DIR]
    python experiments/gpu_ablation.py OUT_DIR --summarize      # OUT_DIR/ablation_rows.jsonl -> markdown tables
    python experiments/gpu_ablation.py OUT_DIR --datasets cuhk01 --config "NAME KEY=VALUE ..." [--config ...]
                                          # the default method under other settings (a search): search_rows.jsonl

One process per (dataset, seed), all at once on the one GPU (the quick profile's nets are far too small to
fill it). Each process trains stage 1 once and stage 2 once per `mask_upsampling_init`, then stage 3 and the
evaluation once per variant, every variant of one seed starting from the same stage-1 model (the pairing
the ablation's paired differences rely on):

    learned, none, random_blocks          (default settings: the paper's hiding and its two controls)
    learned, freeze_hidden_bn=false        (the hidden pass moves F's BatchNorm running statistics)
    learned, mask_upsampling_init=nearest  (stage 2 re-trained: M's transposed convs start as nearest upsampling)

Each finished evaluation appends one JSON line to OUT_DIR/ablation_rows.jsonl (stage-1 and stage-3 mAP,
rank-1, mINP; the mask measures of the metrics file; the 16-pixel lattice peak of the stage-2 and stage-3
masks): a run stopped at a time limit keeps what finished. Seed 0's mask figures are copied to OUT_DIR.

`--cuhk01 DIR`: CUHK01's images as DIR/PPPPNNN.<ext> (any format Pillow reads losslessly, e.g. lossless WebP
to fit a 64 MiB transfer); they are written back as PNG into data/raw/cuhk01/campus/ (same pixels).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from maskreid.params import Params  # noqa: E402
from maskreid.params import load_params as load_project_params  # noqa: E402
from maskreid.paths import DatasetPaths  # noqa: E402
from maskreid.pipeline.chain import dataset_chain  # noqa: E402

# (name, stage-2 setting, stage-3 overrides); variants sharing a stage-2 setting run after one stage-2 training
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("learned", "default", {"hiding": "learned"}),
    ("none", "default", {"hiding": "none"}),
    ("random_blocks", "default", {"hiding": "random_blocks"}),
    ("learned, BN unfrozen", "default", {"hiding": "learned", "freeze_hidden_bn": False}),
    ("learned, nearest init", "nearest", {"hiding": "learned", "mask_upsampling_init": "nearest"}),
]
ROWS = "ablation_rows.jsonl"


def load_params(dataset: str, seed: int, epochs: list[int] | None, settings: Sequence[str] = ()) -> Params:
    """params.yaml's quick profile for one dataset and seed; `settings`: overrides in the grammar of
    `dvc exp run -S` (Hydra's), e.g. profiles.quick.stage1.lr=0.0005, checked like any params.yaml."""
    overrides = ["profile=quick", f"datasets=[{dataset}]", f"seed={seed}"]
    overrides += [f"profiles.quick.stage{n}.epochs={e}" for n, e in zip((1, 2, 3), epochs or ())]
    return load_project_params(REPO / "params.yaml", [*overrides, *settings])


def prepare_dataset(dataset: str, root: Path, cuhk01: Path | None) -> None:
    """Raw files and prepare@<ds>'s output under `root`, once per dataset (the workers copy them)."""
    from PIL import Image

    paths = DatasetPaths(dataset, root)
    if dataset == "cuhk01":
        if cuhk01 is None:
            raise SystemExit("cuhk01 needs --cuhk01 DIR (its images)")
        campus = paths.raw / "campus"
        campus.mkdir(parents=True, exist_ok=True)
        for source in sorted(cuhk01.iterdir()):
            with Image.open(source) as image:
                image.save(campus / f"{source.stem}.png")
    dict(dataset_chain(REPO))["prepare"](load_params(dataset, 0, None), paths)


def _lattice_peaks(params: Params, paths: DatasetPaths, stage: int) -> float:
    from maskreid.data.build import load_split
    from maskreid.masks.diagnostics import grid_peak
    from maskreid.masks.measures import masks_of
    from maskreid.models.build import layout, load_mask_net
    from maskreid.runtime.device import pick_device

    device = pick_device(params.device)
    query = load_split(paths, "query", params.input.resize)
    masks = masks_of(load_mask_net(paths.checkpoint(stage), params, device), query, params.input.crop, device,
                     128, layout(params))
    return round(grid_peak(masks, 16), 3)


def _workspace(dataset: str, seed: int, base: Path, purpose: str) -> DatasetPaths:
    """A worker's own project folder (a copy of the prepared data) and 2 CPU threads: what every worker process
    sets up first."""
    import torch

    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp(prefix=f"{purpose}-{dataset}-{seed}-"))
    shutil.copytree(base / dataset / "data", root / "data")
    return DatasetPaths(dataset, root)


def _schedule(params: Params) -> str:
    return "/".join(str(getattr(params, f"stage{n}").epochs) for n in (1, 2, 3))


def _scores(metrics: dict[str, Any]) -> dict[str, float]:
    """Stage-1 and stage-3 mAP, rank-1 and mINP of an evaluate run's metrics file, as flat row columns."""
    return {f"stage{n}_{m}": metrics[f"stage{n}"][m] for n in (1, 3) for m in ("mAP", "rank1", "mINP")}


def worker(out: Path, dataset: str, seed: int, base: Path, epochs: list[int] | None) -> None:
    import torch

    stage = dict(dataset_chain(REPO))
    paths = _workspace(dataset, seed, base, "ablation")
    params = load_params(dataset, seed, epochs)
    schedule = _schedule(params)
    seconds: dict[str, float] = {}

    def timed(name: str, step, p: Params) -> None:
        began = time.perf_counter()
        step(p, paths)
        seconds[name] = round(time.perf_counter() - began, 1)
        print(f"[{dataset} seed {seed}] {name}: {seconds[name]} s", flush=True)

    timed("stage1", stage["train_extractor"], params)
    for init in dict.fromkeys(v[1] for v in VARIANTS):
        for stale in (2, 3):
            paths.checkpoint(stale).unlink(missing_ok=True)
            paths.progress(stale).unlink(missing_ok=True)
        timed(f"stage2 {init}", stage["train_mask"], params.model_copy(update=dict(mask_upsampling_init=init)))
        peak2 = _lattice_peaks(params, paths, 2)
        for name, _, overrides in (v for v in VARIANTS if v[1] == init):
            p = params.model_copy(update=dict(**overrides))
            paths.checkpoint(3).unlink(missing_ok=True)
            paths.progress(3).unlink(missing_ok=True)
            timed(f"stage3 {name}", stage["train_joint"], p)
            timed(f"evaluate {name}", stage["evaluate"], p)
            metrics = json.loads(paths.metrics.read_text())
            row = {"dataset": dataset, "seed": seed, "variant": name, "epochs": schedule, "profile": p.profile,
                   "hiding": p.hiding, "lambda1": p.lambda1, "drop_ratio": p.drop_ratio,
                   "mask_upsampling_init": p.mask_upsampling_init, "freeze_hidden_bn": p.freeze_hidden_bn,
                   **_scores(metrics), **{k: v for k, v in metrics.items() if k.startswith("mask_") or k == "person_share"},
                   "lattice16_stage2": peak2,
                   "lattice16_stage3": _lattice_peaks(p, paths, 3) if p.hiding == "learned" else None,
                   "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                   "seconds": dict(seconds)}
            with open(out / ROWS, "a") as f:
                f.write(json.dumps(row) + "\n")
            if seed == 0 and p.hiding == "learned" and p.freeze_hidden_bn:
                stage["masks"](p, paths)
                shutil.copy(paths.mask_figure, out / f"masks_{dataset}_{init}.png")


def config_worker(out: Path, dataset: str, seed: int, base: Path, config: str) -> None:
    """`--config "NAME KEY=VALUE ..."`: the default method (learned hiding) under other training settings, for a
    search of the quick profile's free choices (schedule, learning rate, input size, batch composition)."""
    name, *settings = config.split()
    paths = _workspace(dataset, seed, base, "search")
    params = load_params(dataset, seed, None, settings)
    seconds: dict[str, float] = {}
    for stage, step in dataset_chain(REPO):
        if stage in ("prepare", "masks", "export"):      # prepared once for all workers; no figure, no export
            continue
        began = time.perf_counter()
        step(params, paths)
        seconds[stage] = round(time.perf_counter() - began, 1)
    metrics = json.loads(paths.metrics.read_text())
    row = {"dataset": dataset, "seed": seed, "config": name, "settings": settings, "epochs": _schedule(params),
           **_scores(metrics), "seconds": seconds}
    print(json.dumps(row), flush=True)
    with open(out / "search_rows.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def summarize(out: Path) -> str:
    """Per dataset and variant: mean ± sd over seeds; paired differences learned - each other variant."""
    import pandas as pd

    from maskreid.tables.ablation import interval_text, paired_interval, plus_minus

    rows = pd.DataFrame([json.loads(line) for line in (out / ROWS).read_text().splitlines() if line.strip()])
    measures = ["stage3_mAP", "stage3_rank1", "stage3_mINP", "stage1_mAP", "mask_input_dependence",
                "mask_hidden_on_person", "lattice16_stage3"]
    lines = ["# Masks ablation on one GPU: every control, two mask settings, several seeds", "",
             f"Regenerated by `python experiments/gpu_ablation.py {out} --summarize` from {ROWS} (one line per run). "
             f"Device: {', '.join(sorted(set(rows.device)))}; quick profile, epochs (stage 1/2/3) "
             f"{', '.join(sorted(set(rows.epochs)))}; standard protocol, stage-3 F, percent; mean ± sample sd over "
             "seeds. Every variant of one seed starts stage 3 from the same stage-1 model (and, but for `nearest "
             "init`, the same stage-2 M). Mask measures (stage-3 M on the query images) only for the variants that "
             "use M; `hidden on person` needs the synthetic set's silhouettes; the lattice peak is the spectral "
             "power on the 16-pixel lattice over the mean (1: no grid).", "",
             "| dataset | variant | seeds | mAP | rank-1 | mINP | stage-1 mAP | mask input dependence | hidden on "
             "person (%) | 16-px lattice peak (stage 3) |", "|---|---|---|---|---|---|---|---|---|---|"]
    order = {name: i for i, (name, _, _) in enumerate(VARIANTS)}
    groups = sorted(rows.groupby(["dataset", "variant"]), key=lambda kv: (kv[0][0], order[kv[0][1]]))
    for (dataset, variant), group in groups:
        cells = []
        for m in measures:
            if m.startswith(("mask_", "lattice")) and (group.hiding != "learned").any():
                cells.append("")        # the controls do not use M: its measures say nothing about them
                continue
            values = pd.to_numeric(group[m], errors="coerce").dropna() if m in group else pd.Series(dtype=float)
            digits = 3 if m == "mask_input_dependence" else 2
            cells.append("" if values.empty else plus_minus(values.mean(), values.std(ddof=1) if len(values) > 1
                                                     else float("nan"), digits))
        lines.append(f"| {dataset} | {variant} | {len(group)} ({' '.join(map(str, sorted(group.seed)))}) | "
                     + " | ".join(cells) + " |")
    lines += ["", "Paired differences, learned (the default) minus each other variant, same seeds: mean ± sd, and the",
              "95% confidence interval of the mean (t-based, seeds - 1 degrees of freedom):", "",
              "| dataset | comparison (same seeds) | seeds | mAP | mAP 95% CI | rank-1 | rank-1 95% CI | mINP |",
              "|---|---|---|---|---|---|---|---|"]
    for dataset, group in rows.groupby("dataset"):
        learned = group[group.variant == "learned"].set_index("seed")
        for variant in sorted(set(group.variant) - {"learned"}, key=order.get):
            other = group[group.variant == variant].set_index("seed")
            seeds = sorted(set(learned.index) & set(other.index))
            if not seeds:
                continue
            cells = []
            for m in ("stage3_mAP", "stage3_rank1", "stage3_mINP"):
                diff = learned.loc[seeds, m] - other.loc[seeds, m]
                cells.append(plus_minus(diff.mean(), diff.std(ddof=1) if len(diff) > 1 else float("nan")))
                if m != "stage3_mINP":
                    cells.append(interval_text(*paired_interval(diff)[1:]))
            lines.append(f"| {dataset} | learned - ({variant}) | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "cuhk01"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, nargs=3, help="stage 1/2/3 epochs (default: the quick profile's)")
    ap.add_argument("--cuhk01", type=Path, help="folder of CUHK01's images (PPPPNNN.<ext>)")
    ap.add_argument("--summarize", action="store_true")
    ap.add_argument("--config", action="append", default=[],
                    help='instead of the ablation: "NAME KEY=VALUE ..." (repeatable), learned hiding only')
    ap.add_argument("--worker", nargs=3, metavar=("DATASET", "SEED", "BASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarize:
        print(summarize(args.out), end="")
        return
    if args.worker:
        dataset, seed, base = args.worker
        if args.config:
            config_worker(args.out, dataset, int(seed), Path(base), args.config[0])
        else:
            worker(args.out, dataset, int(seed), Path(base), args.epochs)
        return
    base = Path(tempfile.mkdtemp(prefix="ablation-base-"))
    began = time.perf_counter()
    for dataset in args.datasets:
        prepare_dataset(dataset, base / dataset, args.cuhk01)
    print(f"prepared {args.datasets} in {time.perf_counter() - began:.1f} s", flush=True)
    extra = ["--epochs", *map(str, args.epochs)] if args.epochs else []
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    jobs = [[*extra]] if not args.config else [["--config", c] for c in args.config]
    workers = [subprocess.Popen([sys.executable, __file__, str(args.out), "--worker", d, str(s), str(base), *job],
                                env=env) for job in jobs for s in args.seeds for d in args.datasets]
    codes = [w.wait() for w in workers]
    print(f"workers done in {time.perf_counter() - began:.1f} s, exit codes {codes}", flush=True)
    if (args.out / ROWS).is_file() and not args.config:
        print(summarize(args.out), end="")
    if any(codes):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
