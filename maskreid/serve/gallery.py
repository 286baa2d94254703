"""Embeddings of image files outside any prepared dataset: collect, decode in batches, embed, save, load.

Feature files are .parquet (streamed in row groups: writing and reading a gallery of millions keeps only
`chunk` rows in memory) or .npz (one array; simple, for small galleries). Both carry the model's
inference description, so a gallery is never searched with features of another model.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from maskreid.data.loading import load_rgb
from maskreid.data.market import IMAGE_SUFFIXES, DatasetFormatError, parse_market_name
from maskreid.io import atomic_path
from maskreid.models.spec import ModelSpec, ModelSpecError
from maskreid.serve.inference import Embedder

FEATURE_SUFFIXES = (".parquet", ".npz")
SPEC_KEY = "maskreid_model"
ON_BAD_IMAGE = ("error", "skip")


class GalleryError(ValueError):
    """Unusable input for extract/search: the message names the file and what was expected."""


@dataclass
class FeatureTable:
    """One embedding per image, with the person and camera ids parsed from Market-style names (None if not)."""

    paths: list[str]
    pids: list[int | None]
    camids: list[int | None]
    features: np.ndarray                     # (N, D) float32
    spec: ModelSpec
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason) of undecodable images

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class StreamedGallery:
    """A gallery whose features live only in a search index: names and ids kept, embeddings not."""

    paths: list[str]
    pids: list[int | None]
    index: object

    def __len__(self) -> int:
        return len(self.paths)


def collect_images(inputs: Sequence[Path | str]) -> list[Path]:
    """Image files given directly or found (recursively) in folders, sorted within each folder."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.is_file():
            files.append(item)
        else:
            raise GalleryError(f"{item}: no such file or folder")
    if not files:
        raise GalleryError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return files


def parse_ids(path: Path | str) -> tuple[int | None, int | None]:
    """(pid, camid) for Market-1501-style names such as 0002_c1s1_000451_03.jpg; (None, None) otherwise."""
    try:
        parsed = parse_market_name(Path(path).name)
    except DatasetFormatError:
        return None, None
    return parsed.pid, parsed.camid


def decode_problem(path: Path, size: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    """The image resized to `size`, or None and why it cannot be used."""
    try:
        return load_rgb(path, size), None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        return None, f"cannot be decoded ({reason})"


def embed_batches(embedder: Embedder, files: Sequence[Path], batch_size: int, skipped: list[tuple[str, str]],
                  stop_embedding_on_bad: bool, progress: bool = True) -> Iterator[tuple[list[Path], np.ndarray]]:
    """(paths, embeddings) batch by batch; undecodable files go to `skipped`. With stop_embedding_on_bad,
    once one is found only decoding goes on (to list them all) and nothing more is yielded."""
    bar = tqdm(total=len(files), desc="embedding", unit="img", disable=not progress, file=sys.stderr)
    for start in range(0, len(files), batch_size):
        images, kept = [], []
        for path in files[start:start + batch_size]:
            pixels, problem = decode_problem(path, embedder.spec.resize)
            if problem is not None:
                skipped.append((str(path), problem))
                continue
            images.append(torch.from_numpy(pixels).permute(2, 0, 1))
            kept.append(path)
        if images and not (skipped and stop_embedding_on_bad):
            yield kept, embedder(torch.stack(images))
        bar.update(len(files[start:start + batch_size]))
    bar.close()


def _check_on_bad_image(on_bad_image: str) -> None:
    if on_bad_image not in ON_BAD_IMAGE:
        raise GalleryError(f"on_bad_image: {on_bad_image!r}, expected one of {ON_BAD_IMAGE}")


def _labelled(paths: Sequence[Path], features: np.ndarray, spec: ModelSpec) -> FeatureTable:
    """Embeddings with the person and camera ids their file names give (None where they give none)."""
    ids = [parse_ids(p) for p in paths]
    return FeatureTable([str(p) for p in paths], [i[0] for i in ids], [i[1] for i in ids], features, spec)


def _refuse_bad(skipped: list[tuple[str, str]]) -> None:
    listing = "\n".join(f"  {p}: {r}" for p, r in skipped[:20])
    more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    raise GalleryError(f"{len(skipped)} image(s) cannot be decoded (nothing written; --on-bad-image skip "
                       f"leaves them out):\n{listing}{more}")


def extract_files(embedder: Embedder, files: Sequence[Path], batch_size: int = 64,
                  on_bad_image: str = "error", progress: bool = True) -> FeatureTable:
    """Embed every file, in batches, into memory. Undecodable images are all listed: with on_bad_image='error'
    nothing is returned (GalleryError), with 'skip' they are left out and listed in `skipped`."""
    _check_on_bad_image(on_bad_image)
    skipped: list[tuple[str, str]] = []
    kept: list[Path] = []
    chunks: list[np.ndarray] = []
    for paths, features in embed_batches(embedder, files, batch_size, skipped, on_bad_image == "error", progress):
        kept.extend(paths)
        chunks.append(features)
    if skipped and on_bad_image == "error":
        _refuse_bad(skipped)
    if not kept:
        raise GalleryError(f"none of the {len(files)} image(s) could be decoded")
    table = _labelled(kept, np.concatenate(chunks).astype(np.float32, copy=False), embedder.spec)
    table.skipped = skipped
    return table


def extract_to_parquet(embedder: Embedder, files: Sequence[Path], out: Path, batch_size: int = 64,
                       on_bad_image: str = "error", progress: bool = True) -> tuple[int, list[tuple[str, str]]]:
    """Embed and write batch by batch: memory holds one batch, whatever the number of files. The file
    appears only when complete (atomic); with on_bad_image='error' and a bad image, it never appears."""
    import pyarrow.parquet as pq

    _check_on_bad_image(on_bad_image)
    skipped: list[tuple[str, str]] = []
    written = 0
    with atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, _arrow_schema(embedder.spec, embedder.spec.embedding_dim)) as writer:
            for paths, features in embed_batches(embedder, files, batch_size, skipped, on_bad_image == "error",
                                                 progress):
                writer.write_table(_arrow_rows(_labelled(paths, features, embedder.spec), 0, len(paths)))
                written += len(paths)
        if skipped and on_bad_image == "error":
            _refuse_bad(skipped)
        if written == 0:
            raise GalleryError(f"none of the {len(files)} image(s) could be decoded")
    return written, skipped


