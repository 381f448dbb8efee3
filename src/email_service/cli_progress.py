"""The progress display of ``email-service sync`` (issue 7, "Sync progress").

Progress goes to standard error, so standard output keeps exactly one line, the outcome as JSON, for scripts:
on a terminal a ``tqdm`` bar (percentage, current folder, its fetched/expected new messages, folders done/total);
otherwise plain lines: one when a folder starts, one when its count of new messages is known, and at most one
every ``every`` seconds while it fetches them.
"""

from __future__ import annotations

import shutil
import sys
import time
from types import TracebackType
from typing import Any, Self, TextIO

from email_service.sync.progress import SyncProgress


class SyncProgressDisplay:
    """A callable for ``sync_account(on_progress=...)``; use as a context manager (closes the bar)."""

    def __init__(self, stream: TextIO | None = None, *, every: float = 2.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every
        self._bar: Any = None
        self._shown: tuple[str | None, int] = (None, 0)
        self._printed_at = 0.0
        if self.stream.isatty():
            from tqdm import tqdm  # imported only for a terminal: keeps other commands' start-up light

            size = shutil.get_terminal_size()  # 80x24 when the terminal reports none (tqdm would then draw nothing)
            self._bar = tqdm(
                total=100.0,
                file=self.stream,
                ncols=size.columns,
                nrows=size.lines,
                bar_format="{l_bar}{bar}| {n:.0f}%{postfix}",
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()

    def __call__(self, progress: SyncProgress) -> None:
        counts = progress.counts
        where = f"folder {min(counts.folders_done + 1, counts.folders_total)}/{counts.folders_total}"
        fetched = f"{progress.folder_fetched}/{progress.folder_expected} new messages"
        if self._bar is not None:
            if progress.folder is not None:
                self._bar.set_description_str(progress.folder, refresh=False)
            self._bar.set_postfix_str(f"{fetched}, {where}", refresh=False)
            self._bar.update(progress.percent - self._bar.n)
            return
        news = (progress.folder, progress.folder_expected) != self._shown
        self._shown = (progress.folder, progress.folder_expected)
        now = time.monotonic()
        if progress.folder is not None and (news or now - self._printed_at >= self.every):
            self._printed_at = now
            print(
                f"sync: {progress.folder}: {fetched} ({where}, {progress.percent:.0f}%)", file=self.stream, flush=True
            )
