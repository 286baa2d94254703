"""Each benchmark prepared by the real code from a miniature archive with the published internal layout."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.io import savemat

from maskreid.data import datasets as datasets_module
from maskreid.data.archives import ArchiveError
from maskreid.params import load_params
from maskreid.paths import DatasetPaths
from maskreid.pipeline.prepare import prepare
from tests.conftest import REPO, SHARED


def _params(*overrides: str):
    return load_params(REPO / "params.yaml", overrides=list(overrides))


def _jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    import io
    buf = io.BytesIO()
    Image.new("RGB", (64, 128), colour).save(buf, format="JPEG")
    return buf.getvalue()


def _market_zip(path: Path, top: str, names: dict[str, list[str]], extra: dict[str, bytes] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for folder, files in names.items():
            for i, name in enumerate(files):
                zf.writestr(f"{top}/{folder}/{name}", _jpeg_bytes((10 * i, 100, 200)))
        for name, data in (extra or {}).items():
            zf.writestr(f"{top}/{name}", data)


MARKET_NAMES = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s3_012345_02.jpg",
                           "0007_c6s1_000111_01.jpg"],
    "bounding_box_test": ["0010_c2s1_000100_01.jpg", "0011_c1s1_000200_01.jpg", "0000_c3s1_000300_01.jpg",
                          "-1_c1s1_000401_03.jpg", "0010_c5s1_000101_01.jpg"],
    "query": ["0010_c1s1_000099_01.jpg", "0011_c4s1_000201_01.jpg"],
    "gt_bbox": ["0010_c1s1_000099_00.jpg"],
}


def test_market_zip_prepares_and_reports_count_mismatch(tmp_path: Path) -> None:
    _market_zip(tmp_path / "data/raw/market1501/Market-1501-v15.09.15.zip", "Market-1501-v15.09.15", MARKET_NAMES,
                {"bounding_box_test/Thumbs.db": b"\x00", "readme.txt": b"Market-1501"})
    paths = DatasetPaths("market1501", tmp_path)
    with pytest.raises(ArchiveError, match="md5 is .* expected 65005ab7d12ec1c44de4eeafe813e68a"):
        prepare(_params("datasets=[market1501]"), paths)
    summary = prepare(_params("datasets=[market1501]", "data.accept_checksum_mismatch=true"), paths)
    assert summary["images"] == {"train": 4, "query": 2, "gallery": 5}
    assert summary["junk_gallery_images"] == 1 and summary["distractor_gallery_images"] == 1
    assert any("published 751 / 12936" in w for w in summary["warnings"])   # miniature != published: reported
    manifest = pd.read_csv(paths.manifest)
    assert manifest.path.str.startswith("data/prepared/market1501/extracted/Market-1501-v15.09.15/").all()
    assert (tmp_path / manifest.path.iloc[0]).is_file()


def test_duke_zip_with_its_naming_and_eight_cameras(tmp_path: Path) -> None:
    names = {"bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c8_f0000001.jpg", "0003_c1_f0000002.jpg"],
             "bounding_box_test": ["0005_c7_f0100000.jpg", "0005_c3_f0100001.jpg", "0009_c6_f0000003.jpg"],
             "query": ["0005_c1_f0099999.jpg"]}
    _market_zip(tmp_path / "data/raw/dukemtmcreid/DukeMTMC-reID.zip", "DukeMTMC-reID", names)
    summary = prepare(_params("datasets=[dukemtmcreid]", "data.accept_checksum_mismatch=true"),
                      DatasetPaths("dukemtmcreid", tmp_path))
    assert summary["cameras"] == 6 and summary["ids"]["gallery"] == 2
    assert summary["queries_without_cross_camera_match"] == 0


def test_missing_archive_offline_names_file_folder_and_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets_module, "is_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(ArchiveError) as err:
        prepare(_params("datasets=[market1501]"), DatasetPaths("market1501", tmp_path))
    message = str(err.value)
    assert "Market-1501-v15.09.15.zip not found" in message and "data/raw/market1501/" in message
    assert "http://188.138.127.15:81/Datasets/Market-1501-v15.09.15.zip" in message


def test_duke_has_no_download_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="withdrawn by its owners"):
        prepare(_params("datasets=[dukemtmcreid]"), DatasetPaths("dukemtmcreid", tmp_path))


# ---- CUHK03 -------------------------------------------------------------------------------------------
PAIRS, PERSONS = 2, 3
EMPTY = {(0, 1, 7), (1, 2, 9)}  # (pair, person, image) cells left empty, as in the real file


def _cuhk03_image(pair: int, person: int, image: int) -> np.ndarray:
    img = np.zeros((20 + image, 10 + person, 3), dtype=np.uint8)   # H x W x 3, sizes vary as in the real file
    img[..., 0], img[..., 1], img[..., 2] = pair * 50, person * 40, image * 20
    return img


def _write_cuhk03_mat(path: Path) -> None:
    """A MATLAB v7.3 file the way MATLAB stores cell arrays: object references into #refs#, transposed."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        counter = iter(range(10 ** 6))
        for kind in ("labeled", "detected"):
            pair_refs = []
            for pair in range(PAIRS):
                cells = np.empty((10, PERSONS), dtype=h5py.ref_dtype)
                for person in range(PERSONS):
                    for image in range(10):
                        if (pair, person, image) in EMPTY:
                            ds = refs.create_dataset(f"e{next(counter)}", data=np.zeros(2, dtype=np.uint64))
                            ds.attrs["MATLAB_empty"] = np.uint8(1)
                        else:
                            ds = refs.create_dataset(f"i{next(counter)}", data=_cuhk03_image(pair, person, image).T)
                        cells[image, person] = ds.ref
                pair_refs.append(refs.create_dataset(f"c{next(counter)}", data=cells).ref)
            f.create_dataset(kind, data=np.array([pair_refs], dtype=h5py.ref_dtype))


