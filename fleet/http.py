"""What handlers share to answer: refusals (``Problem``) and their rendering, 4xx bodies that name the
field, request ids, the version header. The checks before any handler are ``fleet.edge``."""

from __future__ import annotations

import functools
import inspect
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import bentoml
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        request_id = given if _ID.fullmatch(given) else uuid.uuid4().hex.encode()
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


def reject(ctx: bentoml.Context, status: int, body: dict[str, Any],
           headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer from a ``bentoml.api`` with a context (BentoML copies the context status)."""
    ctx.response.status_code = status
    return JSONResponse(body, status_code=status, headers=headers)


def answers_problems(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn a ``Problem`` raised under a ``bentoml.api`` (which has a ``ctx``) into its 4xx answer.

    The signature is computed once here: BentoML 1.4.39 calls ``inspect.signature`` on the API function
    for every request, and through the wrapper chain that cost 0.3-0.4 ms of each names request.
    """

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(*args, **kwargs)
        except Problem as problem:
            return reject(kwargs["ctx"], problem.status, problem.body, problem.headers)

    wrapper.__signature__ = inspect.signature(handler)  # type: ignore[attr-defined]
    return wrapper


def problem_response(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn a ``Problem`` raised under a mounted FastAPI route into its 4xx answer."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(*args, **kwargs)
        except Problem as problem:
            return JSONResponse(problem.body, status_code=problem.status, headers=problem.headers)

    return wrapper


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

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        detail = [{"loc": [p for p in e["loc"] if p not in ("body", "query")] or list(e["loc"]),
                   "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        body = {"error": f"{len(detail)} validation error(s)", "detail": detail}
        return JSONResponse(body, status_code=400)

    return app
