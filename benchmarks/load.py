"""A small asyncio + aiohttp load generator for 127.0.0.1: closed loop at fixed concurrency, open loop
at a fixed rate, every run bounded in time.

Closed loop: ``concurrency`` clients each send, wait for the answer, send again. Open loop: requests
are sent on a fixed schedule (``rate`` per second, evenly spaced) whether or not earlier ones were
answered, and latency counts from the *scheduled* send time, so a stalled server (or a late client)
is charged in full instead of being hidden (coordinated omission). A run has a warm-up whose requests
are discarded, then a measured window; only requests answered (closed loop, as wrk counts) or
scheduled (open loop) inside the window count. Errors are non-2xx answers, timeouts and connection
failures; latency percentiles are over successful answers.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

JSON = {"content-type": "application/json"}
MAX_INFLIGHT = 4096  # open loop: scheduled sends beyond this many unanswered requests are dropped (errors)
OPEN_CONNECTIONS = 512  # open loop: connection pool; sends beyond it wait in the client (and are charged)


@dataclass
class Record:
    start: float  # closed: actual send time; open: scheduled send time
    end: float
    outcome: str  # "ok", an HTTP status, "timeout" or an exception name


@dataclass
class Window:
    """The measured window of a run, with hooks called when it opens and closes (e.g. CPU meters)."""

    warmup_s: float
    duration_s: float
    on_open: Callable[[], Any] | None = None
    on_close: Callable[[], Any] | None = None
    records: list[Record] = field(default_factory=list)
    opened_at: float = 0.0

    def schedule(self, loop: asyncio.AbstractEventLoop, t0: float) -> tuple[float, float]:
        opens, closes = t0 + self.warmup_s, t0 + self.warmup_s + self.duration_s
        self.opened_at = opens
        if self.on_open:
            loop.call_at(opens, self.on_open)
        if self.on_close:
            loop.call_at(closes, self.on_close)
        return opens, closes


async def attempt(session: aiohttp.ClientSession, url: str, body: bytes, deadline: float) -> str:
    """One POST, bounded by ``deadline`` (loop time); its outcome."""
    try:
        async with asyncio.timeout_at(deadline), session.post(url, data=body, headers=JSON) as response:
            await response.read()
            return "ok" if 200 <= response.status < 300 else str(response.status)
    except TimeoutError:
        return "timeout"
    except (aiohttp.ClientError, OSError) as error:
        return type(error).__name__


async def closed_loop(url: str, bodies: Iterator[bytes], concurrency: int, window: Window,
                      timeout_s: float) -> dict[str, Any]:
    """``concurrency`` clients in a loop for warm-up + duration; the window's summary."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        opens, closes = window.schedule(loop, loop.time())

        async def client() -> None:
            while (start := loop.time()) < closes:
                outcome = await attempt(session, url, next(bodies), start + timeout_s)
                if opens <= (end := loop.time()) < closes:
                    window.records.append(Record(start, end, outcome))

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return summarise(window.records, opens, window.duration_s)


async def open_loop(url: str, bodies: Iterator[bytes], rate: float, window: Window,
                    timeout_s: float) -> dict[str, Any]:
    """Requests every ``1/rate`` s for warm-up + duration, each charged from its scheduled time."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=OPEN_CONNECTIONS, force_close=False)
    inflight: set[asyncio.Task] = set()
    lag = 0.0
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = loop.time() + 0.05
        opens, _ = window.schedule(loop, t0)

        async def one(scheduled: float, body: bytes) -> None:
            outcome = await attempt(session, url, body, scheduled + timeout_s)
            if scheduled >= opens:
                window.records.append(Record(scheduled, loop.time(), outcome))

        for i in range(math.ceil(rate * (window.warmup_s + window.duration_s))):
            scheduled = t0 + i / rate
            if (delay := scheduled - loop.time()) > 0:
                await asyncio.sleep(delay)
            lag = max(lag, loop.time() - scheduled)
            if len(inflight) >= MAX_INFLIGHT:
                if scheduled >= opens:
                    window.records.append(Record(scheduled, scheduled, "dropped"))
                continue
            task = asyncio.create_task(one(scheduled, next(bodies)))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.wait(set(inflight))
    summary = summarise(window.records, opens, window.duration_s)
    return {**summary, "client_lag_ms": round(lag * 1000, 1)}


def summarise(records: list[Record], opens: float, duration_s: float) -> dict[str, Any]:
    """Throughput, latency percentiles (successes) and errors of a window's records.

    Throughput is successes over the window, or over the time until the last answer when answers
    trail past the window (an overloaded open loop), so an overload cannot overstate it.
    """
    latencies = np.array([(r.end - r.start) * 1000 for r in records if r.outcome == "ok"])
    span = max(duration_s, max((r.end for r in records), default=opens) - opens)
    errors = Counter(r.outcome for r in records if r.outcome != "ok")

    def pct(q: float) -> float | None:
        return round(float(np.percentile(latencies, q)), 2) if len(latencies) else None

    return {"rps": round(len(latencies) / span, 2), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "errors": sum(errors.values()), "requests": len(records), "error_kinds": dict(errors)}


def series(records: list[Record], opens: float, step_s: float) -> list[float | None]:
    """Median latency (ms) of successful requests per ``step_s`` slice of the window."""
    slices: dict[int, list[float]] = {}
    for r in records:
        if r.outcome == "ok":
            slices.setdefault(int((r.start - opens) // step_s), []).append((r.end - r.start) * 1000)
    last = max(slices, default=-1)
    return [round(float(np.median(slices[i])), 2) if i in slices else None for i in range(last + 1)]
