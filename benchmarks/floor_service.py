"""The floor of our stack: the gateway's prediction routes with the same middleware, pydantic inputs and
response shapes and the same worker count, but no model, no routing and no log. What this serves is
the most any model can serve through BentoML here; the benchmark compares every model with it.

    bentoml serve benchmarks.floor_service:Floor
"""

from __future__ import annotations

import bentoml

from bentos.digits.schemas import DigitPrediction, DigitRequest
from bentos.loans.schemas import Application, Approval
from bentos.names.schemas import NamePredictions, NameRequest
from bentos.titanic.schemas import Passengers, SurvivalPredictions
from bentos.topics.schemas import TopicRequest, TopicScore
from fleet.openapi import gateway
from fleet.serving import SERVICE, add_edge

VERSION = "v0"


@bentoml.service(name="floor", **SERVICE)
class Floor:
    """Each route validates its body as the gateway does and answers a constant of the right shape."""

    @bentoml.api(route="/names/get_prediction")
    async def names(self, request: NameRequest, /) -> NamePredictions:
        n = request.n_predictions
        return NamePredictions(predictions=["-"] * n, probabilities=[0.0] * n, model_version=VERSION)

    @bentoml.api(route="/loans/predict")
    async def loans(self, application: Application, /) -> Approval:
        return Approval(prediction=1, probability=0.5, model_version=VERSION)

    @bentoml.api(route="/digits/predict")
    async def digits(self, request: DigitRequest, /) -> DigitPrediction:
        return DigitPrediction(request_id=request.request_id, prediction=0, score=1.0, model_version=VERSION)

    @bentoml.api(route="/topics/classify")
    async def topics(self, request: TopicRequest, /) -> list[TopicScore]:
        return [TopicScore(label="-", score=1.0)] * request.top_k

    @bentoml.api(route="/titanic/predict")
    async def titanic(self, passengers: Passengers, /) -> SurvivalPredictions:
        return SurvivalPredictions(predictions=[0] * len(passengers), probabilities=[0.5] * len(passengers),
                                   model_version=VERSION)


add_edge(Floor, gateway("The benchmark's no-op floor: the fleet's edge, no model.", [], {}))  # our edge
