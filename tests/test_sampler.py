from collections import Counter

import pytest

from maskreid.data.sampler import PKSampler


def test_every_batch_is_p_ids_times_k_images() -> None:
    pids = [i // 6 for i in range(60)]             # 10 ids x 6 images
    sampler = PKSampler(pids, p=4, k=3, seed=0)
    batches = list(sampler)
    assert 4 <= len(batches) <= 5 == len(sampler)  # 20 chunks of 3, 4 per batch, until < P ids have chunks
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
