"""Credit approval behind adaptive batching, and the seed's routes (``/predict``, ``/predict_batch``,
``/train``) as a bento of its own: ``bentoml serve bentos.loans.service:Loans``."""

from __future__ import annotations

import asyncio

import bentoml
import pandas as pd
from bentoml.models import BentoModel

from bentos.loans import handlers, pipeline
from bentos.loans.model import ApprovalModel
from bentos.loans.schemas import (
    NO_PARAMS,
    Application,
    Applications,
    Approval,
    Approvals,
    TrainParams,
    TrainResult,
)
from fleet import store
from fleet.batching import batched
from fleet.http import BodyLimit
from fleet.routing import stable_tag

TAG = stable_tag("loans")


@bentoml.service(name="loans-model", workers=1)
class LoansModel:
    """Loads the planned version once and scores whole batches of applications."""

    bento_model = BentoModel(TAG)

    def __init__(self) -> None:
        self.version, self.model = store.load(TAG, ApprovalModel.load)

    @bentoml.api(**batched("loans"))
    def predict(self, applications: list[dict]) -> list[dict]:
        proba = self.model.predict_proba(pd.DataFrame(applications))
        version = self.version
        return [{"approved": int(p > 0.5), "probability": round(float(p), 6), "model_version": version}
                for p in proba]

    @bentoml.api
    async def retrain(self, params: dict) -> dict:
        """Train the next version and serve it; predictions go on meanwhile."""
        run = await asyncio.to_thread(pipeline.train, params)
        self.version, self.model = await asyncio.to_thread(store.load, run.tag, ApprovalModel.load)
        return {"model_version": self.version, "metrics": run.metrics}


@bentoml.service(name="loans")
class Loans:
    """The seed 001 contract, unprefixed."""

    model = bentoml.depends(LoansModel)

    @bentoml.api(route="/predict")
    async def predict(self, application: Application, /, ctx: bentoml.Context) -> Approval:
        return await handlers.predict(self.model, application, ctx)

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, applications: Applications, /, ctx: bentoml.Context) -> Approvals:
        return await handlers.predict_batch(self.model, applications, ctx)

    @bentoml.api(route="/train")
    async def train(self, params: TrainParams = NO_PARAMS, /, ctx: bentoml.Context = None) -> TrainResult:
        return await handlers.train(self.model, params, ctx)


Loans.add_asgi_middleware(BodyLimit)
