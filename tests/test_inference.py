"""Using a trained F outside the pipeline: self-describing checkpoints, `maskreid extract / search / export`
through the installed entry point, ONNX parity with onnxruntime, and clear one-line errors."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskreid.cli import main
from maskreid.data.loading import load_rgb
from maskreid.figures.ranked_lists import QUERY, SAME
from maskreid.models.checkpoints import save_checkpoint
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.spec import FORMAT, ModelSpec
from maskreid.serve.gallery import collect_images, extract_files, load_features
from maskreid.serve.inference import ModelLoadError, OnnxEmbedder, TorchEmbedder, load_embedder
from tests.conftest import SHARED

SPEC = ModelSpec(backbone="resnet18", embedding_dim=32, resize=(68, 34), crop=(64, 32),
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), dataset="synthetic", stage=3,
                 params_hash="0123456789abcdef")


def maskreid_cli(*args: str | Path, cwd: Path | None = None, installed: bool = False) -> subprocess.CompletedProcess:
    """The `maskreid` command: the installed console script as a user runs it (`installed`), or its main() in
    this process (the same code without a second start of torch: seconds saved per call)."""
    argv = [str(a) for a in args]
    if installed:
        exe = Path(sys.executable).parent / "maskreid"
        return subprocess.run([str(exe), *argv], capture_output=True, text=True, cwd=cwd)
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit_:           # argparse refusing an argument, --help, --version
                code = int(exit_.code or 0)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _model(seed: int = 0) -> FeatureExtractor:
    """An F whose BN statistics are spread out, so different images get clearly different embeddings."""
    torch.manual_seed(seed)
    model = FeatureExtractor(SPEC.backbone, SPEC.embedding_dim, "none")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "stage3.pt"
    save_checkpoint(path, {"extractor": _model().state_dict(), "inference": SPEC.to_dict()})
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery folder: Market-named JPEGs of 6 people x 2 cameras in two subfolders, and 2 unnamed PNGs."""
    root = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(0)
    for pid in range(1, 7):
        colour = rng.integers(0, 255, 3)
        for cam in (1, 2):
            pixels = np.clip(colour + rng.normal(0, 30, (80, 40, 3)), 0, 255).astype(np.uint8)
            target = root / f"cam{cam}" / f"{pid:04d}_c{cam}s1_{pid * 10 + cam:06d}_00.jpg"
            target.parent.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(target)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (90, 45, 3), dtype=np.uint8)).save(root / f"street_{i}.png")
    return root


# ---------------------------------------------------------------------------------------- the model file
def test_checkpoint_needs_no_params_yaml(model_file: Path, tmp_path: Path) -> None:
    embedder = load_embedder(model_file)
    assert embedder.spec == SPEC
    image = torch.from_numpy(load_rgb(_write(tmp_path), (68, 34)))
    batch = image.permute(2, 0, 1)[None]
    # the same numbers as the test transform written out by hand: centre crop, [0, 1], ImageNet mean/std
    crop = batch[:, :, 2:66, 1:33].float() / 255
    manual = (crop - torch.tensor(SPEC.mean).view(1, 3, 1, 1)) / torch.tensor(SPEC.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = _model()(manual).numpy()
    np.testing.assert_allclose(embedder(batch), expected, atol=1e-5)


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "one.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (70, 35, 3), dtype=np.uint8)).save(path)
    return path


def test_old_or_foreign_checkpoints_are_refused_with_the_reason(tmp_path: Path) -> None:
    old = tmp_path / "old.pt"
    save_checkpoint(old, {"extractor": _model().state_dict(), "model": {"backbone": "resnet18"}})
    with pytest.raises(ModelLoadError, match=r"old\.pt: made by an older maskreid.*dvc repro -f train_joint"):
        load_embedder(old)
    newer = tmp_path / "newer.pt"
    save_checkpoint(newer, {"extractor": _model().state_dict(), "inference": {**SPEC.to_dict(), "format": "maskreid-model/9"}})
    with pytest.raises(ModelLoadError, match=rf"newer\.pt: model format 'maskreid-model/9', this maskreid reads '{FORMAT}'"):
        load_embedder(newer)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, {"extractor": _model().state_dict(), "inference": {**SPEC.to_dict(), "embedding_dim": 64}})
    with pytest.raises(ModelLoadError, match=r"wrong\.pt: weights do not fit resnet18 of width 64 with a 64-d embedding"):
        load_embedder(wrong)