def _write_split(path: Path) -> dict[str, list[int]]:
    from maskreid.data.cuhk03 import image_name

    names, labels, cams = [], [], []
    for pair in range(PAIRS):
        for person in range(PERSONS):
            for image in range(10):
                if (pair, person, image) not in EMPTY:
                    names.append(image_name(pair, person, image))
                    labels.append(pair * PERSONS + person + 1)
                    cams.append(1 if image < 5 else 2)
    idx = np.arange(1, len(names) + 1)                       # 1-based, as MATLAB writes them
    train = idx[np.array(labels) <= 3]
    test = idx[np.array(labels) > 3]
    query = np.array([i for i in test if names[i - 1].endswith(("_01.png", "_06.png"))])
    gallery = np.array([i for i in test if i not in set(query)])
    filelist = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        filelist[i, 0] = n
    savemat(path, {"labels": np.array(labels)[:, None], "camId": np.array(cams)[:, None], "filelist": filelist,
                   "train_idx": train[:, None], "query_idx": query[:, None], "gallery_idx": gallery[:, None]})
    return {"train": train.tolist(), "query": query.tolist(), "gallery": gallery.tolist()}


@pytest.mark.parametrize("kind", ["labeled", "detected"])
def test_cuhk03_from_release_zip_and_split_file(tmp_path: Path, kind: str) -> None:
    raw = tmp_path / f"data/raw/cuhk03_{kind}"
    raw.mkdir(parents=True)
    _write_cuhk03_mat(tmp_path / "cuhk-03.mat")
    with zipfile.ZipFile(raw / "cuhk03_release.zip", "w") as zf:
        zf.write(tmp_path / "cuhk-03.mat", "cuhk03_release/cuhk-03.mat")
    split = _write_split(raw / f"cuhk03_new_protocol_config_{kind}.mat")
    paths = DatasetPaths(f"cuhk03_{kind}", tmp_path)
    summary = prepare(_params(f"datasets=[cuhk03_{kind}]", "data.accept_checksum_mismatch=true"), paths)
    assert summary["images"] == {s: len(v) for s, v in split.items()}
    assert summary["ids"] == {"train": 3, "query": 3, "gallery": 3}
    manifest = pd.read_csv(paths.manifest)
    first = manifest.iloc[0]
    assert Path(first.path).name == "1_001_1_01.png" and first.pid == 1 and first.camid == 1
    with Image.open(tmp_path / first.path) as img:
        assert img.size == (10, 20)                                     # W x H: the transpose was undone
        assert img.getpixel((0, 0)) == (0, 0, 0)
    view2 = manifest[manifest.path.str.endswith("2_003_2_08.png")].iloc[0]
    with Image.open(tmp_path / view2.path) as img:
        assert img.size == (12, 27) and img.getpixel((3, 3)) == (50, 80, 140)
    assert view2.pid == 6 and view2.camid == 2 and view2.split in ("query", "gallery")
    images = list((tmp_path / f"data/prepared/cuhk03_{kind}/extracted/images_{kind}").glob("*.png"))
    assert len(images) == PAIRS * PERSONS * 10 - len(EMPTY)             # empty cells skipped


