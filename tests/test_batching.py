"""BentoML's own dispatcher after a burst: its learnt wait falls back once traffic is serial again.

Runs the real ``CorkDispatcher`` in process over a fake model that takes 30 ms per batch of many and
1 ms for one request. No timings are asserted, only what the dispatcher learnt.
"""

from __future__ import annotations

import asyncio

from bentoml._internal.marshal.dispatcher import CorkDispatcher

from fleet import batching


async def learnt_waits() -> tuple[float, float]:
    """The dispatcher's learnt wait (seconds) after a burst, then after 60 serial requests."""
    dispatcher = CorkDispatcher(max_latency_in_ms=1000, max_batch_size=64, fallback=lambda: None,
                                get_batch_size=lambda _: 1)

    async def model(items: list[int]) -> list[int]:
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
    return after_burst, dispatcher.optimizer.wait


def test_the_learnt_wait_falls_back_after_a_burst() -> None:
    batching.bound_learnt_wait()
    after_burst, after_serial = asyncio.run(learnt_waits())
    assert after_burst > 0.01  # the burst taught it to hold requests
    assert after_serial < 0.005, (after_burst, after_serial)  # about one lone request's run time


def test_bounding_is_idempotent() -> None:
    from bentoml._internal.marshal.dispatcher import Optimizer

    batching.bound_learnt_wait()
    patched = Optimizer.log_outbound
    batching.bound_learnt_wait()
    assert Optimizer.log_outbound is patched
