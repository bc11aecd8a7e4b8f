"""Surname → nationality behind adaptive batching, and the seed's routes (``GET /check_service``,
``POST /get_prediction``) as a bento of its own: ``bentoml serve bentos.names.service:Names``."""

from __future__ import annotations

import bentoml
import torch
from fastapi import FastAPI

from bentos.names import handlers
from bentos.names.model import NationalityModel
from bentos.names.schemas import NamePredictions, NameRequest, ServiceCheck
from fleet.admission import Admission
from fleet.batching import batched
from fleet.http import BodyLimit, answers_problems
from fleet.remote import call, direct
from fleet.serving import MODEL_SERVICE, VersionedModels, declare_models
from fleet.versions import ServedVersions


def label(output: dict) -> str:
    return output["labels"][0]


def loggable(name: str) -> dict:
    return {"name": name}


def score(model: NationalityModel, names: list[str]) -> list[dict]:
    """Every class per name, likeliest first, with natural-log probabilities; one packed GRU pass."""
    return [{"labels": labels, "log_probs": log_probs}
            for labels, log_probs in model.top_n(names, len(model.classes))]


@bentoml.service(name="names-model", **MODEL_SERVICE)
class NamesModel(VersionedModels):
    """Holds the planned versions; scores whole batches of names, grouped by version."""

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.served = {"names": ServedVersions("names", NationalityModel.load, score, ["Jordan"])}

    @bentoml.api(**batched("names"))
    def predict(self, items: list[dict]) -> list[dict]:
        return self.served["names"].run(items)


declare_models(NamesModel, "names")
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(name="names")
@bentoml.asgi_app(app)
class Names:
    """The seed 000 contract, unprefixed, on the stable version."""

    model = bentoml.depends(NamesModel)

    @app.get("/check_service")
    async def check_service(self) -> ServiceCheck:
        serving = await call(self.model, "serving")
        return handlers.check_service(serving["names"]["stable"])

    @bentoml.api(route="/get_prediction")
    @answers_problems
    async def get_prediction(self, request: NameRequest, /, ctx: bentoml.Context) -> NamePredictions:
        return await handlers.get_prediction(direct(self.model), request, ctx)


Names.add_asgi_middleware(BodyLimit)
Names.add_asgi_middleware(Admission)
