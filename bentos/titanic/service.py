"""Titanic survival as a bento of its own, the seed's routes (``POST /predict``, ``PUT /run-pipeline``)
with the model batched in the answering worker: ``bentoml serve bentos.titanic.service:Titanic``."""

from __future__ import annotations

import bentoml
from fastapi import Request

from bentos.titanic import docs, handlers
from bentos.titanic.schemas import Passengers, PipelineResult, SurvivalPredictions
from bentos.titanic.spec import SPEC
from fleet.auth import require_admin
from fleet.http import mounted_routes, versioned_json
from fleet.openapi import model_bento
from fleet.serving import SERVICE, add_edge, declare_models, follow_plan, worker_index
from fleet.traffic import Traffic

app = mounted_routes()


@bentoml.service(name="titanic", **SERVICE)
@bentoml.asgi_app(app)
class Titanic:
    """The seed 004 contract, unprefixed."""

    def __init__(self) -> None:
        self.traffic = Traffic({SPEC.name: SPEC}, worker=worker_index())

    @bentoml.on_startup
    async def _follow_plan(self) -> None:
        self._following = follow_plan(self.traffic)

    @bentoml.api(route="/predict")
    async def predict(self, passengers: Passengers, /, ctx: bentoml.Context) -> SurvivalPredictions:
        return await handlers.predict(self.traffic.scorer(SPEC.name, ctx.request.headers), passengers, ctx)

    @app.put("/run-pipeline")
    async def run_pipeline(self, request: Request) -> PipelineResult:
        require_admin(request.headers, "/run-pipeline")
        return versioned_json(await handlers.run_pipeline(self.traffic))


add_edge(Titanic, model_bento(docs.TAG, docs.OPERATIONS), admin=("/run-pipeline",))
declare_models(Titanic, SPEC.name)
