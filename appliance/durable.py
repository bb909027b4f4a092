"""Durable file writes outside the database: a file the outbox or the appliance relies on after a power cut
must be whole or absent, and its directory entry must be on disk too (a rename or a new file is only
durable once its directory is fsync'd)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make the entries of ``directory`` (files created or renamed in it) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: written to a temporary file in the same directory (created with
    ``mode``), fsync'd, renamed over ``path`` and the directory fsync'd, so a reader or a power cut sees
    the old content or the new, never a part."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_dir(path.parent)
