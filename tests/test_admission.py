"""Admission past capacity: once a route's oldest request has waited over the latency budget, new
requests to it get an immediate 503 with Retry-After; every admitted request is answered, and other
routes are not refused."""

from __future__ import annotations

import asyncio

from fleet.admission import Admission


def slow_model() -> Admission:
    """A route that answers 20 requests a second, one at a time, behind admission (0.3 s budget)."""
    lock = asyncio.Lock()

    async def model(scope: dict, receive: object, send: object) -> None:
        async with lock:
            await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return Admission(model, budget_s=0.3)


async def call(app: Admission, path: str) -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": path, "headers": []}, None, send)
    return sent[0]["status"], dict(sent[0]["headers"])


async def overload(path: str, rate: float, seconds: float) -> list[tuple[int, dict[bytes, bytes]]]:
    """Open loop: ``rate`` requests a second for ``seconds``, to one admission-guarded app."""
    app, calls = slow_model(), []
    for _ in range(int(rate * seconds)):
        calls.append(asyncio.ensure_future(call(app, path)))
        await asyncio.sleep(1 / rate)
    calls.append(asyncio.ensure_future(call(app, "/loans/predict")))  # another route, same moment
    return await asyncio.gather(*calls)


def test_past_capacity_new_requests_get_a_fast_503_with_retry_after() -> None:
    answers = asyncio.run(overload("/names/get_prediction", rate=100, seconds=1.5))
    codes = [status for status, _ in answers[:-1]]
    assert set(codes) == {200, 503} and codes[:8] == [200] * 8
    assert all(headers[b"retry-after"] == b"1" for status, headers in answers if status == 503)
    assert answers[-1][0] == 200  # /loans/predict has its own backlog


def test_under_capacity_nothing_is_refused() -> None:
    answers = asyncio.run(overload("/names/get_prediction", rate=15, seconds=1.0))
    assert {status for status, _ in answers} == {200}


async def staggered(app: Admission, path: str, count: int = 16) -> list[int]:
    calls = []
    for _ in range(count):
        calls.append(asyncio.ensure_future(call(app, path)))
        await asyncio.sleep(0.01)
    return [status for status, _ in await asyncio.gather(*calls)]


def test_admin_training_feedback_and_health_routes_are_never_refused() -> None:
    for path in ("/admin/routing", "/readyz", "/metrics", "/names/feedback", "/loans/train"):
        app = slow_model()
        app.exempt = (*app.exempt, "/loans/train")
        app.budget_s = 0.001
        assert set(asyncio.run(staggered(app, path))) == {200}, path
    app = slow_model()
    app.budget_s = 0.001
    assert 503 in asyncio.run(staggered(app, "/names/get_prediction"))
    assert app.backlogs == {}  # idle routes are forgotten
