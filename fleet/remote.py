"""Calls from the gateway to a model service, retried when BentoML's client drops the connection.

BentoML 1.4.39 renews its client session to a dependency every 100 requests and closes the old one
while requests are still in flight on it; those fail with ``ServerDisconnectedError`` (5-8 % of
requests at 32 concurrent clients, measured here; bentoml/BentoML#4971). A dropped connection is
retried on the new session; model calls are pure functions of their input, so a retry is safe.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

ATTEMPTS = 3
logger = logging.getLogger(__name__)


async def call(service: Any, method: str, *args: Any) -> Any:
    """``await service.to_async.<method>(*args)``, retried on a dropped connection."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await getattr(service.to_async, method)(*args)
        except aiohttp.ClientConnectionError:
            if attempt == ATTEMPTS:
                raise
            logger.warning("connection to %s dropped; retrying %s (%d)", method, method, attempt)
    raise AssertionError("unreachable")
