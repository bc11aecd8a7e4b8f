"""Short text → topic behind adaptive batching, and the seed's route (``GET /classify?sentence=…``, and
POST) as a bento of its own: ``bentoml serve bentos.topics.service:Topics``."""

from __future__ import annotations

import bentoml
import torch
from bentoml.models import BentoModel
from fastapi import FastAPI

from bentos.topics import handlers
from bentos.topics.model import TopicModel
from bentos.topics.schemas import Sentence, TopicRequest, TopicScore, TopK
from fleet import store
from fleet.batching import batched
from fleet.http import BodyLimit
from fleet.routing import stable_tag

TAG = stable_tag("topics")


@bentoml.service(name="topics-model", workers=1)
class TopicsModel:
    """Loads the planned encoder and head once; one tokenise-and-encode pass per batch of texts."""

    bento_model = BentoModel(TAG)

    def __init__(self) -> None:
        torch.set_num_threads(2)
        self.version, self.model = store.load(TAG, TopicModel.load)

    @bentoml.api(**batched("topics"))
    def classify(self, texts: list[str]) -> list[dict]:
        """Every class per text, highest score first."""
        version, model = self.version, self.model
        return [{"ranked": ranked, "model_version": version}
                for ranked in model.classify(texts, top_k=len(model.classes))]


app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(name="topics")
@bentoml.asgi_app(app)
class Topics:
    """The seed 003 contract, unprefixed."""

    model = bentoml.depends(TopicsModel)

    @app.get("/classify")
    async def classify_get(self, sentence: Sentence, top_k: TopK = 1) -> list[TopicScore]:
        return await handlers.classify_query(self.model, sentence, top_k)

    @bentoml.api(route="/classify")
    async def classify(self, request: TopicRequest, /, ctx: bentoml.Context) -> list[TopicScore]:
        return await handlers.classify(self.model, request, ctx)


Topics.add_asgi_middleware(BodyLimit)
