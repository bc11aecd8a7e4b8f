"""A rollout's life: the route its state asks for, starting one, each step's decision, and aborting.

The database row is the truth and the plan follows it: ``reconcile`` makes the model's route what the
row asks for (the row is read again under the plan lock, so an abort racing a step ends as the abort
says), and whoever moves a rollout reconciles right after. A restart therefore resumes: the loop's
first round reconciles every running rollout, so a split is always owned by a row.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from fleet import store
from fleet.http import Problem
from fleet.loop import analysis, state
from fleet.loop.policy import RolloutPolicy
from fleet.loop.state import ABORTED, PROMOTED, ROLLED_BACK, RUNNING, Rollout
from fleet.predlog import utcnow
from fleet.routing import Route
from fleet.traffic import Traffic


def desired(route: Route, rollout: Rollout) -> Route:
    """The route ``rollout``'s state asks for, from the route as it is (other fields kept)."""
    tag = rollout["tag"]
    clear_shadow = {"shadow": None} if route.shadow == tag else {}
    if rollout["state"] == RUNNING:
        stage = rollout["policy"]["stages"][rollout["stage"]]
        if stage == "shadow":
            return route.model_copy(update={"shadow": tag, "canary": None, "canary_weight": 0})
        return route.model_copy(update={"canary": tag, "canary_weight": float(stage), **clear_shadow})
    cleared = {**clear_shadow, **({"canary": None, "canary_weight": 0} if route.canary == tag else {})}
    if rollout["state"] == PROMOTED and route.stable != tag:
        return route.model_copy(update={"stable": tag, "canary": None, "canary_weight": 0, **clear_shadow,
                                        "previous": [*route.previous, route.stable]})
    return route.model_copy(update=cleared)


async def reconcile(traffic: Traffic, engine: sa.Engine, rollout: Rollout) -> Route:
    """Make the model's route what the rollout's row asks for now (a no-op when it already is)."""
    model = rollout["model"]
    if desired(traffic.plan[model], rollout) == traffic.plan[model]:
        fresh = await asyncio.to_thread(state.get, engine, rollout["id"])
        if desired(traffic.plan[model], fresh) == traffic.plan[model]:
            return traffic.plan[model]
    return await traffic.change(model, lambda current: desired(current, state.get(engine, rollout["id"])))


def shown(stage: str | float) -> str:
    """A step as people write it: ``shadow``, ``20`` (not ``20.0``), ``2.5``."""
    return stage if isinstance(stage, str) else f"{stage:g}"


def policy_of(rollout: Rollout) -> RolloutPolicy:
    return RolloutPolicy.model_validate({k: v for k, v in rollout["policy"].items() if k != "stages"})


async def start(traffic: Traffic, engine: sa.Engine, model: str, tag: str, policy: RolloutPolicy,
                reason: str) -> Rollout:
    """Record a rollout of ``tag`` and route its first step; one that cannot load is rolled back."""
    if model not in traffic.plan:
        raise Problem(404, {"detail": f"no model named {model!r}"})
    route = traffic.plan[model]
    try:
        if store.parse_tag(tag)[0] != model:
            raise Problem(400, {"detail": f"{tag} is not a version of {model}"})
        store.get(tag)
    except store.ModelNotFound as missing:
        raise Problem(404, {"detail": str(missing)}) from missing
    if tag == route.stable:
        raise Problem(409, {"detail": f"{tag} is already the stable version of {model}"})
    if route.canary not in (None, tag):
        raise Problem(409, {"detail": f"{model} has a canary ({route.canary}) already; promote or roll it "
                                      "back first"})
    body = {**policy.model_dump(), "stages": policy.stages()}
    try:
        row = await asyncio.to_thread(state.begin, engine, model, tag, route.stable, body, reason)
    except state.AlreadyRunning as running:
        raise Problem(409, {"detail": str(running)}) from running
    try:
        await reconcile(traffic, engine, row)
    except Problem as failed:
        await finish(traffic, engine, row, ROLLED_BACK, "rolled_back",
                     f"{tag} could not be served: {failed.body.get('detail')}", {})
        raise
    return row


async def finish(traffic: Traffic, engine: sa.Engine, rollout: Rollout, end: str, kind: str, reason: str,
                 evidence: dict[str, Any]) -> bool:
    """End a running rollout (promoted, rolled back, aborted) and route accordingly."""
    moved = await asyncio.to_thread(state.move, engine, rollout, kind, reason, evidence, state=end)
    if moved:
        await reconcile(traffic, engine, rollout)
    return moved


