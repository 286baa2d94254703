"""The `maskreid` command: tools that work outside the DVC pipeline."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from maskreid.console import report_error
from maskreid.io import user_cache_dir

NPZ_FIELDS = ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")
RERANK_FIELDS = ("q_q", "g_g")


def positive_int(text: str) -> int:
    """argparse type of a count (--batch-size, --top, --nprobe, --chunk, ...): an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def device_setting(text: str) -> str:
    """auto (the first GPU torch sees, else the CPU), cpu, cuda or cuda:N: params.yaml's `device` values."""
    from maskreid.params import DEVICE_PATTERN  # params.yaml's `device` values, checked the same way

    if not re.match(DEVICE_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, cuda or cuda:N")
    return text


def evaluate_distances(path: Path, max_rank: int, same_camera_removal: bool = True, rerank: bool = False,
                       k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> dict:
    """Score a saved distance matrix from any tool (the standard protocol, or the authors' whole-gallery one),
    optionally re-ranked; fractions, not percent."""
    from maskreid.evaluation.scoring import Scoring, score_distances

    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err
    missing = [f for f in NPZ_FIELDS if f not in data.files]
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; expected {', '.join(NPZ_FIELDS)} "
                         "(distmat: queries x gallery; the others 1-d)")
    if rerank and (missing := [f for f in RERANK_FIELDS if f not in data.files]):
        raise ValueError(f"{path}: --rerank needs array(s) {missing}: q_q (queries x queries) and g_g "
                         "(gallery x gallery) distances, computed like distmat")
    scoring = Scoring(max_rank=max_rank, ranks=(), rerank=rerank, rerank_k1=k1, rerank_k2=k2, rerank_lambda=lambda_value)
    try:
        score = score_distances(data["distmat"], data["q_pids"], data["g_pids"], data["q_camids"], data["g_camids"],
                                scoring, "standard" if same_camera_removal else "authors",
                                *((data["q_q"], data["g_g"]) if rerank else ()))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return {**score.raw, "reranking": scoring.reranking_record()}


def ablation(exp_show: list[Path] | None, out: Path) -> int:
    """Write the ablation report from saved exp-show listings (several repositories' sweeps together) or from
    `dvc exp show --json` run here."""
    import subprocess

    from maskreid.io import atomic_write_text
    from maskreid.tables.ablation import AblationError, load_exp_show, write_ablation

    try:
        if not exp_show:
            listing = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
            if listing.returncode != 0:
                raise AblationError(f"`dvc exp show --json` failed: {listing.stderr.strip()[-500:]}")
            exp_show = [out / "ablation_exp_show.json"]
            atomic_write_text(exp_show[0], listing.stdout)
        summary = write_ablation([entry for path in exp_show for entry in load_exp_show(path)], out)
    except AblationError as err:
        return report_error(err)
    print(f"wrote {out / 'ablation.md'}, {out / 'ablation.csv'}, {out / 'ablation_runs.csv'} "
          f"({len(summary)} rows) from {', '.join(map(str, exp_show))}")
    return 0


def evaluate_model(args: argparse.Namespace) -> int:
    """Score a checkpoint or ONNX export on query and gallery folders, as the evaluate stage scores."""
    from maskreid.evaluation.scoring import Scoring
    from maskreid.runtime.device import pick_device
    from maskreid.serve.folders import score_folders
    from maskreid.serve.gallery import GalleryError
    from maskreid.serve.inference import ModelLoadError, load_embedder

    scoring = Scoring(max_rank=args.max_rank, ranks=tuple(args.ranks), rerank=args.rerank, rerank_k1=args.k1,
                      rerank_k2=args.k2, rerank_lambda=args.lambda_value, aqe=args.aqe, aqe_k=args.aqe_k,
                      aqe_alpha=args.aqe_alpha)
    try:
        if max(args.ranks) > args.max_rank:
            raise GalleryError(f"--ranks {max(args.ranks)} is larger than --max-rank {args.max_rank}")
        for option, path in (("--query", args.query), ("--gallery", args.gallery)):
            if not path.is_dir():
                raise GalleryError(f"{option} {path}: not a folder")
        embedder = load_embedder(args.model, pick_device(args.device))
        found = score_folders(embedder, args.query, args.gallery, scoring, args.protocol, args.labels,
                              args.batch_size, args.flip, args.resamples, args.seed)
        name = args.name or args.model.stem
        if args.per_query is not None:
            from maskreid.io import atomic_write_text
            from maskreid.tables.compare import per_query_table

            table = per_query_table(found.query.paths, found.query.camids, {name: found.score.queries})
            atomic_write_text(args.per_query, table.to_csv(index=False))
        if args.page is not None:
            from maskreid.figures.failures import failure_page

            failure_page(found.query, found.gallery, found.score, args.page, f"{name} on {args.query}",
                         args.page_queries, args.page_queries, args.seed, protocol=args.protocol)
    except (GalleryError, ModelLoadError, ValueError, OSError) as err:
        return report_error(err)
    summary = dict(found.score.summary)
    result = {"model": str(args.model), "query": str(args.query), "gallery": str(args.gallery),
              "protocol": args.protocol, "flip_tta": args.flip, "reranking": scoring.reranking_record(),
              "query_expansion": scoring.query_expansion_record(), "metrics": summary,
              "ci95": {m: list(v) for m, v in found.intervals.items()},
              "bootstrap": {"over": "query identities", "resamples": args.resamples, "seed": args.seed}}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.model} on {len(found.query)} queries x {int(found.score.gallery_kept.sum())} gallery images "
          f"({args.protocol} protocol{', re-ranked' if args.rerank else ''}{', flip TTA' if args.flip else ''}"
          f"{', AQE' if args.aqe else ''}; 95% intervals: bootstrap over query identities)")
    for key, value in summary.items():
        if key.startswith("num_"):
            continue
        low_high = found.intervals.get(key)
        print(f"  {key:<14} {value:8.2f}" + (f"   [{low_high[0]:.2f}, {low_high[1]:.2f}]" if low_high else ""))
    print(f"  queries scored {summary['num_valid_queries']}, without a true match {summary['num_skipped_queries']}")
    return 0


