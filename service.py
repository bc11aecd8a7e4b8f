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

from bentos.digits import handlers as digits
from bentos.digits.schemas import DigitPrediction, DigitRequest
from bentos.digits.service import DigitsModel
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
from bentos.names import handlers as names
from bentos.names.schemas import NamePredictions, NameRequest, ServiceCheck
from bentos.names.service import NamesModel
from bentos.titanic import handlers as titanic
from bentos.titanic.schemas import Passengers, PipelineResult, SurvivalPredictions
from bentos.titanic.service import TitanicModel
from bentos.topics import handlers as topics
from bentos.topics.schemas import Sentence, TopicRequest, TopicScore, TopK
from bentos.topics.service import TopicsModel
from fleet.http import VERSION_HEADER, BodyLimit

# Routes BentoML cannot declare itself (GET and PUT), mounted on the gateway.
routes = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(name="fleet", traffic={"timeout": 300})
@bentoml.asgi_app(routes)
class Fleet:
    """The gateway: validates, calls the model services (which batch), answers in the seeds' shapes."""

    names_model = bentoml.depends(NamesModel)
    loans_model = bentoml.depends(LoansModel)
    digits_model = bentoml.depends(DigitsModel)
    topics_model = bentoml.depends(TopicsModel)
    titanic_model = bentoml.depends(TitanicModel)

    # names (seed 000)
    @routes.get("/names/check_service")
    async def names_check_service(self) -> ServiceCheck:
        return await names.check_service(self.names_model)

    @bentoml.api(route="/names/get_prediction")
    async def names_get_prediction(self, request: NameRequest, /, ctx: bentoml.Context) -> NamePredictions:
        return await names.get_prediction(self.names_model, request, ctx)

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

    # digits (seed 002)
    @bentoml.api(route="/digits/predict")
    async def digits_predict(self, request: DigitRequest, /, ctx: bentoml.Context) -> DigitPrediction:
        return await digits.predict(self.digits_model, request, ctx)

    # topics (seed 003)
    @routes.get("/topics/classify")
    async def topics_classify_get(self, sentence: Sentence, top_k: TopK = 1) -> list[TopicScore]:
        return await topics.classify_query(self.topics_model, sentence, top_k)

    @bentoml.api(route="/topics/classify")
    async def topics_classify(self, request: TopicRequest, /, ctx: bentoml.Context) -> list[TopicScore]:
        return await topics.classify(self.topics_model, request, ctx)

    # titanic (seed 004)
    @bentoml.api(route="/titanic/predict")
    async def titanic_predict(self, passengers: Passengers, /, ctx: bentoml.Context) -> SurvivalPredictions:
        return await titanic.predict(self.titanic_model, passengers, ctx)

    @routes.put("/titanic/run-pipeline")
    async def titanic_run_pipeline(self) -> PipelineResult:
        result = await titanic.run_pipeline(self.titanic_model)
        return JSONResponse(result.model_dump(), headers={VERSION_HEADER: result.model_version})


Fleet.add_asgi_middleware(BodyLimit)
