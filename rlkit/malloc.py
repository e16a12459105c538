"""Keep glibc from handing large freed blocks back to the kernel between training steps.

Every forward pass allocates activations of a few MB. glibc serves blocks above its mmap threshold
with fresh ``mmap`` pages and unmaps them on free, so each update pays page faults and zeroing
for memory it used a moment ago. Raising the mmap and trim thresholds keeps that memory in the
heap for reuse. Measured on a 2-core CPU (Double DQN, NIPS net, batch 32, 8 Pong envs): 212 ->
265 agent steps/s. Elsewhere (musl, macOS, Windows) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1,
                      top_pad: int = 1 << 28) -> bool:
    """Tune glibc's ``mallopt`` for allocation-heavy training loops; ``False`` if unavailable.

    Blocks larger than ``mmap_threshold`` (replay storage) are still mapped on their own.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(option, value) == 1 for option, value in (
        (_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold),
        (_M_TOP_PAD, top_pad)))
