"""Gallery search: faiss's exact index gives the brute-force ranking; approximate ones are measured against it."""

from __future__ import annotations

import numpy as np
import pytest

from maskreid.serve.search import IndexSettings, SearchError, brute_force_search, build_index, recall_at_k


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Features like a re-ID gallery's: tight clusters (identities) around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + rng.normal(0, 0.3, (n, dim))).astype(np.float32)


def chunks(features: np.ndarray, size: int):
    for start in range(0, len(features), size):
        yield features[start:start + size]


@pytest.fixture(scope="module")
def gallery() -> np.ndarray:
    return clustered(20_000, 64, 500, seed=0)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    """50 new images of the gallery's identities (same centres: the same seed, 50 more draws)."""
    return clustered(20_050, 64, 500, seed=0)[20_000:]


def test_flat_index_is_the_brute_force_ranking(gallery: np.ndarray, queries: np.ndarray) -> None:
    exact_d, exact_i = brute_force_search(queries, chunks(gallery, 3_000), k=10)
    whole_d, whole_i = brute_force_search(queries, [gallery], k=10)
    np.testing.assert_array_equal(exact_i, whole_i)                       # chunking changes nothing
    index = build_index(chunks(gallery, 1_500), 64, IndexSettings("flat"))
    assert index.size == len(gallery)
    d, i = index.search(queries, 10)
    np.testing.assert_array_equal(i, exact_i)
    np.testing.assert_allclose(d, exact_d, atol=1e-3)                    # Euclidean, not squared
    full = np.linalg.norm(gallery[None] - queries[:, None], axis=2)
    np.testing.assert_allclose(d[:, 0], full.min(1), rtol=1e-5)


@pytest.mark.parametrize(("kind", "minimum"), [("ivf", 0.9), ("hnsw", 0.9)])
def test_approximate_indexes_report_recall(gallery: np.ndarray, queries: np.ndarray, kind: str,
                                           minimum: float) -> None:
    _, exact = brute_force_search(queries, [gallery], k=10)
    index = build_index(chunks(gallery, 4_000), 64, IndexSettings(kind, nprobe=16), expected_size=len(gallery),
                        ivf_sample=10_000)
    assert index.size == len(gallery)
    _, found = index.search(queries, 10)
    recall = recall_at_k(found, exact)
    assert minimum <= recall <= 1.0
    assert recall_at_k(exact[:, ::-1], exact) == 1.0 and recall_at_k(exact[:, :5], exact[:, 5:]) == 0.0


def test_small_galleries_and_bad_settings() -> None:
    tiny = clustered(7, 8, 2, seed=1)
    d, i = build_index([tiny], 8).search(tiny[:2], 10)                  # k larger than the gallery
    assert i.shape == (2, 7) and (i[:, 0] == [0, 1]).all() and d[0, 0] == pytest.approx(0, abs=1e-3)
    ivf = build_index([tiny], 8, IndexSettings("ivf"))                 # fewer images than a list needs
    assert ivf.search(tiny[:1], 3)[1][0, 0] == 0
    with pytest.raises(SearchError, match="the gallery is empty"):
        build_index([], 8).search(tiny[:1], 3)
    with pytest.raises(SearchError, match=r"features of shape \(7, 8\), expected \(N, 16\)"):
        build_index([tiny], 16)
    with pytest.raises(SearchError, match="index kind 'lsh'"):
        IndexSettings("lsh")
