"""Surname → nationality behind adaptive batching, and the seed's routes (``GET /check_service``,
``POST /get_prediction``) as a bento of its own: ``bentoml serve bentos.names.service:Names``."""

from __future__ import annotations

import bentoml
import torch
from bentoml.models import BentoModel
from fastapi import FastAPI

from bentos.names import handlers
from bentos.names.model import NationalityModel
from bentos.names.schemas import NamePredictions, NameRequest, ServiceCheck
from fleet import store
from fleet.batching import batched
from fleet.http import BodyLimit
from fleet.routing import stable_tag

TAG = stable_tag("names")


@bentoml.service(name="names-model", workers=1)
class NamesModel:
    """Loads the planned version once; one packed GRU pass per batch of names."""

    bento_model = BentoModel(TAG)

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.version, self.model = store.load(TAG, NationalityModel.load)

    @bentoml.api(**batched("names"))
    def predict(self, names: list[str]) -> list[dict]:
        """Every class per name, likeliest first, with natural-log probabilities."""
        version, model = self.version, self.model
        ranked = model.top_n(names, len(model.classes))
        return [{"labels": labels, "log_probs": log_probs, "model_version": version}
                for labels, log_probs in ranked]

    @bentoml.api
    def serving_version(self) -> str:
        return self.version


app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(name="names")
@bentoml.asgi_app(app)
class Names:
    """The seed 000 contract, unprefixed."""

    model = bentoml.depends(NamesModel)

    @app.get("/check_service")
    async def check_service(self) -> ServiceCheck:
        return await handlers.check_service(self.model)

    @bentoml.api(route="/get_prediction")
    async def get_prediction(self, request: NameRequest, /, ctx: bentoml.Context) -> NamePredictions:
        return await handlers.get_prediction(self.model, request, ctx)


Names.add_asgi_middleware(BodyLimit)
