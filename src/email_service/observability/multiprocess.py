"""The Prometheus multiprocess folder of a process group, prepared before :mod:`prometheus_client` is imported.

prometheus_client chooses where samples live when it is first imported: with ``PROMETHEUS_MULTIPROC_DIR`` set,
in memory-mapped files of that folder (one per process, merged at scrape time).  So this module must not import
it (nor :mod:`.metrics`): the command line calls :func:`prepare_multiprocess_dir` first, then loads the app or the
worker, whose pool processes inherit the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from email_service.fs import private_dir

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: Path) -> Path:
    """Make ``path`` (created 0700) the multiprocess folder of this process and its children, emptied of the
    sample files (``*.db``, nothing else) of a previous run, as prometheus_client asks.  The folder belongs to one
    process group (one ``serve`` or one ``worker``).  Returns ``path``.

    Raises:
        RuntimeError: prometheus_client was imported already (it would ignore the folder).
    """
    import sys

    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROC_ENV) != str(path):
        raise RuntimeError("prepare_multiprocess_dir() must run before prometheus_client is imported")
    private_dir(path)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path
