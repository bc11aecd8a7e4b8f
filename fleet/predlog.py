"""The prediction log: one row per answered prediction, durable before the answer leaves.

``PredictionLog.record(rows)`` only enqueues; one writer thread commits whatever has queued up in a
single transaction (group commit), so under load many requests share one commit and a request
waits for about one commit, not for its own. ``await log.record(rows)`` returns once the rows are
committed (or fsync'd to the spool), so a server that awaits it before answering never answers a
prediction the log could lose to ``kill -9``.

When the database cannot be reached, rows go to an append-only JSON-lines spool (fsync'd) and are
replayed in order once it is back; row ids are the primary key and replay skips ids already present,
so a crash between a commit and the spool's truncation never duplicates a row. Whatever is still
lost (spool full, disk error) is counted in ``fleet_predlog_dropped_rows_total``.

SQLite (WAL, busy timeout) by default, PostgreSQL when ``DATABASE_URL`` says so; the schema is
Alembic's (``fleet/migrations``), upgraded to head when the log opens.

In journal mode (``journal=True``, what the server uses: ``FLEET_PREDLOG_JOURNAL=off`` turns it off)
rows go first to this process's spool file, and a shipper thread of its own rotates that file and
commits it to the database every ``SHIP_SECONDS``, off the request path. How a request waits is
``sync``:
- ``"write"`` (the server's default): ``record`` writes the rows into the journal in the caller's
  thread and the receipt is done at once. Once ``write(2)`` returns the rows are in the kernel, so
  they survive ``kill -9`` of any process; the shipper fsyncs the journal before each shipment, so
  a power cut can lose at most the last ``SHIP_SECONDS``. About 0.05 ms per request.
- ``"fsync"`` (``FLEET_PREDLOG_SYNC=fsync``): the writer thread appends and fsyncs each group and
  only then answers its requests, so an answered row also survives a power cut; it costs the fsync
  and two thread hand-offs, 1-2 ms per request here.
Reads that must see their own rows (``query``, feedback matching, drift inputs) flush first.

Images are logged in a bounded form, never as the client's base64: the digits models' 8×8 input,
rounded (``pixels_form``). Any ``inputs``/``outputs`` over ``MAX_FIELD_CHARS`` of JSON is replaced by
``{"_truncated": true, "chars": n, "sha256": …}``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from fleet.paths import state_dir

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "predlog_alembic_version"
ROLES = ("stable", "canary", "shadow", "pinned")
ANSWERED = ("stable", "canary", "pinned")  # roles whose output reached the caller
MAX_FIELD_CHARS = 64 * 1024
SQLITE_BUSY_TIMEOUT_S = 30
ORPHAN_SCAN_SECONDS = 30  # how often an idle log looks for spool files left by dead processes
SHIP_SECONDS = 0.2  # journal mode: how often the journal is committed to the database
Outcome = Literal["committed", "spooled", "journaled", "dropped"]
Sync = Literal["write", "fsync"]


# -- schema (kept in step with fleet/migrations; a test compares them) ------------------------------


class UTCDateTime(sa.TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite stores naive text; naive input is taken as UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = sa.MetaData()
predictions = sa.Table(
    "predictions", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("item", sa.Integer, nullable=False, server_default="0"),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("inputs", JSON, nullable=False),
    sa.Column("outputs", JSON, nullable=False),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_predictions_request", "request_id", "model", "item"),
    sa.Index("ix_predictions_model_time", "model", "created_at"),
    sa.Index("ix_predictions_time", "created_at"),
)
feedback = sa.Table(
    "feedback", metadata,
    sa.Column("model", sa.String(64), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("item", sa.Integer, primary_key=True, server_default="0"),
    sa.Column("label", JSON, nullable=False),
    sa.Column("label_key", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_feedback_model_time", "model", "created_at"),
)
drift_results = sa.Table(
    "drift_results", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("feature", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("measure", sa.String(32), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("noise_floor", sa.Float, nullable=False),
    sa.Column("drifted", sa.Boolean, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_drift_results_model_time", "model", "created_at"),
)


# -- rows ---------------------------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One logged prediction. ``label`` is the predicted class compared with feedback (see label_key);
    ``item`` is its position in a batch request, so feedback can name one item of a batch."""

    request_id: str
    model: str
    version: str
    role: str
    inputs: Any
    outputs: Any
    latency_ms: float
    label: Any = None
    item: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = field(default_factory=utcnow)

    def to_row(self) -> dict[str, Any]:
        """The row as stored: inputs/outputs bounded, label as its comparison key."""
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        if not math.isfinite(float(self.latency_ms)):
            raise ValueError("latency_ms must be finite")
        return {"id": self.id, "request_id": str(self.request_id), "item": int(self.item),
                "model": self.model, "version": self.version, "role": self.role,
                "inputs": bounded(self.inputs), "outputs": bounded(self.outputs),
                "label": label_key(self.label), "latency_ms": float(self.latency_ms),
                "created_at": self.created_at}


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays (``tolist``), tuples and sets become plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def bounded(value: Any, limit: int = MAX_FIELD_CHARS) -> Any:
    """``value`` as plain JSON, or a fingerprint of it when its JSON is longer than ``limit``."""
    text = json.dumps(value, default=_jsonable, allow_nan=False)
    if len(text) <= limit:
        return json.loads(text) if not isinstance(value, (str, int, float, bool, type(None))) else value
    return {"_truncated": True, "chars": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def pixels_form(pixels: Any, decimals: int = 2) -> list[list[float]]:
    """The bounded form of an image input: the models' normalised 8×8 pixels, rounded (≈ 400 bytes)."""
    rows = pixels.tolist() if hasattr(pixels, "tolist") else pixels
    return [[round(float(v), decimals) for v in row] for row in rows]


def label_key(label: Any) -> str | None:
    """The text two labels are compared by: ``1``, ``1.0``, ``True`` and ``"1"`` all match."""
    if hasattr(label, "tolist"):
        label = label.tolist()
    if label is None:
        return None
    if isinstance(label, bool):
        return str(int(label))
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    if isinstance(label, (str, int, float)):
        return str(label)
    return json.dumps(label, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _as_prediction(row: Prediction | Mapping[str, Any]) -> Prediction:
    return row if isinstance(row, Prediction) else Prediction(**row)


# -- database -----------------------------------------------------------------------------------------


def database_url(explicit: str | os.PathLike | None = None) -> str:
    """``explicit``, else ``DATABASE_URL``, else the SQLite file ``predlog.db`` in the state folder
    (``var/`` in a source checkout, under ``$BENTOML_HOME`` in a bento: ``fleet.paths``).

    A plain path means SQLite; ``postgres://``/``postgresql://`` mean psycopg 3 (psycopg2 is absent).
    """
    url = str(explicit or os.environ.get("DATABASE_URL") or state_dir() / "predlog.db")
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; FULL makes each commit survive an OS crash, not only
    # kill -9, and group commit pays its fsync once per batch.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.close()


def create_engine(url: str) -> sa.Engine:
    """An engine for the log: SQLite with WAL and a busy timeout, PostgreSQL with short connect timeouts."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    args = {"connect_timeout": 3} if parsed.get_backend_name() == "postgresql" else {}
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=4, connect_args=args)


@contextlib.contextmanager
def _migration_lock(connection: sa.Connection) -> Iterator[None]:
    """Two processes starting together must not both create the tables."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_lock(7245100)"))
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(7245100)"))
        return
    database = connection.engine.url.database
    if connection.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Alembic ``upgrade revision`` on this database (the tables are created the first time)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection, _migration_lock(connection):
        connection.commit()  # the advisory lock's own implicit transaction
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def _insert_ignoring_duplicates(dialect: sa.Dialect) -> Any:
    """INSERT … ON CONFLICT (id) DO NOTHING: replaying a row that is already there is a no-op."""
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect.name)
    if insert is None:
        raise NotImplementedError(f"the prediction log supports SQLite and PostgreSQL, not {dialect.name}")
    return insert(predictions).on_conflict_do_nothing(index_elements=["id"])