# ------------------------------------------------------------------------------------------------ files
def save_features(table: FeatureTable, out: Path) -> None:
    """Write .parquet or .npz atomically (a killed run leaves no half-written file)."""
    out = Path(out)
    if out.suffix not in FEATURE_SUFFIXES:
        raise GalleryError(f"{out}: feature files end in {' or '.join(FEATURE_SUFFIXES)}")
    with atomic_path(out) as tmp:
        if out.suffix == ".npz":
            with open(tmp, "wb") as handle:
                np.savez(handle, paths=np.asarray(table.paths, dtype=str),
                         pids=_nullable(table.pids), camids=_nullable(table.camids), features=table.features,
                         spec=np.asarray(table.spec.to_json()))
        else:
            import pyarrow.parquet as pq

            with pq.ParquetWriter(tmp, _arrow_schema(table.spec, table.features.shape[1])) as writer:
                for start in range(0, len(table), 65536):
                    writer.write_table(_arrow_rows(table, start, start + 65536))


def load_features(path: Path) -> FeatureTable:
    """Read a feature file written by `maskreid extract`; refuse other files with a message naming them."""
    path = Path(path)
    if not path.is_file():
        raise GalleryError(f"{path}: feature file not found")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("paths", "pids", "camids", "features", "spec") if k not in data.files]
                if missing:
                    raise GalleryError(f"{path}: not a maskreid feature file (missing arrays {missing})")
                spec = _spec(str(data["spec"]), path)
                return FeatureTable(data["paths"].tolist(), _ids(data["pids"]), _ids(data["camids"]),
                                    data["features"].astype(np.float32, copy=False), spec)
        except (OSError, ValueError) as err:
            raise GalleryError(f"{path}: not a readable .npz file ({err})") from err
    if path.suffix == ".parquet":
        chunks = list(iter_feature_chunks(path, 1 << 20))
        if not chunks:
            raise GalleryError(f"{path}: holds no features")
        return FeatureTable(sum((c.paths for c in chunks), []), sum((c.pids for c in chunks), []),
                            sum((c.camids for c in chunks), []), np.concatenate([c.features for c in chunks]),
                            chunks[0].spec)
    raise GalleryError(f"{path}: feature files end in {' or '.join(FEATURE_SUFFIXES)}")


def iter_feature_chunks(path: Path, chunk: int) -> Iterator[FeatureTable]:
    """A .parquet feature file in pieces of at most `chunk` rows: memory bounded by `chunk`, not the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as err:
        raise GalleryError(f"{path}: not a readable .parquet file ({err})") from err
    meta = reader.schema_arrow.metadata or {}
    if SPEC_KEY.encode() not in meta:
        raise GalleryError(f"{path}: a .parquet file without maskreid's model description; "
                           "write feature files with `maskreid extract`")
    spec = _spec(meta[SPEC_KEY.encode()].decode(), path)
    for batch in reader.iter_batches(batch_size=chunk, columns=["path", "pid", "camid", "feature"]):
        width = batch.schema.field("feature").type.list_size
        flat = batch.column("feature").flatten().to_numpy(zero_copy_only=False)
        yield FeatureTable(batch.column("path").to_pylist(), batch.column("pid").to_pylist(),
                           batch.column("camid").to_pylist(),
                           flat.reshape(-1, width).astype(np.float32, copy=False), spec)


def _spec(text: str, path: Path) -> ModelSpec:
    try:
        return ModelSpec.from_dict(json.loads(text), str(path))
    except (ValueError, ModelSpecError) as err:
        raise GalleryError(f"{path}: {err}") from err


def _nullable(values: list[int | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def _ids(values: np.ndarray) -> list[int | None]:
    return [None if np.isnan(v) else int(v) for v in values.astype(np.float64)]


def _arrow_schema(spec: ModelSpec, dim: int):
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("pid", pa.int64()), ("camid", pa.int64()),
                      ("feature", pa.list_(pa.float32(), dim))], metadata={SPEC_KEY: spec.to_json()})


def _arrow_rows(table: FeatureTable, start: int, stop: int):
    import pyarrow as pa

    feats = np.ascontiguousarray(table.features[start:stop], dtype=np.float32)
    return pa.table({"path": pa.array(table.paths[start:stop], pa.string()),
                     "pid": pa.array(table.pids[start:stop], pa.int64()),
                     "camid": pa.array(table.camids[start:stop], pa.int64()),
                     "feature": pa.FixedSizeListArray.from_arrays(pa.array(feats.ravel()), feats.shape[1])},
                    schema=_arrow_schema(table.spec, feats.shape[1]))
