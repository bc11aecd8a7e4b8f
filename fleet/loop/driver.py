"""The closed loop, driven by whichever worker of the fleet holds the lease (``fleet.loop.lease``).

Every worker runs ``Driver.run``; each round (``FLEET_LOOP_SECONDS``, default 5 s) it asks for the
lease, and only the holder goes on: it reconciles and judges every running rollout
(``fleet.loop.rollout``), then looks at each model's triggers. A scheduled drift check is the existing
drift job over the recent window; a retraining is the API's (``fleet.retrain``, a niced subprocess),
judged by the model's gate on held-out data, and a challenger that passes starts a rollout. One loop
per model at a time: no trigger fires while the model trains or rolls out. Every run is an event.
When the holder dies the kernel (or PostgreSQL) frees the lease and another worker's next round
takes over, resuming every rollout from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Gauge

from fleet import drift, store
from fleet.http import Problem
from fleet.loop import analysis, rollout, state
from fleet.loop.lease import Lease
from fleet.loop.policy import Triggers
from fleet.loop.state import Rollout
from fleet.predlog import DatabaseUnavailable, PredictionLog, utcnow
from fleet.retrain import challenge
from fleet.traffic import Traffic

ROUND_SECONDS = float(os.environ.get("FLEET_LOOP_SECONDS", "5"))
logger = logging.getLogger(__name__)
STAGE = Gauge("fleet_rollout_stage", "Step of the model's running rollout (1 = first; 0: none running)",
              ["model"], multiprocess_mode="livemax")
WEIGHT = Gauge("fleet_rollout_canary_weight", "Traffic share (%) the running rollout gives its challenger",
               ["model"], multiprocess_mode="livemax")


class Driver:
    def __init__(self, traffic: Traffic, log: PredictionLog) -> None:
        self.traffic, self.log, self.engine = traffic, log, log.engine
        self.lease = Lease(self.engine)
        self.training: dict[str, asyncio.Task[None]] = {}
        self._errors_at: dict[tuple[int, int], dict[tuple[str, str], dict[str, float]]] = {}
        self._holding = False
        self._armed: dict[str, datetime] = {}

    async def run(self) -> None:
        """Rounds for the worker's life; a failing round is logged and the next one tries again."""
        while True:
            await asyncio.sleep(ROUND_SECONDS)
            try:
                if await asyncio.to_thread(self.lease.hold):
                    await self.round()
                else:
                    self._holding = False
            except (DatabaseUnavailable, sa.exc.SQLAlchemyError) as error:
                logger.warning("the closed loop waits for its database: %s", str(error).splitlines()[0])
            except Exception:
                logger.exception("a round of the closed loop failed")

    async def round(self) -> None:
        running = await asyncio.to_thread(state.running, self.engine)
        if not self._holding:
            self._holding = True
            for found in running:
                await asyncio.to_thread(state.record, self.engine, found["model"], "resumed",
                                        f"worker {self.traffic.worker} (pid {os.getpid()}) drives the loop",
                                        None, found["id"])
        self._errors_at = {key: totals for key, totals in self._errors_at.items()
                           if key[0] in {found["id"] for found in running}}
        for found in running:
            await rollout.reconcile(self.traffic, self.engine, found)
            await rollout.decide(self.traffic, self.engine, found, self._errors(found))
        self._publish(await asyncio.to_thread(state.running, self.engine))
        await self._triggers({found["model"] for found in running})

    def _errors(self, found: Rollout) -> dict[str, int]:
        """Scoring errors of each arm since this holder first looked at the rollout's step."""
        totals = analysis.outcome_totals(found["model"])
        first = self._errors_at.setdefault((found["id"], found["stage"]), totals)
        stage = found["policy"]["stages"][found["stage"]]
        arms = {"canary": (store.parse_tag(found["tag"])[1], "shadow" if stage == "shadow" else "canary"),
                "stable": (store.parse_tag(found["baseline"])[1], "stable")}
        return {name: int(totals.get(key, {}).get("error", 0) - first.get(key, {}).get("error", 0))
                for name, key in arms.items()}

    def _publish(self, running: list[Rollout]) -> None:
        active = {found["model"]: found for found in running}
        for model in self.traffic.plan:
            found = active.get(model)
            STAGE.labels(model).set(found["stage"] + 1 if found else 0)
            WEIGHT.labels(model).set(self.traffic.plan[model].canary_weight if found else 0)

    # -- triggers ------------------------------------------------------------------------------------

    async def _triggers(self, rolling: set[str]) -> None:
        for model, route in self.traffic.plan.items():
            rules = route.triggers
            if rules is None or model in rolling or model in self.training:
                continue
            if rules.drift_every and await self._due(model, "drift_checked", rules.drift_every):
                drifted = await asyncio.to_thread(self._check_drift, model, route.stable, rules)
                if drifted and rules.retrain_on_drift:
                    self._train(model, f"drift in {', '.join(drifted)}")
                    continue
            if rules.retrain_every and await self._due(model, "retrain_started", rules.retrain_every):
                self._train(model, f"the {rules.retrain_every:g} s retraining schedule")

    async def _due(self, model: str, kind: str, every: float) -> bool:
        """Whether ``every`` seconds have passed since the last ``kind`` event (or since the model's
        triggers were first seen: the clock starts there, recorded so that a restart keeps it; read
        once per holder, since it never moves)."""
        armed = self._armed.get(model) or await asyncio.to_thread(state.last_event_at, self.engine, model,
                                                                  "armed")
        if armed is None:
            await asyncio.to_thread(state.record, self.engine, model, "armed", "triggers first seen",
                                    self.traffic.plan[model].triggers.model_dump())
            return False
        self._armed[model] = armed
        last = await asyncio.to_thread(state.last_event_at, self.engine, model, kind)
        return utcnow() - max(armed, last or armed) >= timedelta(seconds=every)

    def _check_drift(self, model: str, tag: str, rules: Triggers) -> list[str]:
        """The drift job on the stable's recent inputs; the drifted features (empty: none)."""
        reference = store.get(tag).info.metadata.get("drift_profile")
        if reference is None:
            state.record(self.engine, model, "drift_checked", f"{tag} was saved without a drift profile")
            return []
        window = timedelta(seconds=rules.drift_window or rules.drift_every or 0)
        result = drift.check(self.log, model, store.parse_tag(tag)[1], reference, since=window)
        if result.drifted:
            reason = f"drift in {', '.join(result.drifted_features)} ({result.n} recent inputs)"
        elif result.enough_data:
            reason = f"no drift ({result.n} recent inputs)"
        else:
            reason = f"too few recent inputs to judge ({result.n} of {result.min_samples})"
        state.record(self.engine, model, "drift_checked", reason, {"tag": tag, **result.to_dict()})
        return result.drifted_features

    def _train(self, model: str, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self._retrain(model, reason))
        self.training[model] = task
        task.add_done_callback(lambda _: self.training.pop(model, None))

    async def _retrain(self, model: str, reason: str) -> None:
        """Train a challenger, gate it on held-out data against the stable, roll out one that passes."""
        spec, route = self.traffic.spec(model), self.traffic.plan[model]
        # new data: the training source plus the log's labelled predictions, where the model takes them
        params: dict[str, Any] = {**(route.triggers.params if route.triggers else {}), "with_feedback": True}
        await self._event(model, "retrain_started", reason, {"params": params})
        if spec.evaluate is None:
            await self._event(model, "retrain_failed", f"{model} declares no evaluation to gate a challenger")
            return
        try:
            result = await challenge(spec, route.stable, params)
        except Problem as failed:
            await self._event(model, "retrain_failed", str(failed.body.get("detail")), failed.body)
            return
        verdict = spec.gate.judge(result["metrics"], result["stable_metrics"])
        summary = (f"{result['tag']} (the source + {result['feedback_rows']} labelled predictions): "
                   f"{verdict['metric']} {verdict['challenger']:.4f} vs stable {verdict['stable']:.4f} "
                   f"(tolerance {verdict['tolerance']})")
        await self._event(model, "gate_passed" if verdict["passed"] else "gate_refused", summary,
                          {"tag": result["tag"], "gate": verdict, "seconds": result["seconds"],
                           "feedback_rows": result["feedback_rows"]})
        if verdict["passed"]:
            try:
                await rollout.start(self.traffic, self.engine, model, result["tag"], route.rollout,
                                    f"retrained after {reason}; the gate passed")
            except Problem as refused:
                await self._event(model, "retrain_failed", f"the rollout could not start: "
                                                           f"{refused.body.get('detail')}")

    async def _event(self, model: str, kind: str, reason: str,
                     evidence: dict[str, Any] | None = None) -> None:
        await asyncio.to_thread(state.record, self.engine, model, kind, reason, evidence)


def start(traffic: Traffic, log: PredictionLog) -> asyncio.Task[None]:
    """Run this worker's driver (call from an ``on_startup`` hook)."""
    return asyncio.get_running_loop().create_task(Driver(traffic, log).run())
