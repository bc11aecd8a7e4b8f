"""The traffic control of one serving worker: which version answers each request, shadow copies, and
plan changes that reach every worker.

The worker holds its models (``fleet.local_model``) and the routing plan. A change is loaded and
smoke-tested here first, written durably to the shared plan file (``fleet.plan_sync``) and only then
acknowledged; the other workers follow the file. A tag that fails to load leaves the old plan serving
and says why.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from fleet import heap, plan_sync, store
from fleet.http import Problem, new_request_id
from fleet.local_model import LocalModel
from fleet.predlog import Prediction, PredictionLog
from fleet.routing import Role, Route
from fleet.spec import ModelSpec

PIN_HEADER = "x-model-version"
KEY_HEADERS = ("x-user-id", "x-request-id")
FOLLOW_SECONDS = 2.0  # how long a change waits for the other workers before it is acknowledged anyway
SHADOW_QUEUE = 64  # copies waiting per model; past it a copy is dropped, never the primary delayed
logger = logging.getLogger(__name__)

# ``check(outputs)`` may refuse a request once its outputs are known (raise ``Problem``); a refused
# request is neither answered nor logged, and is counted as refused.
Check = Callable[[list[dict[str, Any]]], None]


class Score(Protocol):
    """One model's scoring, already bound to a request's routing: ``await score(inputs[, check])``."""

    def __call__(self, inputs: list[Any], check: Check | None = None) -> Awaitable[list[dict[str, Any]]]: ...

REQUESTS = Counter("fleet_predictions_total", "Scored requests", ["model", "version", "role", "outcome"])
LATENCY = Histogram("fleet_prediction_seconds", "Time to score a request, including the batch wait",
                    ["model", "version", "role"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
SHADOW_DROPPED = Counter("fleet_shadow_dropped_total", "Shadow copies dropped: the shadow queue was full",
                         ["model"])
PLAN_FAILED = Gauge("fleet_plan_apply_failed", "1 while this worker could not load its plan for a model",
                    ["model"], multiprocess_mode="max")


@functools.cache
def _answered(model: str, version: str, role: str) -> tuple[Any, Any]:
    """The latency and "ok" series of one routed version, looked up once: ``labels()`` costs a few
    microseconds a call, and the series are as few as the versions a plan has served."""
    return LATENCY.labels(model, version, role), REQUESTS.labels(model, version, role, "ok")


class Traffic:
    """Routes each request of each served model to a version, per the plan, logs it, and changes the plan."""

    def __init__(self, specs: Mapping[str, ModelSpec], log: PredictionLog | None = None,
                 worker: int = 0) -> None:
        current = plan_sync.read()
        self.revision, self.worker, self.log = current.number, worker, log
        self.plan: dict[str, Route] = {name: current.routes[name] for name in specs}
        self.models = {name: LocalModel(spec, self.plan[name]) for name, spec in specs.items()}
        self.errors: dict[str, str] = {}
        self._changing = asyncio.Lock()
        self._shadows: dict[str, asyncio.Queue[tuple[list[Any], str, str]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        for name in specs:  # a series from the start, so a rate over it is 0, not absent
            SHADOW_DROPPED.labels(name)
        self._publish()
        self._reported_at = time.monotonic()
        heap.settle()  # the loaded versions, out of the cycle collector's way (fleet.heap)

    def spec(self, model: str) -> ModelSpec:
        return self.models[model].spec

    def stable_version(self, model: str) -> str:
        return store.parse_tag(self.plan[model].stable)[1]

    def scorer(self, model: str, headers: Mapping[str, str]) -> Score:
        """A ``Score`` for one request: sticky canary split or an explicit pin, plus the shadow copy."""

        request_id = headers.get("x-request-id") or new_request_id()

        async def bound(inputs: list[Any], check: Check | None = None) -> list[dict]:
            route = self.plan[model]
            version, role = self._choose(model, route, headers)
            outputs, seconds = await self._timed(model, inputs, version, role, check)
            if route.shadow and role != "pinned":
                self._shadow(model, inputs, store.parse_tag(route.shadow)[1], request_id)
            if self.log is not None:  # answer only once the rows are durable (committed or spooled)
                await self.log.record(self._rows(model, version, role, request_id, inputs, outputs, seconds))
            return outputs

        return bound

    def _choose(self, model: str, route: Route, headers: Mapping[str, str]) -> tuple[str, Role]:
        pin = headers.get(PIN_HEADER)
        if pin:
            served = {store.parse_tag(t)[1] for t in route.kept_tags()}
            if not route.allow_pinning or pin not in served:
                allowed = sorted(served, key=lambda v: int(v[1:])) if route.allow_pinning else []
                raise Problem(400, {"detail": f"X-Model-Version {pin!r} is not served for {model}; "
                                              f"pinnable: {allowed}"})
            return pin, "pinned"
        key = next((headers[h] for h in KEY_HEADERS if headers.get(h)), None)
        tag, role = route.choose(model, key)
        return store.parse_tag(tag)[1], role

    async def _timed(self, model: str, inputs: list[Any], version: str, role: str,
                     check: Check | None = None) -> tuple[list[dict], float]:
        started = time.perf_counter()
        try:
            outputs = await self.models[model].score(inputs, version)
            if check is not None:
                check(outputs)
        except Problem as refused:
            REQUESTS.labels(model, version, role, "refused" if refused.status < 500 else "error").inc()
            raise
        except Exception:
            REQUESTS.labels(model, version, role, "error").inc()
            raise
        seconds = time.perf_counter() - started
        latency, answered = _answered(model, version, role)
        latency.observe(seconds)
        answered.inc()
        return outputs, seconds

    def _rows(self, model: str, version: str, role: str, request_id: str, inputs: list[Any],
              outputs: list[dict], seconds: float) -> list[Prediction]:
        spec = self.spec(model)
        return [Prediction(request_id=request_id, model=model, version=version, role=role,
                           inputs=spec.loggable(x), outputs=o, latency_ms=seconds * 1000,
                           label=spec.label(o), item=i)
                for i, (x, o) in enumerate(zip(inputs, outputs, strict=True))]

    # shadow copies: a bounded queue per model, scored in the background, answers only to the log
    def _shadow(self, model: str, inputs: list[Any], version: str, request_id: str) -> None:
        if model not in self._shadows:
            self._shadows[model] = asyncio.Queue(SHADOW_QUEUE)
            self._background(self._score_shadows(model, self._shadows[model]))
        try:
            self._shadows[model].put_nowait((inputs, version, request_id))
        except asyncio.QueueFull:
            SHADOW_DROPPED.labels(model).inc()

    async def _score_shadows(self, model: str, queue: asyncio.Queue[tuple[list[Any], str, str]]) -> None:
        while True:
            inputs, version, request_id = await queue.get()
            try:
                outputs, seconds = await self._timed(model, inputs, version, "shadow")
                if self.log is not None:
                    rows = self._rows(model, version, "shadow", request_id, inputs, outputs, seconds)
                    self.log.record(rows)
            except Exception:  # a failing shadow must never affect serving
                logger.exception("shadow %s:%s failed", model, version)

    def _background(self, work: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # plan changes (admin API, CLI through the admin API, training gate) and following other workers'
    async def change(self, model: str, update: Callable[[Route], Route]) -> Route:
        """Apply ``update`` to the model's current route: load it here, write it, then acknowledge."""
        if model not in self.models:
            raise Problem(404, {"detail": f"no model named {model!r}"})
        async with self._changing:
            held = await asyncio.to_thread(plan_sync.lock)
            try:
                current = await asyncio.to_thread(plan_sync.read)
                route = update(current.routes[model])
                self._check_tags(model, route)
                failed = await self._apply(model, route)
                if failed:
                    raise Problem(409, {"detail": f"{model} keeps its plan: loading {route.served_tags()} "
                                                  f"failed: {failed}"})
                written = plan_sync.Revision(current.number + 1, {**current.routes, model: route})
                await asyncio.to_thread(plan_sync.write, written, held)
                await self._catch_up(written)
            finally:
                plan_sync.unlock(held)
        await self._others_follow(written.number)
        return route

    async def _others_follow(self, revision: int) -> None:
        """Wait (at most ``FOLLOW_SECONDS``) until every live worker serves ``revision`` or has said why
        not, so the caller's next request sees the change whichever worker answers it: every worker of
        this server, or of every replica when the plan is in the database."""
        deadline = time.monotonic() + FOLLOW_SECONDS
        while time.monotonic() < deadline:
            statuses = await asyncio.to_thread(plan_sync.workers)
            if all(status["revision"] >= revision for status in statuses):
                return
            await asyncio.sleep(0.05)
        logger.warning("not every worker reached plan revision %d in %s s", revision, FOLLOW_SECONDS)

    async def follow(self) -> None:
        """Poll the plan file and apply every revision other workers write (runs for the worker's life)."""
        seen = None  # the first look reads the file: it may have changed since this worker loaded it
        while True:
            await asyncio.sleep(plan_sync.POLL_SECONDS)
            due = time.monotonic() - self._reported_at >= plan_sync.HEARTBEAT_SECONDS
            if due and plan_sync.across_replicas():
                await self._report()  # other replicas count this worker live while it reports
            try:
                now = await asyncio.to_thread(plan_sync.stamp)
            except Exception:  # the database may be away; the plan served stays, the next look retries
                logger.warning("the routing plan's revision could not be read", exc_info=True)
                continue
            if now is None or now == seen:
                continue
            seen = now
            try:
                revision = await asyncio.to_thread(plan_sync.read)
            except Exception:
                logger.exception("the routing plan could not be read; keeping revision %d", self.revision)
                continue
            if revision.number > self.revision:
                async with self._changing:
                    await self._catch_up(revision)

    async def _catch_up(self, revision: plan_sync.Revision) -> None:
        """Serve ``revision``: each model whose route changed is loaded and swapped; failures keep the old.
        The versions loaded are then frozen out of the cycle collector's way (``fleet.heap``), and if
        one was unloaded, the collector looks at everything once so that its memory comes back."""
        before = self.loaded()
        for model in self.models:
            route = revision.routes.get(model)
            if route is not None and route != self.plan[model]:
                failed = await self._apply(model, route)
                if failed:
                    self.errors[model] = f"revision {revision.number}: {failed}"
                    logger.error("worker %d keeps its plan for %s: %s", self.worker, model, failed)
        after = self.loaded()
        if after != before:
            unloaded = any(set(before[name]) - set(after[name]) for name in before)
            heap.settle(full=unloaded)
        self.revision = max(self.revision, revision.number)
        await self._report()

    async def _apply(self, model: str, route: Route) -> str | None:
        """Hold ``route``'s tags (and the old ones, for requests already routed to them); None or why not."""
        keep = list(dict.fromkeys([*route.kept_tags(), *self.plan[model].kept_tags()]))
        try:
            await self.models[model].apply(keep, route.stable)
        except Exception as failed:  # the reason goes back to the admin and the worker's status
            PLAN_FAILED.labels(model).set(1)
            return f"{type(failed).__name__}: {failed}"
        self.plan = {**self.plan, model: route}
        self.errors.pop(model, None)
        PLAN_FAILED.labels(model).set(0)
        return None

    @staticmethod
    def _check_tags(model: str, route: Route) -> None:
        for tag in route.served_tags():
            if store.parse_tag(tag)[0] != model:
                raise Problem(400, {"detail": f"{tag} is not a version of {model}"})
            try:
                store.get(tag)
            except store.ModelNotFound as missing:
                raise Problem(404, {"detail": str(missing)}) from missing

    def _publish(self) -> None:
        plan_sync.publish(self.worker, self.revision, self.loaded(), dict(self.errors))

    async def _report(self) -> None:
        """``_publish`` off the event loop (across replicas it is a database write); a database that is
        away only delays it, and the next heartbeat tries again."""
        self._reported_at = time.monotonic()
        try:
            await asyncio.to_thread(self._publish)
        except Exception:
            logger.warning("worker %d could not publish what it serves", self.worker, exc_info=True)

    def loaded(self) -> dict[str, list[str]]:
        return {name: sorted(m.versions.models, key=lambda v: int(v[1:])) for name, m in self.models.items()}

    # the named changes
    async def promote(self, model: str) -> Route:
        def promoted(current: Route) -> Route:
            if not current.canary:
                raise Problem(409, {"detail": f"{model} has no canary to promote"})
            return current.model_copy(update={"stable": current.canary, "canary": None, "canary_weight": 0,
                                              "previous": [*current.previous, current.stable]})
        return await self.change(model, promoted)

    async def rollback(self, model: str) -> Route:
        def rolled_back(current: Route) -> Route:
            if not current.previous:
                raise Problem(409, {"detail": f"{model} has no previous stable to roll back to"})
            return current.model_copy(update={"stable": current.previous[-1], "canary": None,
                                              "canary_weight": 0, "previous": current.previous[:-1]})
        return await self.change(model, rolled_back)

    async def adopt(self, model: str, tag: str) -> Route:
        """Make a challenger that passed its gate the stable version."""
        return await self.change(model, lambda current: current.model_copy(update={
            "stable": tag, "previous": [*current.previous, current.stable]}))
