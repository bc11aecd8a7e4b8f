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
commits it to the database every ``SHIP_SECONDS`` (1 s: each shipment's rotation, fsync and commit
cost the same for 50 rows as for 500, and at 0.2 s they took 5 % of a names server's throughput at
32 clients), off the request path. With ``ship_elsewhere=True`` (the gateway's workers) that thread
only rotates, fsyncs and releases the file, and a shipper process (``fleet.predlog.shipper``)
commits it, so the commit's Python work never holds the serving process's GIL. How a request waits is
``sync``:
- ``"write"`` (the server's default): ``record`` writes the rows into the journal in the caller's
  thread and the receipt is done at once. Once ``write(2)`` returns the rows are in the kernel, so
  they survive ``kill -9`` of any process; the shipper fsyncs the journal before each shipment, so
  a power cut can lose at most the last ``SHIP_SECONDS``. About 0.05 ms per request.
- ``"fsync"`` (``FLEET_PREDLOG_SYNC=fsync``): the writer thread appends and fsyncs each group and
  only then answers its requests, so an answered row also survives a power cut; it costs the fsync
  and two thread hand-offs, 1-2 ms per request here.
Reads that must see their own rows (``query``, feedback matching, drift inputs) flush first. A
flush commits in the reading process, files already handed to the shipper process included (rows
are inserted by id, so committing them twice adds nothing): it never waits on another process.

Each model decides what of its input is logged (its spec's ``loggable``: the digits models keep the
rounded 8×8 pixels, never the client's base64). Any ``inputs``/``outputs`` over ``MAX_FIELD_CHARS``
of JSON is replaced by ``{"_truncated": true, "chars": n, "sha256": …}``.

Where each part lives (every name other modules use is re-exported here, so ``from fleet.predlog
import X`` is the way in):
- ``schema``: the tables, ``UTCDateTime``/``JSON``, ``Prediction`` and the row helpers (``bounded``,
  ``label_key``).
- ``database``: ``database_url``, ``create_engine``, ``migrate``/``current_revision`` (Alembic, under
  a lock), which errors mean "database unavailable", and ``write_now``, the one write path of
  everything that is not a prediction (feedback, drift results: committed before it returns, or
  ``DatabaseUnavailable``; the caller resends).
- ``spool``: ``Spool``, the local journal / outage spool files.
- ``shipper`` (``python -m fleet.predlog.shipper``): the process that commits a worker's journal.
- ``metrics``: the Prometheus metrics and per-instance ``Stats``.
- ``receipt``: ``Receipt``, what ``record`` answers, and the ``Outcome`` it resolves to.
- ``writer``: ``PredictionLog``: record, group commit, replay; ``ORPHAN_SCAN_SECONDS`` is read there.
- ``journal``: journal mode's shipping (a mixin of ``PredictionLog``): rotation, fsync, commit or
  hand-over to the shipper process, flushes; ``SHIP_SECONDS`` is read there (patch them there).
- ``queries``: the read side (``query``, feedback, live accuracy, drift inputs and history), a mixin
  of ``PredictionLog``, and ``LogReader``, that read side alone for processes that write no predictions.
- ``rollup``: the five-minute aggregates the report reads (``catch_up``) and retention (``prune``,
  ``FLEET_PREDLOG_RETENTION_DAYS``, default 30 days), run off the serving workers by ``fleet.monitor``.
- ``bench`` (``python -m fleet.predlog``): the benchmark and ``--migrate``.
"""

from fleet.predlog.database import (
    MIGRATIONS,
    SQLITE_BUSY_TIMEOUT_S,
    VERSION_TABLE,
    DatabaseUnavailable,
    create_engine,
    current_revision,
    database_url,
    migrate,
    write_now,
)
from fleet.predlog.metrics import Metrics, Stats
from fleet.predlog.queries import Accuracy, LogReader
from fleet.predlog.receipt import Outcome, Receipt
from fleet.predlog.schema import (
    ANSWERED,
    JSON,
    MAX_FIELD_CHARS,
    ROLES,
    Prediction,
    UTCDateTime,
    bounded,
    drift_results,
    feedback,
    label_key,
    loop_events,
    metadata,
    plan_workers,
    prediction_buckets,
    predictions,
    rollouts,
    rollup_state,
    routing_plans,
    utcnow,
)
from fleet.predlog.spool import Spool
from fleet.predlog.writer import PredictionLog, Sync

__all__ = [
    "ANSWERED",
    "JSON",
    "MAX_FIELD_CHARS",
    "MIGRATIONS",
    "ROLES",
    "SQLITE_BUSY_TIMEOUT_S",
    "VERSION_TABLE",
    "Accuracy",
    "DatabaseUnavailable",
    "LogReader",
    "Metrics",
    "Outcome",
    "Prediction",
    "PredictionLog",
    "Receipt",
    "Spool",
    "Stats",
    "Sync",
    "UTCDateTime",
    "bounded",
    "create_engine",
    "current_revision",
    "database_url",
    "drift_results",
    "feedback",
    "label_key",
    "loop_events",
    "metadata",
    "migrate",
    "plan_workers",
    "prediction_buckets",
    "predictions",
    "rollouts",
    "rollup_state",
    "routing_plans",
    "utcnow",
    "write_now",
]
