"""Safe file output: atomic writes, and checking that an output can be written before the work
that produces it.

``atomic_write`` is the one writer of every checkpoint, config and result file: it writes a
temporary file ``.<name>.<random>.tmp`` in the target's directory, flushes and fsyncs it, then
``os.replace``-s it over the target, so a crash or Ctrl-C mid-write leaves the previous file
intact, never a truncated one. A writer killed outright (``kill -9``, power loss) cannot delete its
temporary file; the next write of the same target, or ``remove_stale_temps`` on the directory,
does.

A run or an evaluation that fails at its very end, because its output path is a directory, sits
under a file, or lies in a read-only directory, loses the work. ``check_writable`` finds these
problems up front, without creating anything, so a refused command leaves no debris.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
"""Suffix of ``atomic_write``'s temporary files (``.<target name>.<random>.tmp``)."""


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


def _file_mode() -> int:
    """Permissions of a plain ``open(path, "w")`` under this process's umask (``mkstemp``'s own
    0600 would make configs and checkpoints unreadable to the user's other accounts and tools)."""
    try:  # Linux: read the umask without changing it (os.umask would, briefly, for all threads)
        status = Path("/proc/self/status").read_text()
        umask = int(
            next(line for line in status.splitlines() if line.startswith("Umask:")).split()[1], 8
        )
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


def remove_stale_temps(directory: str | Path, name: str | None = None) -> list[Path]:
    """Delete the temporary files that writes of ``name`` (None: of every target) in
    ``directory`` left behind when killed mid-write; returns what was removed. Call it only where
    no other write into ``directory`` is in progress (a run directory belongs to its one run)."""
    target = "*" if name is None else glob.escape(name)
    removed = []
    for path in Path(directory).glob(f".{target}.*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _fsync_directory(directory: Path) -> None:
    """Persist a rename (the directory entry); not every platform can open a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file to write; on a clean exit it atomically replaces ``path``.

    The parent directory is created if needed, and temporary files of ``path`` left by killed
    writes are removed first. On an exception (Ctrl-C included) the temporary file is deleted and
    ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (``atomic_write``); returns the path."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
    return Path(path)
