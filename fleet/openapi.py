"""The page at ``/`` and the spec behind it (``/docs.json``): what this server is, its operations
grouped by model, with examples that work from "Try it out", their error answers and the admin auth.

BentoML generates the spec from the services' APIs and mounted routes, but with its placeholder
info (external badge images, "created with BentoML"), two tags that mean nothing to a user, no
examples, no error bodies of ours, and without the POST of ``/topics/classify`` (the mounted GET
takes the path). Its page also loads Google Tag Manager. ``Docs`` answers ``GET /`` with Swagger UI
from BentoML's own static files and nothing external, and ``GET /docs.json`` with BentoML's spec
rewritten by ``refine``, from the operations documented in each model's ``docs.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NotRequired, TypedDict

import bentoml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet import PROJECT_ROOT, plan_sync
from fleet.http import send_body, send_json

SECURITY = "bearerAuth"
INFRASTRUCTURE = {
    "GET /readyz": "Ready once the models are loaded; says which server generation and worker answered",
    "GET /livez": "Alive (the process answers)", "GET /healthz": "Alive (the process answers)",
    "GET /metrics": "Prometheus metrics of this server",
}
PROBLEM = {  # the project's one error body (fleet.edge, fleet.http)
    "type": "object", "required": ["detail"],
    "properties": {
        "error": {"type": "string", "description": "a summary, on validation errors"},
        "detail": {"oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "object", "required": ["loc", "msg"], "properties": {
                "loc": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                        "description": "the field: its path from the body's root"},
                "msg": {"type": "string"}, "type": {"type": "string"}}}},
        ]},
    },
}
ERRORS = {
    "400": "Refused: the body or a field is invalid; `detail` names it",
    "401": "No or a wrong `Authorization: Bearer` token", "403": "Admin routes are off (no token set)",
    "404": "No such route or model", "409": "The version asked for is not loaded",
    "413": "The body is over 4 MiB", "415": "Not JSON, or compressed",
    "503": "Overloaded: retry after the `Retry-After` seconds",
}


class Operation(TypedDict):
    """What a reader of the page learns about one route (``example``: a body that works as sent)."""

    tag: str
    summary: str
    description: str
    example: NotRequired[Any]
    answer: NotRequired[Any]  # what the example gets back (an illustration: scores vary by version)
    parameters: NotRequired[dict[str, Any]]  # query parameter → example
    admin: NotRequired[bool]
    request_schema: NotRequired[dict[str, Any]]  # for an operation BentoML's spec leaves out
    html: NotRequired[bool]  # answers an HTML page, not JSON


class Tag(TypedDict):
    name: str
    description: str


def refine(spec: dict[str, Any], info: dict[str, Any], tags: list[Tag], operations: Mapping[str, Operation],
           prefix: str = "") -> dict[str, Any]:
    """BentoML's ``spec`` with our ``info``, ``tags`` and, for every route in ``operations`` (keyed
    ``"METHOD /path"`` as served by the gateway; a model's bento serves them without ``prefix``), its
    summary, example, error answers and auth."""
    spec = json.loads(json.dumps(spec))  # a copy
    spec["info"] = info
    spec["tags"] = [*tags, {"name": "infrastructure", "description": "Health, readiness and metrics"}]
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM
    components["securitySchemes"] = {SECURITY: {"type": "http", "scheme": "bearer",
                                                "description": "the server's FLEET_ADMIN_TOKEN"}}
    for key, operation in operations.items():
        method, path = key.split(" ", 1)
        served = path.removeprefix(prefix) if prefix else path
        if "request_schema" in operation and method.lower() not in spec["paths"].get(served, {}):
            spec["paths"].setdefault(served, {})[method.lower()] = _new_operation(operation)
    for path, methods in spec["paths"].items():
        for method, body in methods.items():
            key = f"{method.upper()} {prefix}{path}"
            if key in INFRASTRUCTURE:
                body.update(tags=["infrastructure"], summary=INFRASTRUCTURE[key])
            elif key in operations:
                _document(body, operations[key], method)
    return spec


def _new_operation(operation: Operation) -> dict[str, Any]:
    schema = operation["request_schema"]
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {"200": {"description": "Successful Response"}}}


def _document(body: dict[str, Any], operation: Operation, method: str) -> None:
    body.update(tags=[operation["tag"]], summary=operation["summary"], description=operation["description"])
    if operation.get("html"):
        body.setdefault("responses", {})["200"] = {"description": "An HTML page", "content": {
            "text/html": {"schema": {"type": "string"}}}}
    if "answer" in operation:
        ok = body.setdefault("responses", {}).setdefault("200", {"description": "Successful Response"})
        ok.setdefault("content", {}).setdefault("application/json", {})["example"] = operation["answer"]
    if "example" in operation and "requestBody" in body:
        body["requestBody"]["content"]["application/json"]["example"] = operation["example"]
    for parameter in body.get("parameters", []):
        if parameter["name"] in operation.get("parameters", {}):
            parameter["example"] = operation["parameters"][parameter["name"]]
    codes = ["400", "404"]
    if "requestBody" in body or method in ("post", "put"):
        codes += ["413", "415"]
    if operation["tag"] not in ("admin", "monitoring"):
        codes += ["409", "503"]
    if operation.get("admin"):
        codes += ["401", "403"]
        body["security"] = [{SECURITY: []}]
    responses = body.setdefault("responses", {})
    for code in ("404", "422", "500", 400, 404, 500):  # BentoML's and FastAPI's, replaced by ours
        responses.pop(code, None)
    for code in sorted(set(codes)):
        responses[code] = {"description": ERRORS[code], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        if code == "503":
            responses[code]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}


def version() -> str:
    """The bento's version (or that this is a source checkout) and the routing plan's revision."""
    bento = bentoml.server_context.bento_version
    built = f"{bentoml.server_context.bento_name}:{bento}" if bento != "not available" else "source checkout"
    return f"{built}, plan revision {plan_sync.read().number}"


Described = tuple[dict[str, Any], list[Tag], Mapping[str, Operation], str]  # info, tags, operations, prefix


def gateway(description: str, tags: list[Tag], operations: Mapping[str, Operation]
            ) -> Callable[[], Described]:
    """The gateway: every model's routes under its name."""

    def describe() -> Described:
        info = {"title": "Bento Fleet", "version": version(), "description": description}
        return info, tags, operations, ""

    return describe


