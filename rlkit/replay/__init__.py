"""Replay buffers (numpy only): frame-deduplicated storage, n-step returns, pluggable sampling.

``ReplayBuffer`` stores each Atari frame once (at most 7.2 KB per transition at ``(4, 84, 84)``),
rebuilds stacks at sample time, and returns a ``Batch`` of numpy arrays. Which transitions a
batch holds is its sampler's choice: ``UniformSampler`` (the default) or ``ProportionalSampler``
(prioritised replay on a ``SumTree``, the flat float64 tree); ``PrioritizedReplayBuffer`` is the
buffer with the latter. Learners call ``sample`` and ``update_priorities`` alike for both.
"""

from rlkit.replay.buffer import Batch, ReplayBuffer
from rlkit.replay.prioritized import PrioritizedReplayBuffer
from rlkit.replay.samplers import ProportionalSampler, Sampler, SlotLayout, UniformSampler
from rlkit.replay.sum_tree import SumTree

__all__ = [
    "Batch",
    "PrioritizedReplayBuffer",
    "ProportionalSampler",
    "ReplayBuffer",
    "Sampler",
    "SlotLayout",
    "SumTree",
    "UniformSampler",
]
