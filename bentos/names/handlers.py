"""The seed's routes, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

import math

import bentoml

from bentos.names.model import CONFIDENT_PROBABILITY
from bentos.names.schemas import NamePredictions, NameRequest, ServiceCheck
from fleet.http import Problem, answered_by, invalid_body
from fleet.traffic import Score


def check_service(version: str) -> ServiceCheck:
    return ServiceCheck(model_version=version)


async def get_prediction(score: Score, request: NameRequest, ctx: bentoml.Context) -> NamePredictions:
    def within_classes(outputs: list[dict]) -> None:
        """The class count is the answering version's: refused before the prediction is logged."""
        classes = len(outputs[0]["labels"])
        if request.n_predictions > classes:
            why = f"must be at most {classes}, the number of classes"
            raise Problem(400, invalid_body("n_predictions", why))

    (ranked,) = await score([request.name], within_classes)
    answered_by(ctx, ranked["model_version"])
    n = request.n_predictions
    return NamePredictions(predictions=ranked["labels"][:n], probabilities=ranked["log_probs"][:n],
                           model_version=ranked["model_version"],
                           confident=math.exp(ranked["log_probs"][0]) >= CONFIDENT_PROBABILITY)
