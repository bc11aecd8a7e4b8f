"""What handlers share to answer: refusals (``Problem``) and their rendering, 4xx bodies that name the
field, request ids, the version header. The checks before any handler are ``fleet.edge``."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import bentoml
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.ids import time_ordered_id

VERSION_HEADER = "X-Model-Version"
_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class Problem(Exception):
    """A refusal with its HTTP status and JSON body, raised anywhere below a route."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status, self.body, self.headers = status, body, headers or {}


async def send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """A whole JSON answer from an ASGI middleware."""
    await send_body(send, status, json.dumps(body).encode(), b"application/json", headers)


async def send_body(send: Send, status: int, data: bytes, kind: bytes,
                    headers: list[tuple[bytes, bytes]] = ()) -> None:
    """A whole answer of content type ``kind`` from an ASGI middleware."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind), (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


def new_request_id() -> str:
    """A UUIDv7 as hex: the prediction log indexes rows by request id (``fleet.ids``)."""
    return time_ordered_id()


class RequestId:
    """Every request has an id: the caller's ``X-Request-ID`` (checked) or a new one, echoed back.

    The prediction log files rows under it, and feedback names it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"x-request-id"]
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"")
        request_id = given if _ID.fullmatch(given) else new_request_id().encode()
        scope = {**scope, "headers": [*headers, (b"x-request-id", request_id)]}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*kept, (b"x-request-id", request_id)]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def invalid_body(field: str, message: str) -> dict[str, Any]:
    """A 400 body in the same shape BentoML gives pydantic errors: it names the field."""
    return {"error": f"1 validation error: {field}",
            "detail": [{"loc": [field], "msg": message, "type": "value_error"}]}


def problem_answer(_: Any, problem: Problem) -> JSONResponse:
    """The one handler: every ``Problem`` raised under any route becomes this answer."""
    return JSONResponse(problem.body, status_code=problem.status, headers=problem.headers)


def serve_problems() -> None:
    """Register ``problem_answer`` for the ``bentoml.api`` routes of this process (idempotent).

    BentoML 1.4 renders every exception an API function raises itself (a 500, or its own bodies for
    its own exceptions) and offers no handler to register, so its per-request entry point is wrapped
    once here; the mounted FastAPI routes register the same handler (``mounted_routes``).
    ``tests/test_edge.py`` fails if a BentoML upgrade bypasses the wrap.

    The wrap also binds each API method once per service instance (``_bound_once``).
    """
    from _bentoml_impl.server.app import ServiceAppFactory

    endpoint = ServiceAppFactory.api_endpoint
    if getattr(endpoint, "answers_problems", False):
        return

    @functools.wraps(endpoint)
    async def api_endpoint(self: ServiceAppFactory, name: str, request: Request) -> Any:
        _bound_once(self._service_instance, name)
        try:
            return await endpoint(self, name, request)
        except Problem as problem:
            return problem_answer(request, problem)

    api_endpoint.answers_problems = True  # type: ignore[attr-defined]
    ServiceAppFactory.api_endpoint = api_endpoint  # type: ignore[method-assign]


def _bound_once(instance: Any, name: str) -> None:
    """Keep the API method BentoML binds on every request (``getattr(instance, name)``) on the instance.

    Each lookup runs ``APIMethod.__get__``, which builds the function's ``inspect.signature`` anew:
    5 % of a names worker's event loop at 32 clients. The method is a plain descriptor, so a value in
    the instance's ``__dict__`` wins; bound after startup, it is the same function a lookup returns
    (the self-proxy is set by then).
    """
    if instance is not None and name not in vars(instance):
        setattr(instance, name, getattr(instance, name))


def versioned_json(body: BaseModel) -> JSONResponse:
    """A FastAPI answer with the version header, for bodies that carry ``model_version``."""
    return JSONResponse(body.model_dump(), headers={VERSION_HEADER: body.model_version})


def answered_by(ctx: bentoml.Context, version: str) -> None:
    """Every answer says which model version produced it."""
    ctx.response.headers[VERSION_HEADER] = version


def mounted_routes() -> FastAPI:
    """The FastAPI app for the routes BentoML cannot declare (GET, PUT, admin), refusing bad input as
    BentoML's own routes do: 400 and ``{"error", "detail": [{"loc", "msg", "type"}]}``, not 422."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(Problem, problem_answer)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        detail = [{"loc": [p for p in e["loc"] if p not in ("body", "query")] or list(e["loc"]),
                   "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        body = {"error": f"{len(detail)} validation error(s)", "detail": detail}
        return JSONResponse(body, status_code=400)

    return app
