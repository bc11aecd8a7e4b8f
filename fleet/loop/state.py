"""Rollouts and loop events in the prediction log's database: what the loop knows survives a restart.

A rollout moves only by a conditional update (``WHERE state = 'running' AND stage = <the stage the
decision was made at>``), in one transaction with the event that says why, so two deciders (a worker
taking over, an abort racing a step) can never both move it. One running rollout per model is the
unique index on ``active``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypedDict, TypeVar

import sqlalchemy as sa
from prometheus_client import Counter

from fleet.predlog import bounded, loop_events, rollouts, utcnow
from fleet.predlog.database import transaction

RUNNING, PROMOTED, ROLLED_BACK, ABORTED = "running", "promoted", "rolled_back", "aborted"
T = TypeVar("T")
EVENTS = Counter("fleet_loop_events", "Closed-loop events (rollout decisions, drift checks, retraining, "
                 "gates) by model and kind", ["model", "kind"])


class Rollout(TypedDict):
    id: int
    model: str
    tag: str  # the challenger
    baseline: str  # the stable when it started
    policy: dict[str, Any]  # RolloutPolicy as started, with its ``stages``
    stage: int
    state: str
    reason: str | None
    analysis: dict[str, Any] | None  # the last look at its step: verdict and evidence
    started_at: datetime
    stage_started_at: datetime
    updated_at: datetime


class Event(TypedDict):
    id: int
    model: str
    rollout_id: int | None
    kind: str
    reason: str
    evidence: dict[str, Any]
    created_at: datetime


class AlreadyRunning(RuntimeError):
    """The model has a running rollout already; one at a time."""


def _read(engine: sa.Engine, read: Callable[[sa.Connection], T]) -> T:
    with transaction(engine) as connection:
        return read(connection)


def _event_row(model: str, kind: str, reason: str, evidence: dict[str, Any] | None,
               rollout_id: int | None) -> dict[str, Any]:
    return {"model": model, "rollout_id": rollout_id, "kind": kind, "reason": reason,
            "evidence": bounded(evidence or {}), "created_at": utcnow()}


def begin(engine: sa.Engine, model: str, tag: str, baseline: str, policy: dict[str, Any],
          reason: str) -> Rollout:
    """Insert a running rollout at its first stage and its ``started`` event."""
    now = utcnow()
    row = {"model": model, "tag": tag, "baseline": baseline, "policy": policy, "stage": 0,
           "state": RUNNING, "active": model, "reason": None, "analysis": None, "started_at": now,
           "stage_started_at": now, "updated_at": now}
    try:
        with transaction(engine) as connection:
            found = connection.execute(rollouts.insert().values(**row).returning(rollouts.c.id))
            new_id = int(found.scalar_one())
            connection.execute(loop_events.insert().values(
                **_event_row(model, "started", reason, {"tag": tag, "baseline": baseline,
                                                        "stages": policy["stages"]}, new_id)))
    except sa.exc.IntegrityError as taken:
        raise AlreadyRunning(f"{model} has a rollout running already") from taken
    EVENTS.labels(model, "started").inc()
    return get(engine, new_id)


def move(engine: sa.Engine, rollout: Rollout, kind: str, reason: str, evidence: dict[str, Any], *,
         stage: int | None = None, state: str | None = None) -> bool:
    """Move a running rollout on from where ``rollout`` saw it (next ``stage``, or a final ``state``),
    with its event; False when someone else moved it first (nothing is written then)."""
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if stage is not None:
        values |= {"stage": stage, "stage_started_at": now}
    if state is not None:
        values |= {"state": state, "active": None, "reason": reason}
    r = rollouts.c
    with transaction(engine) as connection:
        moved = connection.execute(rollouts.update().where(
            r.id == rollout["id"], r.state == RUNNING, r.stage == rollout["stage"]).values(**values))
        if moved.rowcount != 1:
            return False
        connection.execute(loop_events.insert().values(
            **_event_row(rollout["model"], kind, reason, evidence, rollout["id"])))
    EVENTS.labels(rollout["model"], kind).inc()
    return True


def note_analysis(engine: sa.Engine, rollout_id: int, analysis: dict[str, Any]) -> None:
    """Keep the last look at a running rollout's step (``fleet rollout status`` shows it)."""
    with transaction(engine) as connection:
        connection.execute(rollouts.update().where(rollouts.c.id == rollout_id)
                           .values(analysis=bounded(analysis)))


def record(engine: sa.Engine, model: str, kind: str, reason: str, evidence: dict[str, Any] | None = None,
           rollout_id: int | None = None) -> None:
    """An event that moves no rollout (a hold, a drift check, a retraining and its gate)."""
    with transaction(engine) as connection:
        connection.execute(loop_events.insert().values(**_event_row(model, kind, reason, evidence,
                                                                    rollout_id)))
    EVENTS.labels(model, kind).inc()


def get(engine: sa.Engine, rollout_id: int) -> Rollout:
    return _read(engine, lambda c: _rollout(c.execute(
        sa.select(rollouts).where(rollouts.c.id == rollout_id)).one()))


def running(engine: sa.Engine, model: str | None = None) -> list[Rollout]:
    stmt = sa.select(rollouts).where(rollouts.c.state == RUNNING).order_by(rollouts.c.id)
    if model is not None:
        stmt = stmt.where(rollouts.c.model == model)
    return _read(engine, lambda c: [_rollout(row) for row in c.execute(stmt)])


def recent(engine: sa.Engine, model: str | None = None, limit: int = 20) -> list[Rollout]:
    stmt = sa.select(rollouts).order_by(rollouts.c.id.desc()).limit(limit)
    if model is not None:
        stmt = stmt.where(rollouts.c.model == model)
    return _read(engine, lambda c: [_rollout(row) for row in c.execute(stmt)])


def events(engine: sa.Engine, model: str | None = None, since: datetime | None = None,
           rollout_id: int | None = None, limit: int = 200) -> list[Event]:
    """The newest ``limit`` events (filtered), oldest first."""
    e = loop_events.c
    stmt = sa.select(loop_events).order_by(e.id.desc()).limit(limit)
    if model is not None:
        stmt = stmt.where(e.model == model)
    if since is not None:
        stmt = stmt.where(e.created_at >= since)
    if rollout_id is not None:
        stmt = stmt.where(e.rollout_id == rollout_id)
    found = _read(engine, lambda c: [Event(**row._mapping) for row in c.execute(stmt)])
    return found[::-1]


def last_event_at(engine: sa.Engine, model: str, kind: str) -> datetime | None:
    e = loop_events.c
    stmt = sa.select(sa.func.max(e.created_at)).where(e.model == model, e.kind == kind)
    return _read(engine, lambda c: c.execute(stmt).scalar())


def _rollout(row: Any) -> Rollout:
    values = dict(row._mapping)
    values.pop("active", None)
    return Rollout(**values)