def compare_results(args: argparse.Namespace) -> int:
    """Paired bootstrap of two per-query results on one test set."""
    from maskreid.tables.compare import CompareError, compare, render

    try:
        result = compare(args.a, args.b, args.dataset, tuple(args.metrics), args.resamples, args.seed)
    except (CompareError, ValueError, OSError) as err:
        return report_error(err)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def check_reproduction(args: argparse.Namespace) -> int:
    """This workspace's metrics against those committed at a revision; exit status 1 when not reproduced."""
    from maskreid.paths import DatasetPaths
    from maskreid.tables.reproduction import ReproductionError, committed_metrics, compare_runs, render

    path = DatasetPaths(args.dataset).metrics
    try:
        if not path.is_file():
            raise ReproductionError(f"{path}: not found; run `dvc repro` first (in the project folder)")
        here = json.loads(path.read_text())
        result = compare_runs(here, committed_metrics(args.dataset, args.against), args.cross_precision_tolerance)
    except (ReproductionError, ValueError, OSError) as err:
        return report_error(err)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result["reproduced"] else 1


def extract(model: Path, inputs: list[Path], out: Path, batch_size: int, on_bad_image: str,
            device: str = "auto") -> int:
    """Embed image files or folders with a checkpoint or ONNX model; write .parquet or .npz."""
    from maskreid.runtime.device import pick_device
    from maskreid.serve.gallery import GalleryError, collect_images, extract_files, extract_to_parquet, save_features
    from maskreid.serve.inference import ModelLoadError, load_embedder

    try:
        if out.suffix not in (".parquet", ".npz"):
            raise GalleryError(f"{out}: the output must end in .parquet or .npz")
        embedder = load_embedder(model, pick_device(device))
        files = collect_images(inputs)
        if out.suffix == ".parquet":            # streamed: one batch in memory, for galleries of millions
            count, skipped = extract_to_parquet(embedder, files, out, batch_size, on_bad_image)
        else:
            table = extract_files(embedder, files, batch_size, on_bad_image)
            save_features(table, out)
            count, skipped = len(table), table.skipped
    except (GalleryError, ModelLoadError, RuntimeError) as err:
        return report_error(err)
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"wrote {out}: {count} embeddings of {embedder.spec.embedding_dim} dims"
          + (f" ({len(skipped)} undecodable image(s) skipped)" if skipped else ""))
    return 0


