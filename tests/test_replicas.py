"""One fleet across replicas (issue: scale-out): with a PostgreSQL ``DATABASE_URL`` the routing plan
is a table every replica follows, the prediction log is one, and the closed loop has one driver.
Two real gateways on different ports share a throw-away PostgreSQL database: a plan change, a
promote and a rollback through one are served by the other within 2 s; predictions through both land
in one log, each once; killing one mid-rollout leaves the other driving it, with no failed request."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fleet import plan_sync
from fleet.loop.demo import Traffic, real_passengers
from fleet.routing import load_plan
from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.test_closed_loop import Server, ended, plan_with_policy, start, tags, wait_for

__all__ = ["tags"]  # the shuffled-label challenger, trained once per module
CONVERGED_WITHIN = 2.0


def test_the_plan_is_seeded_from_the_file_and_revised_under_its_lock(
    pg: Any, routing_plan: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg.create_database())
    seeded = plan_sync.read()
    assert seeded.routes == load_plan(routing_plan)  # the file seeds an empty database
    titanic = seeded.routes["titanic"].model_copy(update={"allow_pinning": False})
    held = plan_sync.lock()
    try:
        plan_sync.write(plan_sync.Revision(seeded.number + 1, {**seeded.routes, "titanic": titanic}), held)
    finally:
        plan_sync.unlock(held)
    assert plan_sync.stamp() == (seeded.number + 1,)
    assert plan_sync.read().routes["titanic"].allow_pinning is False
    exported = subprocess.run([sys.executable, "-m", "fleet", "routing", "export"], capture_output=True,
                              text=True, check=True).stdout
    assert yaml.safe_load(exported)["revision"] == seeded.number + 1
    assert yaml.safe_load(exported)["titanic"]["allow_pinning"] is False


@pytest.fixture(scope="module")
def replicas(pg: Any, routing_plan: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[list[tuple[Server, httpx.Client]]]:
    folder = tmp_path_factory.mktemp("replicas")
    seed = plan_with_policy(routing_plan, folder)
    url = pg.create_database()
    servers = [Server({"DATABASE_URL": url, "FLEET_ROUTING": str(seed), "FLEET_ADMIN_TOKEN": ADMIN_TOKEN,
                       "FLEET_WORKERS": "1", "FLEET_LOOP_SECONDS": "0.5",
                       "FLEET_STATE_DIR": str(folder / f"state-{name}"),
                       "FLEET_TRAINED_MODELS": str(folder / "trained-models")}) for name in ("a", "b")]
    try:
        with ThreadPoolExecutor(len(servers)) as pool:  # both boot at once, as replicas of a rollout do
            clients = list(pool.map(Server.start, servers))
        yield list(zip(servers, clients, strict=True))
    finally:
        for server in servers:
            server.stop()


def titanic(client: httpx.Client) -> dict:
    return client.get("/admin/routing", headers=ADMIN).json()["titanic"]


def converge(client: httpx.Client, expected: dict[str, Any]) -> float:
    """Seconds until ``client``'s replica serves a titanic route with ``expected`` (fails past 10 s)."""
    started = time.monotonic()
    while any(titanic(client)[key] != value for key, value in expected.items()):
        assert time.monotonic() - started < 10, f"{client.base_url} never served {expected}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_change_through_one_replica_is_served_by_the_other(replicas: list, tags: dict) -> None:
    (_, a), (_, b) = replicas
    stable = titanic(a)["stable"]
    seconds = []
    for step, weight in enumerate((10, 20, 30, 40, 50, 60)):
        via, other = (a, b) if step % 2 == 0 else (b, a)
        change = {"stable": stable, "canary": tags["noise"], "canary_weight": weight}
        assert via.put("/admin/routing/titanic", json=change, headers=ADMIN).status_code == 200
        # acknowledged once every worker of both replicas serves it (their rows in plan_workers)
        workers = titanic(via)["workers"]
        assert len({w["replica"] for w in workers}) == 2
        assert len({w["revision"] for w in workers}) == 1 and not any(w["error"] for w in workers)
        seconds.append(converge(other, {"canary": tags["noise"], "canary_weight": weight}))
    assert a.post("/admin/routing/titanic/promote", headers=ADMIN).status_code == 200
    seconds.append(converge(b, {"stable": tags["noise"], "canary": None}))
    assert b.post("/admin/routing/titanic/rollback", headers=ADMIN).status_code == 200
    seconds.append(converge(a, {"stable": stable}))
    seconds.sort()
    print(f"\nplan convergence across replicas: p50 {seconds[len(seconds) // 2] * 1000:.0f} ms, "
          f"max {seconds[-1] * 1000:.0f} ms over {len(seconds)} changes")
    assert seconds[-1] < CONVERGED_WITHIN


