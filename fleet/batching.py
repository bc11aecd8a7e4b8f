"""Adaptive batching settings, in one place so the benchmark can turn batching off with the same code.

``FLEET_BATCHING=off`` serves every model API unbatched (one model call per request); the benchmark
compares both. The sizes and waits per model are chosen from ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import os
from typing import Any

BATCHING = os.environ.get("FLEET_BATCHING", "on").lower() not in {"off", "0", "false", "no"}
# "bentoml" keeps BentoML's own learnt wait (to measure what greedy_dispatch changes).
LEARNT_WAIT = os.environ.get("FLEET_BATCH_WAIT", "greedy").lower()

# Chosen from benchmarks/RESULTS.md (2 cores). max_latency_ms bounds how long the dispatcher may
# hold a request; BentoML answers 503 past it, and the gateway's admission budget is the same 1 s.
# The largest mean batch measured was 35 (loans, 128 clients), so the size caps never bind; topics'
# own throughput peaks at batch 32-128 (701-1,027 items/s), the lowest cap.
# digits_sklearn is served unbatched: in two runs batching gained nothing at 32 clients (1.00×,
# 0.95× of unbatched) and cost 0.6-1.2 ms at one client (1.08×, 1.27×); the SVC's own call is 1 ms.
SETTINGS: dict[str, dict[str, Any]] = {
    "names": {"max_batch_size": 256, "max_latency_ms": 1000},
    "loans": {"max_batch_size": 1024, "max_latency_ms": 1000},
    "digits_sklearn": {"batchable": False},
    "digits_cnn": {"max_batch_size": 512, "max_latency_ms": 1000},
    "topics": {"max_batch_size": 128, "max_latency_ms": 1000},
    "titanic": {"max_batch_size": 1024, "max_latency_ms": 1000},
}


def batched(model: str) -> dict[str, Any]:
    """Keyword arguments for ``@bentoml.api`` of a model's scoring method."""
    settings = SETTINGS[model]
    if not BATCHING or settings.get("batchable") is False:
        return {"batchable": False}
    if LEARNT_WAIT != "bentoml":
        greedy_dispatch()
    return {"batchable": True, **settings}


def greedy_dispatch() -> None:
    """Dispatch a batch as soon as the model is idle, taking everything queued (up to the maximum).

    BentoML's dispatcher holds an idle model's queue for about the mean wait of recent batches, and
    that wait includes time spent queued behind a busy model. After a burst the mean is tens of
    milliseconds and keeps itself there: each lone request is held that long and logs that long a
    wait again (serial p50 on names went from 11 ms to 34 ms after a burst and stayed; the loans
    model, 80 ms a call, learnt to hold requests 70 ms). Logging every batch's wait as zero keeps the
    dispatcher from holding an idle model; under load, batches still form from the requests that
    queue while the model runs. Idempotent.
    """
    from bentoml._internal.marshal.dispatcher import Optimizer

    if getattr(Optimizer.log_outbound, "greedy", False):
        return
    original = Optimizer.log_outbound

    def log_outbound(self: Optimizer, n: int, wait: float, duration: float) -> None:
        original(self, n, 0.0, duration)

    log_outbound.greedy = True  # type: ignore[attr-defined]
    Optimizer.log_outbound = log_outbound  # type: ignore[method-assign]
