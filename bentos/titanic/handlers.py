"""The seed's routes, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

import bentoml

from bentos.titanic.schemas import Passenger, PipelineResult, SurvivalPredictions
from fleet.http import answered_by
from fleet.serving import train_gated
from fleet.traffic import Score, Traffic


async def predict(score: Score, passengers: list[Passenger], ctx: bentoml.Context) -> SurvivalPredictions:
    scored = await score([p.model_dump() for p in passengers])
    version = scored[-1]["model_version"]
    answered_by(ctx, version)
    return SurvivalPredictions(
        predictions=[s["survived"] for s in scored],
        probabilities=[s["probability"] for s in scored],
        model_version=version,
    )


async def run_pipeline(traffic: Traffic) -> PipelineResult:
    """Re-run training into the next version; it serves only if it passes the gate."""
    result = await train_gated(traffic, "titanic", {})
    return PipelineResult(
        model_version=result["serving_version"], new_model_version=result["new_model_version"],
        promoted=result["promoted"], detail=result["refusal"], gate=result["gate"], metrics=result["metrics"],
    )
