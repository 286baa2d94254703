"""The benchmarks: where their raw files go, how they are fetched and checked, and how each becomes a
manifest (path, pid, camid, split). Published counts are checked; a mismatch is reported in the summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from maskreid.data.archives import ArchiveError, download, extract, verify_checksum
from maskreid.data.manifest import ManifestSummary
from maskreid.data.market import SPLIT_FOLDERS, DatasetFormatError
from maskreid.net import is_reachable

log = logging.getLogger("maskreid")


@dataclass(frozen=True)
class Archive:
    filename: str
    md5: str | None
    url: str | None
    source: str  # where a user can obtain it, for the offline error message


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    raw_dir: str                       # under data/raw/
    cameras: int
    expected: dict[str, tuple[int, int]] = field(default_factory=dict)  # split -> (ids, images)
    archive: Archive | None = None


MARKET = Archive("Market-1501-v15.09.15.zip", "65005ab7d12ec1c44de4eeafe813e68a",
                 "http://188.138.127.15:81/Datasets/Market-1501-v15.09.15.zip",
                 "the Market-1501 authors' page (Zheng et al., ICCV 2015) or the URL torchreid lists")
DUKE = Archive("DukeMTMC-reID.zip", "62d8f3c7d6b2c5dc3d8ca6af7515847c", None,
               "an archive you already have: the dataset was withdrawn by its owners and has no official download")
CUHK03 = Archive("cuhk03_release.zip", "728939e58ad9f0ff53e521857dd8fb43", None,
                 "the CUHK03 authors (Li et al., CVPR 2014), on request; split files from Zhong et al.'s "
                 "re-ranking repository (CUHK03-NP, 767/700)")
CUHK01 = Archive("CUHK01.zip", None, None, "the CUHK01 authors (Li et al., ACCV 2012) or torchreid's data notes")

SPECS: dict[str, DatasetSpec] = {
    "market1501": DatasetSpec("market1501", "market1501", 6,
                              {"train": (751, 12936), "query": (750, 3368), "gallery": (751, 19732)}, MARKET),
    "dukemtmcreid": DatasetSpec("dukemtmcreid", "dukemtmcreid", 8,
                                {"train": (702, 16522), "query": (702, 2228), "gallery": (1110, 17661)}, DUKE),
    "cuhk03_labeled": DatasetSpec("cuhk03_labeled", "cuhk03_labeled", 2,
                                  {"train": (767, 7368), "query": (700, 1400), "gallery": (700, 5328)}, CUHK03),
    "cuhk03_detected": DatasetSpec("cuhk03_detected", "cuhk03_detected", 2,
                                   {"train": (767, 7365), "query": (700, 1400), "gallery": (700, 5332)}, CUHK03),
    "cuhk01": DatasetSpec("cuhk01", "cuhk01", 2, {}, CUHK01),
    "custom": DatasetSpec("custom", "custom", 99),
}


def find_market_root(folder: Path, max_depth: int = 3) -> Path | None:
    """The folder under `folder` that holds the three Market split folders (archives nest one level)."""
    candidates = [folder] + [p for d in range(1, max_depth + 1) for p in sorted(folder.glob("/".join(["*"] * d)))]
    for candidate in candidates:
        if candidate.is_dir() and all((candidate / s).is_dir() for s in SPLIT_FOLDERS.values()):
            return candidate
    return None


def obtain_archive(spec: DatasetSpec, raw: Path, accept_mismatch: bool) -> Path:
    """The verified local archive of `spec`, downloaded first when a URL exists and is reachable."""
    assert spec.archive is not None
    path = raw / spec.archive.filename
    if not path.is_file():
        url = spec.archive.url
        if url and is_reachable(url):
            download(url, path)
        else:
            how = f"it could not be downloaded from {url} (unreachable)" if url else "there is no public download"
            raise ArchiveError(f"{spec.name}: {spec.archive.filename} not found in {raw}/ and {how}.\n"
                               f"  Put {spec.archive.filename} (or its extracted folder) in {raw}/\n"
                               f"  Obtain it from {spec.archive.source}.")
    verify_checksum(path, spec.archive.md5, "md5", accept_mismatch)
    return path


def market_folder_for(spec: DatasetSpec, raw: Path, extracted: Path, accept_mismatch: bool) -> Path:
    """An extracted Market-layout folder for Market/Duke: the user's own, or extracted from the archive."""
    own = find_market_root(raw)
    if own is not None:
        return own
    archive = obtain_archive(spec, raw, accept_mismatch)
    root = find_market_root(extract(archive, extracted))
    if root is None:
        raise DatasetFormatError(f"{archive}: no folder with {', '.join(SPLIT_FOLDERS.values())} inside")
    return root


def prepare_cuhk01(raw: Path, extracted: Path, test_ids: int, seed: int) -> pd.DataFrame:
    """CUHK01 (`campus/PPPPNNN.png`; NNN 001-002 camera A, 003-004 camera B): `test_ids` random identities
    (seeded) are the test set, camera A images as queries and camera B images as the gallery."""
    campus = next((p for p in [raw / "campus", extracted / "campus"] if p.is_dir()), None)
    if campus is None:
        archive = raw / CUHK01.filename
        if not archive.is_file():
            raise ArchiveError(f"cuhk01: neither {raw}/campus/ nor {archive} exists.\n  Put CUHK01.zip "
                               f"(holding campus/) in {raw}/\n  Obtain it from {CUHK01.source}.")
        campus = extract(archive, extracted) / "campus"
        if not campus.is_dir():
            raise DatasetFormatError(f"{archive}: expected a top-level campus/ folder")
    rows = []
    for path in sorted(campus.glob("*.png")):
        stem = path.stem
        if len(stem) != 7 or not stem.isdigit():
            raise DatasetFormatError(f"{path}: expected a name PPPPNNN.png (person 0001-0971, image 001-004)")
        pid, index = int(stem[:4]), int(stem[4:])
        rows.append({"path": str(path), "pid": pid, "camid": 1 if index <= 2 else 2})
    if not rows:
        raise DatasetFormatError(f"{campus}: no PNG images")
    df = pd.DataFrame(rows)
    pids = np.array(sorted(df.pid.unique()))
    if not 0 < test_ids < len(pids):
        raise DatasetFormatError(f"cuhk01: test_ids={test_ids} must be between 1 and {len(pids) - 1}")
    test = set(np.random.default_rng(seed).choice(pids, size=test_ids, replace=False).tolist())
    df["split"] = ["train" if pid not in test else ("query" if cam == 1 else "gallery")
                   for pid, cam in zip(df.pid, df.camid)]
    return df[["path", "pid", "camid", "split"]]


def check_counts(summary: ManifestSummary, spec: DatasetSpec) -> None:
    """Append a warning for every split whose counts differ from the published ones."""
    for split, (ids, images) in spec.expected.items():
        got = (summary.ids.get(split), summary.images.get(split))
        if got != (ids, images):
            summary.warnings.append(f"{split}: {got[0]} ids / {got[1]} images, published {ids} / {images}")
