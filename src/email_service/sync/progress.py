"""What a sync run has done so far, and where it is (issue 7, "Sync progress").

:class:`RunProgress` is shared by the mirror (folder steps, main thread) and its batch writer (writer thread).  The
run row (``email_sync_runs``) gets the figures cheaply: in the transaction that stores each batch of messages
(:meth:`RunProgress.run_values`), and otherwise at most once per ``interval`` seconds (:meth:`RunProgress.persist`),
so a sync that finds nothing writes nothing per folder.  An optional callback (the ``sync`` command's progress bar)
sees every step.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import Update, update

from email_service.models import SyncRun, now_ms
from email_service.services.context import ServiceContext
from email_service.services.sync_runs import progress_percent


@dataclass
class SyncCounts:
    """What one run did: folders listed/finished/synced/failed and messages added/updated/removed."""

    folders_total: int = 0
    folders_done: int = 0
    folders_synced: int = 0
    folders_failed: int = 0
    messages_added: int = 0
    messages_updated: int = 0
    messages_removed: int = 0


@dataclass(frozen=True)
class SyncProgress:
    """A snapshot for a progress display: ``folder`` is the folder being synced (``None`` between folders),
    ``folder_fetched`` of ``folder_expected`` its new messages stored so far, ``percent`` 0-100."""

    counts: SyncCounts
    folder: str | None
    folder_expected: int
    folder_fetched: int
    percent: float


ProgressCallback = Callable[[SyncProgress], None]


class RunProgress:
    """Counts and position of one run; thread-safe.

    Args:
        ctx, tenant_id, run_id: where to persist (the run row).
        on_progress: called with a :class:`SyncProgress` after every step (never from two threads at once).
        interval: least seconds between two writes of :meth:`persist` (batch transactions write regardless).
    """

    def __init__(
        self,
        ctx: ServiceContext,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        on_progress: ProgressCallback | None = None,
        interval: float = 1.0,
    ) -> None:
        self.ctx, self.tenant_id, self.run_id = ctx, tenant_id, run_id
        self.counts = SyncCounts()
        self.unchanged_folders: list[uuid.UUID] = []
        self.folder: str | None = None
        self.folder_expected = 0
        self.folder_fetched = 0
        self._on_progress = on_progress
        self._interval = interval
        self._persisted_at = time.monotonic()
        self._lock = threading.RLock()

    # -- steps ------------------------------------------------------------------------------------------------

    def start(self, folders_total: int) -> None:
        """The run found ``folders_total`` folders to sync."""
        with self._lock:
            self.counts.folders_total = folders_total
        self._changed()

    def enter_folder(self, name: str) -> None:
        """Syncing ``name`` starts (nothing known about its new messages yet)."""
        with self._lock:
            self.folder, self.folder_expected, self.folder_fetched = name, 0, 0
        self._changed()

    def expect(self, count: int) -> None:
        """The current folder has ``count`` new messages to fetch."""
        with self._lock:
            self.folder_expected, self.folder_fetched = count, 0
        self._changed(persist=count > 0)

    def stored(self, count: int) -> None:
        """``count`` new messages of the current folder are stored (called in the batch's transaction)."""
        with self._lock:
            self.counts.messages_added += count
            self.folder_fetched += count
        self._changed(persist=False)

    def updated(self, count: int) -> None:
        """``count`` stored messages got new flags."""
        with self._lock:
            self.counts.messages_updated += count

    def removed(self, count: int) -> None:
        """``count`` stored messages were removed (expunged on the server, or their folder was reset)."""
        with self._lock:
            self.counts.messages_removed += count

    def unchanged(self, folder_id: uuid.UUID) -> None:
        """The current folder has nothing new; its ``last_synced_at`` is written with the run's outcome."""
        with self._lock:
            self.unchanged_folders.append(folder_id)

    def leave_folder(self, *, failed: bool = False, gone: bool = False) -> None:
        """The current folder is done: synced, ``failed`` (its error is on the folder row) or ``gone``."""
        with self._lock:
            self.counts.folders_done += 1
            if failed:
                self.counts.folders_failed += 1
            elif not gone:
                self.counts.folders_synced += 1
            self.folder, self.folder_expected, self.folder_fetched = None, 0, 0
        self._changed()

    # -- reading and persisting -------------------------------------------------------------------------------

    def snapshot(self) -> SyncProgress:
        """The current figures (a copy)."""
        with self._lock:
            counts = replace(self.counts)
            percent = progress_percent(
                folders_done=counts.folders_done,
                folders_total=counts.folders_total,
                folder_fetched=self.folder_fetched,
                folder_expected=self.folder_expected,
            )
            return SyncProgress(counts, self.folder, self.folder_expected, self.folder_fetched, percent)

    def run_update(self) -> Update:
        """``UPDATE email_sync_runs SET <progress columns>`` of this run, to execute in the caller's transaction."""
        return update(SyncRun).where(SyncRun.id == self.run_id).values(**self.run_values())

    def run_values(self) -> dict[str, object]:
        """The progress (and count) columns of the run row."""
        with self._lock:
            counts = self.counts
            self._persisted_at = time.monotonic()
            return {
                "folders_total": counts.folders_total,
                "folders_done": counts.folders_done,
                "folders_synced": counts.folders_synced,
                "folders_failed": counts.folders_failed,
                "messages_added": counts.messages_added,
                "messages_updated": counts.messages_updated,
                "messages_removed": counts.messages_removed,
                "current_folder": self.folder,
                "folder_expected": self.folder_expected,
                "folder_fetched": self.folder_fetched,
                "updated_at": now_ms(),
            }

    def persist(self, *, force: bool = False) -> None:
        """Write the figures to the run row if ``interval`` has passed since the last write (or ``force``)."""
        with self._lock:
            due = force or time.monotonic() - self._persisted_at >= self._interval
            statement = self.run_update() if due else None
        if statement is not None:
            with self.ctx.db.tenant_session(self.tenant_id) as session:
                session.execute(statement)

    def _changed(self, *, persist: bool = True) -> None:
        if persist:
            self.persist()
        if self._on_progress is not None:
            with self._lock:
                self._on_progress(self.snapshot())
