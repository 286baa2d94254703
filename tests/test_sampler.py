from collections import Counter

import numpy as np
import pytest

from maskreid.data.sampler import PKSampler


def test_every_batch_is_p_ids_times_k_images() -> None:
    pids = [i // 6 for i in range(60)]             # 10 ids x 6 images
    sampler = PKSampler(pids, p=4, k=3, seed=0)
    expected = len(sampler)
    batches = list(sampler)
    # 20 chunks of 3, 4 ids per batch, until fewer than P ids have chunks left: 4 or 5 batches by the draw,
    # and len() says which
    assert len(batches) == expected and expected in (4, 5)
    for batch in batches:
        counts = Counter(pids[i] for i in batch)
        assert len(batch) == 12 and len(counts) == 4 and set(counts.values()) == {3}
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen)) >= 48         # an epoch uses an image at most once


def test_ids_with_fewer_than_k_images_are_sampled_with_replacement() -> None:
    pids = [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    with pytest.warns(UserWarning, match="1 of 4 identities have fewer than K=3"):
        sampler = PKSampler(pids, p=4, k=3, seed=1)
    batch = next(iter(sampler))
    assert batch.count(0) == 3                       # the only image of id 0, three times
    assert Counter(pids[i] for i in batch) == {0: 3, 1: 3, 2: 3, 3: 3}


def test_seeded_and_reproducible() -> None:
    pids = [i // 4 for i in range(80)]
    assert list(PKSampler(pids, 5, 2, seed=3)) == list(PKSampler(pids, 5, 2, seed=3))
    assert list(PKSampler(pids, 5, 2, seed=3)) != list(PKSampler(pids, 5, 2, seed=4))


def test_fewer_identities_than_p_still_gives_valid_batches_and_says_so() -> None:
    with pytest.warns(UserWarning, match="only 2 identities for P=4"):
        sampler = PKSampler([0, 0, 1, 1, 1], p=4, k=3, seed=0)
    batches = list(sampler)
    assert len(batches) == 1
    assert len(batches[0]) == 12
    for start in range(0, 12, 3):                      # K consecutive images of one identity each
        group = {[0, 0, 1, 1, 1][i] for i in batches[0][start:start + 3]}
        assert len(group) == 1


def test_empty_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="non-empty training split"):
        PKSampler([], p=4, k=3, seed=0)


@pytest.mark.parametrize("seed", range(20))
def test_len_is_the_exact_number_of_batches_the_epoch_yields(seed: int) -> None:
    """Identities of very different sizes: how many batches an epoch holds depends on the draw."""
    rng = np.random.default_rng(seed)
    pids = [pid for pid in range(12) for _ in range(int(rng.integers(2, 15)))]
    sampler = PKSampler(pids, p=4, k=2, seed=seed)
    for _ in range(3):                              # several epochs from the same generator
        expected = len(sampler)
        assert len(sampler) == expected             # asking twice draws nothing new
        batches = list(sampler)
        assert len(batches) == expected
    with_replacement = PKSampler([0, 0, 1, 1, 1], p=4, k=3, seed=seed)
    assert len(with_replacement) == len(list(with_replacement))
