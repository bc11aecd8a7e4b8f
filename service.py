"""Bento Fleet: every model behind one gateway, each route under the model's name.

``bentoml serve service:Fleet`` starts this gateway plus one batching service per model (each its own
process, called over a local socket). The routes are the seeds' contracts, prefixed: ``/names/…``,
``/loans/…``, ``/digits/…``, ``/topics/…``, ``/titanic/…``; the handlers are shared with each model's
own bento (``bentos/<model>/service.py``), so a contract is written once. The gateway routes each
request to a version (stable, sticky canary, pin, shadow copy) and serves the admin API (``/admin/…``).
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Annotated, Any

import bentoml
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from bentos.digits import handlers as digits
from bentos.digits import service as digits_service
from bentos.digits.schemas import DigitPrediction, DigitRequest
from bentos.loans import handlers as loans
from bentos.loans import service as loans_service
from bentos.loans.schemas import (
    NO_PARAMS,
    Application,
    Applications,
    Approval,
    Approvals,
    TrainParams,
    TrainResult,
)
from bentos.names import handlers as names
from bentos.names import service as names_service
from bentos.names.schemas import NamePredictions, NameRequest, ServiceCheck
from bentos.titanic import handlers as titanic
from bentos.titanic import service as titanic_service
from bentos.titanic.schemas import Passengers, PipelineResult, SurvivalPredictions
from bentos.topics import handlers as topics
from bentos.topics import service as topics_service
from bentos.topics.schemas import Sentence, TopicRequest, TopicScore, TopK
from fleet import monitoring, report, store
from fleet.admission import Admission
from fleet.auth import require_admin
from fleet.http import BodyLimit, Problem, RequestId, answers_problems, problem_response, versioned_json
from fleet.predlog import PredictionLog
from fleet.remote import call
from fleet.routing import Route, RouteChange
from fleet.traffic import Served, Traffic

# Routes BentoML cannot declare itself (GET and PUT, the admin API), mounted on the gateway.
routes = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(name="fleet", traffic={"timeout": 300})
@bentoml.asgi_app(routes)
class Fleet:
    """The gateway: validates, routes to a version, calls the model services (which batch), answers."""

    names_model = bentoml.depends(names_service.NamesModel)
    loans_model = bentoml.depends(loans_service.LoansModel)
    digits_model = bentoml.depends(digits_service.DigitsModel)
    topics_model = bentoml.depends(topics_service.TopicsModel)
    titanic_model = bentoml.depends(titanic_service.TitanicModel)

    def __init__(self) -> None:
        # SQLite in var/ by default, PostgreSQL when DATABASE_URL is set; FLEET_PREDICTION_LOG=off turns it
        # off (the benchmark measures what logging costs that way).
        logging_on = os.environ.get("FLEET_PREDICTION_LOG", "on").lower() != "off"
        self.log = PredictionLog() if logging_on else None
        self.traffic = Traffic({
            "names": Served(self.names_model, names_service.label, names_service.loggable),
            "loans": Served(self.loans_model, loans_service.label),
            "digits_sklearn": Served(self.digits_model, digits_service.label, digits_service.loggable),
            "digits_cnn": Served(self.digits_model, digits_service.label, digits_service.loggable),
            "topics": Served(self.topics_model, topics_service.label, topics_service.loggable),
            "titanic": Served(self.titanic_model, titanic_service.label),
        }, self.log)

    @bentoml.on_startup
    async def _watch_accuracy(self) -> None:
        if self.log is not None:
            self._accuracy = asyncio.get_running_loop().create_task(monitoring.refresh_accuracy(self.log))

    @bentoml.on_shutdown
    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()

    def _log(self) -> PredictionLog:
        if self.log is None:
            raise Problem(503, {"detail": "the prediction log is off (FLEET_PREDICTION_LOG=off)"})
        return self.log

    # names (seed 000)
    @routes.get("/names/check_service")
    async def names_check_service(self) -> ServiceCheck:
        return names.check_service(store.parse_tag(self.traffic.plan["names"].stable)[1])

    @bentoml.api(route="/names/get_prediction")
    @answers_problems
    async def names_get_prediction(self, request: NameRequest, /, ctx: bentoml.Context) -> NamePredictions:
        return await names.get_prediction(self.traffic.scorer("names", ctx.request.headers), request, ctx)

    # loans (seed 001)
    @bentoml.api(route="/loans/predict")
    @answers_problems
    async def loans_predict(self, application: Application, /, ctx: bentoml.Context) -> Approval:
        return await loans.predict(self.traffic.scorer("loans", ctx.request.headers), application, ctx)

    @bentoml.api(route="/loans/predict_batch")
    @answers_problems
    async def loans_predict_batch(self, applications: Applications, /, ctx: bentoml.Context) -> Approvals:
        score = self.traffic.scorer("loans", ctx.request.headers)
        return await loans.predict_batch(score, applications, ctx)

    @bentoml.api(route="/loans/train")
    @answers_problems
    async def loans_train(
        self, params: TrainParams = NO_PARAMS, /, ctx: bentoml.Context = None
    ) -> TrainResult:
        require_admin(ctx.request.headers, "/loans/train")
        gate = self.traffic.plan["loans"].gate
        return await loans.train(self.loans_model, params, ctx, gate, self._adopter("loans"))

    # digits (seed 002)
    @bentoml.api(route="/digits/predict")
    @answers_problems
    async def digits_predict(self, request: DigitRequest, /, ctx: bentoml.Context) -> DigitPrediction:
        headers = ctx.request.headers
        return await digits.predict(lambda name: self.traffic.scorer(name, headers), request, ctx)

    # topics (seed 003)
    @routes.get("/topics/classify")
    @problem_response
    async def topics_classify_get(
        self, request: Request, sentence: Sentence, top_k: TopK = 1
    ) -> list[TopicScore]:
        return await topics.classify_query(self.traffic.scorer("topics", request.headers), sentence, top_k)

    @bentoml.api(route="/topics/classify")
    @answers_problems
    async def topics_classify(self, request: TopicRequest, /, ctx: bentoml.Context) -> list[TopicScore]:
        return await topics.classify(self.traffic.scorer("topics", ctx.request.headers), request, ctx)

    # titanic (seed 004)
    @bentoml.api(route="/titanic/predict")
    @answers_problems
    async def titanic_predict(self, passengers: Passengers, /, ctx: bentoml.Context) -> SurvivalPredictions:
        return await titanic.predict(self.traffic.scorer("titanic", ctx.request.headers), passengers, ctx)

    @routes.put("/titanic/run-pipeline")
    @problem_response
    async def titanic_run_pipeline(self, request: Request) -> PipelineResult:
        require_admin(request.headers, "/titanic/run-pipeline")
        gate = self.traffic.plan["titanic"].gate
        return versioned_json(await titanic.run_pipeline(self.titanic_model, gate, self._adopter("titanic")))

    def _adopter(self, model: str) -> Any:
        async def adopt(tag: str) -> Route:
            return await self.traffic.adopt(model, tag)

        return adopt

    # monitoring: ground truth in, live accuracy, drift and the report out
    @routes.post("/{model}/feedback")
    @problem_response
    async def feedback(self, model: str, body: Annotated[monitoring.FeedbackBody, Body()]) -> dict:
        """The true outcome of answered predictions, by request id (one, or a list of up to 1,000)."""
        logged = ["digits_sklearn", "digits_cnn"] if model == "digits" else [model]
        if not set(logged) <= set(self.traffic.plan):
            raise Problem(404, {"detail": f"no model named {model!r}"})
        return await monitoring.store_feedback(self._log(), logged, body)

    @routes.get("/admin/predictions")
    @problem_response
    async def admin_predictions(
        self, request: Request, request_id: str | None = None, model: str | None = None,
        since: datetime | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict]:
        require_admin(request.headers, "/admin/predictions")
        return await asyncio.to_thread(self._log().query, request_id=request_id, model=model, since=since,
                                       limit=limit)

    @routes.get("/admin/drift")
    @problem_response
    async def admin_drift(self, request: Request, model: str | None = None) -> dict:
        require_admin(request.headers, "/admin/drift")
        return await asyncio.to_thread(monitoring.drift_now, self._log(), self.traffic.plan,
                                       [model] if model else None)

    @routes.get("/admin/report")
    @problem_response
    async def admin_report(self, request: Request) -> HTMLResponse:
        require_admin(request.headers, "/admin/report")
        return HTMLResponse(await asyncio.to_thread(report.render, self._log(), list(self.traffic.plan)))

    # admin API: versions and the routing plan, changed without a restart
    @routes.get("/admin/models")
    @problem_response
    async def admin_models(self, request: Request) -> dict:
        require_admin(request.headers, "/admin/models")
        return {name: {"serving": route.model_dump(), "versions": store.catalogue(name)}
                for name, route in self.traffic.plan.items()}

    @routes.get("/admin/routing")
    @problem_response
    async def admin_routing(self, request: Request) -> dict:
        require_admin(request.headers, "/admin/routing")
        loaded = {}
        for service in dict.fromkeys(self.traffic.services.values()):
            loaded |= await call(service, "serving")
        return {name: {**route.model_dump(), "loaded": loaded.get(name, {}).get("loaded", [])}
                for name, route in self.traffic.plan.items()}

    @routes.put("/admin/routing/{model}")
    @problem_response
    async def admin_set_routing(
        self, request: Request, model: str, change: Annotated[RouteChange, Body()]
    ) -> dict:
        require_admin(request.headers, f"/admin/routing/{model}")
        current = self.traffic.plan.get(model)
        route = change.applied_to(current) if current else None
        return (await self.traffic.change(model, route)).model_dump()

    @routes.post("/admin/routing/{model}/promote")
    @problem_response
    async def admin_promote(self, request: Request, model: str) -> dict:
        require_admin(request.headers, f"/admin/routing/{model}/promote")
        return (await self.traffic.promote(model)).model_dump()

    @routes.post("/admin/routing/{model}/rollback")
    @problem_response
    async def admin_rollback(self, request: Request, model: str) -> dict:
        require_admin(request.headers, f"/admin/routing/{model}/rollback")
        return (await self.traffic.rollback(model)).model_dump()


Fleet.add_asgi_middleware(BodyLimit)
Fleet.add_asgi_middleware(Admission)
Fleet.add_asgi_middleware(RequestId)
