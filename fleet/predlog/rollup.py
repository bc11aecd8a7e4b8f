"""Aggregates of the prediction log (``prediction_buckets``) and retention of its raw rows.

The report and anything else that looks back over days reads these aggregates, never the raw rows, so
its cost grows with the time it covers and the versions it shows, not with the traffic: a million raw
rows are seconds of reading and hundreds of megabytes of frames. Each bucket holds, per model, version
and role: the count, a latency histogram (p50/p99 merge across buckets, exact to one histogram step,
20 %), the first and last time, and how many of its predictions have feedback and how many of those
were right. There are three widths (``WIDTHS``): five minutes from the raw rows, hours from those and
days from the hours, so a report over a month reads days (a few hundred rows), not 8,640 five-minute
buckets per series.

A bucket is always recomputed whole from what is below it, never incremented, so a rollup that runs
twice never double-counts. ``catch_up`` recomputes what may have changed since its last run: the buckets
from ``LAG`` before it (rows shipped from a journal or replayed after a short outage arrive late) and
the buckets of predictions that received feedback since. ``prune`` (retention,
``FLEET_PREDLOG_RETENTION_DAYS``, default 30) catches up, then deletes raw predictions, feedback and
drift results older than the cutoff; their buckets stay, final from then on (``raw_since``: a
recompute never reaches before it).

Run off the serving workers by the report's process (``fleet.monitor``), and by the report CLI.
"""

from __future__ import annotations

import bisect
import itertools
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from fleet.predlog.schema import (
    drift_results,
    feedback,
    prediction_buckets,
    predictions,
    rollup_state,
    utcnow,
)

BUCKET = timedelta(minutes=5)
WIDTHS = (300, 3600, 86400)  # seconds: five minutes (from raw rows), hours, days
LAG = timedelta(minutes=10)  # how far before its last run a catch-up looks again, for late rows
CHUNK = timedelta(days=1)  # raw rows are read and deleted a day at a time (bounded transactions)
LATENCY_EDGES = tuple(0.05 * 1.2**i for i in range(82))  # ms: 0.05 … ≈ 160,000, each 1.2× the last


def retention_days() -> float:
    return float(os.environ.get("FLEET_PREDLOG_RETENTION_DAYS", "30"))


class RollupRun(TypedDict):
    buckets: int  # buckets written
    rows: int  # raw rows read
    seconds: float


class PruneRun(TypedDict):
    cutoff: str  # ISO time: raw rows before it were removed
    predictions: int
    feedback: int
    drift_results: int
    seconds: float


# -- the histogram -----------------------------------------------------------------------------------


def latency_bin(latency_ms: float) -> int:
    """The histogram bin of a latency (the database computes the same in ``_grouped``)."""
    return bisect.bisect_right(LATENCY_EDGES, latency_ms)


def merged(hists: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for hist in hists:
        for key, count in hist.items():
            total[key] = total.get(key, 0) + int(count)
    return total


def quantile(hist: Mapping[str, int], q: float) -> float | None:
    """The ``q`` quantile of a latency histogram: the geometric middle of the bin it falls in."""
    total = sum(hist.values())
    if not total:
        return None
    seen, target = 0, q * total
    for index in sorted(int(k) for k in hist):
        seen += hist[str(index)]
        if seen >= target:
            break
    if index == 0:
        return LATENCY_EDGES[0] / 2
    if index >= len(LATENCY_EDGES):
        return LATENCY_EDGES[-1]
    return (LATENCY_EDGES[index - 1] * LATENCY_EDGES[index]) ** 0.5


# -- recomputing buckets -------------------------------------------------------------------------------


def floor(moment: datetime, seconds: int = WIDTHS[0]) -> datetime:
    """The start of the ``seconds``-wide bucket ``moment`` falls in."""
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, UTC)


def _ceil(moment: datetime, seconds: int) -> datetime:
    start = floor(moment, seconds)
    return start if start == moment else start + timedelta(seconds=seconds)


def recompute(connection: sa.Connection, start: datetime, end: datetime) -> tuple[int, int]:
    """Replace the five-minute buckets in [start, end) (aligned) by what the raw rows say, then the
    hours and days around them; returns (five-minute buckets, raw rows read).

    The database counts: one grouped query returns a row per series, five minutes and latency bin,
    not one per prediction. Read row by row into Python, a catch-up of 150,000 predictions took 3.9 s
    of the monitor's CPU before every render, on the cores that serve (the monitor runs at idle
    priority, but the cores are shared)."""
    found: dict[tuple[str, str, str, datetime], dict[str, Any]] = {}
    rows = 0
    for group in connection.execute(_grouped(start, end)):
        rows += group.predictions
        moment = datetime.fromtimestamp(group.slot * WIDTHS[0], UTC)
        _add(found, (group.model, group.version, group.role, moment), {
            "seconds": WIDTHS[0], "predictions": group.predictions,
            "latency_hist": {str(group.bin): group.predictions}, "first_at": group.first_at,
            "last_at": group.last_at, "feedback": group.feedback, "correct": int(group.correct or 0)})
    _replace(connection, WIDTHS[0], start, end, list(found.values()))
    for finer, width in itertools.pairwise(WIDTHS):
        _coarsen(connection, finer, width, floor(start, width), _ceil(end, width))
    return len(found), rows


