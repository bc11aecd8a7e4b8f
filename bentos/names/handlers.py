"""The seed's routes, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

from typing import Any

import bentoml
from starlette.responses import JSONResponse

from bentos.names.schemas import NamePredictions, NameRequest, ServiceCheck
from fleet.http import answered_by, invalid_body, reject
from fleet.remote import call


async def check_service(model: Any) -> ServiceCheck:
    return ServiceCheck(model_version=await call(model, "serving_version"))


async def get_prediction(
    model: Any, request: NameRequest, ctx: bentoml.Context
) -> NamePredictions | JSONResponse:
    (ranked,) = await call(model, "predict", [request.name])
    answered_by(ctx, ranked["model_version"])
    classes = len(ranked["labels"])
    if request.n_predictions > classes:
        message = f"must be at most {classes}, the number of classes"
        return reject(ctx, 400, invalid_body("n_predictions", message))
    n = request.n_predictions
    return NamePredictions(predictions=ranked["labels"][:n], probabilities=ranked["log_probs"][:n],
                           model_version=ranked["model_version"])