def search(model: Path, query: Path, gallery: Path, top: int, out: Path | None, index_kind: str,
           batch_size: int, nprobe: int = 16, chunk: int = 100_000, device: str = "auto",
           cache_dir: Path | None = None) -> int:
    """Rank a gallery (folder or feature file) for one query image; print the top-k; draw them with -o."""
    from maskreid.runtime.device import pick_device
    from maskreid.serve.gallery import GalleryError, decode_problem, extract_files
    from maskreid.serve.gallery_index import searchable_gallery
    from maskreid.serve.inference import ModelLoadError, load_embedder
    from maskreid.serve.search import IndexSettings, SearchError, real_neighbours

    try:
        if top < 1:
            raise GalleryError(f"--top {top}: must be at least 1")
        if out is not None and out.suffix.lower() != ".png":
            raise GalleryError(f"{out}: the ranked-list picture is written as .png")
        embedder = load_embedder(model, pick_device(device))
        if not query.is_file():
            raise GalleryError(f"{query}: query image not found")
        query_table = extract_files(embedder, [query], 1, "error", progress=False)
        table, index, note = searchable_gallery(gallery, model, embedder, cache_dir or user_cache_dir("galleries"),
                                                IndexSettings(kind=index_kind, nprobe=nprobe), batch_size, chunk)
        found_distances, found_indices = index.search(query_table.features, top)
        distances, indices = real_neighbours(found_distances[0], found_indices[0])
    except (GalleryError, ModelLoadError, SearchError, RuntimeError) as err:
        return report_error(err)
    if note:
        print(note, file=sys.stderr)
    if len(indices) < min(top, len(table)):
        print(f"{len(indices)} of the {min(top, len(table))} neighbours asked for were found by the {index_kind} "
              "index (it visits part of the gallery: raise --nprobe for ivf, or use --index flat)", file=sys.stderr)
    q_pid = query_table.pids[0]
    print(f"query {query}" + (f" (person {q_pid}, camera {query_table.camids[0]})" if q_pid is not None else ""))
    for rank, (d, i) in enumerate(zip(distances, indices), 1):
        pid = table.pids[i]
        same = "" if pid is None or q_pid is None else ("  same person" if pid == q_pid else "")
        print(f"{rank:3d}  {d:9.4f}  {table.paths[i]}{same}")
    if out is not None:
        from maskreid.figures.ranked_lists import Hit, RankedRow, draw_ranked_lists

        spec = embedder.spec
        hits = []
        for d, i in zip(distances, indices):
            pixels, problem = decode_problem(Path(table.paths[i]), spec.resize)
            if pixels is None:
                return report_error(f"{table.paths[i]}: gallery image listed in the features cannot be drawn: {problem}")
            pid = table.pids[i]
            hits.append(Hit(pixels, float(d), None if pid is None or q_pid is None else pid == q_pid))
        q_pixels, _ = decode_problem(query, spec.resize)
        label = query.name if q_pid is None else f"person {q_pid}"
        draw_ranked_lists([RankedRow(q_pixels, label, [hits])], out, [f"top {len(hits)} of {len(table)}"],
                          thumb=spec.resize)
        print(f"wrote {out}")
    return 0


def export(model: Path, out: Path) -> int:
    """ONNX export of a checkpoint, checked against PyTorch with onnxruntime."""
    from maskreid.serve.export import ExportError, export_onnx
    from maskreid.serve.inference import ModelLoadError

    if out.suffix.lower() != ".onnx":
        return report_error(f"{out}: the export is written as .onnx")
    try:
        check = export_onnx(model, out)
    except (ExportError, ModelLoadError) as err:
        return report_error(err)
    print(f"wrote {out} (onnxruntime vs PyTorch on {check['images_checked']} images: max abs difference "
          f"{check['max_abs_difference']:.2e})")
    return 0