def model_bento(tag: Tag, operations: Mapping[str, Operation]) -> Callable[[], Described]:
    """A model's own bento: its seed contract, unprefixed."""
    text = (f"{tag['description']}.\n\nOne model of Bento Fleet, served as its own bento on the seed's "
            "paths; every answer carries `X-Model-Version`, and refusals are 4xx whose JSON `detail` names "
            "the field. The project's README is served at [/readme](/readme).")

    def describe() -> Described:
        info = {"title": f"Bento Fleet: {tag['name']}", "version": version(), "description": text}
        return info, [tag], operations, f"/{tag['name']}"

    return describe


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>{title}</title>
  <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script>
    window.onload = function () {{
      window.ui = SwaggerUIBundle({{url: "./docs.json", dom_id: "#swagger-ui", deepLinking: true,
        persistAuthorization: true, tryItOutEnabled: false, displayRequestDuration: true,
        presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"}});
    }};
  </script>
</body>
</html>
"""


class Docs:
    """ASGI middleware: ``GET /`` is our page, ``GET /docs.json`` BentoML's spec refined, ``GET
    /readme`` the project's README. ``describe()`` (``gateway`` or ``model_bento``) is called per
    request, so the version shown follows plan changes."""

    def __init__(self, app: ASGIApp, describe: Callable[[], Described]) -> None:
        self.app, self.describe = app, describe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" and scope.get("method") == "GET" else None
        if path == "/":
            await _send_text(send, PAGE.format(title=self.describe()[0]["title"]), "text/html")
        elif path == "/readme":
            readme = PROJECT_ROOT / "README.md"
            text = readme.read_text() if readme.is_file() else "The README is not packed in this bento."
            await _send_text(send, text, "text/markdown")
        elif path == "/docs.json":
            spec = await _inner_json(self.app, scope, receive)
            info, tags, operations, prefix = self.describe()
            await send_json(send, 200, refine(spec, info, tags, operations, prefix))
        else:
            await self.app(scope, receive, send)


async def _send_text(send: Send, text: str, kind: str) -> None:
    await send_body(send, 200, text.encode(), f"{kind}; charset=utf-8".encode())


async def _inner_json(app: ASGIApp, scope: Scope, receive: Receive) -> dict[str, Any]:
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    return json.loads(b"".join(chunks))
