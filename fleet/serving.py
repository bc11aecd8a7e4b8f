"""What every model service shares: the versions it serves, plan changes, retraining, declared models."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import bentoml
from bentoml.models import BentoModel

from fleet import store
from fleet.http import Problem
from fleet.remote import call
from fleet.routing import Gate, route
from fleet.training import TrainingRun
from fleet.versions import ServedVersions

# ``@bentoml.service(name=..., **MODEL_SERVICE)`` for every model service:
# - one worker: each holds a copy of the model, and on small machines a second one only competes
#   with the gateway for cores (benchmarks/RESULTS.md);
# - callers keep one session to it (renewed weekly) instead of BentoML's renewal every 100 requests,
#   which closed calls in flight (fleet/remote.py);
# - no access log: the gateway logs every request already; the internal hop's log cost 5-10 % of
#   throughput at 8-32 clients on names and digits.
MODEL_SERVICE: dict[str, Any] = {
    "workers": 1,
    "runner_connection": {"max_requests": 2**31 - 1, "max_age": 7 * 86400.0},
    "logging": {"access": {"enabled": False}},
}


def declare_models(service: Any, *models: str) -> None:
    """Record every tag the plan names for ``models`` on the service, so ``bentoml build`` packs them."""
    tags = {tag for name in models for tag in route(name).kept_tags()}
    service.models.extend(BentoModel(tag) for tag in sorted(tags))


class VersionedModels:
    """Base of the model services; ``served`` maps each store model name to its loaded versions."""

    served: dict[str, ServedVersions]

    @bentoml.api
    async def apply(self, model: str, tags: list[str], stable: str) -> dict:
        """Load and smoke-test ``tags`` off the request path, then swap them in.

        Returns ``{"loaded": [...]}``, or ``{"error": why}`` with the old versions still serving.
        """
        try:
            return {"loaded": await asyncio.to_thread(self.served[model].apply, tags, stable)}
        except Exception as failed:  # the reason goes back to the admin; BentoML would mask it
            return {"error": f"{type(failed).__name__}: {failed}"}

    @bentoml.api
    def serving(self) -> dict[str, dict]:
        """Per store model: the default (stable) version and every loaded version."""
        return {name: {"stable": s.stable, "loaded": sorted(s.models)} for name, s in self.served.items()}

    async def retrain_and_compare(
        self, model: str, train: Callable[[dict], TrainingRun], evaluate: Callable[[Any], dict[str, float]],
        params: dict[str, Any],
    ) -> dict[str, Any]:
        """Train a challenger (saved, not served) and score the stable on the same held-out split.

        One training at a time per service: a second request meanwhile gets ``{"busy": True}``.
        """
        training = self.__dict__.setdefault("_training", threading.Lock())
        if not training.acquire(blocking=False):
            return {"busy": True}
        try:
            served = self.served[model]
            stable_version, stable_model = served.stable, served.models[served.stable]
            run = await asyncio.to_thread(train, params)
            stable_metrics = await asyncio.to_thread(evaluate, stable_model)
        finally:
            training.release()
        return {"tag": run.tag, "metrics": run.metrics, "seconds": run.seconds,
                "stable_version": stable_version, "stable_metrics": stable_metrics}


async def train_gated(
    service: Any, model: str, params: dict[str, Any], gate: Gate, adopt: Callable[[str], Awaitable[Any]]
) -> dict[str, Any]:
    """Train a challenger, judge it against the stable on the same held-out data, adopt it if it passes.

    A challenger that fails stays registered in the store but unserved; the comparison says why.
    """
    result = await service.to_async.retrain(params)
    if result.get("busy"):
        raise Problem(409, {"detail": f"{model} is already training; try again when it finishes"})
    verdict = gate.judge(result["metrics"], result["stable_metrics"])
    if verdict["passed"]:
        await adopt(result["tag"])
    new = store.parse_tag(result["tag"])[1]
    serving = new if verdict["passed"] else result["stable_version"]
    refusal = None if verdict["passed"] else (
        f"{new} is registered but not served: {verdict['metric']} {verdict['challenger']:.4f} < stable "
        f"{serving}'s {verdict['stable']:.4f} - {verdict['tolerance']}")
    return {**result, "gate": verdict, "promoted": verdict["passed"], "serving_version": serving,
            "new_model_version": new, "refusal": refusal}


def adopt_in_place(service: Any, model: str) -> Callable[[str], Awaitable[Any]]:
    """For a model's own bento (no gateway plan): a challenger that passed becomes the stable."""

    async def adopt(tag: str) -> Any:
        return await call(service, "apply", model, [tag], tag)

    return adopt
