"""Bento Fleet: every model behind one gateway, each route under the model's name.

``bentoml serve service:Fleet`` starts this gateway plus one batching service per model (each its own
process, called over a local socket). The routes are the seeds' contracts, prefixed: ``/names/…``,
``/loans/…``, ``/digits/…``, ``/topics/…``, ``/titanic/…``; the handlers are shared with each model's
own bento (``bentos/<model>/service.py``), so a contract is written once.
"""

from __future__ import annotations

import bentoml
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bentos.loans import handlers as loans
from bentos.loans.schemas import (
    NO_PARAMS,
    Application,
    Applications,
    Approval,
    Approvals,
    TrainParams,
    TrainResult,
)
from bentos.loans.service import LoansModel
from bentos.titanic import handlers as titanic
from bentos.titanic.schemas import Passengers, PipelineResult, SurvivalPredictions
from bentos.titanic.service import TitanicModel
from fleet.http import VERSION_HEADER, BodyLimit

# Routes BentoML cannot declare itself (GET and PUT); mounted under the gateway.
routes = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(name="fleet", traffic={"timeout": 300})
@bentoml.asgi_app(routes)
class Fleet:
    """The gateway: validates, calls the model services (which batch), answers in the seeds' shapes."""

    loans_model = bentoml.depends(LoansModel)
    titanic_model = bentoml.depends(TitanicModel)

    # loans (seed 001)
    @bentoml.api(route="/loans/predict")
    async def loans_predict(self, application: Application, /, ctx: bentoml.Context) -> Approval:
        return await loans.predict(self.loans_model, application, ctx)

    @bentoml.api(route="/loans/predict_batch")
    async def loans_predict_batch(self, applications: Applications, /, ctx: bentoml.Context) -> Approvals:
        return await loans.predict_batch(self.loans_model, applications, ctx)

    @bentoml.api(route="/loans/train")
    async def loans_train(
        self, params: TrainParams = NO_PARAMS, /, ctx: bentoml.Context = None
    ) -> TrainResult:
        return await loans.train(self.loans_model, params, ctx)

    # titanic (seed 004)
    @bentoml.api(route="/titanic/predict")
    async def titanic_predict(self, passengers: Passengers, /, ctx: bentoml.Context) -> SurvivalPredictions:
        return await titanic.predict(self.titanic_model, passengers, ctx)

    @routes.put("/titanic/run-pipeline")
    async def titanic_run_pipeline(self) -> PipelineResult:
        result = await titanic.run_pipeline(self.titanic_model)
        return JSONResponse(result.model_dump(), headers={VERSION_HEADER: result.model_version})


Fleet.add_asgi_middleware(BodyLimit)
