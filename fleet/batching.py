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

# max_latency_ms bounds how long the dispatcher may hold a request to fill a batch; BentoML answers
# 503 when a request would wait longer, so it stays well above the worst batch time.
SETTINGS: dict[str, dict[str, int]] = {
    "names": {"max_batch_size": 256, "max_latency_ms": 1000},
    "loans": {"max_batch_size": 1024, "max_latency_ms": 1000},
    "digits": {"max_batch_size": 512, "max_latency_ms": 1000},
    "topics": {"max_batch_size": 128, "max_latency_ms": 1000},
    "titanic": {"max_batch_size": 1024, "max_latency_ms": 1000},
}


def batched(model: str) -> dict[str, Any]:
    """Keyword arguments for ``@bentoml.api`` of a model's scoring method."""
    if BATCHING and LEARNT_WAIT != "bentoml":
        greedy_dispatch()
    return {"batchable": BATCHING, **SETTINGS[model]}


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
