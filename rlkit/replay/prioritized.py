"""``PrioritizedReplayBuffer``: a ``ReplayBuffer`` whose sampler is a ``ProportionalSampler``.

The prioritisation itself (Schaul et al. 2016, sum tree, importance weights) lives in
``rlkit.replay.samplers``; this class only keeps the familiar constructor.
"""

from __future__ import annotations

from typing import Any

from rlkit.replay.buffer import ReplayBuffer
from rlkit.replay.samplers import ProportionalSampler


class PrioritizedReplayBuffer(ReplayBuffer):
    """``ReplayBuffer(..., sampler=ProportionalSampler(...))``: the same constructor plus
    ``alpha, beta, eps`` (see ``ProportionalSampler``); ``seed`` seeds the sampler.

    Args:
        alpha: prioritisation exponent (0 = uniform).
        beta: default importance-sampling exponent; pass ``beta`` to ``sample`` to anneal it.
        eps: added to ``|priority|`` so no transition gets probability 0.
    """

    sampler: ProportionalSampler

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        *,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        sampler = ProportionalSampler(alpha=alpha, beta=beta, eps=eps, seed=seed)
        super().__init__(capacity, obs_shape, sampler=sampler, **kwargs)
