"""Titanic survival behind adaptive batching, and the seed's own routes (``POST /predict``,
``PUT /run-pipeline``) as a bento of its own: ``bentoml serve bentos.titanic.service:Titanic``."""

from __future__ import annotations

import asyncio

import bentoml
import pandas as pd
from bentoml.models import BentoModel
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bentos.titanic import handlers, pipeline
from bentos.titanic.model import SurvivalModel
from bentos.titanic.schemas import Passengers, PipelineResult, SurvivalPredictions
from fleet import store
from fleet.batching import batched
from fleet.http import VERSION_HEADER, BodyLimit
from fleet.routing import stable_tag

TAG = stable_tag("titanic")


@bentoml.service(name="titanic-model", workers=1)
class TitanicModel:
    """Loads the planned version once and scores whole batches of passengers."""

    bento_model = BentoModel(TAG)

    def __init__(self) -> None:
        self.version, self.model = store.load(TAG, SurvivalModel.load)

    @bentoml.api(**batched("titanic"))
    def predict(self, passengers: list[dict]) -> list[dict]:
        proba = self.model.predict_proba(pd.DataFrame(passengers))
        version = self.version
        return [{"survived": int(p > 0.5), "probability": round(float(p), 6), "model_version": version}
                for p in proba]

    @bentoml.api
    async def retrain(self) -> dict:
        """Re-run the training pipeline into the next version and serve it; predictions go on meanwhile."""
        run = await asyncio.to_thread(pipeline.train)
        self.version, self.model = await asyncio.to_thread(store.load, run.tag, SurvivalModel.load)
        return {"model_version": self.version, "metrics": run.metrics}


app = FastAPI()


@bentoml.service(name="titanic")
@bentoml.asgi_app(app)
class Titanic:
    """The seed 004 contract, unprefixed."""

    model = bentoml.depends(TitanicModel)

    @bentoml.api(route="/predict")
    async def predict(self, passengers: Passengers, /, ctx: bentoml.Context) -> SurvivalPredictions:
        return await handlers.predict(self.model, passengers, ctx)

    @app.put("/run-pipeline")
    async def run_pipeline(self) -> PipelineResult:
        result = await handlers.run_pipeline(self.model)
        return JSONResponse(result.model_dump(), headers={VERSION_HEADER: result.model_version})


Titanic.add_asgi_middleware(BodyLimit)
