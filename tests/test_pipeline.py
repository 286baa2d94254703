"""End to end: the real DVC pipeline on a tiny synthetic dataset, then `dvc exp run -S lambda1=...`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from tests.conftest import REPO

pytestmark = pytest.mark.slow
MASK_COLUMNS = ["mask", "identity", "sparsity", "contiguity", "mask_mean"]

TINY_SYNTHETIC = {"seed": 0, "train_ids": 24, "test_ids": 10, "cameras": 4, "images_per_camera": [1, 2],
                  "cameras_per_id": [2, 3], "distractors": 4, "junk": 3, "height": 64, "width": 32}
TINY = {
    "prepare": {**yaml.safe_load((REPO / "params.yaml").read_text())["prepare"], "synthetic": TINY_SYNTHETIC},
    "mask_update_every": 1,
    "evaluation": {"max_rank": 20, "ranks": [1, 5, 10, 20], "batch_size": 64, "rerank": False,
                   "rerank_k1": 20, "rerank_k2": 6, "rerank_lambda": 0.3},
}
TINY_PROFILE = {
    "precision": "auto",
    "distributed": {"processes": 1, "backend": "auto", "timeout_s": 600},
    "validation": {"eval_every": 0, "ids": 50},
    "model": {"backbone": "resnet18", "pretrained": "none", "embedding_dim": 64, "unet_width": 4},
    "input": {"resize": [68, 34], "crop": [64, 32], "flip": 0.5},
    "stage1": {"epochs": 2, "ids_per_batch": 8, "images_per_id": 2, "lr": 0.0002},
    "stage2": {"epochs": 1, "batch_size": 16, "lr": 0.001},
    "stage3": {"epochs": 2},
}


# docs/dvc.md, "Reading experiments": what to drop and keep so `dvc exp show --md --only-changed` fits a screen
READABLE_DROP = (r"^(maskreid|stages|data|models|metrics)(/|$)|dvclive|\.(csv|pt|onnx|json)$"
                 r"|^(mAP|rank1|reranked|person_share|mask_\w+|(loss|mask_update|val|authors_protocol|stage[13]|stage3_minus_stage1)\..*)$")
READABLE_KEEP = r"^(stage[13]\.(mAP|rank1)|authors_protocol\.stage3\.mAP|val\.mAP)$"


def user_env() -> dict[str, str]:
    """The environment of a user's machine: Python writes bytecode (these machines and CI switch it off, which
    would hide a dependency graph that changes when __pycache__ appears)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return env


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=user_env())
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def run_queue(project: Path, timeout_s: int) -> str:
    """`dvc queue start -j 1`, then wait until nothing is queued or running; return `dvc queue status`."""
    log = project.parent / f"{project.name}-queue-worker.log"
    with open(log, "w") as sink:          # the worker it starts would hold a pipe open
        started = subprocess.run(["dvc", "queue", "start", "-j", "1"], cwd=project, env=user_env(),
                                 stdout=sink, stderr=subprocess.STDOUT)
    assert started.returncode == 0, log.read_text()
    deadline = time.time() + timeout_s
    while True:
        status = run(["dvc", "queue", "status"], project).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        assert time.time() < deadline, status
        time.sleep(8)      # each `dvc queue status` costs a second of CPU that the running experiment needs


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd)


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def dvc_status(cwd: Path) -> dict:
    return json.loads(run(["dvc", "status", "--json"], cwd).stdout)


