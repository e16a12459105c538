"""Safe file output: check that an output can be written before the work that produces it.

A run or an evaluation that fails at its very end, because its output path is a directory, sits
under a file, or lies in a read-only directory, loses the work. ``check_writable`` finds these
problems up front, without creating anything, so a refused command leaves no debris.
"""

from __future__ import annotations

import os
from pathlib import Path


class OutputPathError(ValueError):
    """An output path cannot be written; the message is one line naming the path and the fix."""


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (what a ``mkdir -p`` would start from)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_writable(path: str | Path, what: str, *, directory: bool = False) -> None:
    """Raise ``OutputPathError`` unless ``path`` can be written (created if missing).

    ``what`` names the path for the user (``"--json"``, ``"run directory"``); ``directory``:
    ``path`` is a directory to create or fill, else a file to create or overwrite. Nothing is
    created here.
    """
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} is a file, not a directory; pass a directory path")
    if not directory and path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; pass a file path")
    probe = _nearest_existing(path if directory else path.parent)
    if not probe.is_dir():
        raise OutputPathError(
            f"{what} {path} cannot be created: {probe} is a file, not a "
            "directory; pass a path under a directory"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{what} {path} cannot be written: no write permission in "
            f"{probe}; pass a path you can write"
        )
    if not directory and path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {path} is read-only; pass a path you can write")