# ---------------------------------------------------------------------------------------------- extract
def test_extract_parquet_and_npz_agree_with_the_model(model_file: Path, images: Path, tmp_path: Path) -> None:
    for out in (tmp_path / "f.parquet", tmp_path / "f.npz"):
        result = maskreid_cli("extract", model_file, images, "-o", out, "--batch-size", "5",
                              installed=out.suffix == ".parquet")
        assert result.returncode == 0, result.stderr
        assert f"wrote {out}: 14 embeddings of 32 dims" in result.stdout
    parquet, npz = load_features(tmp_path / "f.parquet"), load_features(tmp_path / "f.npz")
    assert parquet.paths == npz.paths == [str(p) for p in collect_images([images])]
    np.testing.assert_array_equal(parquet.features, npz.features)
    assert parquet.spec == npz.spec == SPEC
    named = {Path(p).name: (pid, cam) for p, pid, cam in zip(npz.paths, npz.pids, npz.camids)}
    assert named["0003_c2s1_000032_00.jpg"] == (3, 2)
    assert named["street_0.png"] == (None, None) and parquet.pids == npz.pids
    embedder = TorchEmbedder(model_file)
    one = torch.from_numpy(load_rgb(npz.paths[4], SPEC.resize)).permute(2, 0, 1)[None]
    np.testing.assert_allclose(npz.features[4], embedder(one)[0], atol=1e-5)   # batching changes nothing


