"""Adaptive batching settings, in one place so the benchmark can turn batching off with the same code.

``FLEET_BATCHING=off`` serves every model API unbatched (one model call per request); the benchmark
compares both. The sizes and waits per model are chosen from ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import os
from typing import Any

BATCHING = os.environ.get("FLEET_BATCHING", "on").lower() not in {"off", "0", "false", "no"}

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
    return {"batchable": BATCHING, **SETTINGS[model]}
