"""The gateway's traffic control: which version answers each request, shadow copies, and plan changes.

The gateway holds the routing plan; the model services hold the loaded versions. A plan change is
loaded and smoke-tested by the model service first (``apply``), and only then swapped in here with
one assignment, so a tag that fails to load leaves the old plan serving and says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from fleet import store
from fleet.http import Problem
from fleet.predlog import Prediction, PredictionLog
from fleet.remote import Score, call, score
from fleet.routing import Role, Route, load_plan, save_plan

PIN_HEADER = "x-model-version"
KEY_HEADERS = ("x-user-id", "x-request-id")
logger = logging.getLogger(__name__)

REQUESTS = Counter("fleet_predictions_total", "Scored requests", ["model", "version", "role", "outcome"])
LATENCY = Histogram("fleet_prediction_seconds", "Time to score a request, including the batch wait",
                    ["model", "version", "role"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Served:
    """A store model as the gateway serves it: its model service, and how its predictions are logged."""

    service: Any
    label: Callable[[dict], Any]  # the predicted class, what feedback is compared with
    loggable: Callable[[Any], Any] = _same  # the logged (size-bounded) form of one input


class Traffic:
    """Routes each request of each store model to a version, per the plan, logs it, and changes the plan."""

    def __init__(self, models: Mapping[str, Served], log: PredictionLog | None = None) -> None:
        self.models = dict(models)
        self.services = {name: served.service for name, served in self.models.items()}
        self.log = log
        self.plan: dict[str, Route] = load_plan()
        self._changing = asyncio.Lock()
        self._shadows: set[asyncio.Task[Any]] = set()

    def scorer(self, model: str, headers: Mapping[str, str]) -> Score:
        """A ``Score`` for one request: sticky canary split or an explicit pin, plus the shadow copy."""

        request_id = headers.get("x-request-id") or uuid.uuid4().hex

        async def bound(method: str, inputs: list[Any]) -> list[dict]:
            route = self.plan[model]
            version, role = self._choose(model, route, headers)
            outputs, seconds = await self._timed(model, method, inputs, version, role)
            if route.shadow and role != "pinned":
                self._shadow(model, method, inputs, store.parse_tag(route.shadow)[1], request_id)
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

    async def _timed(
        self, model: str, method: str, inputs: list[Any], version: str, role: str
    ) -> tuple[list[dict], float]:
        started = time.perf_counter()
        try:
            outputs = await score(self.services[model], method, inputs, version)
        except Exception:
            REQUESTS.labels(model, version, role, "error").inc()
            raise
        seconds = time.perf_counter() - started
        LATENCY.labels(model, version, role).observe(seconds)
        REQUESTS.labels(model, version, role, "ok").inc()
        return outputs, seconds

    def _rows(self, model: str, version: str, role: str, request_id: str, inputs: list[Any],
              outputs: list[dict], seconds: float) -> list[Prediction]:
        served = self.models[model]
        return [Prediction(request_id=request_id, model=model, version=version, role=role,
                           inputs=served.loggable(x), outputs=o, latency_ms=seconds * 1000,
                           label=served.label(o), item=i)
                for i, (x, o) in enumerate(zip(inputs, outputs, strict=True))]

    def _shadow(self, model: str, method: str, inputs: list[Any], version: str, request_id: str) -> None:
        """Score a copy with the shadow version in the background; its answer only goes to the log."""

        async def run() -> None:
            try:
                outputs, seconds = await self._timed(model, method, inputs, version, "shadow")
                if self.log is not None:
                    rows = self._rows(model, version, "shadow", request_id, inputs, outputs, seconds)
                    self.log.record(rows)
            except Exception:  # a failing shadow must never affect serving
                logger.exception("shadow %s:%s failed", model, version)

        task = asyncio.get_running_loop().create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    # plan changes (admin API, CLI through the admin API, training gate)
    async def change(self, model: str, route: Route) -> Route:
        """Load and smoke-test every tag of ``route`` in the model service, then switch to it."""
        if model not in self.plan:
            raise Problem(404, {"detail": f"no model named {model!r}"})
        async with self._changing:
            for tag in route.served_tags():
                if store.parse_tag(tag)[0] != model:
                    raise Problem(400, {"detail": f"{tag} is not a version of {model}"})
                try:
                    store.get(tag)
                except store.ModelNotFound as missing:
                    raise Problem(404, {"detail": str(missing)}) from missing
            # The old plan's versions stay loaded until the next change: requests already routed to them
            # finish there.
            keep = list(dict.fromkeys([*route.kept_tags(), *self.plan[model].kept_tags()]))
            result = await call(self.services[model], "apply", model, keep, route.stable)
            if "error" in result:
                raise Problem(409, {"detail": f"{model} keeps its plan: loading {route.served_tags()} "
                                              f"failed: {result['error']}"})
            self.plan = {**self.plan, model: route}
            save_plan(self.plan)
            return route

    async def promote(self, model: str) -> Route:
        current = self._route(model)
        if not current.canary:
            raise Problem(409, {"detail": f"{model} has no canary to promote"})
        return await self.change(model, current.model_copy(update={
            "stable": current.canary, "canary": None, "canary_weight": 0,
            "previous": [*current.previous, current.stable]}))

    async def rollback(self, model: str) -> Route:
        current = self._route(model)
        if not current.previous:
            raise Problem(409, {"detail": f"{model} has no previous stable to roll back to"})
        return await self.change(model, current.model_copy(update={
            "stable": current.previous[-1], "canary": None, "canary_weight": 0,
            "previous": current.previous[:-1]}))

    async def adopt(self, model: str, tag: str) -> Route:
        """Make a challenger that passed its gate the stable version."""
        current = self._route(model)
        return await self.change(model, current.model_copy(update={
            "stable": tag, "previous": [*current.previous, current.stable]}))

    def _route(self, model: str) -> Route:
        if model not in self.plan:
            raise Problem(404, {"detail": f"no model named {model!r}"})
        return self.plan[model]
