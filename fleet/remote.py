"""Calls to a model service: one long-lived session, retried when the connection drops anyway.

BentoML 1.4.39 renews its client session to a dependency every 100 requests (and every 300 s) and
closes the old one while requests are still in flight on it; those fail with
``ServerDisconnectedError`` or ``Connector is closed`` (5-8 % of requests at 32 concurrent clients;
at 128, retries ran out too: 127 of ~7,000 answered 500; bentoml/BentoML#4971). Model services
declare ``fleet.serving.MODEL_SERVICE`` so their callers keep one session, and a dropped connection
is still retried on a new one; scoring is a pure function of its input, so a retry is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from fleet.http import Problem

ATTEMPTS = 3
logger = logging.getLogger(__name__)

# ``score(method, inputs) -> outputs``: one model's scoring, already bound to its routing.
Score = Callable[[str, list[Any]], Awaitable[list[dict[str, Any]]]]


async def call(service: Any, method: str, *args: Any) -> Any:
    """``await service.to_async.<method>(*args)``, retried on a dropped connection."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await getattr(service.to_async, method)(*args)
        except aiohttp.ClientConnectionError:
            if attempt == ATTEMPTS:
                raise
            logger.warning("connection dropped calling %s; retrying (%d)", method, attempt)
    raise AssertionError("unreachable")


async def score(service: Any, method: str, inputs: list[Any], version: str | None = None) -> list[dict]:
    """Score ``inputs`` with ``version`` (None: the service's stable) and check every item was served."""
    outputs = await call(service, method, [{"version": version, "input": x} for x in inputs])
    missing = [o["error"] for o in outputs if "error" in o]
    if missing:
        raise Problem(409, {"detail": missing[0]})
    return outputs


def direct(service: Any) -> Score:
    """A ``Score`` on the service's own stable version: what a model's own bento uses."""

    async def bound(method: str, inputs: list[Any]) -> list[dict]:
        return await score(service, method, inputs)

    return bound
