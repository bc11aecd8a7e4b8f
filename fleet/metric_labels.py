"""Bounded ``endpoint`` labels on BentoML's request metrics.

BentoML's ``RunnerTrafficMetricsMiddleware`` labels every request with its raw path and runs outside
every user middleware, so each path a caller invents (a scanner's 404s, ``/{random}/feedback``)
becomes new series in ``/metrics``, about 4 KB each: memory anyone can grow. ``bound()`` wraps that
middleware so it sees the route's template instead (``/{model}/feedback``), or ``other`` for a path
no route serves; the requests themselves, and every middleware after it, keep their real path.
BentoML 1.4 offers no setting for this; ``tests/test_edge.py`` fails if an upgrade breaks the wrap.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from starlette.routing import Match, Mount, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

OTHER = "other"
REAL_PATH = "fleet.real_path"


def route_label(scope: Scope) -> str:
    """The template of the route that serves this path (any method), or ``other``."""
    try:
        return _label(scope)
    except Exception:  # a label must never cost a request
        return OTHER


def _label(scope: Scope) -> str:
    app = scope.get("app")
    path = scope["path"].rstrip("/") or "/"
    probe = {**scope, "path": path}
    for route in getattr(app, "routes", []):
        match, child = route.matches(probe)
        if match == Match.NONE:
            continue
        if isinstance(route, Mount):
            inner = _inner_label(route, {**probe, **child})
            return inner or route.path or OTHER
        return getattr(route, "path", None) or OTHER
    return OTHER


def _inner_label(mount: Mount, scope: Scope) -> str | None:
    """The template of the mounted app's route for this path (FastAPI nests included routers)."""
    for template in _templates(getattr(mount.app, "routes", [])):
        if _pattern(mount.path + template).match(scope["path"]):
            return mount.path + template
    return None


def _templates(routes: list[Any], prefix: str = "") -> Iterator[str]:
    for route in routes:
        if getattr(route, "path", None) is not None and not isinstance(route, Mount):
            yield prefix + route.path
        included = getattr(getattr(route, "original_router", None), "routes", None)
        if included is not None:  # FastAPI's _IncludedRouter
            yield from _templates(included, prefix + (getattr(route.include_context, "prefix", "") or ""))


@functools.cache
def _pattern(template: str) -> re.Pattern[str]:
    return compile_path(template)[0]


def bound() -> None:
    """Wrap BentoML's request-metrics middleware once (idempotent)."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware as Metrics

    if getattr(Metrics.__call__, "bounded", False):
        return
    original = Metrics.__call__

    async def labelled(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await original(self, scope, receive, send)
            return
        if not getattr(self, "restores_paths", False):
            self.app, self.restores_paths = _restoring(self.app), True
        label = route_label(scope)
        if label != scope["path"]:
            scope = {**scope, "path": label, REAL_PATH: scope["path"]}
        await original(self, scope, receive, send)

    labelled.bounded = True  # type: ignore[attr-defined]
    Metrics.__call__ = labelled


def _restoring(app: ASGIApp) -> ASGIApp:
    """What the metrics middleware calls next: the request again with its real path."""

    async def restore(scope: Scope, receive: Receive, send: Send) -> None:
        real = scope.get(REAL_PATH)
        if real is not None:
            scope = {**{k: v for k, v in scope.items() if k != REAL_PATH}, "path": real}
        await app(scope, receive, send)

    return restore
