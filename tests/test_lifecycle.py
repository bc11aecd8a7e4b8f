"""Rolling out versions on a running gateway: sticky canary split, pins, shadow, promote and rollback
under load with no failed request, broken tags refused, admin routes behind the token."""

from __future__ import annotations

import collections
import concurrent.futures
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import pytest

from bentos.titanic import pipeline as titanic_pipeline
from data.titanic import load as load_titanic
from fleet.routing import load_plan
from tests.conftest import ADMIN, ADMIN_TOKEN, serving

PASSENGER = [{"Sex": "male", "Age": 30, "Pclass": 2}]
WORKERS = 2


@pytest.fixture(scope="module")
def versions(routing_plan: Path) -> dict[str, str]:
    """The stable titanic version and a second one trained for the canary."""
    stable = load_plan(routing_plan)["titanic"].stable
    challenger = titanic_pipeline.train({**titanic_pipeline.TINY, "max_depth": 2}).tag
    return {"stable": stable.split(":")[1], "canary": challenger.split(":")[1], "canary_tag": challenger,
            "stable_tag": stable}


@pytest.fixture(scope="module")
def gateway(
    routing_plan: Path, tmp_path_factory: pytest.TempPathFactory, versions: dict
) -> Iterator[httpx.Client]:
    """A gateway of its own, with its own copy of the plan, since these tests change it."""
    plan = tmp_path_factory.mktemp("lifecycle") / "routing.yaml"
    shutil.copy(routing_plan, plan)
    env = {"FLEET_ROUTING": str(plan), "FLEET_ADMIN_TOKEN": ADMIN_TOKEN, "FLEET_WORKERS": str(WORKERS)}
    with serving("service:Fleet", env) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_a_change_is_served_by_every_worker_once_acknowledged(gateway: httpx.Client, versions: dict) -> None:
    before = _workers_once_all_started(gateway)
    assert sorted(w["worker"] for w in before) == list(range(1, WORKERS + 1))
    assert _set(gateway, stable=versions["stable_tag"], shadow=versions["canary_tag"]).is_success
    workers = gateway.get("/admin/routing", headers=ADMIN).json()["titanic"]["workers"]
    assert len({w["revision"] for w in workers}) == 1
    assert workers[0]["revision"] == before[0]["revision"] + 1
    assert all(versions["canary"] in w["loaded"] and w["error"] is None for w in workers)
    # a pin to the new version is served whichever worker answers
    pinned = {_version(gateway, {"X-Model-Version": versions["canary"]}) for _ in range(30)}
    assert pinned == {versions["canary"]}


def _workers_once_all_started(gateway: httpx.Client, patience_s: float = 60) -> list[dict]:
    """``/readyz`` answers once one worker is up; the others may still be loading their models."""
    deadline = time.monotonic() + patience_s
    while True:
        workers = gateway.get("/admin/routing", headers=ADMIN).json()["titanic"]["workers"]
        if len(workers) == WORKERS or time.monotonic() > deadline:
            return workers
        time.sleep(0.2)


def _set(gateway: httpx.Client, **route: object) -> httpx.Response:
    return gateway.put("/admin/routing/titanic", json=route, headers=ADMIN)


def _canary(gateway: httpx.Client, versions: dict, weight: float) -> httpx.Response:
    return _set(gateway, stable=versions["stable_tag"], canary=versions["canary_tag"], canary_weight=weight)


def _version(gateway: httpx.Client, headers: dict[str, str] | None = None) -> str:
    answer = gateway.post("/titanic/predict", json=PASSENGER, headers=headers or {})
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Model-Version"]


