"""Switches for adaptive batching, so the benchmark can turn it off with the same code.

``FLEET_BATCHING=off`` scores every request on its own (one model call per request); the benchmark
compares both. The sizes and waits per model are in each model's spec (``bentos/<model>/spec.py``).
"""

from __future__ import annotations

import os

BATCHING = os.environ.get("FLEET_BATCHING", "on").lower() not in {"off", "0", "false", "no"}
# "bentoml" keeps BentoML's own learnt wait (to measure what greedy_dispatch changes).
LEARNT_WAIT = os.environ.get("FLEET_BATCH_WAIT", "greedy").lower()



def learnt_wait() -> None:
    """Apply the wait policy to BentoML's dispatcher: greedy unless ``FLEET_BATCH_WAIT=bentoml``."""
    if LEARNT_WAIT != "bentoml":
        greedy_dispatch()


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
