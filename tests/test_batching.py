"""BentoML's own dispatcher, made greedy: after a burst it holds no lone request, and batches still form.

Runs the real ``CorkDispatcher`` in process over a fake model that takes 30 ms per batch of many and
1 ms for one request. (Without ``greedy_dispatch`` it learns to hold each request about 25 ms and keeps
doing so after the burst.) No timings are asserted, only what the dispatcher learnt and the batch sizes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from bentoml._internal.marshal.dispatcher import CorkDispatcher

from fleet import batching


async def learnt_waits() -> tuple[float, float, list[int]]:
    """The dispatcher's learnt wait (seconds) after a burst, then after 60 serial requests, and the
    size of every batch the model saw."""
    dispatcher = CorkDispatcher(max_latency_in_ms=1000, max_batch_size=64, fallback=lambda: None,
                                get_batch_size=lambda _: 1)

    sizes: list[int] = []

    async def model(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.03 if len(items) > 1 else 0.001)
        return list(items)

    call = dispatcher(model)
    burst = []
    for i in range(1000):  # a request every millisecond for a second: they queue behind running batches
        burst.append(asyncio.ensure_future(call(i)))
        await asyncio.sleep(0.001)
    await asyncio.gather(*burst)
    dispatcher.optimizer.trigger_refresh()
    after_burst = dispatcher.optimizer.wait
    for i in range(60):
        await call(i)
    dispatcher.optimizer.trigger_refresh()
    dispatcher.shutdown()
    return after_burst, dispatcher.optimizer.wait, sizes


def test_no_request_is_held_after_a_burst_and_bursts_are_still_batched() -> None:
    batching.greedy_dispatch()
    after_burst, after_serial, sizes = asyncio.run(learnt_waits())
    assert after_burst == 0.0 and after_serial == 0.0
    assert max(sizes) >= 10  # the requests that queued behind a running batch went out together
    assert sizes[-60:] == [1] * 60


def test_greedy_dispatch_is_idempotent() -> None:
    from bentoml._internal.marshal.dispatcher import Optimizer

    batching.greedy_dispatch()
    patched = Optimizer.log_outbound
    batching.greedy_dispatch()
    assert Optimizer.log_outbound is patched


def test_fleet_batch_wait_bentoml_restores_bentomls_own_learnt_wait() -> None:
    """README: ``FLEET_BATCH_WAIT=bentoml`` keeps BentoML's behaviour (it learns to hold requests after a
    burst); the default is greedy. Each setting in a fresh process, as a server reads it at start."""
    code = ("import asyncio; from fleet import batching; batching.learnt_wait(); "
            "from tests.test_batching import learnt_waits; print(asyncio.run(learnt_waits())[0])")
    for setting, holds in (("bentoml", True), ("greedy", False)):
        done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FLEET_BATCH_WAIT": setting},
                              cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert (float(done.stdout.split()[-1]) > 0) == holds, (setting, done.stdout)
