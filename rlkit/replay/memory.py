"""Warn before a replay buffer is built that cannot fit in the machine's memory.

numpy allocates zeroed arrays lazily, so an oversized buffer is created without complaint and the
process is killed hours later when the pages are finally touched. Checking at construction turns
that into a warning the user sees at once.
"""

from __future__ import annotations

import os
import warnings


def available_memory_bytes() -> int | None:
    """Memory the OS can give us now: Linux ``MemAvailable``, else free pages; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def warn_if_too_large(nbytes: int, what: str) -> None:
    """Emit a ``UserWarning`` when ``nbytes`` exceeds the memory available right now."""
    available = available_memory_bytes()
    if available is not None and nbytes > available:
        warnings.warn(
            f"{what} needs {nbytes / 1e9:.2f} GB but only {available / 1e9:.2f} GB of memory is "
            "available; lower `capacity` or the process may be killed once the buffer fills",
            UserWarning,
            stacklevel=3,
        )
