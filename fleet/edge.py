"""The HTTP edge in front of every route: what a request must be before any handler sees it, and the
one shape every error leaves in.

BentoML parses bodies itself and some of its paths let a bad body out as a 500 (a truncated list,
a chunked body over the limit, a multipart type without a boundary, NaN in a string field). So the
edge reads the body first, within ``max_bytes`` whether declared or chunked, and refuses what no
route can parse: other encodings and content types (415), malformed or pathological JSON (400:
NaN/Infinity, numbers of more than ``MAX_DIGITS`` digits, nesting deeper than ``MAX_DEPTH``, objects of
more than ``MAX_KEYS`` keys, lone surrogates). Admin routes are checked for the token before their
body is read. Seed paths answer with or without a trailing slash, never with a redirect. Any error
answer that is not already JSON (a plain-text 404, BentoML's own 503 or 500) is rewritten into the
project's shape, and every 503 carries ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet import metric_labels
from fleet.auth import require_admin
from fleet.http import Problem, invalid_body, send_json

MAX_BODY_BYTES = 4 * 1024 * 1024  # a digits image in base64 is well under it
MAX_DEPTH = 32
MAX_KEYS = 1000
MAX_DIGITS = 40
JSON_TYPES = ("application/json",)
# Read as JSON too (every route takes JSON): what ``curl -d`` sends without a Content-Type header.
LENIENT_TYPES = ("application/x-www-form-urlencoded", "text/plain")
BODY_METHODS = {"POST", "PUT", "PATCH"}
RETRY_AFTER = (b"retry-after", b"1")
logger = logging.getLogger(__name__)


def json_problem(data: bytes) -> str | None:
    """What is wrong with a JSON body, in words for the caller, or None when it is sound."""
    try:
        text = data.decode("utf-8")
        value = _DECODER.decode(text)
    except UnicodeDecodeError as error:
        return f"the body is not UTF-8 (byte {error.start})"
    except json.JSONDecodeError as error:
        return f"the body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
    except RecursionError:
        return f"the body is nested deeper than {MAX_DEPTH} levels"
    except ValueError as error:
        return str(error)
    return _shape_problem(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"the body holds {name}, which is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:20]} is out of range")
    return number


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"an integer in the body has more than {MAX_DIGITS} digits")
    return int(text)


# built once: ``json.loads`` with hooks builds a decoder on every call
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite, parse_int=_bounded_int)


def _shape_problem(value: Any) -> str | None:
    """Depth, object size and strings a handler could not encode back (lone surrogates)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)) and depth > MAX_DEPTH:
            return f"the body is nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            if len(item) > MAX_KEYS:
                return f"an object in the body has {len(item)} keys; at most {MAX_KEYS} are accepted"
            for key, child in item.items():
                if not _encodable(key):
                    return "a key in the body is not valid unicode (a lone surrogate)"
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and not _encodable(item):
            return "a string in the body is not valid unicode (a lone surrogate)"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Edge:
    """ASGI middleware; ``admin``: path prefixes that need the admin token (checked before the body)."""

    def __init__(self, app: ASGIApp, admin: tuple[str, ...] = ("/admin",),
                 max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.admin, self.max_bytes = app, admin, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = _without_trailing_slash(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            if self._is_admin(scope["path"]):
                require_admin(headers, scope["path"])
            if scope["method"] in BODY_METHODS:
                receive = await self._checked_body(headers, receive)
                scope = _as_json(scope)
        except Problem as problem:
            await send_json(send, problem.status, problem.body, _encoded(problem.headers))
            return
        await self._answer(scope, receive, send)

    def _is_admin(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.admin)

    async def _checked_body(self, headers: Mapping[str, str], receive: Receive) -> Receive:
        """Read the whole body within the limit, check it, and hand it on as one message."""
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            raise self._too_large()
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise Problem(415, {"detail": f"Content-Encoding {encoding!r} is not accepted; send the body "
                                          "uncompressed"})
        body = await self._read(receive)
        if body:
            kind = headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if kind not in JSON_TYPES + LENIENT_TYPES and not kind.endswith("+json"):
                raise Problem(415, {"detail": f"Content-Type {kind!r} is not accepted; "
                                              "send application/json"})
            problem = json_problem(body)
            if problem:
                raise Problem(400, invalid_body("body", problem))
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    def _too_large(self) -> Problem:
        return Problem(413, {"detail": f"request body is larger than {self.max_bytes} bytes"})

    async def _read(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Problem(400, {"detail": "the client closed the connection before the body ended"})
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the route; error answers that are not JSON leave in the project's shape."""
        held: dict[str, Any] = {}  # an error answer being reshaped: its start and body so far
        started = False

        async def shaped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if _needs_shaping(message):
                    held["start"], held["body"] = message, b""
                    return
            elif "start" in held:
                held["body"] += message.get("body", b"")
                if not message.get("more_body"):
                    await _send_shaped(send, held["start"], held["body"])
                return
            await send(message)

        try:
            await self.app(scope, receive, shaped)
        except Exception:
            logger.exception("%s %s failed", scope["method"], scope["path"])
            if started and "start" not in held:
                raise
            await send_json(send, 500, {"detail": "internal error; the server log has the details"})


def _needs_shaping(start: Message) -> bool:
    if start["status"] < 400:
        return False
    kind = dict(start.get("headers", [])).get(b"content-type", b"")
    return not kind.startswith(b"application/json") or start["status"] == 503


async def _send_shaped(send: Send, start: Message, body: bytes) -> None:
    status = start["status"]
    detail: Any = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    try:
        given = json.loads(body) if body else None
    except ValueError:
        given = None
    if isinstance(given, dict) and given.get("detail"):
        detail = given["detail"]
    elif status == 503:
        detail = "the server is overloaded; retry after 1 s"
    elif body and status < 500 and len(body) < 500:
        detail = body.decode("utf-8", "replace").strip() or detail
    kept = [(k, v) for k, v in start.get("headers", [])
            if k.lower() not in (b"content-type", b"content-length", b"retry-after")]
    await send_json(send, status, {"detail": detail}, kept + ([RETRY_AFTER] if status == 503 else []))


def _without_trailing_slash(scope: Scope) -> Scope:
    """``/predict/`` is ``/predict`` (the digits seed posts to the former; a redirect loses the POST)."""
    path = scope["path"]
    if len(path) > 1 and path.endswith("/") and not path.startswith("/static_content"):
        path = path.rstrip("/") or "/"
        return {**scope, "path": path, "raw_path": path.encode()}
    return scope


def _as_json(scope: Scope) -> Scope:
    """The body was checked as JSON: say so to the route (BentoML parses by Content-Type)."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


class _ClientErrorsAreInfo(logging.Filter):
    """BentoML logs every request that fails validation at ERROR with a traceback, although it answers
    400: a caller's mistake is not a server error, so it is logged at INFO, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg}: refused, {error.error_count()} validation error(s)"
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(_ClientErrorsAreInfo())
metric_labels.bound()


def _encoded(headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
