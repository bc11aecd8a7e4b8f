"""Past capacity, a fast 503 with ``Retry-After`` instead of a queue that ends in timeouts.

A route is past capacity when its oldest request in flight has waited longer than the latency budget:
the server is no longer keeping up, and a new request would wait longer still. New requests to that
route are then refused at once until the backlog drains; requests already admitted are all answered.
Each route keeps its own count, so one model's backlog never refuses another route's callers, and a
few requests (``FLOOR``) are always admitted. The admin routes (training among them), feedback and
the health routes are never refused.
``FLEET_LATENCY_BUDGET_MS`` (default 1000, the dispatchers' ``max_latency_ms``) sets the budget;
``0`` turns admission off.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from fleet.http import send_json

BUDGET_S = float(os.environ.get("FLEET_LATENCY_BUDGET_MS", "1000")) / 1000
FLOOR = 8  # always admit this many in flight per route
EXEMPT = ("/admin", "/metrics", "/livez", "/readyz", "/healthz", "/docs", "/static_content")
EXEMPT_ENDINGS = ("/feedback",)  # ground truth a caller sends once


@dataclass
class Backlog:
    """One route's requests in flight, oldest first (dicts keep insertion order)."""

    started: dict[int, float] = field(default_factory=dict)

    def oldest_wait(self, now: float) -> float:
        return now - next(iter(self.started.values()), now)


class Admission:
    """ASGI middleware: refuse a route's new requests while its oldest one is over the budget."""

    def __init__(self, app: ASGIApp, budget_s: float = BUDGET_S, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.budget_s = budget_s
        self.exempt = (*EXEMPT, *exempt)
        self.backlogs: dict[str, Backlog] = {}
        self.ids = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or self.budget_s <= 0 or path == "/" or path.startswith(self.exempt)
                or path.rstrip("/").endswith(EXEMPT_ENDINGS)):
            await self.app(scope, receive, send)
            return
        backlog = self.backlogs.setdefault(path, Backlog())
        now = time.monotonic()
        if len(backlog.started) >= FLOOR and backlog.oldest_wait(now) > self.budget_s:
            await self._refuse(send, path, len(backlog.started))
            return
        request = next(self.ids)
        backlog.started[request] = now
        try:
            await self.app(scope, receive, send)
        finally:
            del backlog.started[request]
            if not backlog.started:  # forget idle routes: a path is any string a caller sends
                self.backlogs.pop(path, None)

    async def _refuse(self, send: Send, path: str, in_flight: int) -> None:
        detail = (f"{path} is past capacity: {in_flight} requests in flight and the oldest has waited "
                  f"over {self.budget_s:g} s; retry after 1 s")
        await send_json(send, 503, {"detail": detail}, [(b"retry-after", b"1")])
