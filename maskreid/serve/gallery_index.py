"""A gallery ready to search: given as a folder of images (embedded once, the features cached), a feature file,
or a .parquet file streamed into the index; in every case embedded by the same model as the query, or refused."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from maskreid.io import files_key
from maskreid.models.spec import ModelSpec
from maskreid.serve.gallery import (
    FeatureTable,
    GalleryError,
    StreamedGallery,
    collect_images,
    extract_files,
    iter_feature_chunks,
    load_features,
    save_features,
)
from maskreid.serve.inference import Embedder
from maskreid.serve.search import GalleryIndex, IndexSettings, build_index


def check_same_model(found: ModelSpec, expected: ModelSpec, gallery: Path, model: Path) -> None:
    """Features of another model live in another space: searching them with this model's query is meaningless."""
    if found != expected:
        raise GalleryError(f"{gallery}: features made by another model ({found.backbone}, trained on "
                           f"{found.dataset}, params {found.params_hash}) than {model}")


def cache_name(gallery: Path, model: Path) -> str:
    """The stem of one (gallery folder, model) pair's cache: the folder's name and a key of both absolute paths,
    so two galleries with the same folder name, or one gallery under two models, never share or delete a cache."""
    pair = f"{gallery.resolve()}\0{model.resolve()}"
    return f"{gallery.resolve().name}-{files_key([], salt=pair)[:12]}"


def cached_features(gallery: Path, model: Path, embedder: Embedder, cache_dir: Path,
                    batch_size: int) -> tuple[FeatureTable, str | None]:
    """A feature file as given, or a folder's features, extracted once and cached in cache_dir (reused while
    neither the images nor the model change; the pair's older cache is replaced); says where they came from."""
    if gallery.is_file():
        return load_features(gallery), None
    files = collect_images([gallery])
    stem = cache_name(gallery, model)
    cache = cache_dir / f"{stem}.features-{files_key([Path(p).resolve() for p in [model, *files]])}.npz"
    if cache.is_file():
        return load_features(cache), f"gallery features reused from {cache}"
    table = extract_files(embedder, files, batch_size, "skip")
    for old in cache_dir.glob(f"{stem}.features-*.npz"):
        old.unlink()
    save_features(table, cache)
    skipped = f"; {len(table.skipped)} undecodable image(s) skipped" if table.skipped else ""
    return table, f"gallery features of {len(table)} images cached in {cache}{skipped}"


def streamed_gallery(gallery: Path, spec: ModelSpec, model: Path, settings: IndexSettings,
                     chunk: int) -> tuple[StreamedGallery, str]:
    """A .parquet gallery read `chunk` rows at a time into the index: only the index and the file names
    stay in memory."""
    paths: list[str] = []
    pids: list[int | None] = []

    def features() -> Iterator[np.ndarray]:
        for part in iter_feature_chunks(gallery, chunk):
            check_same_model(part.spec, spec, gallery, model)
            paths.extend(part.paths)
            pids.extend(part.pids)
            yield part.features

    index: GalleryIndex = build_index(features(), spec.embedding_dim, settings)
    return (StreamedGallery(paths, pids, index),
            f"gallery of {len(paths)} features read from {gallery} in chunks of {chunk}")


def searchable_gallery(gallery: Path, model: Path, embedder: Embedder, cache_dir: Path, settings: IndexSettings,
                       batch_size: int, chunk: int) -> tuple[FeatureTable | StreamedGallery, GalleryIndex, str | None]:
    """The gallery's names and ids, its search index, and a note on where its features came from."""
    if not gallery.exists():
        raise GalleryError(f"{gallery}: gallery folder or feature file not found")
    if gallery.suffix == ".parquet":
        streamed, note = streamed_gallery(gallery, embedder.spec, model, settings, chunk)
        return streamed, streamed.index, note      # type: ignore[return-value]
    table, note = cached_features(gallery, model, embedder, cache_dir, batch_size)
    check_same_model(table.spec, embedder.spec, gallery, model)
    index = build_index([table.features], table.features.shape[1], settings, expected_size=len(table))
    return table, index, note