def diagnose_masks(dataset: str, params_file: Path, out: Path | None, overrides: list[str] = ()) -> int:
    """The mask diagnostics of a trained dataset (run in the project folder), as JSON and a markdown table."""
    from maskreid.io import atomic_write_text
    from maskreid.masks.diagnostics import diagnose, markdown
    from maskreid.models.checkpoints import CheckpointError
    from maskreid.params import ParamsError, load_params
    from maskreid.paths import DatasetPaths

    try:
        params = load_params(params_file, overrides)
        result = diagnose(params, DatasetPaths(dataset))
    except (ParamsError, CheckpointError, FileNotFoundError) as err:
        return report_error(err)
    table = markdown(result)
    print(table)
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        atomic_write_text(out.with_suffix(".md"), table + "\n")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maskreid")
    except PackageNotFoundError:       # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    shown = argparse.ArgumentDefaultsHelpFormatter          # every option's default in --help
    parser = argparse.ArgumentParser(prog="maskreid", description=__doc__, formatter_class=shown)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate-distances", formatter_class=shown,
                        help="CMC, mAP and mINP (fractions, not percent) of a saved distance matrix (.npz)")
    ev.add_argument("file", type=Path, help=".npz with " + ", ".join(NPZ_FIELDS))
    ev.add_argument("--max-rank", type=positive_int, default=50, help="CMC curve length")
    ev.add_argument("--keep-same-camera", action="store_true",
                    help="the authors' protocol: rank the whole gallery, junk and same-camera images included")
    ev.add_argument("--rerank", action="store_true",
                    help="k-reciprocal re-ranking first (needs q_q and g_g arrays in the .npz)")
    ev.add_argument("--k1", type=positive_int, default=20, help="re-ranking k1")
    ev.add_argument("--k2", type=positive_int, default=6, help="re-ranking k2")
    ev.add_argument("--lambda", dest="lambda_value", type=fraction, default=0.3, help="re-ranking lambda")
    me = sub.add_parser("evaluate", formatter_class=shown,
                        help="score a trained model on query and gallery folders (mAP, CMC, mINP, TPR@FPR, 95%% "
                             "intervals), as the evaluate stage does")
    me.add_argument("model", type=Path, help="a checkpoint (models/<ds>/stage3.pt) or its ONNX export")
    me.add_argument("--query", type=Path, required=True, help="folder of query images")
    me.add_argument("--gallery", type=Path, required=True, help="folder of gallery images")
    me.add_argument("--labels", type=Path, default=None,
                    help="CSV with columns path,pid,camid for every image (default: Market-1501 file names, "
                         "e.g. 0002_c1s1_000451_03.jpg = person 2, camera 1; person -1 = junk, 0 = distractor)")
    me.add_argument("--protocol", choices=("standard", "authors"), default="standard",
                    help="standard: junk and same-person same-camera images not ranked | authors: the whole "
                         "gallery ranked (the authors' public code)")
    me.add_argument("--max-rank", type=positive_int, default=50, help="CMC curve length")
    me.add_argument("--ranks", type=positive_int, nargs="+", default=[1, 5, 10, 20], help="CMC points reported")
    me.add_argument("--flip", action="store_true", help="flip test-time augmentation: mean of the image's and "
                                                          "its mirror's embeddings")
    me.add_argument("--aqe", action="store_true", help="alpha query expansion before ranking (fast-reid's AQE)")
    me.add_argument("--aqe-k", type=positive_int, default=5, help="AQE neighbours, the embedding itself included")
    me.add_argument("--aqe-alpha", type=float, default=3.0, help="AQE weight exponent")
    me.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (Zhong et al. 2017)")
    me.add_argument("--k1", type=positive_int, default=20, help="re-ranking k1")
    me.add_argument("--k2", type=positive_int, default=6, help="re-ranking k2")
    me.add_argument("--lambda", dest="lambda_value", type=fraction, default=0.3, help="re-ranking lambda")
    me.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples for the intervals")
    me.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the page's random queries")
    me.add_argument("--batch-size", type=positive_int, default=128, help="images embedded at once")
    me.add_argument("--device", type=device_setting, default="auto", help="as for extract")
    me.add_argument("--json", action="store_true", help="print the result as JSON")
    me.add_argument("--per-query", type=Path, default=None,
                    help="write each query's AP and first-match rank to this CSV (for `maskreid compare`)")
    me.add_argument("--name", default=None, help="the model's name in --per-query and --page (default: file stem)")
    me.add_argument("--page", type=Path, default=None,
                    help="write an HTML page of the worst queries by AP and random ones, with ranked lists")
    me.add_argument("--page-queries", type=positive_int, default=20, help="worst (and random) queries on --page")
    co = sub.add_parser("compare", formatter_class=shown,
                        help="is B better than A on the same test set? paired bootstrap of mAP and rank-1")
    co.add_argument("a", help="SOURCE[@MODEL]: a per-query CSV, '.' (this workspace) or a git revision / DVC "
                              "experiment; MODEL: stage1, stage3 or a --name of `maskreid evaluate`")
    co.add_argument("b", help="the same forms as A; the result is B - A")
    co.add_argument("--dataset", default="synthetic", help="which metrics/<dataset>.queries.csv a revision gives")
    co.add_argument("--metrics", nargs="+", default=["mAP", "rank1"], help="mAP and/or rank<k>")
    co.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples")
    co.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    co.add_argument("--json", action="store_true", help="print the result as JSON")
    cr = sub.add_parser("check-reproduction", formatter_class=shown,
                        help="does this clone's `dvc repro` give the committed metrics? (exit status 1 if not)")
    cr.add_argument("--dataset", default="synthetic", help="which metrics/<dataset>.json")
    cr.add_argument("--against", default="HEAD", help="the git revision or DVC experiment whose metrics to match")
    cr.add_argument("--cross-precision-tolerance", type=float, default=3.0,
                    help="points (mAP, rank-1) a run in another precision (bf16 vs fp32) may differ by")
    cr.add_argument("--json", action="store_true", help="print the result as JSON")
    ab = sub.add_parser("ablation", formatter_class=shown,
                        help="the masks ablation table (reports/ablation.md) from DVC experiments")
    ab.add_argument("--exp-show", type=Path, action="append", default=None,
                    help="a saved `dvc exp show --json` listing, repeatable (none: run it in the current repository)")
    ab.add_argument("-o", "--out", type=Path, default=Path("reports"), help="output folder")
    ex = sub.add_parser("extract", formatter_class=shown,
                        help="embeddings of image files or folders (recursive) with a trained model")
    ex.add_argument("model", type=Path, help="a checkpoint (models/<ds>/stage3.pt) or its ONNX export")
    ex.add_argument("images", type=Path, nargs="+", help="image files and/or folders")
    ex.add_argument("-o", "--out", type=Path, required=True, help="features.parquet or features.npz")
    ex.add_argument("--batch-size", type=positive_int, default=64, help="images embedded at once")
    ex.add_argument("--on-bad-image", choices=("error", "skip"), default="error",
                    help="error: list every undecodable image and write nothing | skip: leave them out, listed")
    ex.add_argument("--device", type=device_setting, default="auto",
                    help="auto (the first GPU torch sees, else the CPU) | cpu | cuda | cuda:N; ONNX models use "
                         "onnxruntime's CUDA provider on a GPU")
    se = sub.add_parser("search", formatter_class=shown,
                        help="rank a gallery for a query image; draw the ranked list with -o")
    se.add_argument("model", type=Path, help="a checkpoint or its ONNX export")
    se.add_argument("query", type=Path, help="the query image")
    se.add_argument("--gallery", type=Path, required=True,
                    help="a folder of images (its features extracted once and cached, see --cache-dir) or a "
                         "feature file written by `maskreid extract`")
    se.add_argument("--top", type=positive_int, default=10, help="neighbours listed")
    se.add_argument("-o", "--out", type=Path, default=None, help="ranked.png: query, then the top-k images")
    se.add_argument("--index", choices=("flat", "ivf", "hnsw"), default="flat",
                    help="flat: exact | ivf, hnsw: approximate, for galleries of millions")
    se.add_argument("--nprobe", type=positive_int, default=16, help="ivf: lists visited per query (recall vs speed)")
    se.add_argument("--chunk", type=positive_int, default=100_000,
                    help="a .parquet gallery is read this many rows at a time (bounds memory besides the index)")
    se.add_argument("--batch-size", type=positive_int, default=64, help="gallery images embedded at once")
    se.add_argument("--device", type=device_setting, default="auto", help="as for extract")
    se.add_argument("--cache-dir", type=Path, default=user_cache_dir("galleries"),
                    help="where a gallery folder's features are cached, one file per (folder, model) pair, "
                         "replaced when the images or the model change (the user's cache folder)")
    xp = sub.add_parser("export", formatter_class=shown, help="ONNX export of a checkpoint, checked with onnxruntime")
    xp.add_argument("model", type=Path, help="a checkpoint, e.g. models/synthetic/stage3.pt")
    xp.add_argument("-o", "--out", type=Path, required=True, help="model.onnx")
    dm = sub.add_parser("diagnose-masks", formatter_class=shown,
                        help="why hiding M's top pixels may hurt: mask and loss measures of a trained dataset "
                             "(run in the project folder)")
    dm.add_argument("dataset", help="a dataset trained in this project, e.g. synthetic")
    dm.add_argument("--params", type=Path, default=Path("params.yaml"))
    dm.add_argument("-o", "--out", type=Path, default=None, help="write the result as .json (and the table as .md)")
    dm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override params.yaml, in the grammar of `dvc exp run -S` (Hydra's), e.g. --set drop_ratio=0.2")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "diagnose-masks":
        return diagnose_masks(args.dataset, args.params, args.out, args.overrides)
    if args.command == "ablation":
        return ablation(args.exp_show, args.out)
    if args.command == "evaluate":
        return evaluate_model(args)
    if args.command == "compare":
        return compare_results(args)
    if args.command == "check-reproduction":
        return check_reproduction(args)
    if args.command == "extract":
        return extract(args.model, args.images, args.out, args.batch_size, args.on_bad_image, args.device)
    if args.command == "search":
        return search(args.model, args.query, args.gallery, args.top, args.out, args.index, args.batch_size, args.nprobe,
                      args.chunk, args.device, args.cache_dir)
    if args.command == "export":
        return export(args.model, args.out)
    try:
        result = evaluate_distances(args.file, args.max_rank, not args.keep_same_camera, args.rerank,
                                    args.k1, args.k2, args.lambda_value)
    except ValueError as err:
        return report_error(err)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
