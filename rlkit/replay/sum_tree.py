"""A sum tree in one flat float64 array, updated and searched a whole batch at a time.

Prioritised replay (Schaul et al. 2016, "Prioritized Experience Replay", Sec. 3.3) samples
transition ``i`` with probability ``p_i / sum_k p_k``. A binary tree whose internal nodes hold
the sum of their children gives both the total (the root) and an O(log n) inverse-CDF search.

Layout: the leaf count is padded to a power of two ``P`` so every leaf sits at the same depth and
leaf order equals slot order; node 1 is the root, node ``i`` has children ``2i`` and ``2i + 1``,
and the leaves are nodes ``P .. 2P - 1`` (node 0 is unused). Padding leaves hold 0 forever, so
any capacity works. float64 because float32 loses mass precision at a million leaves.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Non-negative values at ``capacity`` leaves with batched set, get and prefix-sum search."""

    def __init__(self, capacity: int) -> None:
        if int(capacity) < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._leaf0 = 1 << max(0, (self.capacity - 1).bit_length())
        self._depth = self._leaf0.bit_length() - 1
        self.tree = np.zeros(2 * self._leaf0, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self.tree[1])

    @property
    def nbytes(self) -> int:
        return self.tree.nbytes

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf values at ``indices``."""
        return self.tree[self._leaf0 + self._check(indices)]

    def set(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values``; for a repeated index the last write wins.

        Parents are recomputed as ``left + right`` level by level (never updated by deltas), so
        rounding errors cannot accumulate over millions of updates.
        """
        idx = self._check(indices)
        vals = np.broadcast_to(np.asarray(values, dtype=np.float64), idx.shape).ravel()
        if idx.size == 0:
            return
        if not np.all(np.isfinite(vals)) or np.any(vals < 0):
            raise ValueError("SumTree values must be finite and >= 0")
        # Last write wins: np.unique keeps the first occurrence, so search the reversed array.
        uniq, first_in_reversed = np.unique(idx[::-1], return_index=True)
        self.tree[self._leaf0 + uniq] = vals[::-1][first_in_reversed]
        nodes = (self._leaf0 + uniq) >> 1
        for _ in range(self._depth):
            nodes = np.unique(nodes)
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            nodes >>= 1

    def find_prefix(self, values: np.ndarray) -> np.ndarray:
        """For each ``v`` in ``[0, total)``, the leaf ``i`` with ``S(i) <= v < S(i) + p_i``.

        ``S(i)`` is the sum of the leaves before ``i``. The whole batch descends the tree
        together, one vectorised step per level. A step never enters a zero-mass right child,
        so rounding at a boundary (or ``v == total``) still returns a leaf with positive mass.
        """
        if self.total <= 0.0:
            raise ValueError("SumTree.find_prefix needs a positive total; set some leaves first")
        v = np.asarray(values, dtype=np.float64).copy()
        node = np.ones(v.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * node
            left_mass = self.tree[left]
            go_right = (v >= left_mass) & (self.tree[left + 1] > 0.0)
            v -= np.where(go_right, left_mass, 0.0)
            node = left + go_right
        return node - self._leaf0

    def _check(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise IndexError(
                f"SumTree index out of range [0, {self.capacity}): got {idx.min()}..{idx.max()}"
            )
        return idx
