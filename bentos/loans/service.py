"""Credit approval as a bento of its own, the seed's routes (``/predict``, ``/predict_batch``, ``/train``)
with the model batched in the answering worker: ``bentoml serve bentos.loans.service:Loans``."""

from __future__ import annotations

import bentoml

from bentos.loans import docs, handlers
from bentos.loans.schemas import (
    NO_PARAMS,
    Application,
    Applications,
    Approval,
    Approvals,
    TrainParams,
    TrainResult,
)
from bentos.loans.spec import SPEC
from fleet.auth import require_admin
from fleet.openapi import model_bento
from fleet.serving import SERVICE, add_edge, declare_models, follow_plan, worker_index
from fleet.traffic import Traffic


@bentoml.service(name="loans", **SERVICE)
class Loans:
    """The seed 001 contract, unprefixed."""

    def __init__(self) -> None:
        self.traffic = Traffic({SPEC.name: SPEC}, worker=worker_index())

    @bentoml.on_startup
    async def _follow_plan(self) -> None:
        self._following = follow_plan(self.traffic)

    @bentoml.api(route="/predict")
    async def predict(self, application: Application, /, ctx: bentoml.Context) -> Approval:
        return await handlers.predict(self.traffic.scorer(SPEC.name, ctx.request.headers), application, ctx)

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, applications: Applications, /, ctx: bentoml.Context) -> Approvals:
        score = self.traffic.scorer(SPEC.name, ctx.request.headers)
        return await handlers.predict_batch(score, applications, ctx)

    @bentoml.api(route="/train")
    async def train(self, params: TrainParams = NO_PARAMS, /, ctx: bentoml.Context = None) -> TrainResult:
        require_admin(ctx.request.headers, "/train")
        return await handlers.train(self.traffic, params, ctx)


add_edge(Loans, model_bento(docs.TAG, docs.OPERATIONS), admin=("/train",))
declare_models(Loans, SPEC.name)