class _FiveMinutes(FunctionElement):
    """The five-minute slot of a time column (seconds since the epoch // ``WIDTHS[0]``), in the database."""

    type = sa.Integer()
    inherit_cache = True


@compiles(_FiveMinutes)
def _five_minutes(element: _FiveMinutes, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column}) / {WIDTHS[0]}) AS INTEGER)"


@compiles(_FiveMinutes, "sqlite")
def _five_minutes_sqlite(element: _FiveMinutes, compiler: Any, **kw: Any) -> str:
    # The column holds UTC text ("2026-12-03 16:09:59.999706"). strftime reads it as UTC but rounds to
    # the millisecond (that one would fall in 16:10), so the fraction is cut off first.
    column = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) / {WIDTHS[0]})"


def _grouped(start: datetime, end: datetime) -> sa.Select:
    """Per series, five minutes and latency bin of the predictions in [start, end): count, first and
    last time, how many have feedback and how many of those were right."""
    p, f = predictions.c, feedback.c
    on = sa.and_(p.request_id == f.request_id, p.model == f.model, p.item == f.item)
    hit = sa.case((f.label_key.is_(None), None), (p.label == f.label_key, 1), else_=0)
    # bisect_right(LATENCY_EDGES, latency) as the same comparisons, so SQL bins exactly as Python
    binned = sa.case(*((p.latency_ms < edge, i) for i, edge in enumerate(LATENCY_EDGES)),
                     else_=len(LATENCY_EDGES))
    rows = (sa.select(p.model, p.version, p.role, p.created_at, _FiveMinutes(p.created_at).label("slot"),
                      binned.label("bin"), hit.label("hit"))
            .select_from(predictions.outerjoin(feedback, on))
            .where(p.created_at >= start, p.created_at < end)).subquery()
    r = rows.c
    return (sa.select(r.model, r.version, r.role, r.slot, r.bin, sa.func.count().label("predictions"),
                      sa.func.min(r.created_at).label("first_at"), sa.func.max(r.created_at).label("last_at"),
                      sa.func.count(r.hit).label("feedback"), sa.func.sum(r.hit).label("correct"))
            .group_by(r.model, r.version, r.role, r.slot, r.bin))


def _add(found: dict[tuple[str, str, str, datetime], dict[str, Any]], key: tuple[str, str, str, datetime],
         part: dict[str, Any]) -> None:
    """Add ``part`` (its width, counts, histogram, first/last) to the bucket ``key`` (series, start)."""
    into = found.get(key)
    if into is None:
        found[key] = {"model": key[0], "version": key[1], "role": key[2], "bucket": key[3],
                      **part, "latency_hist": dict(part["latency_hist"])}
        return
    for name in ("predictions", "feedback", "correct"):
        into[name] += part[name]
    into["latency_hist"] = merged([into["latency_hist"], part["latency_hist"]])
    into["first_at"], into["last_at"] = min(into["first_at"], part["first_at"]), max(into["last_at"],
                                                                                   part["last_at"])


def _replace(connection: sa.Connection, seconds: int, start: datetime, end: datetime,
             rows: list[dict[str, Any]]) -> None:
    b = prediction_buckets.c
    connection.execute(prediction_buckets.delete().where(b.seconds == seconds, b.bucket >= start,
                                                         b.bucket < end))
    if rows:
        connection.execute(prediction_buckets.insert(), rows)


def _coarsen(connection: sa.Connection, finer: int, width: int, start: datetime, end: datetime) -> None:
    """The ``width`` buckets in [start, end), recomputed from the ``finer`` ones inside them."""
    b = prediction_buckets.c
    stmt = sa.select(prediction_buckets).where(b.seconds == finer, b.bucket >= start, b.bucket < end)
    found: dict[tuple[str, str, str, datetime], dict[str, Any]] = {}
    for row in connection.execute(stmt):
        _add(found, (row.model, row.version, row.role, floor(row.bucket, width)), {"seconds": width, **{
            name: getattr(row, name) for name in (
                "predictions", "latency_hist", "first_at", "last_at", "feedback", "correct")}})
    _replace(connection, width, start, end, list(found.values()))


def _state(connection: sa.Connection, name: str) -> datetime | None:
    return connection.execute(sa.select(rollup_state.c.at).where(rollup_state.c.name == name)).scalar()