async def abort(traffic: Traffic, engine: sa.Engine, model: str, reason: str) -> Rollout:
    """Stop the model's running rollout and take its traffic back to the stable (a step the loop
    takes meanwhile only means a second try)."""
    for _ in range(5):
        running = await asyncio.to_thread(state.running, engine, model)
        if not running:
            break
        if await finish(traffic, engine, running[0], ABORTED, "aborted", reason, {}):
            return await asyncio.to_thread(state.get, engine, running[0]["id"])
    raise Problem(409, {"detail": f"{model} has no running rollout"})


def _age(since: datetime) -> float:
    return (utcnow() - since).total_seconds()


async def decide(traffic: Traffic, engine: sa.Engine, rollout: Rollout,
                 errors: dict[str, int]) -> analysis.Verdict | None:
    """One look at a running rollout: judge its step, then hold, advance, promote or roll back.
    ``errors``: scoring errors of each arm since the step began. None: the step is not judged yet."""
    if await _owned_by_hand(traffic, engine, rollout, traffic.plan[rollout["model"]]) is not None:
        return None
    policy, stages = policy_of(rollout), rollout["policy"]["stages"]
    step = shown(stages[rollout["stage"]])
    verdict, record = await _look(engine, rollout, policy, errors)
    age = _age(rollout["stage_started_at"])
    held = verdict["decision"] == "wait" and age >= policy.interval
    await asyncio.to_thread(state.note_analysis, engine, rollout["id"], {**record, "held": held})
    if verdict["decision"] == "fail":
        failing = [f"{m['name']}: {m['detail']}" for m in verdict["measures"] if m["passed"] is False]
        await _roll_back(traffic, engine, rollout, f"at step {step}: {'; '.join(failing)}", record)
    elif age < policy.interval:
        return verdict
    elif held and age > policy.step_deadline():
        waiting = ", ".join(verdict["waiting"])
        await _roll_back(traffic, engine, rollout, f"at step {step}: too little evidence by the deadline "
                                                   f"({waiting})", record)
    elif held:
        previous = rollout["analysis"] or {}
        if not (previous.get("held") and previous.get("stage") == record["stage"]):  # the first says so
            await asyncio.to_thread(state.record, engine, rollout["model"], "held",
                                    f"step {step} waits for evidence: {', '.join(verdict['waiting'])}",
                                    record, rollout["id"])
    elif rollout["stage"] + 1 == len(stages):
        await finish(traffic, engine, rollout, PROMOTED, "promoted",
                     f"passed every step ({', '.join(map(shown, stages))})", record)
    elif await asyncio.to_thread(state.move, engine, rollout, "advanced",
                                 f"step {step} passed; next {shown(stages[rollout['stage'] + 1])}", record,
                                 stage=rollout["stage"] + 1):
        await reconcile(traffic, engine, await asyncio.to_thread(state.get, engine, rollout["id"]))
    return verdict


async def _roll_back(traffic: Traffic, engine: sa.Engine, rollout: Rollout, reason: str,
                     record: dict[str, Any]) -> None:
    await finish(traffic, engine, rollout, ROLLED_BACK, "rolled_back", reason, record)


async def _look(engine: sa.Engine, rollout: Rollout, policy: RolloutPolicy,
                errors: dict[str, int]) -> tuple[analysis.Verdict, dict[str, Any]]:
    """The step's evidence and verdict, and the record of both that events and the status carry."""
    stage = rollout["policy"]["stages"][rollout["stage"]]
    canary = (store.parse_tag(rollout["tag"])[1], "shadow" if stage == "shadow" else "canary")
    started = time.perf_counter()
    evidence = await asyncio.to_thread(
        analysis.gather, engine, rollout["model"], canary, store.parse_tag(rollout["baseline"])[1],
        rollout["stage_started_at"], rollout["started_at"], policy.analysis)
    evidence["canary"]["errors"], evidence["stable"]["errors"] = errors["canary"], errors["stable"]
    verdict = analysis.judge(evidence, policy.analysis)
    return verdict, {"stage": stage, "verdict": verdict, "evidence": evidence,
                     "analysis_ms": round((time.perf_counter() - started) * 1000, 2)}


async def _owned_by_hand(traffic: Traffic, engine: sa.Engine, rollout: Rollout, route: Route) -> str | None:
    """A person promoted the challenger or changed the stable meanwhile: the rollout ends there."""
    if route.stable == rollout["tag"]:
        end, reason = PROMOTED, "promoted by hand"
    elif route.stable != rollout["baseline"]:
        end, reason = ABORTED, f"the stable changed by hand to {route.stable}"
    else:
        return None
    await finish(traffic, engine, rollout, end, "promoted" if end == PROMOTED else "aborted", reason, {})
    return reason
