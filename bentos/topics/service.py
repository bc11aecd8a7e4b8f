"""Short text → topic behind adaptive batching, and the seed's route (``GET /classify?sentence=…``, and
POST) as a bento of its own: ``bentoml serve bentos.topics.service:Topics``."""

from __future__ import annotations

import bentoml
import torch
from fastapi import FastAPI

from bentos.topics import handlers
from bentos.topics.model import TopicModel
from bentos.topics.schemas import Sentence, TopicRequest, TopicScore, TopK
from fleet.admission import Admission
from fleet.batching import batched
from fleet.http import BodyLimit, answers_problems
from fleet.remote import direct
from fleet.serving import MODEL_SERVICE, VersionedModels, declare_models
from fleet.versions import ServedVersions


def label(output: dict) -> str:
    return output["ranked"][0][0]


def loggable(sentence: str) -> dict:
    return {"sentence": sentence}


def score(model: TopicModel, texts: list[str]) -> list[dict]:
    """Every class per text, highest score first; one tokenise-and-encode pass per batch."""
    return [{"ranked": ranked} for ranked in model.classify(texts, top_k=len(model.classes))]


@bentoml.service(name="topics-model", **MODEL_SERVICE)
class TopicsModel(VersionedModels):
    """Holds the planned versions (encoder, tokenizer and head each); scores batches of texts."""

    def __init__(self) -> None:
        torch.set_num_threads(2)
        self.served = {"topics": ServedVersions("topics", TopicModel.load, score, ["Linear Algebra"])}

    @bentoml.api(**batched("topics"))
    def predict(self, items: list[dict]) -> list[dict]:
        return self.served["topics"].run(items)


declare_models(TopicsModel, "topics")
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(name="topics")
@bentoml.asgi_app(app)
class Topics:
    """The seed 003 contract, unprefixed, on the stable version."""

    model = bentoml.depends(TopicsModel)

    @app.get("/classify")
    async def classify_get(self, sentence: Sentence, top_k: TopK = 1) -> list[TopicScore]:
        return await handlers.classify_query(direct(self.model), sentence, top_k)

    @bentoml.api(route="/classify")
    @answers_problems
    async def classify(self, request: TopicRequest, /, ctx: bentoml.Context) -> list[TopicScore]:
        return await handlers.classify(direct(self.model), request, ctx)


Topics.add_asgi_middleware(BodyLimit)
Topics.add_asgi_middleware(Admission)
