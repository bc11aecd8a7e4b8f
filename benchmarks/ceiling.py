"""The in-process ceiling: a model's own batch call, no HTTP, at its best batch size."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.targets import TARGETS, batch_inputs, edge, scorer

BATCH_SIZES = (1, 8, 32, 128)


def items_per_second(score: Any, batch: Any, size: int, budget_s: float) -> float:
    """Call ``score(batch)`` repeatedly for about ``budget_s`` (at least 3 calls) after one warm-up call."""
    score(batch)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < budget_s:
        score(batch)
        calls += 1
    return size * calls / (time.perf_counter() - start)


def measure(model: str, budget_s: float, sizes: tuple[int, ...] = BATCH_SIZES) -> dict[str, Any]:
    """``{"ceiling_rps", "ceiling_batch", "ceiling_by_batch"}`` for one model."""
    threads = TARGETS[model].torch_threads
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # as a serving worker sets it (fleet.serving.limit_threads)
    score = scorer(model)
    by_size = {size: items_per_second(score, batch_inputs(model, size), size, budget_s) for size in sizes}
    best = max(by_size, key=by_size.__getitem__)
    return {"ceiling_rps": round(by_size[best], 1), "ceiling_batch": best,
            "ceiling_by_batch": {str(size): round(rate, 1) for size, rate in by_size.items()},
            "edge_ms": edge_ms(model, budget_s)}


def edge_ms(model: str, budget_s: float) -> float:
    """Milliseconds per request body for the gateway's validation (and image decoding), in process."""
    parse, bodies = edge(model), TARGETS[model].requests()
    calls, start = 0, time.perf_counter()
    while calls < 20 or time.perf_counter() - start < budget_s / 4:
        parse(next(bodies))
        calls += 1
    return round(1000 * (time.perf_counter() - start) / calls, 4)
