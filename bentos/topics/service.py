"""Short text → topic as a bento of its own, the seed's route (``GET /classify?sentence=…``, and POST)
with the model batched in the answering worker: ``bentoml serve bentos.topics.service:Topics``."""

from __future__ import annotations

import bentoml
from fastapi import Request

from bentos.topics import docs, handlers
from bentos.topics.schemas import Sentence, TopicRequest, TopicScore, TopK
from bentos.topics.spec import SPEC
from fleet.http import mounted_routes
from fleet.openapi import model_bento
from fleet.serving import SERVICE, add_edge, declare_models, follow_plan, limit_threads, worker_index
from fleet.traffic import Traffic

app = mounted_routes()


@bentoml.service(name="topics", **SERVICE)
@bentoml.asgi_app(app)
class Topics:
    """The seed 003 contract, unprefixed."""

    def __init__(self) -> None:
        limit_threads()
        self.traffic = Traffic({SPEC.name: SPEC}, worker=worker_index())

    @bentoml.on_startup
    async def _follow_plan(self) -> None:
        self._following = follow_plan(self.traffic)

    @app.get("/classify")
    async def classify_get(self, request: Request, sentence: Sentence, top_k: TopK = 1) -> list[TopicScore]:
        score = self.traffic.scorer(SPEC.name, request.headers)
        return await handlers.classify_query(score, request.query_params, sentence, top_k)

    @bentoml.api(route="/classify")
    async def classify(self, request: TopicRequest, /, ctx: bentoml.Context) -> list[TopicScore]:
        return await handlers.classify(self.traffic.scorer(SPEC.name, ctx.request.headers), request, ctx)


add_edge(Topics, model_bento(docs.TAG, docs.OPERATIONS))
declare_models(Topics, SPEC.name)
