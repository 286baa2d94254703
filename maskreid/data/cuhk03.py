"""CUHK03 under the new 767/700 protocol (CUHK03-NP), labeled or detected boxes.

Either from the ready-made Market-format folders `cuhk03-np/{labeled,detected}`, or from the original
`cuhk-03.mat` (MATLAB v7.3 = HDF5: groups `labeled`/`detected`, 5 camera pairs, each a cell array
[person x 10 images], images 0-4 from the pair's first camera, 5-9 from the second, some cells empty) plus the
split file `cuhk03_new_protocol_config_<kind>.mat` (MATLAB v5: labels, camId, filelist, and 1-based
train_idx / query_idx / gallery_idx). Images are written as PNG with the names the split file lists:
`{pair}_{person:03d}_{view}_{image:02d}.png`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from maskreid.data.archives import MARKER, ArchiveError, extract, verify_checksum
from maskreid.data.market import DatasetFormatError, scan_market_folder

SPLIT_FIELDS = ("labels", "camId", "filelist", "train_idx", "query_idx", "gallery_idx")


def image_name(pair: int, person: int, image: int) -> str:
    """torchreid's and the split files' name for (camera pair, person, image index), all 0-based."""
    return f"{pair + 1}_{person + 1:03d}_{1 if image < 5 else 2}_{image + 1:02d}.png"


def export_mat_images(mat_path: Path, kind: str, out_dir: Path) -> int:
    """Write every non-empty image of `kind` in cuhk-03.mat as PNG under out_dir; marker last."""
    import h5py

    if (out_dir / MARKER).is_file():
        return sum(1 for _ in out_dir.glob("*.png"))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with h5py.File(mat_path, "r") as mat:
            if kind not in mat:
                raise DatasetFormatError(f"{mat_path}: no '{kind}' variable (has {sorted(mat.keys())})")
            pairs = mat[kind][0]
            for pair_index, pair_ref in enumerate(pairs):
                cells = mat[pair_ref]                      # HDF5 shape (10, persons): MATLAB's transpose
                for person in tqdm(range(cells.shape[1]), desc=f"cuhk03 {kind} pair {pair_index + 1}", leave=False):
                    for image_index in range(cells.shape[0]):
                        data = mat[cells[image_index, person]][()]
                        if data.size == 0 or data.ndim < 3:
                            continue                       # empty cell
                        img = np.ascontiguousarray(data.T)  # (H, W, 3)
                        Image.fromarray(img.astype(np.uint8)).save(out_dir / image_name(pair_index, person, image_index))
                        written += 1
    except OSError as err:
        raise DatasetFormatError(f"{mat_path}: not a MATLAB v7.3 (HDF5) file ({err})") from err
    (out_dir / MARKER).write_text(f"{written} images\n")
    return written


def read_split(split_path: Path) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    try:
        split = loadmat(split_path)
    except Exception as err:  # noqa: BLE001
        raise DatasetFormatError(f"{split_path}: not a readable MATLAB v5 split file ({err})") from err
    missing = [f for f in SPLIT_FIELDS if f not in split]
    if missing:
        raise DatasetFormatError(f"{split_path}: missing field(s) {missing}; expected {', '.join(SPLIT_FIELDS)}")
    return split


def manifest_from_split(split_path: Path, image_dir: Path) -> pd.DataFrame:
    """Rows for train/query/gallery from the split file's 1-based indices into its filelist."""
    split = read_split(split_path)
    labels = split["labels"].ravel().astype(int)
    cams = split["camId"].ravel().astype(int)
    names = [str(np.asarray(x).ravel()[0]) for x in split["filelist"].ravel()]
    rows = []
    for part, key in (("train", "train_idx"), ("query", "query_idx"), ("gallery", "gallery_idx")):
        for index in split[key].ravel().astype(int):
            if not 1 <= index <= len(names):
                raise DatasetFormatError(f"{split_path}: {key} holds {index}, outside 1..{len(names)} (1-based)")
            path = image_dir / names[index - 1]
            if not path.is_file():
                raise DatasetFormatError(f"{split_path}: {names[index - 1]} listed in {key} is not in {image_dir}")
            rows.append({"path": str(path), "pid": labels[index - 1], "camid": cams[index - 1], "split": part})
    return pd.DataFrame(rows, columns=["path", "pid", "camid", "split"])


def prepare_cuhk03(kind: str, raw: Path, extracted: Path, md5: str | None, accept_mismatch: bool) -> pd.DataFrame:
    ready = raw / "cuhk03-np" / kind
    if ready.is_dir():
        return scan_market_folder(ready)
    split_path = raw / f"cuhk03_new_protocol_config_{kind}.mat"
    mat_path = next((p for p in [raw / "cuhk03_release" / "cuhk-03.mat", extracted / "cuhk03_release" /
                                 "cuhk-03.mat"] if p.is_file()), None)
    archive = raw / "cuhk03_release.zip"
    if mat_path is None and archive.is_file():
        verify_checksum(archive, md5, "md5", accept_mismatch)
        mat_path = extract(archive, extracted) / "cuhk03_release" / "cuhk-03.mat"
    if mat_path is None or not mat_path.is_file() or not split_path.is_file():
        raise ArchiveError(
            f"cuhk03_{kind}: put either the ready-made folder {ready}/ (bounding_box_train, bounding_box_test, "
            f"query), or cuhk03_release.zip (holding cuhk03_release/cuhk-03.mat) and {split_path.name} in {raw}/.\n"
            "  Obtain cuhk03_release.zip from the CUHK03 authors and the split files from Zhong et al.'s "
            "re-ranking repository (CUHK03-NP).")
    image_dir = extracted / f"images_{kind}"
    export_mat_images(mat_path, kind, image_dir)
    return manifest_from_split(split_path, image_dir)
