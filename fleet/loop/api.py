"""The closed loop on the admin API: start and abort a rollout, and its status with the events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from fleet.http import Problem
from fleet.loop import rollout, state
from fleet.loop.policy import Seconds, Stage
from fleet.monitoring import unavailable_is_503
from fleet.predlog import utcnow
from fleet.traffic import Traffic

T = TypeVar("T")


class RolloutStart(BaseModel):
    """``POST /admin/rollouts/{model}``: the challenger, and what to change of the plan's policy."""

    model_config = ConfigDict(extra="forbid")

    tag: Annotated[str, Field(min_length=3, max_length=128, examples=["titanic:v2"])]
    steps: Annotated[list[Stage], Field(min_length=1, max_length=20)] | None = None
    interval: Seconds | None = None
    deadline: Seconds | None = None
    shadow_first: bool | None = None


async def _database(work: Awaitable[T]) -> T:
    with unavailable_is_503():
        return await work


async def start(traffic: Traffic, engine: sa.Engine, model: str, request: RolloutStart) -> dict[str, Any]:
    if model not in traffic.plan:
        raise Problem(404, {"detail": f"no model named {model!r}"})
    overrides = request.model_dump(exclude={"tag"}, exclude_none=True)
    try:
        policy = traffic.plan[model].rollout.model_validate(
            {**traffic.plan[model].rollout.model_dump(), **overrides})
    except ValueError as bad:
        raise Problem(422, {"detail": str(bad)}) from bad
    reason = "started by an admin"
    return describe(await _database(rollout.start(traffic, engine, model, request.tag, policy, reason)))


async def abort(traffic: Traffic, engine: sa.Engine, model: str) -> dict[str, Any]:
    if model not in traffic.plan:
        raise Problem(404, {"detail": f"no model named {model!r}"})
    return describe(await _database(rollout.abort(traffic, engine, model, "aborted by an admin")))


async def refuse_while_running(engine: sa.Engine | None, model: str) -> None:
    """A routing change by hand while a rollout drives the model would be undone by its next round
    (the rollout's row is the truth): refuse it, and say how to take over. With the database down
    the change goes ahead: a person rolling back by hand must not wait for it."""
    if engine is None:
        return
    try:
        running = await _database(asyncio.to_thread(state.running, engine, model))
    except Problem:
        return
    if running:
        raise Problem(409, {"detail": f"a rollout of {running[0]['tag']} drives {model}'s routing; "
                                      f"abort it first (POST /admin/rollouts/{model}/abort)"})


async def status(engine: sa.Engine, model: str | None, limit: int) -> dict[str, Any]:
    """Running rollouts with their last analysis, the latest ended ones, and the newest events."""
    recent = await _database(asyncio.to_thread(state.recent, engine, model, 20))
    events = await _database(asyncio.to_thread(state.events, engine, model, None, None, limit))
    return {"running": [describe(r) for r in recent if r["state"] == state.RUNNING],
            "ended": [describe(r) for r in recent if r["state"] != state.RUNNING],
            "events": [{**e, "created_at": e["created_at"].isoformat()} for e in events]}


def describe(found: state.Rollout) -> dict[str, Any]:
    """A rollout as the API and ``fleet rollout status`` show it."""
    stages = found["policy"]["stages"]
    analysis = found["analysis"] or {}
    verdict = analysis.get("verdict") or {}
    return {"id": found["id"], "model": found["model"], "tag": found["tag"], "baseline": found["baseline"],
            "state": found["state"], "reason": found["reason"], "steps": stages,
            "step": stages[found["stage"]], "step_number": found["stage"] + 1,
            "step_seconds": round((utcnow() - found["stage_started_at"]).total_seconds(), 1),
            "interval": found["policy"]["interval"],
            "started_at": found["started_at"].isoformat(), "updated_at": found["updated_at"].isoformat(),
            "last_verdict": verdict.get("decision"),
            "measures": [{k: m[k] for k in ("name", "passed", "detail")}
                         for m in verdict.get("measures", [])]}