def _set_state(connection: sa.Connection, name: str, at: datetime) -> None:
    connection.execute(rollup_state.delete().where(rollup_state.c.name == name))
    connection.execute(rollup_state.insert(), [{"name": name, "at": at}])


def _ranges(starts: Iterable[datetime], tail: tuple[datetime, datetime]) -> list[tuple[datetime, datetime]]:
    """Bucket starts and one tail range as few [start, end) ranges as cover them, each ≤ ``CHUNK``."""
    spans = sorted([(s, s + BUCKET) for s in starts] + [tail])
    joined: list[list[datetime]] = []
    for start, end in spans:
        if joined and start <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    chunks = []
    for start, end in joined:
        while start < end:
            chunks.append((start, min(end, start + CHUNK)))
            start += CHUNK
    return chunks


def _since_last(connection: sa.Connection, now: datetime) -> datetime:
    """Where a catch-up starts: ``LAG`` before the last one, else at the oldest raw row; never before
    ``raw_since`` (older buckets are final)."""
    last, raw_since = _state(connection, "rolled_up_at"), _state(connection, "raw_since")
    oldest = sa.select(sa.func.min(predictions.c.created_at))
    since = last - LAG if last else connection.execute(oldest).scalar() or now
    return max(since, raw_since) if raw_since else since


def catch_up(engine: sa.Engine, now: datetime | None = None) -> RollupRun:
    """Recompute every bucket that may have changed since the last catch-up (see the module docstring)."""
    began, now = time.perf_counter(), now or utcnow()
    with engine.connect() as connection:
        since = _since_last(connection, now)
        p, f = predictions.c, feedback.c
        # driven from the feedback index: the predictions that got feedback since, looked up by key
        recent = sa.select(f.request_id, f.model, f.item).where(f.created_at >= since)
        touched = connection.execute(
            sa.select(p.created_at).where(sa.tuple_(p.request_id, p.model, p.item).in_(recent))).scalars()
        starts = {floor(t) for t in touched if t < floor(since)}
    buckets = rows = 0
    for start, end in _ranges(starts, (floor(since), floor(now) + BUCKET)):
        with engine.begin() as connection:
            written, read = recompute(connection, start, end)
        buckets, rows = buckets + written, rows + read
    with engine.begin() as connection:
        _set_state(connection, "rolled_up_at", now)
    return {"buckets": buckets, "rows": rows, "seconds": time.perf_counter() - began}


def prune(engine: sa.Engine, days: float | None = None, now: datetime | None = None) -> PruneRun:
    """Retention: catch up, then delete raw rows older than ``days`` (their buckets stay)."""
    began, now = time.perf_counter(), now or utcnow()
    cutoff = floor(now - timedelta(days=retention_days() if days is None else days))
    catch_up(engine, now)
    removed = {"predictions": 0, "feedback": 0, "drift_results": 0}
    for table in (predictions, feedback, drift_results):
        with engine.connect() as connection:
            oldest = connection.execute(sa.select(sa.func.min(table.c.created_at))).scalar()
        while oldest is not None and oldest < cutoff:
            oldest = min(oldest + CHUNK, cutoff)
            with engine.begin() as connection:
                done = connection.execute(table.delete().where(table.c.created_at < oldest))
            removed[table.name] += done.rowcount
    with engine.begin() as connection:
        _set_state(connection, "raw_since", cutoff)
    return {"cutoff": cutoff.isoformat(), **removed, "seconds": time.perf_counter() - began}


def _where(stmt: Any, seconds: int, since: datetime | timedelta | None,
           models: Sequence[str] | None) -> Any:
    b = prediction_buckets.c
    stmt = stmt.where(b.seconds == seconds)
    if since is not None:
        start = utcnow() - since if isinstance(since, timedelta) else since
        stmt = stmt.where(b.bucket >= floor(start, seconds))
    if models is not None:
        stmt = stmt.where(b.model.in_(list(models)))
    return stmt


def read_buckets(engine: sa.Engine, since: datetime | timedelta | None = None,
                 models: Sequence[str] | None = None, seconds: int = WIDTHS[0]) -> list[dict[str, Any]]:
    """The ``seconds``-wide buckets (oldest first) of ``models`` since ``since``: what the report draws."""
    stmt = _where(sa.select(prediction_buckets), seconds, since, models).order_by(prediction_buckets.c.bucket)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(stmt)]


def spans(engine: sa.Engine, since: datetime | timedelta | None = None,
          models: Sequence[str] | None = None) -> dict[str, tuple[datetime, datetime]]:
    """Per model, its first and last aggregated prediction (from the day buckets: a few rows)."""
    b = prediction_buckets.c
    stmt = _where(sa.select(b.model, sa.func.min(b.first_at), sa.func.max(b.last_at)), WIDTHS[-1], since,
                  models).group_by(b.model)
    with engine.connect() as connection:
        return {row[0]: (row[1], row[2]) for row in connection.execute(stmt)}
