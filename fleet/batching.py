"""Adaptive batching settings, in one place so the benchmark can turn batching off with the same code.

``FLEET_BATCHING=off`` serves every model API unbatched (one model call per request); the benchmark
compares both. The sizes and waits per model are chosen from ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import os
from typing import Any

BATCHING = os.environ.get("FLEET_BATCHING", "on").lower() not in {"off", "0", "false", "no"}
# "bentoml" keeps BentoML's own learnt wait (to measure what bounded_wait changes).
LEARNT_WAIT = os.environ.get("FLEET_BATCH_WAIT", "bounded").lower()

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
        bound_learnt_wait()
    return {"batchable": BATCHING, **SETTINGS[model]}


def bound_learnt_wait() -> None:
    """Count at most a batch's own run time as the time its first request waited.

    BentoML's dispatcher holds an idle model's queue for about the mean wait of recent batches, and
    that wait includes time spent queued behind a busy model. After a burst the mean is tens of
    milliseconds, and it keeps itself there: each lone request is held that long, and logs that long
    a wait again (serial p50 went from a few ms to 20-40 ms and stayed). Holding a batch longer than
    the model takes to run one gains nothing, so that is the most a batch's wait counts; the learnt
    wait then falls back to a single request's run time at the next refresh (at most 5 s). Idempotent.
    """
    from bentoml._internal.marshal.dispatcher import Optimizer

    if getattr(Optimizer.log_outbound, "bounded", False):
        return
    original = Optimizer.log_outbound

    def log_outbound(self: Optimizer, n: int, wait: float, duration: float) -> None:
        original(self, n, min(wait, duration), duration)

    log_outbound.bounded = True  # type: ignore[attr-defined]
    Optimizer.log_outbound = log_outbound  # type: ignore[method-assign]
