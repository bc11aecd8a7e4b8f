"""Surname → nationality as a bento of its own, the seed's routes (``GET /check_service``,
``POST /get_prediction``) with the model batched in the answering worker:
``bentoml serve bentos.names.service:Names``."""

from __future__ import annotations

import bentoml

from bentos.names import docs, handlers
from bentos.names.schemas import NamePredictions, NameRequest, ServiceCheck
from bentos.names.spec import SPEC
from fleet.http import mounted_routes, versioned_json
from fleet.openapi import model_bento
from fleet.serving import SERVICE, add_edge, declare_models, follow_plan, limit_threads, worker_index
from fleet.traffic import Traffic

app = mounted_routes()


@bentoml.service(name="names", **SERVICE)
@bentoml.asgi_app(app)
class Names:
    """The seed 000 contract, unprefixed."""

    def __init__(self) -> None:
        limit_threads()
        self.traffic = Traffic({SPEC.name: SPEC}, worker=worker_index())

    @bentoml.on_startup
    async def _follow_plan(self) -> None:
        self._following = follow_plan(self.traffic)

    @app.get("/check_service")
    async def check_service(self) -> ServiceCheck:
        return versioned_json(handlers.check_service(self.traffic.stable_version(SPEC.name)))

    @bentoml.api(route="/get_prediction")
    async def get_prediction(self, request: NameRequest, /, ctx: bentoml.Context) -> NamePredictions:
        score = self.traffic.scorer(SPEC.name, ctx.request.headers)
        return await handlers.get_prediction(score, request, ctx)


add_edge(Names, model_bento(docs.TAG, docs.OPERATIONS))
declare_models(Names, SPEC.name)
