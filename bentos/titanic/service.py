"""Titanic survival behind adaptive batching, and the seed's own routes (``POST /predict``,
``PUT /run-pipeline``) as a bento of its own: ``bentoml serve bentos.titanic.service:Titanic``."""

from __future__ import annotations

import bentoml
import pandas as pd
from fastapi import FastAPI, Request

from bentos.titanic import handlers, pipeline
from bentos.titanic.model import SurvivalModel
from bentos.titanic.schemas import EXAMPLE, Passengers, PipelineResult, SurvivalPredictions
from fleet.admission import Admission
from fleet.auth import require_admin
from fleet.batching import batched
from fleet.http import BodyLimit, problem_response, versioned_json
from fleet.remote import direct
from fleet.routing import route
from fleet.serving import MODEL_SERVICE, VersionedModels, adopt_in_place, declare_models
from fleet.versions import ServedVersions


def label(output: dict) -> int:
    return output["survived"]


def score(model: SurvivalModel, passengers: list[dict]) -> list[dict]:
    proba = model.predict_proba(pd.DataFrame(passengers))
    return [{"survived": int(p > 0.5), "probability": round(float(p), 6)} for p in proba]


@bentoml.service(name="titanic-model", **MODEL_SERVICE)
class TitanicModel(VersionedModels):
    """Holds the planned versions; scores whole batches of passengers, grouped by version."""

    def __init__(self) -> None:
        self.served = {"titanic": ServedVersions("titanic", SurvivalModel.load, score, [EXAMPLE])}

    @bentoml.api(**batched("titanic"))
    def predict(self, items: list[dict]) -> list[dict]:
        return self.served["titanic"].run(items)

    @bentoml.api
    async def retrain(self, params: dict) -> dict:
        """Re-run the pipeline into a challenger; predictions go on meanwhile."""
        return await self.retrain_and_compare("titanic", pipeline.train, pipeline.evaluate, params)


declare_models(TitanicModel, "titanic")
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(name="titanic")
@bentoml.asgi_app(app)
class Titanic:
    """The seed 004 contract, unprefixed, on the stable version."""

    model = bentoml.depends(TitanicModel)

    @bentoml.api(route="/predict")
    async def predict(self, passengers: Passengers, /, ctx: bentoml.Context) -> SurvivalPredictions:
        return await handlers.predict(direct(self.model), passengers, ctx)

    @app.put("/run-pipeline")
    @problem_response
    async def run_pipeline(self, request: Request) -> PipelineResult:
        require_admin(request.headers, "/run-pipeline")
        adopt = adopt_in_place(self.model, "titanic")
        return versioned_json(await handlers.run_pipeline(self.model, route("titanic").gate, adopt))


Titanic.add_asgi_middleware(BodyLimit)
Titanic.add_asgi_middleware(Admission)
