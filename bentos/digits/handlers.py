"""The seed's route, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

from collections.abc import Callable

import bentoml

from bentos.digits.images import ImageError, decode
from bentos.digits.schemas import DigitPrediction, DigitRequest, resolve
from fleet.http import Problem, answered_by, invalid_body
from fleet.traffic import Score


async def predict(
    scorer: Callable[[str], Score], request: DigitRequest, ctx: bentoml.Context
) -> DigitPrediction:
    """Resolve the model name, decode and normalise the image here (a bad one is a 400 at once), then
    score the 8×8 pixels in a batch with ``scorer(store_model_name)``."""
    if not (request.model or "").strip():  # the seed's own answer and test
        raise Problem(400, {"detail": "Model name is required"})
    name = resolve(request.model)
    if name is None:
        raise Problem(400, {"detail": "Invalid model name"})
    try:
        pixels = decode(request.image)
    except ImageError as error:
        raise Problem(400, invalid_body("image", str(error))) from error
    (scored,) = await scorer(name)([pixels])
    answered_by(ctx, scored["model_version"])
    return DigitPrediction(request_id=request.request_id, prediction=scored["prediction"],
                           score=scored["score"], model_version=scored["model_version"])
