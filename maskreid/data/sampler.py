"""PK sampling for batch-hard triplet mining: P identities x K images per batch.

An epoch follows torchreid's RandomIdentitySampler: each identity's images are shuffled and cut into
chunks of K (identities with fewer than K images are topped up by sampling with replacement); batches take
one chunk from each of P randomly chosen identities until fewer than P identities have chunks left.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np


class PKSampler:
    """Yields lists of P*K dataset indices, each list holding exactly P distinct ids with K images each."""

    def __init__(self, pids: Sequence[int], p: int, k: int, seed: int) -> None:
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)
        by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            by_pid[int(pid)].append(index)
        self.by_pid = dict(by_pid)
        if not self.by_pid:
            raise ValueError("PK sampling needs a non-empty training split")
        few = sum(1 for v in self.by_pid.values() if len(v) < k)
        self.ids_with_replacement = len(self.by_pid) < p
        if self.ids_with_replacement:
            warnings.warn(f"only {len(self.by_pid)} identities for P={p} per batch; identities are sampled with "
                          "replacement, so a batch may hold one identity more than once", stacklevel=2)
        if few:
            warnings.warn(f"{few} of {len(self.by_pid)} identities have fewer than K={k} images; their images "
                          "are sampled with replacement", stacklevel=2)
        self._planned: list[list[int]] | None = None

    def _chunks(self) -> dict[int, list[list[int]]]:
        chunks: dict[int, list[list[int]]] = {}
        for pid, idx in self.by_pid.items():
            pool = list(self.rng.permutation(idx))
            if len(pool) < self.k:
                pool = list(self.rng.choice(idx, size=self.k, replace=True))
            chunks[pid] = [pool[i:i + self.k] for i in range(0, len(pool) - self.k + 1, self.k)]
        return chunks

    def _plan(self) -> list[list[int]]:
        """The next epoch's batches, drawn once: how many there are depends on the draw (an epoch ends when
        fewer than P identities have images left), so len() and iteration must share it."""
        if self._planned is None:
            self._planned = list(self._batches_with_replacement() if self.ids_with_replacement else self._draw())
        return self._planned

    def __iter__(self) -> Iterator[list[int]]:
        plan, self._planned = self._plan(), None
        yield from plan

    def __len__(self) -> int:
        """The exact number of batches of the next epoch (iterating it draws no other one)."""
        return len(self._plan())

    def _draw(self) -> Iterator[list[int]]:
        chunks = self._chunks()
        available = [pid for pid, c in chunks.items() if c]
        while len(available) >= self.p:
            chosen = self.rng.choice(available, size=self.p, replace=False)
            batch: list[int] = []
            for pid in chosen.tolist():
                batch.extend(int(i) for i in chunks[pid].pop())
            available = [pid for pid in available if chunks[pid]]
            yield batch

    def _batches_with_replacement(self) -> Iterator[list[int]]:
        """Fewer identities than P: each batch draws P identities with replacement, K images each."""
        pids = sorted(self.by_pid)
        for _ in range(self._expected_batches()):
            batch: list[int] = []
            for pid in self.rng.choice(pids, size=self.p, replace=True).tolist():
                idx = self.by_pid[pid]
                batch.extend(int(i) for i in self.rng.choice(idx, size=self.k, replace=len(idx) < self.k))
            yield batch

    def _expected_batches(self) -> int:
        """Batches per epoch when identities are drawn with replacement: every image once on average."""
        total = sum(max(1, len(v) // self.k) for v in self.by_pid.values())
        return max(1, total // self.p)