def test_canary_split_is_weighted_and_sticky(gateway: httpx.Client, versions: dict) -> None:
    assert _canary(gateway, versions, 20).is_success
    keys = [f"user-{i}" for i in range(2000)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        first = list(pool.map(lambda k: _version(gateway, {"X-User-ID": k}), keys))
        again = list(pool.map(lambda k: _version(gateway, {"X-User-ID": k}), keys[:300]))
    share = first.count(versions["canary"]) / len(first)
    # 2,000 keys at 20 %: binomial sd 0.9 points; 3 points is over 3 sd.
    assert abs(share - 0.20) < 0.03, share
    assert set(first) == {versions["stable"], versions["canary"]}
    assert again == first[:300]  # a caller never flips between versions


def test_pinning_and_unknown_pins(gateway: httpx.Client, versions: dict) -> None:
    assert _version(gateway, {"X-Model-Version": versions["canary"]}) == versions["canary"]
    assert _version(gateway, {"X-Model-Version": versions["stable"]}) == versions["stable"]
    unknown = gateway.post("/titanic/predict", json=PASSENGER, headers={"X-Model-Version": "v999"})
    assert unknown.status_code == 400 and "v999" in unknown.json()["detail"]


def test_shadow_scores_copies_but_never_answers(gateway: httpx.Client, versions: dict) -> None:
    assert _set(gateway, stable=versions["stable_tag"], shadow=versions["canary_tag"]).is_success
    before = _shadow_count(gateway, versions["canary"])
    answered = {_version(gateway) for _ in range(40)}
    assert answered == {versions["stable"]}
    deadline = time.monotonic() + 10
    while _shadow_count(gateway, versions["canary"]) < before + 40 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _shadow_count(gateway, versions["canary"]) >= before + 40
    query = {"model": "titanic", "limit": 1000}
    logged = gateway.get("/admin/predictions", params=query, headers=ADMIN).json()
    shadow_ids = {row["request_id"] for row in logged if row["role"] == "shadow"}
    answered_ids = {row["request_id"] for row in logged if row["role"] == "stable"}
    assert len(shadow_ids & answered_ids) >= 40  # the same requests, scored twice, answered once
    assert {row["version"] for row in logged if row["role"] == "shadow"} == {versions["canary"]}


def _shadow_count(gateway: httpx.Client, version: str) -> float:
    for line in gateway.get("/metrics").text.splitlines():
        if (line.startswith("fleet_predictions_total{") and 'model="titanic"' in line
                and 'role="shadow"' in line and f'version="{version}"' in line and 'outcome="ok"' in line):
            return float(line.split()[-1])
    return 0.0


def test_a_broken_tag_is_refused_and_the_old_plan_keeps_serving(
    gateway: httpx.Client, versions: dict
) -> None:
    with bentoml.models.create("titanic:v900") as ref:  # in the store, but no model files
        Path(ref.path, "README").write_text("not a model")
    before = gateway.get("/admin/routing", headers=ADMIN).json()["titanic"]
    refused = _set(gateway, stable=versions["stable_tag"], canary="titanic:v900", canary_weight=50)
    assert refused.status_code == 409 and "keeps its plan" in refused.json()["detail"]
    assert gateway.get("/admin/routing", headers=ADMIN).json()["titanic"] == before
    assert _set(gateway, stable="titanic:v901").status_code == 404  # not in the store at all
    assert _version(gateway) == versions["stable"]


def test_promote_and_rollback_under_load_fail_no_request(gateway: httpx.Client, versions: dict) -> None:
    stop, outcomes = threading.Event(), collections.Counter()

    def load() -> None:
        with httpx.Client(base_url=str(gateway.base_url), timeout=30) as client:
            while not stop.is_set():
                answer = client.post("/titanic/predict", json=PASSENGER)
                outcomes[(answer.status_code, answer.headers.get("X-Model-Version"))] += 1

    workers = [threading.Thread(target=load) for _ in range(6)]
    for worker in workers:
        worker.start()
    started = time.monotonic()
    swaps = []
    try:
        while time.monotonic() - started < 30:
            assert _canary(gateway, versions, 10).is_success
            swaps.append(_timed_swap(gateway, "promote", versions["canary"]))
            swaps.append(_timed_swap(gateway, "rollback", versions["stable"]))
            time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    codes = collections.Counter(code for code, _ in outcomes.elements())
    print(f"\nrequests {sum(codes.values())}, codes {dict(codes)}, swap to first answer "
          f"median {sorted(swaps)[len(swaps) // 2] * 1000:.0f} ms, max {max(swaps) * 1000:.0f} ms")
    assert set(codes) == {200}
    assert {version for _, version in outcomes} >= {versions["stable"], versions["canary"]}


def _timed_swap(gateway: httpx.Client, action: str, expected: str) -> float:
    """Seconds from the admin call to the first answer by the new stable; fails if it never answers."""
    started = time.monotonic()
    answer = gateway.post(f"/admin/routing/titanic/{action}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    while (seen := _version(gateway, {"X-User-ID": "swap-probe-0"})) != expected:
        assert time.monotonic() - started < 10, f"after {action}, {expected} never answered (still {seen})"
    return time.monotonic() - started


def test_admin_routes_need_the_token(gateway: httpx.Client) -> None:
    assert gateway.get("/admin/routing").status_code == 401
    assert gateway.get("/admin/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert gateway.post("/admin/routing/titanic/promote").status_code == 401
    models = gateway.get("/admin/models", headers=ADMIN).json()
    assert {"names", "loans", "digits_sklearn", "digits_cnn", "topics", "titanic"} <= set(models)
    assert all("metrics" in row for row in models["titanic"]["versions"])


def test_without_a_configured_token_admin_routes_are_disabled(routing_plan: Path) -> None:
    with serving("bentos.titanic.service:Titanic", {"FLEET_ROUTING": str(routing_plan),
                                                    "FLEET_ADMIN_TOKEN": ""}) as url:
        refused = httpx.put(f"{url}/run-pipeline", headers=ADMIN, timeout=30)
        served = httpx.post(f"{url}/predict", json=PASSENGER, timeout=30)
    assert refused.status_code == 403 and served.status_code == 200


def test_drift_is_checked_for_the_shadow_too(gateway: httpx.Client, versions: dict) -> None:
    """README: drift compares each served version's logged inputs with its own profile, the shadow's
    copies included."""
    stable = gateway.get("/admin/routing", headers=ADMIN).json()["titanic"]["stable"]
    change = {"stable": stable, "shadow": versions["canary_tag"]}
    shadowed = gateway.put("/admin/routing/titanic", json=change, headers=ADMIN)
    assert shadowed.status_code == 200, shadowed.text
    try:
        rows = load_titanic().drop(columns="Survived").sample(300, random_state=5).to_dict("records")
        rows = [{k: v for k, v in row.items() if v == v} for row in rows]  # NaN: the field is absent
        for start in range(0, 300, 100):
            assert gateway.post("/titanic/predict", json=rows[start:start + 100]).status_code == 200
        deadline = time.monotonic() + 30
        while True:  # the shadow scores its copies in the background
            checked = gateway.get("/admin/drift", params={"model": "titanic"}, headers=ADMIN).json()
            if checked.get(versions["canary_tag"], {}).get("enough_data") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(checked) == {stable, versions["canary_tag"]}
        assert all(result["enough_data"] for result in checked.values()), checked
    finally:
        gateway.put("/admin/routing/titanic", json={"stable": stable}, headers=ADMIN).raise_for_status()
