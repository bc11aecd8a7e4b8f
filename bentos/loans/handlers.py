"""The seed's routes, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

import bentoml

from bentos.loans.schemas import Application, Approval, Approvals, TrainParams, TrainResult
from fleet.http import answered_by
from fleet.serving import train_gated
from fleet.traffic import Score, Traffic


async def _score(score: Score, applications: list[Application], ctx: bentoml.Context) -> tuple[list, str]:
    scored = await score([a.model_dump() for a in applications])
    version = scored[-1]["model_version"]
    answered_by(ctx, version)
    return scored, version


async def predict(score: Score, application: Application, ctx: bentoml.Context) -> Approval:
    (scored,), version = await _score(score, [application], ctx)
    return Approval(prediction=scored["approved"], probability=scored["probability"], model_version=version)


async def predict_batch(score: Score, applications: list[Application], ctx: bentoml.Context) -> Approvals:
    scored, version = await _score(score, applications, ctx)
    return Approvals(
        predictions=[s["approved"] for s in scored],
        probabilities=[s["probability"] for s in scored],
        model_version=version,
    )


async def train(traffic: Traffic, params: TrainParams, ctx: bentoml.Context) -> TrainResult:
    """Train the next version; it serves only if it passes the gate against the stable."""
    result = await train_gated(traffic, "loans", params.model_dump(exclude_none=True))
    answered_by(ctx, result["serving_version"])
    message = result["refusal"] or "Training completed successfully."
    return TrainResult(message=message, new_model_version=result["new_model_version"],
                       promoted=result["promoted"], serving_version=result["serving_version"],
                       model_version=result["serving_version"],
                       gate=result["gate"], metrics=result["metrics"])
