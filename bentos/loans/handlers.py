"""The seed's routes, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

from typing import Any

import bentoml

from bentos.loans.schemas import Application, Approval, Approvals, TrainParams, TrainResult
from fleet.http import answered_by
from fleet.remote import call


async def _score(model: Any, applications: list[Application], ctx: bentoml.Context) -> tuple[list[dict], str]:
    scored = await call(model, "predict", [a.model_dump() for a in applications])
    version = scored[-1]["model_version"]
    answered_by(ctx, version)
    return scored, version


async def predict(model: Any, application: Application, ctx: bentoml.Context) -> Approval:
    (scored,), version = await _score(model, [application], ctx)
    return Approval(prediction=scored["approved"], probability=scored["probability"], model_version=version)


async def predict_batch(model: Any, applications: list[Application], ctx: bentoml.Context) -> Approvals:
    scored, version = await _score(model, applications, ctx)
    return Approvals(
        predictions=[s["approved"] for s in scored],
        probabilities=[s["probability"] for s in scored],
        model_version=version,
    )


async def train(model: Any, params: TrainParams, ctx: bentoml.Context) -> TrainResult:
    chosen = params.model_dump(exclude_none=True)
    result = await model.to_async.retrain(chosen)
    answered_by(ctx, result["model_version"])
    return TrainResult(
        message="Training completed successfully.",
        new_model_version=result["model_version"],
        metrics=result["metrics"],
    )
