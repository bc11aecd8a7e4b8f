"""The seed's routes, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

from typing import Any

import bentoml

from bentos.titanic.schemas import Passenger, PipelineResult, SurvivalPredictions
from fleet.http import answered_by
from fleet.remote import call


async def predict(model: Any, passengers: list[Passenger], ctx: bentoml.Context) -> SurvivalPredictions:
    rows = [p.model_dump() for p in passengers]
    scored = await call(model, "predict", rows)
    version = scored[-1]["model_version"]
    answered_by(ctx, version)
    return SurvivalPredictions(
        predictions=[s["survived"] for s in scored],
        probabilities=[s["probability"] for s in scored],
        model_version=version,
    )


async def run_pipeline(model: Any) -> PipelineResult:
    result = await model.to_async.retrain()
    return PipelineResult(model_version=result["model_version"], metrics=result["metrics"])
