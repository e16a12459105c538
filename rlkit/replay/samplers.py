"""Samplers: which stored transitions a replay batch holds, and their importance weights.

The replay storage (``ReplayBuffer``) keeps transitions and knows which of them can be sampled;
a sampler decides how to draw among those. Both samplers here follow one protocol
(``Sampler``), so a learner calls ``sample`` and ``update_priorities`` the same way whatever the
sampler: uniform sampling is proportional sampling with ``alpha = 0``, whose importance weights
are all 1 for any ``beta`` and which has no priorities to update.

What a sampler may read of the storage is the small public ``SlotLayout``: the storage's slots
are split into one contiguous block per env, transition ``j`` of env ``e`` (counted over the
env's whole history) lives in slot ``env_offsets[e] + j % env_capacities[e]``, and env ``e``'s
sampleable transitions are the contiguous range ``lo <= j < hi`` that ``sampleable()`` returns.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from rlkit.replay.sum_tree import SumTree

# Keeps p**alpha from underflowing to 0, which would make a live slot look unsampleable.
_MIN_MASS = np.finfo(np.float64).tiny


class SlotLayout(Protocol):
    """What a replay storage tells its sampler (see the module docstring)."""

    capacity: int
    """Transition slots, over all envs."""
    env_offsets: np.ndarray
    """int64 ``(num_envs,)``: first slot of each env's block."""
    env_capacities: np.ndarray
    """int64 ``(num_envs,)``: slots in each env's block."""

    def sampleable(self) -> list[tuple[int, int]]:
        """Per env, the range ``[lo, hi)`` of transition numbers that can be sampled now."""
        ...


