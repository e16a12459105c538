"""Replay buffers (numpy only): frame-deduplicated uniform and prioritised replay, n-step returns.

``ReplayBuffer`` and ``PrioritizedReplayBuffer`` store each Atari frame once (at most 7.2 KB per
transition at ``(4, 84, 84)``), rebuild stacks at sample time, and return a ``Batch`` of numpy
arrays. ``SumTree`` is the flat float64 tree behind prioritised sampling.
"""

from rlkit.replay.buffer import Batch, ReplayBuffer
from rlkit.replay.prioritized import PrioritizedReplayBuffer
from rlkit.replay.sum_tree import SumTree

__all__ = ["Batch", "PrioritizedReplayBuffer", "ReplayBuffer", "SumTree"]
