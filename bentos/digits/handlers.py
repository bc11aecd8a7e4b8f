"""The seed's route, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

from typing import Any

import bentoml
from starlette.responses import JSONResponse

from bentos.digits.images import ImageError, decode
from bentos.digits.schemas import DigitPrediction, DigitRequest, resolve
from fleet.http import answered_by, invalid_body, reject
from fleet.remote import call


async def predict(model: Any, request: DigitRequest, ctx: bentoml.Context) -> DigitPrediction | JSONResponse:
    """Decode and normalise the image here (a bad one is a 400 at once), then score it in a batch."""
    name = resolve(request.model)
    if name is None:
        return reject(ctx, 400, {"detail": "Invalid model name"})
    try:
        pixels = decode(request.image)
    except ImageError as error:
        return reject(ctx, 400, invalid_body("image", str(error)))
    method = "classify_cnn" if name == "digits_cnn" else "classify_sklearn"
    (scored,) = await call(model, method, pixels[None])
    answered_by(ctx, scored["model_version"])
    return DigitPrediction(request_id=request.request_id, prediction=scored["prediction"],
                           score=scored["score"], model_version=scored["model_version"])