def _is_unavailable(error: sa.exc.SQLAlchemyError) -> bool:
    """Errors that mean "the database is not there right now" (spool and retry), not "bad row"."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError,
                              sa.exc.TimeoutError))


# -- metrics ------------------------------------------------------------------------------------------


class Metrics:
    """The log's Prometheus metrics. prometheus_client is imported here, not at module import, because
    BentoML sets its multiprocess directory in each worker after importing the service module."""

    _by_registry: weakref.WeakKeyDictionary[Any, Metrics] = weakref.WeakKeyDictionary()  # noqa: RUF012

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        kw = {"registry": registry}
        self.rows = Counter("fleet_predlog_rows", "Prediction-log rows by outcome: committed, spooled, "
                            "replayed (committed from the spool)", ["outcome"], **kw)
        self.dropped = Counter("fleet_predlog_dropped_rows", "Prediction-log rows lost, by reason",
                               ["reason"], **kw)
        self.spooled = Gauge("fleet_predlog_spooled_rows", "Rows waiting in the spool for the database",
                             multiprocess_mode="livesum", **kw)
        self.commit_seconds = Histogram(
            "fleet_predlog_commit_seconds", "Time of one group commit",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), **kw)
        self.batch_rows = Histogram("fleet_predlog_batch_rows", "Rows per group commit",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096), **kw)
        self.accuracy = Gauge("fleet_live_accuracy", "Share of predictions matching feedback, sliding window",
                              ["model", "version"], multiprocess_mode="mostrecent", **kw)
        self.accuracy_n = Gauge("fleet_live_accuracy_samples", "Feedback rows in the accuracy window",
                                ["model", "version"], multiprocess_mode="mostrecent", **kw)

    @classmethod
    def of(cls, registry: Any = None) -> Metrics:
        if registry is None:
            from prometheus_client import REGISTRY as registry
        if registry not in cls._by_registry:  # one set per registry, shared by every log
            cls._by_registry[registry] = cls(registry)
        return cls._by_registry[registry]


@dataclass
class Stats:
    """Counts of this log instance (the metrics are per process and shared by every instance)."""

    commits: int = 0
    committed: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: int = 0


# -- spool --------------------------------------------------------------------------------------------


class Spool:
    """Append-only JSON-lines files in a folder, one per log instance, each flock'ed by its owner.

    Files left by a process that died (their lock is free) are claimed and replayed first, oldest first.
    """

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.pending = 0
        self._own: Path | None = None
        self._own_handle: Any = None
        self._claimed: list[tuple[Path, Any]] = []  # (path, locked handle) of orphans and rotated files
        self._offsets: dict[Path, int] = {}
        self._lock = threading.RLock()  # journal mode: the writer appends while the shipper replays

    def rotate(self) -> None:
        """Stop appending to the current file: the next append starts a new one, and this one can be
        replayed and deleted while appends go on (journal mode)."""
        with self._lock:
            if self._own_handle is not None and self._own_handle.tell() > 0:
                self._claimed.append((self._own, self._own_handle))
                self._own, self._own_handle = None, None

    def claim_orphans(self) -> None:
        """Lock and adopt every spool file in the folder that no living log holds."""
        with self._lock:
            self._claim_orphans()

    def _claim_orphans(self) -> None:
        if not self.folder.is_dir():
            return
        held = {self._own, *(p for p, _ in self._claimed)}
        for path in sorted(self.folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
            if path in held:
                continue
            handle = open(path, "rb")  # noqa: SIM115 - kept open to hold the lock until replayed
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self._claimed.append((path, handle))
            self.pending += sum(1 for line in handle if line.strip())

    def _own_file(self) -> Any:
        if self._own_handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._own = self.folder / f"{int(time.time() * 1000):015d}-{uuid.uuid4().hex[:12]}.jsonl"
            self._own_handle = open(self._own, "ab")  # noqa: SIM115 - lives as long as the log
            fcntl.flock(self._own_handle, fcntl.LOCK_EX)
        return self._own_handle

    def append(self, rows: list[dict[str, Any]], fsync: bool = True) -> str:
        """Append (and fsync, unless told not to); "" when done, else why not: ``spool_full`` (over
        ``max_bytes``) or ``spool_error`` (no space left, I/O error)."""
        data = b"".join(json.dumps(r, default=str).encode() + b"\n" for r in rows)
        with self._lock:
            return self._append(data, len(rows), fsync)

    def sync(self) -> None:
        """Fsync every file still to be shipped (journal mode, before a shipment)."""
        with self._lock:
            handles = [h for _, h in self._claimed]
            if self._own_handle is not None:
                handles.append(self._own_handle)
            for handle in handles:
                with contextlib.suppress(OSError, ValueError):
                    os.fsync(handle.fileno())

    def _append(self, data: bytes, count: int, fsync: bool) -> str:
        start = None
        try:
            handle = self._own_file()
            start = handle.tell()
            if start + len(data) > self.max_bytes:
                return "spool_full"
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        except OSError:
            logger.exception("prediction log spool %s is not writable", self.folder)
            if start is not None:  # cut a half-written tail, so replay never meets a torn row
                with contextlib.suppress(OSError):
                    self._own_handle.truncate(start)
                    self._own_handle.seek(start)
            return "spool_error"
        self.pending += count
        return ""

    def files(self, own: bool = True) -> list[Path]:
        """Files to replay, oldest first (``own``: the one being appended to as well)."""
        with self._lock:
            mine = [self._own] if own and self._own is not None and self._own_handle.tell() > 0 else []
            return [p for p, _ in self._claimed] + mine

    def chunks(self, path: Path, size: int) -> Iterator[tuple[list[dict[str, Any]], int, int]]:
        """``(rows, end_offset, unreadable)`` from where replay last stopped in ``path``."""
        with open(path, "rb") as reader:
            reader.seek(self._offsets.get(path, 0))
            rows: list[dict[str, Any]] = []
            bad = 0
            for line in reader:
                if not line.endswith(b"\n"):
                    bad += 1  # torn last line of a writer that crashed: never acknowledged, but counted
                    break
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    bad += 1
                if len(rows) >= size:
                    yield rows, reader.tell(), bad
                    rows, bad = [], 0
            yield rows, reader.tell(), bad

    def advance(self, path: Path, offset: int, rows: int) -> None:
        with self._lock:
            self._offsets[path] = offset
            self.pending = max(0, self.pending - rows)

    def done(self, path: Path) -> None:
        """Forget a fully replayed file: orphans are deleted, our own is emptied."""
        with self._lock:
            self._done(path)

    def _done(self, path: Path) -> None:
        self._offsets.pop(path, None)
        if path == self._own:
            self._own_handle.truncate(0)
            self._own_handle.seek(0)
            return
        for claimed in [c for c in self._claimed if c[0] == path]:
            with contextlib.suppress(OSError):
                path.unlink()
            claimed[1].close()
            self._claimed.remove(claimed)

    def close(self) -> None:
        for _, handle in self._claimed:
            handle.close()
        self._claimed.clear()
        if self._own_handle is not None:
            empty = self._own_handle.tell() == 0
            self._own_handle.close()
            if empty:
                with contextlib.suppress(OSError):
                    self._own.unlink()
            self._own_handle = None


def _from_spool(row: dict[str, Any]) -> dict[str, Any]:
    return row | {"created_at": datetime.fromisoformat(row["created_at"])}


# -- the log ------------------------------------------------------------------------------------------


class Receipt:
    """What ``record`` returns: await it (or ``result()``) for the outcome once the rows are durable."""

    __slots__ = ("_future", "ids")

    def __init__(self, future: concurrent.futures.Future, ids: list[str]) -> None:
        self._future = future
        self.ids = ids

    def __await__(self) -> Any:
        if self._future.done():  # written through: no hop back through the event loop
            return self._done_now().__await__()
        return asyncio.wrap_future(self._future).__await__()

    async def _done_now(self) -> Outcome:
        return self._future.result()

    def result(self, timeout: float | None = None) -> Outcome:
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()


@dataclass(frozen=True)
class Accuracy:
    model: str
    version: str | None
    correct: int
    total: int

    @property
    def value(self) -> float | None:
        return self.correct / self.total if self.total else None


@dataclass
class _Job:
    rows: list[dict[str, Any]]
    future: concurrent.futures.Future


_STOP = object()


class PredictionLog:
    """Group-committed prediction log with a spool for database outages; see the module docstring."""

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
    ) -> None:
        self.url = database_url(url)
        self.engine = create_engine(self.url)
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.retry_seconds = retry_seconds
        self.journal = journal
        self.write_through = journal and sync == "write"
        self.metrics = Metrics.of(registry)
        self.stats = Stats()
        self.spool = Spool(Path(spool_dir) if spool_dir else self._default_spool(), max_spool_bytes)
        self._insert = _insert_ignoring_duplicates(self.engine.dialect)
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
        stored = [_as_prediction(r).to_row() for r in rows]
        future: concurrent.futures.Future = concurrent.futures.Future()
        receipt = Receipt(future, [r["id"] for r in stored])
        if self.write_through and stored and not self._closed:
            self._journal_rows(stored, [_Job(stored, future)], fsync=False, queued=False)
            return receipt
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
        while self._queued or self.spool.pending:
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
        self.spool.close()
        self.engine.dispose()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            jobs, stopping = self._take(self.retry_seconds)
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
        if not self.spool.pending and time.monotonic() - self._last_scan > ORPHAN_SCAN_SECONDS:
            self._last_scan = time.monotonic()
            self.spool.claim_orphans()
        if self.spool.pending:
            self._replay()

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

    def _journal(self, jobs: list[_Job]) -> None:
        """Append and fsync the group and answer its requests; the shipper commits it later.

        Flush markers (jobs without rows) are answered by the shipper after its next shipment, so
        ``flush`` still means "in the database" when the database is there.
        """
        rows = [r for job in jobs for r in job.rows]
        if rows:
            self._journal_rows(rows, [job for job in jobs if job.rows], fsync=True, queued=True)
        markers = [job for job in jobs if not job.rows]
        if markers:
            with self._lock:
                self._markers += [job.future for job in markers]
            self._ship_now.set()

    def _journal_rows(self, rows: list[dict[str, Any]], jobs: list[_Job], fsync: bool, queued: bool) -> None:
        """Append rows to the journal and answer their jobs ("journaled", or "dropped" and why);
        ``queued``: the jobs came through the writer's queue (and count in its length)."""
        failure = self.spool.append(rows, fsync=fsync)
        if failure:
            self._resolve(jobs, "dropped", reason=failure, queued=queued)
            return
        self.stats.spooled += len(rows)
        self.metrics.rows.labels("journaled").inc(len(rows))
        self._resolve(jobs, "journaled", queued=queued)

    def _ship_loop(self) -> None:
        """Journal mode: every ``SHIP_SECONDS`` (or at once for a flush) rotate the journal and commit
        what it holds, in order; a failed shipment stays in the journal for the next one."""
        while True:
            self._ship_now.wait(SHIP_SECONDS)
            self._ship_now.clear()
            stopping = self._closed and not self._writer.is_alive()
            with self._lock:
                markers, self._markers = self._markers, []
            try:
                self.spool.rotate()
                self.spool.sync()
                scan = time.monotonic() - self._last_scan > ORPHAN_SCAN_SECONDS
                self._last_scan = time.monotonic() if scan else self._last_scan
                # after a failed shipment (database down), retry at the retry interval only
                failing = bool(self.spool.files(own=False))
                self._replay(force=bool(markers) or not failing, scan=scan, own=False)
            except Exception:  # the shipper must outlive any bug; the rows stay in the journal
                logger.exception("prediction log shipper failed")
            outcome = "committed" if not self.spool.pending else "spooled"
            for future in markers:
                if not future.done():
                    future.set_result(outcome)
            if stopping:
                return

    def _resolve(self, jobs: list[_Job], outcome: Outcome, reason: str = "", queued: bool = True) -> None:
        open_jobs = [job for job in jobs if not job.future.done()]
        count = sum(len(job.rows) for job in open_jobs)
        if outcome == "dropped" and count:
            self._drop(count, reason)
        if queued:
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
            if not _is_unavailable(error):
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
            if _is_unavailable(error):
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
                if _is_unavailable(error):
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
                if not self._commit([_from_spool(r) for r in rows]):
                    self._publish_spooled()
                    return
                self.spool.advance(path, offset, len(rows) + bad)
                self.stats.replayed += len(rows)
                self.metrics.rows.labels("replayed").inc(len(rows))
            self.spool.done(path)
        self._publish_spooled()

    def _publish_spooled(self) -> None:
        self.metrics.spooled.set(self.spool.pending)

    # -- reading ------------------------------------------------------------------------------------

    def query(
        self,
        request_id: str | None = None,
        model: str | None = None,
        since: datetime | timedelta | None = None,
        limit: int | None = 100,
        *,
        version: str | None = None,
        role: str | None = None,
    ) -> list[dict[str, Any]]:
        """Logged predictions, newest first (in journal mode, after what was recorded so far is shipped)."""
        self._see_own_writes()
        p = predictions.c
        stmt = sa.select(predictions).order_by(p.created_at.desc(), p.id).limit(limit)
        for column, value in ((p.request_id, request_id), (p.model, model), (p.version, version),
                              (p.role, role)):
            if value is not None:
                stmt = stmt.where(column == value)
        if since is not None:
            stmt = stmt.where(p.created_at >= _since(since))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    def timeline(self, since: datetime | timedelta | None = None, models: Sequence[str] | None = None,
                 limit: int = 500_000) -> list[dict[str, Any]]:
        """model, version, role, latency_ms and created_at of recent predictions (for reports)."""
        p = predictions.c
        stmt = sa.select(p.model, p.version, p.role, p.latency_ms, p.created_at)
        stmt = _filtered(stmt, p, since, models).order_by(p.created_at.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    def add_feedback(self, model: str, request_id: str, label: Any, item: int = 0) -> int:
        """Store the true label of one prediction (a later one replaces it); returns 1."""
        return self.add_feedback_many(model, [{"request_id": request_id, "label": label, "item": item}])

    def add_feedback_many(self, model: str, items: Iterable[Mapping[str, Any]]) -> int:
        """Bulk form of ``add_feedback``: ``[{request_id, label, item?}, …]`` in one transaction."""
        now = utcnow()
        rows = [{"model": model, "request_id": str(x["request_id"]), "item": int(x.get("item", 0)),
                 "label": bounded(x["label"], 4096), "label_key": label_key(x["label"]), "created_at": now}
                for x in items]
        if any(r["label_key"] is None for r in rows):
            raise ValueError("a feedback label cannot be null")
        if not rows:
            return 0
        insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[self.engine.dialect.name]
        stmt = insert(feedback)
        stmt = stmt.on_conflict_do_update(
            index_elements=["model", "request_id", "item"],
            set_={"label": stmt.excluded.label, "label_key": stmt.excluded.label_key,
                  "created_at": stmt.excluded.created_at})
        with self.engine.begin() as connection:
            connection.execute(stmt, rows)
        return len(rows)

    def _see_own_writes(self) -> None:
        """Journal mode: ship what was recorded so far before a read that must see it."""
        if self.journal:
            self.flush(timeout=10)

    def unmatched_feedback(self, model: str, request_ids: Sequence[str]) -> list[str]:
        """Which of these request ids have no logged prediction of ``model`` (yet)."""
        self._see_own_writes()
        p = predictions.c
        stmt = sa.select(p.request_id).where(p.model == model, p.request_id.in_(list(request_ids)))
        with self.engine.connect() as connection:
            found = {row.request_id for row in connection.execute(stmt)}
        return [r for r in request_ids if r not in found]

    def _joined(self) -> tuple[Any, Any]:
        p, f = predictions.c, feedback.c
        on = sa.and_(p.request_id == f.request_id, p.model == f.model, p.item == f.item)
        hit = sa.case((p.label == f.label_key, 1), else_=0)
        return predictions.join(feedback, on), hit

    def live_accuracy(self, model: str, version: str | None = None, *, last: int | None = 1000,
                      since: datetime | timedelta | None = None) -> Accuracy:
        """Share of predictions whose label equals the feedback label, over the ``last`` feedback rows
        and/or feedback since ``since``. Without a version only answered roles count (not shadows)."""
        found = self.accuracies(last=last, since=since, models=[model], by_version=version is not None)
        for acc in found:
            if acc.version == version:
                return acc
        return Accuracy(model, version, 0, 0)

    def accuracies(self, *, last: int | None = 1000, since: datetime | timedelta | None = None,
                   models: Sequence[str] | None = None, by_version: bool = True) -> list[Accuracy]:
        """Live accuracy per model (and version): the window is the newest ``last`` feedback rows each."""
        p, f = predictions.c, feedback.c
        joined, hit = self._joined()
        keys = [p.model, p.version] if by_version else [p.model]
        pos = sa.func.row_number().over(partition_by=keys, order_by=f.created_at.desc()).label("pos")
        inner = sa.select(*keys, hit.label("hit"), pos).select_from(joined)
        inner = _filtered(inner, p, None, models)
        if since is not None:
            inner = inner.where(f.created_at >= _since(since))
        if not by_version:
            inner = inner.where(p.role.in_(ANSWERED))
        ranked = inner.subquery()
        columns = [ranked.c.model] + ([ranked.c.version] if by_version else [])
        stmt = sa.select(*columns, sa.func.sum(ranked.c.hit), sa.func.count()).group_by(*columns)
        if last is not None:
            stmt = stmt.where(ranked.c.pos <= last)
        with self.engine.connect() as connection:
            rows = connection.execute(stmt).all()
        return [Accuracy(r[0], r[1] if by_version else None, int(r[-2] or 0), int(r[-1])) for r in rows]

    def refresh_accuracy_gauges(self, *, last: int | None = 1000,
                                since: datetime | timedelta | None = None) -> list[Accuracy]:
        """Set ``fleet_live_accuracy{model,version}`` from the database (call it periodically)."""
        found = self.accuracies(last=last, since=since)
        for acc in found:
            self.metrics.accuracy.labels(acc.model, acc.version).set(acc.value or 0.0)
            self.metrics.accuracy_n.labels(acc.model, acc.version).set(acc.total)
        return found

    def accuracy_timeline(self, since: datetime | timedelta | None = None,
                          models: Sequence[str] | None = None, limit: int = 500_000) -> list[dict[str, Any]]:
        """model, version, created_at (of the prediction) and hit (0/1) of each prediction with feedback."""
        p = predictions.c
        joined, hit = self._joined()
        stmt = sa.select(p.model, p.version, p.created_at, hit.label("hit")).select_from(joined)
        stmt = _filtered(stmt, p, since, models).order_by(p.created_at.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    def recent_inputs(self, model: str, version: str | None = None, *, limit: int = 2000,
                      since: datetime | timedelta | None = None, roles: Sequence[str] = ROLES) -> list[Any]:
        """The newest logged inputs of a model (and version), for drift checks; truncated ones left out."""
        self._see_own_writes()
        p = predictions.c
        stmt = sa.select(p.inputs).where(p.model == model, p.role.in_(list(roles)))
        if version is not None:
            stmt = stmt.where(p.version == version)
        stmt = _filtered(stmt, p, since, None).order_by(p.created_at.desc()).limit(limit)
        with self.engine.connect() as connection:
            found = [row.inputs for row in connection.execute(stmt)]
        return [x for x in found if not (isinstance(x, dict) and x.get("_truncated"))]

    def save_drift(self, model: str, version: str, records: Iterable[Mapping[str, Any]],
                   created_at: datetime | None = None) -> int:
        """Store one drift check (``DriftResult.records()``); the report plots their history."""
        when = created_at or utcnow()
        keys = ("feature", "kind", "measure", "value", "threshold", "noise_floor", "drifted", "n")
        rows = [{"model": model, "version": version, "created_at": when, **{k: r[k] for k in keys}}
                for r in records]
        if rows:
            with self.engine.begin() as connection:
                connection.execute(drift_results.insert(), rows)
        return len(rows)

    def drift_history(self, since: datetime | timedelta | None = None,
                      models: Sequence[str] | None = None) -> list[dict[str, Any]]:
        d = drift_results.c
        stmt = _filtered(sa.select(drift_results), d, since, models).order_by(d.created_at)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(stmt)]

    def models(self) -> list[str]:
        with self.engine.connect() as connection:
            found = connection.execute(sa.select(predictions.c.model).distinct()).scalars()
            return sorted(found)


def _since(value: datetime | timedelta) -> datetime:
    return utcnow() - value if isinstance(value, timedelta) else value


def _filtered(stmt: Any, columns: Any, since: datetime | timedelta | None,
              models: Sequence[str] | None) -> Any:
    if since is not None:
        stmt = stmt.where(columns.created_at >= _since(since))
    if models is not None:
        stmt = stmt.where(columns.model.in_(list(models)))
    return stmt


# -- python -m fleet.predlog --bench --------------------------------------------------------------------


def _bench_row(i: int) -> Prediction:
    return Prediction(request_id=f"bench-{i}", model="loans", version="v1", role="stable",
                      inputs={"age": 37.7, "income": 4.52, "owner": True, "reports": 0, "months": 54},
                      outputs={"approved": 1, "probability": 0.93}, latency_ms=3.2, label=1)


def bench_throughput(log: PredictionLog, rows: int, writers: int) -> float:
    """Rows/second from ``writers`` threads recording one row per call, until all are durable."""
    per = rows // writers

    def write(offset: int) -> list[Receipt]:
        return [log.record(_bench_row(offset + i)) for i in range(per)]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
        receipts = [r for batch in pool.map(write, range(0, rows, per)) for r in batch]
    for receipt in receipts:
        receipt.result(120)
    return len(receipts) / (time.perf_counter() - started)


async def bench_latency(log: PredictionLog, rate: float, seconds: float) -> list[float]:
    """Milliseconds of ``await log.record(row)`` for requests arriving at ``rate`` per second (open loop)."""
    took: list[float] = []

    async def request(i: int) -> None:
        started = time.perf_counter()
        await log.record(_bench_row(i))
        took.append((time.perf_counter() - started) * 1000)

    tasks, sent, began = [], 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        while sent < int(elapsed * rate):
            tasks.append(asyncio.create_task(request(sent)))
            sent += 1
        await asyncio.sleep(0.0005)
    await asyncio.gather(*tasks)
    return took


def _bench(url: str | None, rows: int, rates: Sequence[float], seconds: float) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        target = url or str(Path(folder) / "bench.db")
        with PredictionLog(target, spool_dir=Path(folder) / "spool") as log:
            print(f"database: {log.engine.url.render_as_string(hide_password=True)}")
            bench_throughput(log, 2000, 4)  # warm-up
            print(f"throughput: {bench_throughput(log, rows, 8):,.0f} rows/s "
                  f"({rows} rows, 8 writer threads, 1 row per record)")
            for rate in rates:
                before = log.stats.commits
                took = sorted(asyncio.run(bench_latency(log, rate, seconds)))
                p50, p99 = took[len(took) // 2], took[int(len(took) * 0.99)]
                per_commit = len(took) / max(1, log.stats.commits - before)
                print(f"record+durable at {rate:>6,.0f} rows/s offered: p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
                      f"max {took[-1]:.1f} ms  {per_commit:.1f} rows/commit")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fleet.predlog", description=__doc__.split("\n")[0])
    parser.add_argument("--bench", action="store_true", help="measure throughput and record+durable latency")
    parser.add_argument("--migrate", action="store_true", help="upgrade the database to head and exit")
    parser.add_argument("--url", help="database URL or SQLite path (default: DATABASE_URL, else a temp file "
                                      "for --bench, var/predlog.db otherwise)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rates", default="100,1000,3000", help="offered rows/s for the latency runs")
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args(argv)
    if args.migrate:
        engine = create_engine(database_url(args.url))
        migrate(engine)
        print(f"{engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")
    elif args.bench:
        rates = [float(r) for r in args.rates.split(",")]
        _bench(args.url or os.environ.get("DATABASE_URL"), args.rows, rates, args.seconds)
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