def tiny_project(root: Path, quick_profile: dict, message: str = "tiny") -> Path:
    """A copy of the project's code and DVC files at `root` with TINY params and `quick_profile` as the quick
    profile, committed to a new git repository (nothing run yet)."""
    for name in ("stages", "maskreid", ".dvc", "dvc.yaml", ".dvcignore", ".gitignore", "data/raw/README.md",
                 "data/raw/.gitignore", "data/raw/synthetic"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(TINY)
    params["profiles"]["quick"] = quick_profile
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return root


def build_tiny_project(root: Path) -> Path:
    """The project with tiny params, as a git repository, after `dvc repro` (bytecode on)."""
    tiny_project(root, TINY_PROFILE)
    run(["dvc", "repro"], root)
    return root


@pytest.fixture(scope="module")
def project(built_tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own copy of the trained tiny project (test_queue.py changes another copy)."""
    return copy_project(built_tiny_project, tmp_path_factory.mktemp("project") / "p")


def copy_project(built: Path, root: Path) -> Path:
    """A copy of a built project, git history and DVC cache included; DVC finds it up to date (its hash cache
    is keyed by path and inode, so it re-hashes the copies and gets the same hashes)."""
    shutil.copytree(built, root, symlinks=True)
    return root


def test_repro_writes_every_declared_output(project: Path) -> None:
    metrics = json.loads((project / "metrics" / "synthetic.json").read_text())
    # only numbers people compare: dvc exp show stays readable
    assert set(metrics) == {"mAP", "rank1", "stage1", "stage3", "stage3_minus_stage1", "authors_protocol",
                            "mask_input_dependence", "mask_hidden_on_person", "mask_hidden_on_person_fixed",
                            "person_share", "reranked", "trained_in"}
    assert metrics["trained_in"] in ("fp32", "bf16")       # the tiny crop is below bf16's floor: fp32 everywhere
    assert metrics["mask_input_dependence"] >= 0
    # the generated set's silhouettes: where stage 3's hidden pixels fall, against the person's share
    assert 0 <= metrics["mask_hidden_on_person"] <= 100 and 5 < metrics["person_share"] < 50
    assert 0 <= metrics["mask_hidden_on_person_fixed"] <= 100
    assert len(list((project / "data/prepared/synthetic/silhouettes/query").glob("*.png"))) == \
        len(list((project / "data/prepared/synthetic/images/query").glob("*.jpg")))
    for model in ("stage1", "stage3"):
        assert set(metrics[model]) == {"mAP", "mAP_ci95_low", "mAP_ci95_high", "rank1", "rank1_ci95_low",
                                       "rank1_ci95_high", "rank5", "mINP", "tpr@fpr1e-04", "tpr@fpr1e-03",
                                       "tpr@fpr1e-02"}
        for key in ("mAP", "rank1"):
            assert metrics[model][f"{key}_ci95_low"] <= metrics[model][key] <= metrics[model][f"{key}_ci95_high"]
        assert set(metrics["authors_protocol"][model]) == {"mAP", "rank1"}
    gain = metrics["stage3_minus_stage1"]
    assert gain["mAP"] == pytest.approx(metrics["stage3"]["mAP"] - metrics["stage1"]["mAP"], abs=1e-3)
    assert gain["mAP_ci95_low"] <= gain["mAP"] <= gain["mAP_ci95_high"]
    queries = pd.read_csv(project / "metrics" / "synthetic.queries.csv")
    assert list(queries.columns) == ["query", "pid", "camid", "stage1_ap", "stage1_first_rank", "stage3_ap",
                                     "stage3_first_rank"]
    assert queries.stage3_ap.mean() == pytest.approx(metrics["stage3"]["mAP"], abs=1e-3)
    page = (project / "plots" / "failures" / "synthetic.html").read_text()
    shown = min(len(queries), 20) + min(max(len(queries) - 20, 0), 20)       # the 20 worst, then 20 random ones
    assert page.startswith("<!DOCTYPE html>") and page.count("<tr>") == shown
    assert metrics["mAP"] == metrics["stage3"]["mAP"] and metrics["rank1"] == metrics["stage3"]["rank1"]
    assert metrics["reranked"] is False
    details = json.loads((project / "metrics" / "synthetic.details.json").read_text())
    for model in ("untrained", "color_histogram", "stage1", "stage3"):
        assert set(details["models"][model]) >= {"mAP", "rank1", "rank5", "rank10", "rank20", "mINP"}
    assert details["models"]["stage3"]["mAP"] == metrics["stage3"]["mAP"]
    assert details["protocol"] == "standard" and details["reranking"] == {"used": False}
    audit = details["authors_protocol"]
    assert audit["gallery_images"] == details["gallery_images"] + 3          # the 3 junk images are ranked too
    prov = details["provenance"]
    assert prov["versions"]["torch"] == metadata.version("torch") and prov["device"] == "cpu"
    assert prov["precision_resolved_here"] in ("bf16", "fp32") and prov["evaluate_seconds"] > 0
    table = (project / "reports" / "table1.md").read_text()
    assert "| Proposed (paper) | 63.9 | 97.4 |" in table and "not run" in table and "| synthetic |" in table
    manifest = (project / "data" / "prepared" / "synthetic" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "path,pid,camid,split" and len(manifest) > 50
    for stage in (1, 2, 3):
        assert (project / "models" / "synthetic" / f"stage{stage}.pt").stat().st_size > 0
    cmc = (project / "plots" / "cmc" / "synthetic.csv").read_text().splitlines()
    assert cmc[0] == "rank,untrained,color_histogram,stage1,stage3" and len(cmc) == 21
    with Image.open(project / "plots" / "masks" / "synthetic.png") as figure:
        assert figure.format == "PNG" and figure.width > 300 and figure.height > 300
        assert np.asarray(figure.convert("L")).std() > 10          # a drawing, not a blank canvas
    # dvclive's logs: one .tsv per value, one row per epoch (mask_update_every: 1 in TINY, so M updates each
    # epoch of stage 3), finite non-negative losses, and metrics.json at the last epoch
    names = {1: ["loss/triplet"], 2: [f"loss/{c}" for c in MASK_COLUMNS if c != "mask_mean"] + ["mask_mean"],
             3: ["loss/extractor", "loss/triplet_original", "loss/triplet_hidden"]
             + [f"mask_update/{c}" for c in MASK_COLUMNS]}
    for stage, logged in names.items():
        live = project / "dvclive" / "synthetic" / f"stage{stage}"
        count = TINY_PROFILE[f"stage{stage}"]["epochs"]
        found = sorted(str(f.relative_to(live / "plots" / "metrics"))[:-4] for f in (live / "plots" / "metrics").rglob("*.tsv"))
        assert found == sorted(logged + ["lr", "epoch_seconds"]), stage
        for name in logged:
            table = pd.read_csv(live / "plots" / "metrics" / f"{name}.tsv", sep="\t")
            assert list(table.columns) == ["step", name.split("/")[-1]], name
            assert table.step.tolist() == list(range(1, count + 1)), name
            assert np.isfinite(table.iloc[:, 1]).all() and (table.iloc[:, 1] >= 0).all(), name
        assert json.loads((live / "metrics.json").read_text())["step"] == count


def test_dvc_plots_load_every_plot_without_errors(project: Path) -> None:
    """`dvc plots show` reads every declared plot (no stray file such as a .gitignore inside a plot folder),
    the dvclive curves included, with the epoch on x."""
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    assert not shown.get("errors"), shown.get("errors")
    names = set(shown["data"])
    for curve in ("stage1/plots/metrics/loss/triplet.tsv", "stage2/plots/metrics/loss/identity.tsv",
                  "stage3/plots/metrics/mask_update/mask.tsv", "stage3/plots/metrics/lr.tsv"):
        assert f"dvclive/synthetic/{curve}" in names, curve
    spec = shown["data"]["dvclive/synthetic/stage3/plots/metrics/loss/triplet_hidden.tsv"][0]["content"]
    assert spec["encoding"]["x"]["field"] == "step" and spec["encoding"]["x"]["title"] == "epoch"
    assert "plots/cmc/synthetic.csv" in names and not any(n.endswith(".gitignore") for n in names)


def test_metrics_are_what_the_saved_models_score(project: Path) -> None:
    """Recompute the metrics file's numbers from the checkpoints DVC saved: evaluate@ read the right models,
    the right split and the right protocol."""
    from maskreid.data.build import load_split
    from maskreid.evaluation.features import color_histograms, extract_features
    from maskreid.evaluation.metrics import euclidean_distances, evaluate, summarize_percent
    from maskreid.models.build import load_extractor
    from maskreid.params import load_params
    from maskreid.paths import DatasetPaths

    params = load_params(project / "params.yaml")
    paths = DatasetPaths("synthetic", project)
    query = load_split(paths, "query", params.input.resize)
    gallery = load_split(paths, "gallery", params.input.resize)          # junk dropped: the standard protocol
    metrics = json.loads((project / "metrics" / "synthetic.json").read_text())
    cpu = torch.device("cpu")
    embed = {"stage1": paths.checkpoint(1), "stage3": paths.checkpoint(3)}
    for name, checkpoint in embed.items():
        model = load_extractor(checkpoint, params, cpu)
        q, g = (extract_features(model, c, params.input.crop, 64, cpu) for c in (query, gallery))
        got = summarize_percent(evaluate(euclidean_distances(q, g), query.pids, gallery.pids, query.camids,
                                         gallery.camids, 20), (1, 5, 10, 20))
        for key in ("mAP", "rank1", "rank5", "mINP"):
            assert got[key] == pytest.approx(metrics[name][key], abs=1e-3), (name, key)
    details = json.loads((project / "metrics" / "synthetic.details.json").read_text())
    q, g = color_histograms(query, params.input.crop), color_histograms(gallery, params.input.crop)
    hist = evaluate(euclidean_distances(q, g), query.pids, gallery.pids, query.camids, gallery.camids, 20)
    assert 100 * hist["mAP"] == pytest.approx(details["models"]["color_histogram"]["mAP"], abs=1e-3)
    assert metrics["stage1"]["mAP"] != metrics["stage3"]["mAP"]          # two different models were scored


def test_extract_gives_the_features_the_evaluate_stage_scored(project: Path, tmp_path: Path) -> None:
    """`maskreid extract` on the test images and the evaluate stage's own embedding of them (same stage-3 model,
    same images) agree to 1e-5: the CLI and the pipeline share one test transform and one way to load F."""
    from maskreid.cli import main
    from maskreid.data.build import load_split
    from maskreid.models.build import layout, load_extractor
    from maskreid.params import load_params
    from maskreid.paths import DatasetPaths
    from maskreid.pipeline.evaluate import _embedder
    from maskreid.serve.gallery import load_features

    params = load_params(project / "params.yaml")
    paths = DatasetPaths("synthetic", project)
    query = load_split(paths, "query", params.input.resize)
    cpu = torch.device("cpu")
    scored = _embedder(load_extractor(paths.checkpoint(3), params, cpu), params, cpu)(query)
    out = tmp_path / "query.npz"
    assert main(["extract", str(paths.checkpoint(3)), *query.paths, "-o", str(out), "--batch-size", "7"]) == 0
    extracted = load_features(out)
    assert extracted.paths == query.paths and layout(params) == torch.channels_last
    assert np.abs(extracted.features - scored).max() < 1e-5


def test_evaluate_command_reproduces_the_evaluate_stage(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`maskreid evaluate` on the pipeline's own test folders gives metrics/synthetic.json's numbers (1e-4) and
    intervals, from the checkpoint and from its ONNX export, with Market names or a labels CSV; its per-query
    file equals the stage's, and `compare` of a committed revision with the workspace gives the stage's
    stage 3 - stage 1."""
    from maskreid.cli import main

    metrics = json.loads((project / "metrics" / "synthetic.json").read_text())
    images = project / "data" / "prepared" / "synthetic" / "images"
    model = project / "models" / "synthetic" / "stage3.pt"
    # the same images under names that say nothing: a CSV alone labels them
    rows = []
    for split in ("query", "bounding_box_test"):
        (tmp_path / split).mkdir()
        for i, file in enumerate(sorted((images / split).glob("*.jpg"))):
            copy = tmp_path / split / f"img{i:04d}.jpg"
            shutil.copy2(file, copy)
            pid, camid = file.name.split("_c")[0], file.name.split("_c")[1][0]
            rows.append({"path": f"{split}/{copy.name}", "pid": int(pid), "camid": int(camid)})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    runs = {"checkpoint": [str(model), "--query", str(images / "query"), "--gallery", str(images / "bounding_box_test")],
            "onnx": [str(model.with_suffix(".onnx")), "--query", str(images / "query"),
                     "--gallery", str(images / "bounding_box_test")],
            "labels": [str(model), "--query", str(tmp_path / "query"), "--gallery", str(tmp_path / "bounding_box_test"),
                       "--labels", str(tmp_path / "labels.csv")]}
    for name, args in runs.items():
        assert main(["evaluate", *args, "--json", "--per-query", str(tmp_path / f"{name}.csv")]) == 0
        got = json.loads(capsys.readouterr().out)
        for key in ("mAP", "rank1", "rank5", "mINP", "tpr@fpr1e-02"):
            assert got["metrics"][key] == pytest.approx(metrics["stage3"][key], abs=1e-4), (name, key)
        assert got["ci95"]["mAP"] == pytest.approx([metrics["stage3"]["mAP_ci95_low"],
                                                    metrics["stage3"]["mAP_ci95_high"]], abs=1e-3), name
    stage_table = pd.read_csv(project / "metrics" / "synthetic.queries.csv")
    cli_table = pd.read_csv(tmp_path / "checkpoint.csv")
    assert list(cli_table["query"]) == list(stage_table["query"])
    assert np.abs(cli_table.stage3_ap - stage_table.stage3_ap).max() < 1e-4
    # a revision: the per-query results committed, then HEAD's stage 1 against the workspace's stage 3
    git(project, "add", "-f", "metrics/synthetic.queries.csv", "metrics/synthetic.json")
    git(project, "commit", "-qm", "per-query results")
    monkeypatch.chdir(project)
    assert main(["check-reproduction"]) == 0 and "reproduced" in capsys.readouterr().out
    assert main(["compare", "HEAD@stage1", ".@stage3", "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)["metrics"]["mAP"]
    gain = metrics["stage3_minus_stage1"]
    assert compared["difference"] == pytest.approx(gain["mAP"], abs=1e-3)
    assert compared["interval"] == pytest.approx([gain["mAP_ci95_low"], gain["mAP_ci95_high"]], abs=1e-3)
    assert main(["compare", "no-such-revision", ".", "--json"]) == 1
    assert "no-such-revision: neither a file nor a revision" in capsys.readouterr().err


def test_final_model_stands_alone_exports_and_searches(project: Path, tmp_path: Path) -> None:
    """The README's path from `dvc repro` to a ranked-list picture, and the ONNX export's parity: onnxruntime
    ranks the synthetic gallery as PyTorch does (ties within 1e-4 aside)."""
    from maskreid.models.checkpoints import load_checkpoint
    from maskreid.models.spec import ModelSpec
    from maskreid.params import load_params
    from maskreid.pipeline.train import inference_spec
    from maskreid.serve.gallery import collect_images, extract_files
    from maskreid.serve.inference import OnnxEmbedder, TorchEmbedder

    params = load_params(project / "params.yaml")
    payload = load_checkpoint(project / "models" / "synthetic" / "stage3.pt")
    assert ModelSpec.from_dict(payload["inference"], "stage3.pt") == inference_spec(params, "synthetic", 3)
    assert payload["training"]["epochs"] == TINY_PROFILE["stage3"]["epochs"] and payload["training"]["wall_seconds"] > 0
    check = json.loads((project / "models" / "synthetic" / "stage3.onnx.json").read_text())
    assert check["max_abs_difference"] <= 1e-4 and check["images_checked"] > 5
    images = project / "data" / "prepared" / "synthetic" / "images"
    query_files, gallery_files = collect_images([images / "query"]), collect_images([images / "bounding_box_test"])
    torch_model, onnx_model = TorchEmbedder(project / "models/synthetic/stage3.pt"), OnnxEmbedder(project / "models/synthetic/stage3.onnx")
    distances = {}
    for name, model in (("torch", torch_model), ("onnx", onnx_model)):
        q, g = (extract_files(model, files, 32, progress=False).features for files in (query_files, gallery_files))
        distances[name] = np.linalg.norm(q[:, None] - g[None], axis=2)
    assert np.abs(distances["torch"] - distances["onnx"]).max() <= 1e-4
    for row_t, row_o in zip(distances["torch"], distances["onnx"]):
        assert (np.diff(row_o[np.argsort(row_t, kind="stable")]) >= -1e-4).all()   # the same order
    out = tmp_path / "ranked.png"
    result = run([str(Path(sys.executable).parent / "maskreid"), "search", "models/synthetic/stage3.pt",
                  str(query_files[0]), "--gallery", "data/prepared/synthetic/images/bounding_box_test",
                  "-o", str(out)], project)
    assert result.stdout.count("\n") == 12 and out.stat().st_size > 0          # query, top 10, "wrote"
    with Image.open(project / "plots" / "ranked" / "synthetic.png") as figure:      # evaluate's ranked lists
        assert figure.width > 20 * 32 and figure.height > 8 * 64
    assert dvc_status(project) == {}                            # using the model changed nothing DVC tracks


def test_nothing_changed_and_bytecode_was_written(project: Path) -> None:
    assert list((project / "maskreid").rglob("*.pyc")), "the stages ran without writing bytecode: test proves nothing"
    assert dvc_status(project) == {}


def test_importing_the_whole_package_changes_no_stage(project: Path) -> None:
    modules = sorted(".".join(p.relative_to(project).with_suffix("").parts).removesuffix(".__init__")
                     for p in (project / "maskreid").rglob("*.py") if p.name != "__main__.py")   # that one runs the CLI
    run([sys.executable, "-c", "import importlib\nfor m in %r: importlib.import_module(m)" % modules], project)
    assert len(list((project / "maskreid").rglob("*.pyc"))) >= len(modules)
    assert dvc_status(project) == {}


def test_results_pulled_into_a_fresh_clone_are_up_to_date(project: Path, tmp_path: Path) -> None:
    """A teammate clones, pulls from the DVC remote and gets every result without training."""
    run(["dvc", "remote", "add", "-f", "-d", "shared", str(tmp_path / "remote")], project)
    run(["dvc", "push"], project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "results")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    assert (clone / "models" / "synthetic" / "stage3.pt").read_bytes() == \
        (project / "models" / "synthetic" / "stage3.pt").read_bytes()
    assert dvc_status(clone) == {}
    result = run(["dvc", "repro"], clone)
    assert stages_run(result.stdout) == set(), result.stdout
    assert (clone / "metrics" / "synthetic.json").read_text() == (project / "metrics" / "synthetic.json").read_text()


def test_another_datasets_preparation_params_leave_this_one_alone(project: Path) -> None:
    params = project / "params.yaml"
    original = params.read_text()
    try:
        raw = yaml.safe_load(original)
        raw["prepare"]["cuhk01"]["test_ids"] = 100
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        assert dvc_status(project) == {}
        raw["prepare"]["synthetic"]["junk"] = 4
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        assert "prepare@synthetic" in dvc_status(project)
    finally:
        params.write_text(original)


def test_deleted_images_are_noticed_by_dvc(project: Path) -> None:
    image = next((project / "data" / "prepared" / "synthetic" / "images" / "query").glob("*.jpg"))
    data = image.read_bytes()
    image.unlink()
    try:
        assert "prepare@synthetic" in dvc_status(project)
    finally:
        image.write_bytes(data)
    assert dvc_status(project) == {}


def test_lambda1_change_reruns_stage3_onwards_only(project: Path) -> None:
    git(project, "add", "-A")
    git(project, "commit", "-qm", "baseline", "--allow-empty")
    result = run(["dvc", "exp", "run", "-S", "lambda1=0.8"], project)
    assert stages_run(result.stdout) == {"train_joint@synthetic", "evaluate@synthetic", "masks@synthetic",
                                         "export@synthetic", "report"}
    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json"], project).stdout)
    assert {"mAP", "rank1"} <= set(diff["metrics/synthetic.json"])
    # docs/dvc.md's way to read experiments: one dataset's table fits a 200-column screen, the changed param and
    # the headline numbers in it, the training logs' and dependencies' columns out
    table = run(["dvc", "exp", "show", "--md", "--only-changed", "--drop", READABLE_DROP, "--keep", READABLE_KEEP],
                project).stdout
    assert max(len(line) for line in table.splitlines()) <= 200, table
    header = [c.strip() for c in table.splitlines()[0].split("|")]
    assert {"lambda1", "stage1.mAP", "stage1.rank1", "stage3.mAP", "stage3.rank1"} <= set(header), header
    assert not any(c.startswith(("loss.", "mask_update.", "maskreid/", "dvclive")) for c in header), header
    guide = (REPO / "docs" / "dvc.md").read_text()
    assert f"--drop '{READABLE_DROP}'" in guide and f"--keep '{READABLE_KEEP}'" in guide


def test_mask_diagnostics_of_the_trained_project(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`maskreid diagnose-masks synthetic` on the pipeline's own checkpoints: both moments of stage 3, the
    silhouette measures (the generated set has them), and the same hidden-on-person share as the metrics."""
    from maskreid.cli import main

    monkeypatch.chdir(project)
    assert main(["diagnose-masks", "synthetic", "-o", str(tmp_path / "d.json")]) == 0
    result = json.loads((tmp_path / "d.json").read_text())
    start, end = (result[k] for k in result if k.startswith(("start", "end")))
    for row in (start, end):
        assert 0 <= row["hidden_on_person"] <= 1 and 0 <= row["checkerboard_share"] <= 1
        assert row["learned_hiding"]["triplet_original"] == row["random_blocks"]["triplet_original"]
        assert row["learned_hiding"]["grad_norm_hidden_weighted"] > 0
    metrics = json.loads((project / "metrics" / "synthetic.json").read_text())
    queries = len(list((project / "data/prepared/synthetic/images/query").glob("*.jpg")))
    if queries <= result["query_images"]:                     # the same images: the same share
        assert abs(100 * end["hidden_on_person"] - metrics["mask_hidden_on_person"]) < 1e-3
    assert (tmp_path / "d.md").read_text().startswith("| synthetic |")