class Sampler(Protocol):
    """How a replay storage draws a batch. The storage calls ``attach`` once it is built and
    again after ``load_state_dict`` replaced its contents, and ``added`` after every ``add``.

    ``kind`` and ``config()`` go into the storage's checkpoint so that a saved buffer is only
    loaded into one that samples the same way.
    """

    kind: str

    @property
    def nbytes(self) -> int:
        """Bytes of the sampler's own arrays (counted in the buffer's ``nbytes``)."""
        ...

    def attach(self, layout: SlotLayout) -> None:
        """Sample from ``layout`` from now on; its contents are what the sampler's state says."""
        ...

    def added(self) -> None:
        """The storage's sampleable set may have changed (an ``add`` returned)."""
        ...

    def sample(self, batch_size: int, beta: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``batch_size`` slots (int64) and their float32 importance weights (largest 1) for
        importance-sampling exponent ``beta`` (None: the sampler's default); raises
        ``LookupError`` when nothing is sampleable."""
        ...

    def update(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """New priorities for sampled ``slots`` (the TD errors of their last update)."""
        ...

    def config(self) -> dict[str, Any]:
        """Settings a checkpoint must match."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; keys must not clash with the storage's."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``'s entries; raises ``ValueError`` before changing anything
        if they do not fit this sampler."""
        ...


class UniformSampler:
    """Every sampleable transition equally likely, with replacement; weights are all 1 and
    priority updates are ignored.

    Args:
        seed: seed of the sampler's own ``np.random.Generator`` (never the global state).
    """

    kind = "ReplayBuffer"  # the name checkpoints have always recorded for uniform replay

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        self._layout: SlotLayout | None = None

    @property
    def nbytes(self) -> int:
        return 0

    def attach(self, layout: SlotLayout) -> None:
        self._layout = layout
        self._off, self._cap = layout.env_offsets, layout.env_capacities

    def added(self) -> None:
        pass

    def sample(self, batch_size: int, beta: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Uniform draws; ``beta`` has no effect (uniform weights are 1 for every ``beta``)."""
        layout = self._attached()
        ranges = layout.sampleable()
        if len(ranges) == 1:
            ((lo, hi),) = ranges
            if hi <= lo:
                raise LookupError("no transition is sampleable")
            j = self._rng.integers(hi - lo, size=batch_size) + lo
            slots = j % int(self._cap[0]) + int(self._off[0])
        else:
            lo_hi = np.array(ranges, np.int64)
            sizes = lo_hi[:, 1] - lo_hi[:, 0]
            total = int(sizes.sum())
            if total == 0:
                raise LookupError("no transition is sampleable")
            u = self._rng.integers(total, size=batch_size)
            ends = np.cumsum(sizes)
            env = np.searchsorted(ends, u, side="right")
            j = lo_hi[env, 0] + u - (ends - sizes)[env]
            slots = self._off[env] + j % self._cap[env]
        return slots, np.ones(batch_size, np.float32)

    def update(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Uniform sampling has no priorities: nothing to do."""

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]

    def _attached(self) -> SlotLayout:
        if self._layout is None:
            raise RuntimeError("this sampler is not attached to a replay buffer yet")
        return self._layout


class ProportionalSampler:
    """Proportional prioritised replay (Schaul et al. 2016, "Prioritized Experience Replay").

    Transition ``i`` is drawn with ``P(i) = p_i**alpha / sum_k p_k**alpha`` (Eq. 1) and corrected
    with importance weights ``w_i = (N * P(i))**-beta / max_j w_j`` (Sec. 3.4). The sum tree
    holds ``p_i**alpha`` for exactly the transitions that can be sampled now and 0 for every
    other slot: a transition gets mass when it becomes sampleable (at the largest priority seen
    so far, so every transition is replayed at least once with high probability, Sec. 3.3) and
    loses it when its slot or one of its frames is overwritten.

    Args:
        alpha: prioritisation exponent (0 = uniform).
        beta: default importance-sampling exponent; pass ``beta`` to ``sample`` to anneal it.
        eps: added to ``|priority|`` so no transition gets probability 0.
        seed: seed of the sampler's own ``np.random.Generator``.
    """

    kind = "PrioritizedReplayBuffer"  # the name checkpoints have always recorded for PER

    def __init__(
        self,
        *,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        seed: int | None = None,
    ) -> None:
        if not float(alpha) >= 0.0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not float(beta) >= 0.0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not float(eps) > 0.0:
            raise ValueError(f"eps must be > 0 so every priority stays positive, got {eps}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.eps = float(eps)
        self._tree = SumTree(1)  # sized to the storage by attach
        self._rng = np.random.default_rng(seed)
        self._max_priority = 1.0
        # p >= eps, so p**alpha can only reach 0 when eps**alpha underflows (a huge alpha).
        self._mass_can_underflow = not self.eps**self.alpha >= 4 * _MIN_MASS
        # The learner's usual call, update(batch.indices) right after sample() with no add in
        # between, needs neither the range check nor the liveness mask: every slot sample()
        # returns is in range and has mass, and only an add takes mass away.
        self._adds = 0
        self._last_drawn: tuple[np.ndarray | None, int] = (None, -1)
        self._layout: SlotLayout | None = None
        self._seen: list[tuple[int, int]] = []

    @property
    def nbytes(self) -> int:
        return self._tree.nbytes

    def attach(self, layout: SlotLayout) -> None:
        if self._tree.capacity != layout.capacity:  # one leaf per slot
            self._tree = SumTree(layout.capacity)
        self._layout = layout
        self._off = layout.env_offsets.tolist()  # Python ints: added() runs once per env step
        self._cap = layout.env_capacities.tolist()
        self._seen = layout.sampleable()
        self._last_drawn = (None, -1)

    def added(self) -> None:
        """Zero the slots that stopped being sampleable and give the new ones the max priority."""
        self._adds += 1
        assert self._layout is not None
        now = self._layout.sampleable()
        gone: list[int] = []
        new: list[int] = []
        for (lo_before, hi_before), (lo_after, hi_after), off, cap in zip(
            self._seen, now, self._off, self._cap, strict=True
        ):
            # Ranges only move forward: [lo, hi) loses a prefix and gains a suffix.
            gone.extend(off + j % cap for j in range(lo_before, min(hi_before, lo_after)))
            new.extend(off + j % cap for j in range(max(hi_before, lo_after), hi_after))
        self._seen = now
        if gone or new:
            # Zeros first, then new mass: a slot reused in this add ends with the new value.
            values = [0.0] * len(gone) + [max(self._max_priority**self.alpha, _MIN_MASS)] * len(new)
            self._tree.assign(np.array(gone + new, np.int64), np.array(values))

    def sample(self, batch_size: int, beta: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stratified proportional sample: one uniform draw in each of ``batch_size`` segments
        of equal priority mass, then importance weights normalised by their batch maximum."""
        beta = self.beta if beta is None else float(beta)
        if not beta >= 0.0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        drawn = self._tree.stratified(batch_size, self._rng)
        if drawn is None:
            raise LookupError("no transition is sampleable")
        slots, mass = drawn
        # (N P_i)**-beta / max_j (N P_j)**-beta == (m_i / min_j m_j)**-beta with m = p**alpha:
        # N and the total cancel, which saves work on the hot path.
        mass /= mass.min()
        slots.flags.writeable = False  # so that the fast path in update holds
        self._last_drawn = (slots, self._adds)
        return slots, (mass**-beta).astype(np.float32)

    def update(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Set ``p_i = |priority| + eps`` for the sampled ``slots`` (the last of duplicates
        wins). Slots that stopped being sampleable since they were drawn keep zero mass."""
        idx = np.asarray(slots, dtype=np.int64).ravel()
        pri = np.asarray(priorities, dtype=np.float64).ravel()
        if idx.shape != pri.shape:
            raise ValueError(
                f"update_priorities got {idx.size} indices but {pri.size} priorities; "
                "pass one priority per sampled index"
            )
        if idx.size == 0:
            return
        p = np.abs(pri)
        p += self.eps
        largest = float(p.max())  # NaN and inf propagate into the maximum
        if not math.isfinite(largest):
            raise ValueError("update_priorities got a non-finite priority (NaN or inf TD error)")
        just_drawn = slots is self._last_drawn[0] and self._adds == self._last_drawn[1]
        # Viewed as unsigned, a negative index is huge: one reduction checks both bounds.
        capacity = self._tree.capacity
        if not just_drawn and idx.view(np.uint64).max() >= capacity:
            raise ValueError(
                f"update_priorities index out of range [0, {capacity}): pass Batch.indices"
            )
        self._max_priority = max(self._max_priority, largest)
        mass = np.power(p, self.alpha, out=p)
        if self._mass_can_underflow:
            np.maximum(mass, _MIN_MASS, out=mass)
        if not just_drawn:
            # Invariant: a slot has mass exactly when it is sampleable, so a slot that was
            # overwritten or lost its frames since it was drawn is set to (stays at) zero.
            np.multiply(mass, self._tree.leaves.take(idx) > 0.0, out=mass)
        self._tree.assign(idx, mass)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "alpha": self.alpha}

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "priorities": self._tree.tree,
            "max_priority": self._max_priority,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        nodes = np.shape(state.get("priorities", ()))
        if nodes != self._tree.tree.shape:  # before anything is restored
            raise ValueError(
                f"replay state_dict holds {np.prod(nodes):.0f} sum-tree nodes where this buffer's "
                f"tree has {self._tree.tree.size}: it was saved by an rlkit with another tree "
                "layout; start with an empty buffer instead of restoring this one"
            )
        self._rng.bit_generator.state = state["rng"]
        self._tree.tree[:] = state["priorities"]
        self._max_priority = float(state["max_priority"])
        self._last_drawn = (None, -1)
