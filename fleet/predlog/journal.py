"""Journal mode's shipping, a mixin of ``PredictionLog`` (``fleet.predlog.writer``): the writer thread
appends each group to the journal; the shipper thread (``_ship_loop``) rotates and fsyncs it every
``SHIP_SECONDS`` and commits it, or hands it to a shipper process (``fleet.predlog.shipper``), and
answers flushes. It uses the log's spool, lock, commit and replay; the group commit, the spool's
replay and the queue stay in the writer.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.predlog.receipt import Outcome
from fleet.predlog.shipper import Handover
from fleet.predlog.spool import Spool, from_spool

if TYPE_CHECKING:
    import concurrent.futures

    from fleet.predlog.metrics import Stats
    from fleet.predlog.writer import _Job

logger = logging.getLogger(__name__)

SHIP_SECONDS = 1.0  # how often the journal is fsynced and committed (or handed over)


class JournalShipping:
    """Journal shipping for ``PredictionLog``, which sets these attributes and supplies ``_commit``,
    ``_replay`` and ``_resolve``."""

    spool: Spool
    stats: Stats
    max_batch: int
    scan_seconds: float
    _journaled: Any
    _lock: threading.Lock
    _closed: bool
    _writer: threading.Thread
    _ship_now: threading.Event
    _markers: list[concurrent.futures.Future]
    _handover: Handover | None
    _last_scan: float

    def _journal(self, jobs: list[_Job]) -> None:
        """Append and fsync the group and answer its requests; the shipper commits it later.

        Flush markers (jobs without rows) are answered by the shipper after its next shipment, so
        ``flush`` still means "in the database" when the database is there.
        """
        rows = [r for job in jobs for r in job.rows]
        if rows:
            failure = self._append_journal(rows, fsync=True)
            self._resolve([job for job in jobs if job.rows], "dropped" if failure else "journaled", failure)
        markers = [job for job in jobs if not job.rows]
        if markers:
            with self._lock:
                self._markers += [job.future for job in markers]
            self._ship_now.set()

    def _append_journal(self, rows: list[dict[str, Any]], fsync: bool) -> str:
        """Append rows to the journal and count them; "" when done, else why not (nothing counted)."""
        failure = self.spool.append(rows, fsync=fsync)
        if not failure:
            self.stats.spooled += len(rows)
            self._journaled.inc(len(rows))
        return failure

    def _ship_loop(self) -> None:
        """Journal mode: every ``SHIP_SECONDS`` (or at once for a flush) rotate the journal and commit
        what it holds, in order; a failed shipment stays in the journal for the next one. With
        ``ship_elsewhere`` the rotated files are handed to a shipper process instead; a flush, and
        the last shipment at close, still commit here."""
        while True:
            self._ship_now.wait(SHIP_SECONDS)
            self._ship_now.clear()
            stopping = self._closed and not self._writer.is_alive()
            with self._lock:
                markers, self._markers = self._markers, []
            outcome: Outcome = "spooled"
            try:
                if self._handover is not None and not markers and not stopping:
                    self._hand_over(self._handover)
                    continue
                outcome = self._ship(urgent=bool(markers))
            except Exception:  # the shipper must outlive any bug; the rows stay in the journal
                logger.exception("prediction log shipper failed")
            for future in markers:
                if not future.done():
                    future.set_result(outcome)
            if stopping:
                return

    def _ship(self, urgent: bool) -> Outcome:
        """Commit the journal here: "committed" when every row recorded so far is in the database.

        Files already handed to the shipper process are committed here as well, read without taking
        them (rows are inserted by id, so the shipper's commit of the same rows adds nothing): a
        flush never waits on another process, which holds its files for as long as the database is
        down (it waited up to 2 s here, and every flush queued behind it waited as long again)."""
        self.spool.rotate()
        self.spool.sync()
        handed = self._handover.unshipped() if self._handover is not None else []
        scan = bool(handed) or time.monotonic() - self._last_scan > self.scan_seconds
        self._last_scan = time.monotonic() if scan else self._last_scan
        # after a failed shipment (database down), retry at the retry interval only
        failing = bool(self.spool.files(own=False))
        self._replay(force=urgent or not failing, scan=scan, own=False)
        held = self._handover.unshipped() if handed else []  # what the scan above could not adopt
        return "committed" if not self.spool.pending and self._commit_copies(held) else "spooled"

    def _commit_copies(self, paths: list[Path]) -> bool:
        """Commit the rows of files another process holds, leaving the files to it; False when the
        database is unavailable."""
        for path in paths:
            try:
                for rows, _, _ in self.spool.chunks(path, self.max_batch):
                    if not self._commit([from_spool(r) for r in rows]):
                        return False
            except FileNotFoundError:
                continue  # committed and deleted by its holder meanwhile
        return True

    def _hand_over(self, handover: Handover) -> None:
        """Hand the journal to the shipper process, so no database work runs under this process's
        GIL. Files nobody has shipped for ``scan_seconds`` (the shipper cannot keep up, or keeps
        dying) are shipped here after all."""
        handover.hand_over(self.spool)
        if time.monotonic() - self._last_scan > self.scan_seconds:
            self._last_scan = time.monotonic()
            self.spool.claim_orphans(min_age_s=self.scan_seconds)
            self._replay(force=True, scan=False, own=False)

    @property
    def shipper_pid(self) -> int | None:
        """The pid of the process shipping this log's journal (``ship_elsewhere``), else None."""
        return self._handover.process.pid if self._handover and self._handover.process else None
