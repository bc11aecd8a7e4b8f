"""Both digit classifiers as a bento of their own, the seed's route (``POST /predict/``) with the models
batched in the answering worker: ``bentoml serve bentos.digits.service:Digits``."""

from __future__ import annotations

import bentoml

from bentos.digits import docs, handlers
from bentos.digits.schemas import DigitPrediction, DigitRequest
from bentos.digits.spec import CNN, SKLEARN
from fleet.openapi import model_bento
from fleet.serving import SERVICE, add_edge, declare_models, follow_plan, limit_threads, worker_index
from fleet.traffic import Traffic


@bentoml.service(name="digits", **SERVICE)
class Digits:
    """The seed 002 contract, unprefixed: ``/predict/`` as the seed posts it (the edge takes the path
    with or without its trailing slash)."""

    def __init__(self) -> None:
        limit_threads()
        self.traffic = Traffic({SKLEARN.name: SKLEARN, CNN.name: CNN}, worker=worker_index())

    @bentoml.on_startup
    async def _follow_plan(self) -> None:
        self._following = follow_plan(self.traffic)

    @bentoml.api(route="/predict")
    async def predict(self, request: DigitRequest, /, ctx: bentoml.Context) -> DigitPrediction:
        headers = ctx.request.headers
        return await handlers.predict(lambda name: self.traffic.scorer(name, headers), request, ctx)


add_edge(Digits, model_bento(docs.TAG, docs.OPERATIONS))
declare_models(Digits, SKLEARN.name, CNN.name)