def test_extract_lists_bad_images_and_writes_nothing_unless_told_to_skip(model_file: Path, images: Path,
                                                                          tmp_path: Path) -> None:
    gallery = tmp_path / "g"
    gallery.mkdir()
    for src in list(images.rglob("*.jpg"))[:3]:
        (gallery / src.name).write_bytes(src.read_bytes())
    (gallery / "0009_c1s1_000001_00.jpg").write_bytes(b"not a jpeg")
    (gallery / "0009_c2s1_000002_00.jpg").write_bytes((gallery / src.name).read_bytes()[:200])   # truncated
    out = tmp_path / "f.npz"
    refused = maskreid_cli("extract", model_file, gallery, "-o", out)
    assert refused.returncode == 1 and not out.exists() and not list(tmp_path.glob(".f.npz*"))
    assert "2 image(s) cannot be decoded" in refused.stderr
    assert "0009_c1s1_000001_00.jpg" in refused.stderr and "0009_c2s1_000002_00.jpg" in refused.stderr
    assert "Traceback" not in refused.stderr
    skipped = maskreid_cli("extract", model_file, gallery, "-o", out, "--on-bad-image", "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "3 embeddings" in skipped.stdout and skipped.stderr.count("skipped ") == 2
    assert len(load_features(out)) == 3


@pytest.mark.parametrize(("args", "message"), [
    (["missing.pt", "IMAGES", "-o", "f.npz"], "missing.pt: model file not found"),
    (["GARBAGE", "IMAGES", "-o", "f.npz"], "garbage.pt: not a readable checkpoint"),
    (["MODEL", "EMPTY", "-o", "f.npz"], "no image files"),
    (["MODEL", "IMAGES", "-o", "f.csv"], "f.csv: the output must end in .parquet or .npz"),
])
def test_extract_errors_are_one_line_naming_the_file(model_file: Path, images: Path, tmp_path: Path,
                                                     args: list[str], message: str) -> None:
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage")
    (tmp_path / "empty").mkdir()
    subst = {"MODEL": str(model_file), "IMAGES": str(images), "GARBAGE": "garbage.pt", "EMPTY": "empty"}
    result = maskreid_cli("extract", *[subst.get(a, a) for a in args], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr
    assert not (tmp_path / "f.npz").exists()


# ----------------------------------------------------------------------------------------------- search
def test_search_ranks_draws_and_reuses_the_cached_gallery(model_file: Path, images: Path, tmp_path: Path) -> None:
    query = images / "cam1" / "0002_c1s1_000021_00.jpg"
    out = tmp_path / "out" / "ranked.png"
    cache = tmp_path / "cache"
    first = maskreid_cli("search", model_file, query, "--gallery", images, "--top", "5", "-o", out, "--cache-dir", cache,
                         installed=True)
    assert first.returncode == 0, first.stderr
    assert "cached in" in first.stderr
    lines = [line.split() for line in first.stdout.splitlines() if line[:3].strip().isdigit()]
    assert [int(line[0]) for line in lines] == [1, 2, 3, 4, 5]
    distances = [float(line[1]) for line in lines]
    assert distances == sorted(distances) and distances[0] == pytest.approx(0, abs=1e-3)   # itself first
    assert lines[0][2] == str(query)
    # the same ranking as brute force over the extracted features
    table = load_features(next(cache.glob("*.features-*.npz")))
    q = table.features[table.paths.index(str(query))]
    order = np.argsort(np.linalg.norm(table.features - q, axis=1), kind="stable")[:5]
    assert [line[2] for line in lines] == [table.paths[i] for i in order]
    with Image.open(out) as picture:
        assert picture.size[0] > 6 * SPEC.resize[1] and picture.size[1] > SPEC.resize[0]
        pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(pixels, axis=0).tolist()}
    assert SAME in colours and QUERY in colours      # the query itself is the top hit: a green frame
    again = maskreid_cli("search", model_file, query, "--gallery", images, "--top", "5", "-o", out, "--cache-dir", cache)
    assert "gallery features reused from" in again.stderr and again.stdout == first.stdout
    newer = images / "street_1.png"
    newer.touch()                                                     # a changed gallery is extracted again
    third = maskreid_cli("search", model_file, query, "--gallery", images, "--top", "5", "-o", out, "--cache-dir", cache)
    assert "cached in" in third.stderr and len(list(cache.glob("*.features-*.npz"))) == 1


def test_search_streams_a_parquet_gallery_in_chunks_with_the_same_ranking(model_file: Path, images: Path,
                                                                          tmp_path: Path) -> None:
    query = images / "cam2" / "0004_c2s1_000042_00.jpg"
    assert maskreid_cli("extract", model_file, images, "-o", tmp_path / "g.parquet").returncode == 0
    from_folder = maskreid_cli("search", model_file, query, "--gallery", images, "--top", "6", "--cache-dir",
                               tmp_path / "cache")
    streamed = maskreid_cli("search", model_file, query, "--gallery", tmp_path / "g.parquet", "--top", "6",
                            "--chunk", "5")
    assert streamed.returncode == 0, streamed.stderr
    assert "read from" in streamed.stderr and "in chunks of 5" in streamed.stderr
    assert streamed.stdout == from_folder.stdout and streamed.stdout.count("same person") >= 2


def test_search_caches_in_the_user_cache_and_deletes_no_other_cache(model_file: Path, images: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --cache-dir a folder's features go to the user's cache folder, never the current folder; two
    galleries with the same folder name, and one gallery under two models, keep a cache each."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    twin = tmp_path / "elsewhere" / images.name               # another gallery, the same folder name
    shutil.copytree(images / "cam1", twin)
    other_model = tmp_path / "other.pt"
    shutil.copy(model_file, other_model)
    query = images / "cam1" / "0002_c1s1_000021_00.jpg"
    for model, gallery in ((model_file, images), (model_file, twin), (other_model, images)):
        result = maskreid_cli("search", model, query, "--gallery", gallery, cwd=work)
        assert result.returncode == 0 and "cached in" in result.stderr, result.stderr
    caches = sorted((tmp_path / "xdg" / "maskreid" / "galleries").glob("*.features-*.npz"))
    assert len(caches) == 3 and list(work.iterdir()) == []
    again = maskreid_cli("search", model_file, query, "--gallery", twin, cwd=work)
    assert "reused from" in again.stderr


def test_an_approximate_index_lists_only_the_neighbours_it_found(model_file: Path, images: Path,
                                                                 tmp_path: Path) -> None:
    """ivf with one list probed finds fewer than --top neighbours in a 400-image gallery of 10 lists: faiss pads
    with index -1 and a huge distance; the command lists the real ones and says how many."""
    from maskreid.serve.gallery import FeatureTable, save_features

    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, SPEC.embedding_dim)).astype(np.float32)
    gallery = tmp_path / "random.npz"
    save_features(FeatureTable([f"img{i}.jpg" for i in range(400)], [None] * 400, [None] * 400, features, SPEC),
                  gallery)
    query = images / "cam1" / "0002_c1s1_000021_00.jpg"
    result = maskreid_cli("search", model_file, query, "--gallery", gallery, "--index", "ivf", "--nprobe", "1",
                          "--top", "100")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line[:3].strip().isdigit()]
    assert 0 < len(rows) < 100 and all(float(row[1]) < 1e3 for row in rows)
    assert [row[2] for row in rows] == [row[2] for row in rows if row[2].startswith("img")]
    assert f"{len(rows)} of the 100 neighbours asked for were found" in result.stderr