def test_cuhk03_ready_made_np_folders(tmp_path: Path, market_folder: Path) -> None:
    target = tmp_path / "data/raw/cuhk03_labeled/cuhk03-np/labeled"
    target.parent.mkdir(parents=True)
    market_folder.rename(target)
    summary = prepare(_params("datasets=[cuhk03_labeled]"), DatasetPaths("cuhk03_labeled", tmp_path))
    assert summary["images"]["query"] == 2
    assert any("published 767 / 7368" in w for w in summary["warnings"])


def test_cuhk03_missing_inputs_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="cuhk03_new_protocol_config_detected.mat"):
        prepare(_params("datasets=[cuhk03_detected]"), DatasetPaths("cuhk03_detected", tmp_path))


# ---- custom and CUHK01 ----------------------------------------------------------------------------------
def test_custom_folder_any_cameras_and_sparse_ids(tmp_path: Path, market_folder: Path) -> None:
    (market_folder / "bounding_box_train" / "0002_c1s1_000451_03.jpg").rename(
        market_folder / "bounding_box_train" / "4242_c12s1_000451_03.jpg")
    summary = prepare(_params("datasets=[custom]"),
                      DatasetPaths("custom", tmp_path))
    assert summary["ids"]["train"] == 3 and summary["cameras"] == 4
    assert summary["warnings"] == []


def test_custom_folder_not_in_market_layout(tmp_path: Path) -> None:
    (tmp_path / "data/raw/custom/images").mkdir(parents=True)
    with pytest.raises(ValueError, match="not a folder in Market-1501 layout"):
        prepare(_params("datasets=[custom]"), DatasetPaths("custom", tmp_path))


def test_cuhk01_miniature_zip(tmp_path: Path) -> None:
    raw = tmp_path / "data/raw/cuhk01"
    raw.mkdir(parents=True)
    with zipfile.ZipFile(raw / "CUHK01.zip", "w") as zf:
        for pid in range(1, 11):
            for index in range(1, 5):
                buf = __import__("io").BytesIO()
                Image.new("RGB", (60, 160), (pid * 20, index * 40, 0)).save(buf, format="PNG")
                zf.writestr(f"campus/{pid:04d}{index:03d}.png", buf.getvalue())
    summary = prepare(_params("datasets=[cuhk01]", "prepare.cuhk01.test_ids=4"), DatasetPaths("cuhk01", tmp_path))
    assert summary["ids"] == {"train": 6, "query": 4, "gallery": 4}
    assert summary["images"] == {"train": 24, "query": 8, "gallery": 8}
    assert any("published 967 / 3868" in w for w in summary["warnings"])   # 971 ids expected: reported
    manifest = pd.read_csv(DatasetPaths("cuhk01", tmp_path).manifest)
    assert set(manifest[manifest.split == "query"].camid) == {1}
    assert set(manifest[manifest.split == "gallery"].camid) == {2}


@pytest.mark.skipif(not (SHARED / "data" / "CUHK01.zip").is_file(),
                    reason="../shared/data/CUHK01.zip is absent (only the project's machines have it)")
def test_cuhk01_real_archive(tmp_path: Path) -> None:
    raw = tmp_path / "data/raw/cuhk01"
    raw.mkdir(parents=True)
    (raw / "CUHK01.zip").symlink_to(SHARED / "data" / "CUHK01.zip")
    summary = prepare(_params("datasets=[cuhk01]"), DatasetPaths("cuhk01", tmp_path))
    assert sum(summary["images"].values()) == 3884
    assert summary["ids"]["train"] + summary["ids"]["query"] == 971
    assert summary["cameras"] == 2 and summary["warnings"] == []


def test_market_is_downloaded_checked_and_extracted_when_reachable(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import hashlib

    from tests.test_archives import _Server

    archive = tmp_path / "served.zip"
    _market_zip(archive, "Market-1501-v15.09.15", MARKET_NAMES)
    payload = archive.read_bytes()
    server = _Server(payload, cut=False)
    try:
        spec = datasets_module.SPECS["market1501"]
        served = dataclasses.replace(spec.archive, url=server.url, md5=hashlib.md5(payload).hexdigest())
        monkeypatch.setitem(datasets_module.SPECS, "market1501", dataclasses.replace(spec, archive=served))
        root = tmp_path / "project"
        summary = prepare(_params("datasets=[market1501]"), DatasetPaths("market1501", root))
    finally:
        server.close()
    assert (root / "data/raw/market1501/Market-1501-v15.09.15.zip").read_bytes() == payload
    assert summary["images"] == {"train": 4, "query": 2, "gallery": 5}