def test_predictions_through_both_replicas_land_in_one_log_once(replicas: list) -> None:
    (_, a), (_, b) = replicas
    sent = {f"replica-{name}-{i}" for name in "ab" for i in range(10)}
    for request_id in sorted(sent):
        client = a if request_id.startswith("replica-a") else b
        answer = client.post("/titanic/predict", json=[{"Sex": "female", "Pclass": 1}],
                             headers={"X-Request-ID": request_id})
        assert answer.status_code == 200
    deadline = time.monotonic() + 10  # B's journal reaches the database at its next shipment (1 s)
    while True:
        rows = [r for r in a.get("/admin/predictions", params={"model": "titanic", "limit": 1000},
                                 headers=ADMIN).json() if r["request_id"] in sent]
        if len(rows) >= len(sent) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert sorted(r["request_id"] for r in rows) == sorted(sent)  # every one, once


def test_a_version_retrained_through_one_replica_is_served_by_the_other(replicas: list) -> None:
    # Both replicas mount one trained-models folder (the chart's trainedModels claim): the version
    # trained through A is saved there, so B loads it when the plan that names it arrives.
    (_, a), (_, b) = replicas
    trained = a.put("/titanic/run-pipeline", headers=ADMIN, timeout=300)
    assert trained.status_code == 200, trained.text
    result = trained.json()
    assert result["promoted"], result
    new = result["new_model_version"]
    done = time.monotonic()
    folder = Path(replicas[0][0].env["FLEET_TRAINED_MODELS"])
    assert (folder / "titanic" / new).is_dir()  # on the shared folder, not in either replica's store
    seconds = converge(b, {"stable": f"titanic:{new}"})
    answer = b.post("/titanic/predict", json=[{"Sex": "female", "Pclass": 1}])
    assert answer.status_code == 200 and answer.json()["model_version"] == new
    print(f"\nretrained through A, served by B {seconds * 1000:.0f} ms after A answered "
          f"({time.monotonic() - done:.1f} s including the check)")
    assert seconds < CONVERGED_WITHIN


def test_killing_a_replica_mid_rollout_leaves_the_other_driving_it(replicas: list, tags: dict) -> None:
    (server_a, a), (_, b) = replicas
    with Traffic(str(b.base_url), real_passengers()) as load:
        rollout = start(a, tags["noise"])
        converge(b, {"canary": tags["noise"]})
        server_a.kill()
        status, seconds = wait_for(b, ended(rollout["id"]), 120)
    final = next(r for r in status["ended"] if r["id"] == rollout["id"])
    print(f"\nafter replica a died: {final['state']} in {seconds:.1f} s ({final['reason']})")
    assert final["state"] == "rolled_back" and final["reason"].startswith("at step 20: accuracy:")
    assert set(load.codes) == {200}
    assert converge(b, {"canary": None}) < CONVERGED_WITHIN
    drivers = [e["reason"] for e in status["events"] if e["kind"] == "resumed"]
    print(f"resumed by: {drivers}")