def test_out_of_range_counts_are_refused_by_name(model_file: Path, images: Path, tmp_path: Path) -> None:
    query = images / "cam1" / "0002_c1s1_000021_00.jpg"
    cases = [("extract", model_file, images, "-o", tmp_path / "f.npz", "--batch-size", "0"),
             ("search", model_file, query, "--gallery", images, "--top", "0"),
             ("search", model_file, query, "--gallery", images, "--nprobe", "-3"),
             ("search", model_file, query, "--gallery", images, "--chunk", "many"),
             ("search", model_file, query, "--gallery", images, "--device", "gpu"),
             ("evaluate-distances", tmp_path / "d.npz", "--lambda", "2")]
    for args in cases:
        result = maskreid_cli(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        option = [a for a in args if str(a).startswith("--")][-1]
        assert f"argument {option}" in result.stderr
    assert not (tmp_path / "f.npz").exists()


def test_a_gpu_asked_for_where_there_is_none_is_a_clear_error(model_file: Path, images: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = maskreid_cli("extract", model_file, images, "-o", tmp_path / "f.npz", "--device", "cuda")
    assert result.returncode == 1 and "torch sees no CUDA GPU" in result.stderr and "Traceback" not in result.stderr


def test_version_module_entry_and_defaults_in_help() -> None:
    from importlib.metadata import version

    by_module = subprocess.run([sys.executable, "-m", "maskreid", "--version"], capture_output=True, text=True)
    assert by_module.returncode == 0 and by_module.stdout.strip() == f"maskreid {version('maskreid')}"
    for command in ("extract", "search", "evaluate-distances", "ablation", "diagnose-masks"):   # export: no options
        result = maskreid_cli(command, "--help")
        assert result.returncode == 0
        options = [line for line in result.stdout.splitlines() if line.strip().startswith("--")]
        described = result.stdout.replace("\n", " ")
        assert options and described.count("(default:") >= 1, command
    search_help = maskreid_cli("search", "--help").stdout
    assert "(default: 10)" in search_help and "maskreid/galleries" in search_help


def test_search_a_feature_file_of_another_model_is_refused(model_file: Path, images: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"extractor": _model(1).state_dict(),
                            "inference": {**SPEC.to_dict(), "params_hash": "ffffffffffffffff"}})
    for suffix in (".parquet", ".npz"):
        assert maskreid_cli("extract", other, images, "-o", tmp_path / f"other{suffix}").returncode == 0
        result = maskreid_cli("search", model_file, next(images.rglob("*.jpg")), "--gallery",
                              tmp_path / f"other{suffix}")
        assert result.returncode == 1 and "features made by another model" in result.stderr


def test_search_errors(model_file: Path, images: Path, tmp_path: Path) -> None:
    bad_query = tmp_path / "q.jpg"
    bad_query.write_bytes(b"xx")
    (tmp_path / "empty").mkdir()
    cases = [(bad_query, images, "cannot be decoded"), (tmp_path / "nope.jpg", images, "nope.jpg: query image not found"),
             (next(images.rglob("*.jpg")), tmp_path / "empty", "no image files")]
    for query, gallery, message in cases:
        result = maskreid_cli("search", model_file, query, "--gallery", gallery, "-o", tmp_path / "r.png")
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / "r.png").exists()


# ----------------------------------------------------------------------------------------------- export
def _real_images(tmp_path: Path, images: Path) -> list[Path]:
    """Real pedestrian photographs when ../shared has them (CUHK01), else the gallery's generated JPEGs."""
    archive = SHARED / "data" / "CUHK01.zip"
    if not archive.is_file():
        return collect_images([images])
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n.endswith(".png")][:24]
        zf.extractall(tmp_path / "cuhk01", members=names)
    return [tmp_path / "cuhk01" / n for n in names]


def test_onnx_export_matches_pytorch_and_extract_accepts_it(model_file: Path, images: Path, tmp_path: Path) -> None:
    onnx_file = tmp_path / "model.onnx"
    result = maskreid_cli("export", model_file, "-o", onnx_file, installed=True)
    assert result.returncode == 0, result.stderr
    exported = OnnxEmbedder(onnx_file)
    assert exported.spec == SPEC                                        # preprocessing travels in the metadata
    files = _real_images(tmp_path, images)
    reference = extract_files(TorchEmbedder(model_file), files, batch_size=7, progress=False).features
    onnx_features = extract_files(exported, files, batch_size=24, progress=False).features   # other batch size
    assert np.abs(reference - onnx_features).max() <= 1e-4
    out = tmp_path / "f.npz"
    assert maskreid_cli("extract", onnx_file, *files[:5], "-o", out).returncode == 0
    np.testing.assert_allclose(load_features(out).features, reference[:5], atol=1e-4)


def test_an_onnx_file_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(plain), dynamo=False)
    with pytest.raises(ModelLoadError, match=r"plain\.onnx: an ONNX model without maskreid's metadata"):
        load_embedder(plain)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    result = maskreid_cli("extract", broken, tmp_path, "-o", tmp_path / "f.npz")
    assert result.returncode == 1 and "broken.onnx: not a readable ONNX model" in result.stderr
    assert result.stderr.count("\n") == 1
