"""Files at rest are private (DESIGN.md section 10): folders 0700, files 0600, whatever the caller's umask.

Every folder and file the service creates in its data folder (SQLite database, blob store, development secrets)
goes through these helpers.  The modes are set explicitly, so a umask of 022 (or 000) cannot widen them; an umask
can only narrow them further.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing folder is left as it is.

    Returns ``path``.  Raises :class:`OSError` when it cannot be created.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created concurrently
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask; make it exact
    return path


def restrict_dir(path: Path) -> None:
    """Make an existing folder of ours 0700 (a data folder created by an older version or another tool)."""
    if path.is_dir() and os.stat(path).st_uid == os.geteuid():
        os.chmod(path, DIR_MODE)


def create_private_file(path: Path, *, exclusive: bool = True) -> int:
    """Open ``path`` for writing, created with mode 0600; returns the OS file descriptor (caller closes it).

    Args:
        exclusive: fail with :class:`FileExistsError` when the file exists (``O_EXCL``); else truncate it.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    descriptor = os.open(path, flags, FILE_MODE)
    os.fchmod(descriptor, FILE_MODE)
    return descriptor


def touch_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (an existing file keeps its content and mode).

    Used for the SQLite database file: SQLite creates its ``-wal`` and ``-shm`` files with the mode of the
    database file, so all three end up 0600.
    """
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(create_private_file(path))
