"""The read side of the prediction log: logged predictions, feedback and the live accuracy it gives,
the inputs drift checks compare, and the stored drift results (what the report draws over time comes
from ``fleet.predlog.rollup``'s aggregates, never from here). It is a mixin that ``PredictionLog``
inherits, so callers keep one object; it needs only the log's engine, metrics and ``flush`` (reads
that must see their own rows ship the journal first), and never touches the writer's queue or spool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from fleet.predlog.database import create_engine, database_url, migrate, write_now
from fleet.predlog.metrics import Metrics
from fleet.predlog.schema import (
    ANSWERED,
    ROLES,
    bounded,
    drift_results,
    feedback,
    label_key,
    predictions,
    utcnow,
)

logger = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 10  # how long a read waits for the journal to be shipped


@dataclass(frozen=True)
class Accuracy:
    """Predictions of a model (and version) whose label matched the feedback, out of those with feedback."""

    model: str
    version: str | None
    correct: int
    total: int

    @property
    def value(self) -> float | None:
        return self.correct / self.total if self.total else None


DEPTH = 2  # live accuracy looks at a model's newest DEPTH × last feedback rows (see ``accuracies``)


class LogQueries:
    """What a ``PredictionLog`` answers about what it logged (see the module docstring)."""

    engine: sa.Engine
    journal: bool
    metrics: Metrics
    flush: Callable[..., Any]

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

    def add_feedback(self, model: str, request_id: str, label: Any, item: int = 0) -> int:
        """Store the true label of one prediction (a later one replaces it); returns 1. Feedback and drift
        results are written by ``database.write_now`` (committed before it returns, or
        ``DatabaseUnavailable``)."""
        return self.add_feedback_many(model, [{"request_id": request_id, "label": label, "item": item}])

    def add_feedback_many(self, model: str, items: Iterable[Mapping[str, Any]]) -> int:
        """Bulk form of ``add_feedback``: ``[{request_id, label, item?}, …]`` in one transaction."""
        now = utcnow()
        rows = [{"model": model, "request_id": str(x["request_id"]), "item": int(x.get("item", 0)),
                 "label": bounded(x["label"], 4096), "label_key": label_key(x["label"]), "created_at": now}
                for x in items]
        if any(r["label_key"] is None for r in rows):
            raise ValueError("a feedback label cannot be null")
        insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[self.engine.dialect.name]
        stmt = insert(feedback)
        stmt = stmt.on_conflict_do_update(
            index_elements=["model", "request_id", "item"],
            set_={"label": stmt.excluded.label, "label_key": stmt.excluded.label_key,
                  "created_at": stmt.excluded.created_at})
        return write_now(self.engine, stmt, rows)

    def _see_own_writes(self) -> None:
        """Journal mode: ship what was recorded so far before a read that must see it (after
        ``FLUSH_TIMEOUT_S`` the read goes ahead: an answer a moment stale, not a failed request)."""
        if self.journal:
            try:
                self.flush(timeout=FLUSH_TIMEOUT_S)
            except TimeoutError:
                logger.warning("prediction log flush took over %s s; reading without it", FLUSH_TIMEOUT_S)

    async def see_own_writes(self) -> None:
        """``_see_own_writes`` for the event loop, awaiting the flush without holding a thread: with a
        thread held per flush, feedback for every prediction filled the default executor, and every
        other ``to_thread`` of the worker (plan changes, admin reads) queued behind it."""
        if self.journal:
            try:
                await asyncio.wait_for(self.record([]), FLUSH_TIMEOUT_S)
            except TimeoutError:
                logger.warning("prediction log flush took over %s s; reading without it", FLUSH_TIMEOUT_S)

    def unmatched_feedback(self, model: str, request_ids: Sequence[str], *, flushed: bool = False
                           ) -> list[str]:
        """Which of these request ids have no logged prediction of ``model`` (yet); ``flushed``: the
        caller has awaited ``see_own_writes``."""
        if not flushed:
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
        """Live accuracy per model (and version): each version's newest ``last`` feedback rows among
        its model's newest ``DEPTH × last``. The bound keeps the join to those rows (milliseconds at a
        million logged predictions, where a window over all feedback took seconds); a version with a
        small share of the traffic is judged on fewer rows, which ``Accuracy.total`` says."""
        if models is None:
            with self.engine.connect() as connection:
                models = sorted(connection.execute(sa.select(feedback.c.model).distinct()).scalars())
        found: list[Accuracy] = []
        for model in models:
            found += self._accuracies_of(model, last, since, by_version)
        return found

    def _accuracies_of(self, model: str, last: int | None, since: datetime | timedelta | None,
                       by_version: bool) -> list[Accuracy]:
        p, f = predictions.c, feedback.c
        joined, hit = self._joined()
        keys = [p.model, p.version] if by_version else [p.model]
        pos = sa.func.row_number().over(partition_by=keys, order_by=f.created_at.desc()).label("pos")
        inner = sa.select(*keys, hit.label("hit"), pos).select_from(joined).where(f.model == model)
        with self.engine.connect() as connection:
            if last is not None:
                newest = (sa.select(f.created_at).where(f.model == model).order_by(f.created_at.desc())
                          .offset(DEPTH * last - 1).limit(1))
                bound = connection.execute(newest).scalar()
                if bound is not None:
                    inner = inner.where(f.created_at >= bound)
            if since is not None:
                inner = inner.where(f.created_at >= _since(since))
            if not by_version:
                inner = inner.where(p.role.in_(ANSWERED))
            ranked = inner.subquery()
            columns = [ranked.c.model] + ([ranked.c.version] if by_version else [])
            stmt = sa.select(*columns, sa.func.sum(ranked.c.hit), sa.func.count()).group_by(*columns)
            if last is not None:
                stmt = stmt.where(ranked.c.pos <= last)
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

    def labelled_inputs(self, model: str, limit: int = 10_000) -> list[tuple[Any, Any]]:
        """The newest ``limit`` answered predictions that have feedback: (logged input, true label),
        what a retraining adds to its training source (one row per answered item; shadows left out)."""
        self._see_own_writes()
        p, f = predictions.c, feedback.c
        joined, _ = self._joined()
        stmt = (sa.select(p.inputs, f.label).select_from(joined)
                .where(f.model == model, p.role.in_(ANSWERED)).order_by(f.created_at.desc()).limit(limit))
        with self.engine.connect() as connection:
            found = [(row.inputs, row.label) for row in connection.execute(stmt)]
        return [(x, y) for x, y in found if not (isinstance(x, dict) and x.get("_truncated"))]

    def save_drift(self, model: str, version: str, records: Iterable[Mapping[str, Any]],
                   created_at: datetime | None = None) -> int:
        """Store one drift check (``DriftResult.records()``); the report plots their history."""
        when = created_at or utcnow()
        keys = ("feature", "kind", "measure", "value", "threshold", "noise_floor", "drifted", "n")
        rows = [{"model": model, "version": version, "created_at": when, **{k: r[k] for k in keys}}
                for r in records]
        return write_now(self.engine, drift_results.insert(), rows)

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


class LogReader(LogQueries):
    """The read side alone, on its own engine: for processes that only read the log and maintain its
    aggregates (the report's process, ``fleet.monitor``), with no writer, journal or spool of their own."""

    journal = False

    def __init__(self, url: str | None = None) -> None:
        self.engine = create_engine(database_url(url))
        migrate(self.engine)

    def flush(self, timeout: float | None = None) -> None:
        """Nothing to ship: this process records nothing."""

    def close(self) -> None:
        self.engine.dispose()
