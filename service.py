"""Bento Fleet: every model behind one gateway, each route under the model's name.

``bentoml serve service:Fleet`` starts this gateway with one worker per core (``FLEET_WORKERS``); each
worker holds every planned model version and batches each model's requests itself, so no request
crosses a second process. The routes are the seeds' contracts, prefixed: ``/names/…``,
``/loans/…``, ``/digits/…``, ``/topics/…``, ``/titanic/…``; the handlers are shared with each model's
own bento (``bentos/<model>/service.py``), so a contract is written once. The gateway routes each
request to a version (stable, sticky canary, pin, shadow copy) and serves the admin API (``/admin/…``).
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Annotated

import bentoml
from fastapi import Body, Query, Request
from fastapi.responses import HTMLResponse

from bentos.digits import handlers as digits
from bentos.digits.schemas import DigitPrediction, DigitRequest
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
from bentos.names import handlers as names
from bentos.names.schemas import NamePredictions, NameRequest, ServiceCheck
from bentos.registry import OPERATIONS, SPECS, TAGS
from bentos.titanic import handlers as titanic
from bentos.titanic.schemas import Passengers, PipelineResult, SurvivalPredictions
from bentos.topics import handlers as topics
from bentos.topics.schemas import Sentence, TopicRequest, TopicScore, TopK
from fleet import gateway_docs, monitor, monitoring, openapi, plan_sync, store
from fleet.auth import require_admin
from fleet.http import Problem, mounted_routes, versioned_json
from fleet.loop import api as loop_api
from fleet.loop import driver
from fleet.predlog import PredictionLog
from fleet.routing import RouteChange
from fleet.serving import SERVICE, add_edge, declare_models, follow_plan, limit_threads, worker_index
from fleet.traffic import Traffic

# Routes BentoML cannot declare itself (GET and PUT, the admin API), mounted on the gateway.
routes = mounted_routes()


@bentoml.service(name="fleet", **SERVICE)
@bentoml.asgi_app(routes)
class Fleet:
    """The gateway: validates, routes to a version, scores in this worker (batched), logs, answers.

    Every worker holds every planned version of every model; plan changes reach all of them.
    """

    def __init__(self) -> None:
        limit_threads()
        # SQLite in the state folder by default, PostgreSQL when DATABASE_URL is set;
        # FLEET_PREDICTION_LOG=off turns it off (the benchmark measures what logging costs that way).
        logging_on = os.environ.get("FLEET_PREDICTION_LOG", "on").lower() != "off"
        journal = os.environ.get("FLEET_PREDLOG_JOURNAL", "on").lower() != "off"
        sync = "fsync" if os.environ.get("FLEET_PREDLOG_SYNC", "write").lower() == "fsync" else "write"
        # a shipper process beside the worker commits the journal, off its GIL (fleet.predlog.shipper);
        # FLEET_PREDLOG_SHIPPER=thread commits it from a thread of the worker instead (~70 MiB less a worker)
        elsewhere = os.environ.get("FLEET_PREDLOG_SHIPPER", "process").lower() != "thread"
        self.log = PredictionLog(journal=journal, sync=sync, ship_elsewhere=elsewhere) if logging_on else None
        self.traffic = Traffic(SPECS, self.log, worker=worker_index())

    @bentoml.on_startup
    async def _start_watching(self) -> None:
        self._following = follow_plan(self.traffic)
        if self.log is not None:
            self._accuracy = asyncio.get_running_loop().create_task(monitoring.refresh_accuracy(self.log))
            self._monitor = monitor.spawn()  # renders the report and keeps the aggregates, off this worker
            self._loop = driver.start(self.traffic, self.log)  # rollouts and triggers, in one worker

    @bentoml.on_shutdown
    def _close_log(self) -> None:
        if self.log is not None:
            self._monitor.terminate()
            self.log.close()

    def _log(self) -> PredictionLog:
        if self.log is None:
            raise Problem(503, {"detail": "the prediction log is off (FLEET_PREDICTION_LOG=off)"})
        return self.log

    # names (seed 000)
    @routes.get("/names/check_service")
    async def names_check_service(self) -> ServiceCheck:
        return versioned_json(names.check_service(self.traffic.stable_version("names")))

    @bentoml.api(route="/names/get_prediction")
    async def names_get_prediction(self, request: NameRequest, /, ctx: bentoml.Context) -> NamePredictions:
        return await names.get_prediction(self.traffic.scorer("names", ctx.request.headers), request, ctx)

    # loans (seed 001)
    @bentoml.api(route="/loans/predict")
    async def loans_predict(self, application: Application, /, ctx: bentoml.Context) -> Approval:
        return await loans.predict(self.traffic.scorer("loans", ctx.request.headers), application, ctx)

    @bentoml.api(route="/loans/predict_batch")
    async def loans_predict_batch(self, applications: Applications, /, ctx: bentoml.Context) -> Approvals:
        score = self.traffic.scorer("loans", ctx.request.headers)
        return await loans.predict_batch(score, applications, ctx)

    @bentoml.api(route="/loans/train")
    async def loans_train(
        self, params: TrainParams = NO_PARAMS, /, ctx: bentoml.Context = None
    ) -> TrainResult:
        require_admin(ctx.request.headers, "/loans/train")
        return await loans.train(self.traffic, params, ctx)

    # digits (seed 002)
    @bentoml.api(route="/digits/predict")
    async def digits_predict(self, request: DigitRequest, /, ctx: bentoml.Context) -> DigitPrediction:
        headers = ctx.request.headers
        return await digits.predict(lambda name: self.traffic.scorer(name, headers), request, ctx)

    # topics (seed 003)
    @routes.get("/topics/classify")
    async def topics_classify_get(
        self, request: Request, sentence: Sentence, top_k: TopK = 1
    ) -> list[TopicScore]:
        score = self.traffic.scorer("topics", request.headers)
        return await topics.classify_query(score, request.query_params, sentence, top_k)

    @bentoml.api(route="/topics/classify")
    async def topics_classify(self, request: TopicRequest, /, ctx: bentoml.Context) -> list[TopicScore]:
        return await topics.classify(self.traffic.scorer("topics", ctx.request.headers), request, ctx)

    # titanic (seed 004)
    @bentoml.api(route="/titanic/predict")
    async def titanic_predict(self, passengers: Passengers, /, ctx: bentoml.Context) -> SurvivalPredictions:
        return await titanic.predict(self.traffic.scorer("titanic", ctx.request.headers), passengers, ctx)

    @routes.put("/titanic/run-pipeline")
    async def titanic_run_pipeline(self, request: Request) -> PipelineResult:
        require_admin(request.headers, "/titanic/run-pipeline")
        return versioned_json(await titanic.run_pipeline(self.traffic))

    # monitoring: ground truth in, live accuracy, drift and the report out
    @routes.post("/{model}/feedback")
    async def feedback(self, model: str, body: Annotated[monitoring.FeedbackBody, Body()]) -> dict:
        """The true outcome of answered predictions, by request id (one, or a list of up to 1,000)."""
        logged = ["digits_sklearn", "digits_cnn"] if model == "digits" else [model]
        if not set(logged) <= set(self.traffic.plan):
            raise Problem(404, {"detail": f"no model named {model!r}"})
        return await monitoring.store_feedback(self._log(), logged, body)

    @routes.get("/admin/predictions")
    async def admin_predictions(
        self, request: Request, request_id: str | None = None, model: str | None = None,
        since: datetime | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict]:
        require_admin(request.headers, "/admin/predictions")
        return await monitoring.with_database(self._log().query, request_id=request_id, model=model,
                                              since=since, limit=limit)

    @routes.get("/admin/drift")
    async def admin_drift(self, request: Request, model: str | None = None) -> dict:
        require_admin(request.headers, "/admin/drift")
        return await monitoring.with_database(monitoring.drift_now, self._log(), self.traffic.plan,
                                       [model] if model else None)

    @routes.get("/admin/report")
    async def admin_report(self, request: Request, fresh: bool = False) -> HTMLResponse:
        """The last render of the report (``fresh=true``: wait for one that begins now)."""
        require_admin(request.headers, "/admin/report")
        self._log()
        if self._monitor.poll() is not None:  # this worker's monitor died: start another
            self._monitor = monitor.spawn()
        text, rendered_at = await monitoring.report_page(fresh)
        return HTMLResponse(text, headers={"X-Report-Rendered-At": rendered_at})

    # admin API: versions and the routing plan, changed without a restart
    @routes.get("/admin/models")
    async def admin_models(self, request: Request) -> dict:
        require_admin(request.headers, "/admin/models")
        return {name: {"serving": route.model_dump(), "versions": store.catalogue(name)}
                for name, route in self.traffic.plan.items()}

    @routes.get("/admin/routing")
    async def admin_routing(self, request: Request) -> dict:
        require_admin(request.headers, "/admin/routing")
        workers = await asyncio.to_thread(plan_sync.workers)
        return {name: {**route.model_dump(), "loaded": self.traffic.loaded()[name],
                       "workers": [{"replica": w.get("replica"), "worker": w["worker"],
                                    "revision": w["revision"], "loaded": w["loaded"].get(name, []),
                                    "error": w["errors"].get(name)}
                                   for w in workers]}
                for name, route in self.traffic.plan.items()}

    @routes.put("/admin/routing/{model}")
    async def admin_set_routing(
        self, request: Request, model: str, change: Annotated[RouteChange, Body()]
    ) -> dict:
        require_admin(request.headers, f"/admin/routing/{model}")
        await loop_api.refuse_while_running(self.log and self.log.engine, model)
        return (await self.traffic.change(model, change.applied_to)).model_dump()

    @routes.post("/admin/routing/{model}/promote")
    async def admin_promote(self, request: Request, model: str) -> dict:
        require_admin(request.headers, f"/admin/routing/{model}/promote")
        await loop_api.refuse_while_running(self.log and self.log.engine, model)
        return (await self.traffic.promote(model)).model_dump()

    @routes.post("/admin/routing/{model}/rollback")
    async def admin_rollback(self, request: Request, model: str) -> dict:
        require_admin(request.headers, f"/admin/routing/{model}/rollback")
        await loop_api.refuse_while_running(self.log and self.log.engine, model)
        return (await self.traffic.rollback(model)).model_dump()


    # the closed loop: a challenger rolls out step by step, judged on live evidence
    @routes.post("/admin/rollouts/{model}")
    async def admin_start_rollout(
        self, request: Request, model: str, start: Annotated[loop_api.RolloutStart, Body()]
    ) -> dict:
        require_admin(request.headers, f"/admin/rollouts/{model}")
        return await loop_api.start(self.traffic, self._log().engine, model, start)

    @routes.get("/admin/rollouts")
    async def admin_rollouts(
        self, request: Request, model: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict:
        require_admin(request.headers, "/admin/rollouts")
        return await loop_api.status(self._log().engine, model, limit)

    @routes.post("/admin/rollouts/{model}/abort")
    async def admin_abort_rollout(self, request: Request, model: str) -> dict:
        require_admin(request.headers, f"/admin/rollouts/{model}/abort")
        return await loop_api.abort(self.traffic, self._log().engine, model)


DOCS = openapi.gateway(gateway_docs.DESCRIPTION, [*TAGS, *gateway_docs.TAGS],
                       {**OPERATIONS, **gateway_docs.OPERATIONS})
add_edge(Fleet, DOCS, admin=("/loans/train", "/titanic/run-pipeline"))
declare_models(Fleet, *SPECS)
