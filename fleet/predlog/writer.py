"""The write path of the prediction log, and ``PredictionLog`` itself: ``record`` only enqueues (or, in
journal write-through mode, appends to the journal in the caller's thread), one writer thread group-
commits whatever has queued up, and rows the database cannot take go to the spool and are replayed in
order. Journal mode's shipping is the ``JournalShipping`` mixin (``fleet.predlog.journal``, where
``SHIP_SECONDS`` is read), the read side the ``LogQueries`` mixin (``fleet.predlog.queries``); the
tunables below are read here (patch them here).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from fleet.paths import state_dir
from fleet.predlog.database import (
    create_engine,
    database_url,
    insert_ignoring_duplicates,
    is_unavailable,
    migrate,
)
from fleet.predlog.journal import JournalShipping
from fleet.predlog.metrics import Metrics, Stats
from fleet.predlog.queries import LogQueries
from fleet.predlog.receipt import Outcome, Receipt, Resolved
from fleet.predlog.schema import Prediction, as_prediction
from fleet.predlog.shipper import Handover
from fleet.predlog.spool import Spool, from_spool

logger = logging.getLogger(__name__)

ORPHAN_SCAN_SECONDS = 30  # how often an idle log looks for spool files left by dead processes
Sync = Literal["write", "fsync"]


@dataclass
class _Job:
    """One ``record`` call on its way through the writer's queue: its rows and its receipt's future
    (no rows: a flush marker)."""

    rows: list[dict[str, Any]]
    future: concurrent.futures.Future


_STOP = object()


class PredictionLog(JournalShipping, LogQueries):
    """Group-committed prediction log with a spool for database outages; see ``fleet.predlog``'s docstring."""

    def __init__(
        self,
        url: str | os.PathLike | None = None,
        *,
        spool_dir: str | os.PathLike | None = None,
        max_batch: int = 2000,
        max_queue: int = 200_000,
        max_spool_bytes: int = 1 << 30,
        retry_seconds: float = 1.0,
        registry: Any = None,
        journal: bool = False,
        sync: Sync = "fsync",
        ship_elsewhere: bool = False,
        scan_seconds: float | None = None,
    ) -> None:
        self.url = database_url(url)
        self.engine = create_engine(self.url)
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.retry_seconds = retry_seconds
        self.journal = journal
        self.write_through = journal and sync == "write"
        self.ship_elsewhere = journal and ship_elsewhere
        self.scan_seconds = ORPHAN_SCAN_SECONDS if scan_seconds is None else scan_seconds
        self.metrics = Metrics.of(registry)
        self._journaled = self.metrics.rows.labels("journaled")  # looked up once, not per record
        self.stats = Stats()
        self.spool = Spool(Path(spool_dir) if spool_dir else self._default_spool(), max_spool_bytes)
        self._insert = insert_ignoring_duplicates(self.engine.dialect)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queued = 0
        self._closed = False
        self._lock = threading.Lock()
        self._migrated = self._try_migrate()
        self._last_retry = self._last_scan = time.monotonic()
        self.spool.claim_orphans()
        self._publish_spooled()
        self._writer = threading.Thread(target=self._run, name="predlog-writer", daemon=True)
        self._writer.start()
        self._ship_now = threading.Event()
        self._markers: list[concurrent.futures.Future] = []  # flushes waiting for the next shipment
        self._shipper = threading.Thread(target=self._ship_loop, name="predlog-shipper", daemon=True)
        self._handover = Handover(self.url, self.spool.folder) if self.ship_elsewhere else None
        if journal:
            self._shipper.start()

    def _default_spool(self) -> Path:
        env = os.environ.get("FLEET_PREDLOG_SPOOL")
        if env:
            return Path(env)
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database and database != ":memory:":
            return Path(f"{database}.spool")
        return state_dir() / "predlog-spool"

    # -- writing ------------------------------------------------------------------------------------

    def record(self, rows: Prediction | Mapping[str, Any] | Iterable[Prediction | Mapping[str, Any]]
               ) -> Receipt:
        """Queue rows for the next group commit; never blocks. Await the receipt before answering."""
        if isinstance(rows, (Prediction, Mapping)):
            rows = [rows]
        stored = [as_prediction(r).to_row() for r in rows]
        ids = [r["id"] for r in stored]
        if self.write_through and stored and not self._closed:
            failure = self._append_journal(stored, fsync=False)
            if failure:
                self._drop(len(stored), failure)
            return Receipt(Resolved("dropped" if failure else "journaled"), ids)
        future: concurrent.futures.Future = concurrent.futures.Future()
        receipt = Receipt(future, ids)
        with self._lock:
            refused = "closed" if self._closed else "queue_full" if (
                self._queued + len(stored) > self.max_queue) else ""
            if not refused:
                self._queued += len(stored)
        if refused:
            if stored:
                self._drop(len(stored), refused)
            future.set_result("dropped")
        else:
            self._queue.put(_Job(stored, future))
        return receipt

    def flush(self, timeout: float | None = 30) -> Outcome:
        """Wait until everything recorded so far is durable (a marker job behind them)."""
        return self.record([]).result(timeout)

    def drained(self, timeout: float = 30) -> bool:
        """Wait until nothing is queued or spooled (the database has every row); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queued or self.spool.pending or (self._handover and self._handover.unshipped()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 30) -> None:
        """Write what is queued, try the spool once more, stop the writer."""
        with self._lock:
            self._closed = True
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout)
        if self._shipper.is_alive():
            self._ship_now.set()
            self._shipper.join(timeout)
        if self._handover is not None:
            self._handover.stop(timeout)
        self.spool.close()
        self.engine.dispose()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            jobs, stopping = self._take(min(self.retry_seconds, self.scan_seconds))
            try:
                if jobs:
                    self._write(jobs)
                else:
                    self._idle()
            except Exception:  # the writer must outlive any bug; its jobs still get an answer
                logger.exception("prediction log writer failed on %d jobs", len(jobs))
                self._resolve(jobs, "dropped", reason="writer_error")
        if self.spool.pending and not self.journal:
            self._replay(force=True)

    def _take(self, wait: float | None) -> tuple[list[_Job], bool]:
        """The first queued job (waiting up to ``wait``) and every job already behind it."""
        try:
            first = self._queue.get(timeout=wait)
        except queue.Empty:
            return [], False
        if first is _STOP:
            return [], True
        jobs, rows = [first], len(first.rows)
        while rows < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._queue.put(_STOP)
                break
            jobs.append(job)
            rows += len(job.rows)
        return jobs, False

    def _idle(self) -> None:
        """No traffic: retry the spool, and now and then adopt spool files of dead processes."""
        if self.journal:
            return  # the shipper does both
        claimed = not self.spool.pending and time.monotonic() - self._last_scan > self.scan_seconds
        if claimed:
            self._last_scan = time.monotonic()
            self.spool.claim_orphans()
        if self.spool.pending:
            self._replay(force=claimed)

    def _write(self, jobs: list[_Job]) -> None:
        if self.journal:
            self._journal(jobs)
            return
        if self.spool.pending:
            self._replay()
        rows = [r for job in jobs for r in job.rows]
        if not self.spool.pending and self._commit(rows):
            self.stats.committed += len(rows)
            self.metrics.rows.labels("committed").inc(len(rows))
            self._resolve(jobs, "committed")
        elif not (failure := self.spool.append(rows)):
            self.stats.spooled += len(rows)
            self.metrics.rows.labels("spooled").inc(len(rows))
            self._publish_spooled()
            self._resolve(jobs, "spooled")
        else:
            self._resolve(jobs, "dropped", reason=failure)

    def _resolve(self, jobs: list[_Job], outcome: Outcome, reason: str = "") -> None:
        """Answer queued jobs (they leave the queue's count); a dropped job's rows are counted as lost."""
        open_jobs = [job for job in jobs if not job.future.done()]
        count = sum(len(job.rows) for job in open_jobs)
        if outcome == "dropped" and count:
            self._drop(count, reason)
        with self._lock:
            self._queued -= count
        for job in open_jobs:
            job.future.set_result(outcome)

    def _drop(self, count: int, reason: str) -> None:
        self.stats.dropped += count
        self.metrics.dropped.labels(reason).inc(count)
        logger.error("prediction log dropped %d rows (%s)", count, reason)

    def _try_migrate(self) -> bool:
        try:
            migrate(self.engine)
        except sa.exc.SQLAlchemyError as error:
            if not is_unavailable(error):
                raise
            logger.warning("prediction log database unavailable, spooling: %s", error)
            return False
        return True

    def _commit(self, rows: list[dict[str, Any]]) -> bool:
        """One transaction for all rows; False when the database is unavailable (rows not written)."""
        if not self._migrated and not self._try_migrate():
            return False
        self._migrated = True
        if not rows:
            return True
        started = time.perf_counter()
        try:
            with self.engine.begin() as connection:
                connection.execute(self._insert, rows)
        except sa.exc.SQLAlchemyError as error:
            if is_unavailable(error):
                logger.warning("prediction log database unavailable, spooling: %s", error)
                return False
            return self._commit_one_by_one(rows)
        self.stats.commits += 1
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_rows.observe(len(rows))
        return True

    def _commit_one_by_one(self, rows: list[dict[str, Any]]) -> bool:
        """A batch the database refused: keep every row it accepts, drop (and count) the rest."""
        for row in rows:
            try:
                with self.engine.begin() as connection:
                    connection.execute(self._insert, [row])
            except sa.exc.SQLAlchemyError as error:
                if is_unavailable(error):
                    return False  # rows already in are skipped by id on replay
                logger.error("prediction log refused row %s: %s", row.get("id"), error)
                self._drop(1, "refused")
        return True

    def _replay(self, force: bool = False, scan: bool = True, own: bool = True) -> None:
        """Commit the spool in order, file by file, if the retry interval has passed (``scan``: adopt
        the files of dead processes first; ``own``: the file being appended to as well)."""
        if not force and time.monotonic() - self._last_retry < self.retry_seconds:
            return
        self._last_retry = time.monotonic()
        if scan:
            self.spool.claim_orphans()
        for path in self.spool.files(own):
            for rows, offset, bad in self.spool.chunks(path, self.max_batch):
                if bad:
                    self._drop(bad, "unreadable_spool_line")
                if not self._commit([from_spool(r) for r in rows]):
                    self._publish_spooled()
                    return
                self.spool.advance(path, offset, len(rows) + bad)
                self.stats.replayed += len(rows)
                self.metrics.rows.labels("replayed").inc(len(rows))
            self.spool.done(path)
        self._publish_spooled()

    def _publish_spooled(self) -> None:
        self.metrics.spooled.set(self.spool.pending)
