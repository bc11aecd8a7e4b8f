"""The closed loop on a real gateway (two workers, tiny titanic models, second-long steps): a challenger
trained on shuffled labels is rolled back on live accuracy, a better one is promoted through every
step, a server killed mid-rollout resumes it after a restart, a drifted input stream triggers a
retraining whose challenger is gated and rolled out, and a retraining clock fires. Every request
answers 200 throughout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

import data.titanic
from bentos.loans import pipeline as loans_pipeline
from bentos.titanic import pipeline as titanic_pipeline
from fleet import plan_sync
from fleet.local_server import bentoml_serve, free_port, running
from fleet.loop.demo import Traffic, real_passengers, shifted_passengers
from fleet.loop.policy import Triggers
from tests.conftest import ADMIN, ADMIN_TOKEN

STEPS = [20, 60, 100]
# Second-long steps and small samples; latency slack for a two-core machine that also runs the load.
POLICY = {"steps": STEPS, "interval": 2, "deadline": 60,
          "analysis": {"min_requests": 30, "min_labelled": 30, "p99_slack_ms": 1000}}


@pytest.fixture(scope="module")
def tags(routing_plan: Path) -> dict[str, str]:
    """The session's titanic stable, and a challenger trained on shuffled labels (no skill at all)."""
    real = data.titanic.load

    def shuffled() -> Any:
        frame = real()
        frame["Survived"] = frame["Survived"].sample(frac=1.0, random_state=7).to_numpy()
        return frame

    data.titanic.load = shuffled
    try:
        noise = titanic_pipeline.train(titanic_pipeline.TINY).tag
    finally:
        data.titanic.load = real
    return {"good": yaml.safe_load(routing_plan.read_text())["titanic"]["stable"], "noise": noise}


def plan_with_policy(routing_plan: Path, folder: Path) -> Path:
    """A copy of the session's plan in ``folder`` whose titanic rollouts take ``POLICY``."""
    plan = folder / "routing.yaml"
    raw = yaml.safe_load(routing_plan.read_text())
    raw["titanic"]["rollout"] = POLICY
    plan.write_text(yaml.safe_dump(raw))
    return plan


@pytest.fixture(scope="module")
def setup(routing_plan: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("loop")
    plan = plan_with_policy(routing_plan, folder)
    env = {"FLEET_ROUTING": str(plan), "FLEET_ADMIN_TOKEN": ADMIN_TOKEN, "FLEET_WORKERS": "2",
           "FLEET_LOOP_SECONDS": "0.5", "DATABASE_URL": f"sqlite:///{folder}/predlog.db",
           "FLEET_STATE_DIR": str(folder / "state")}
    return {"env": env, "plan": plan}


class Server:
    """A gateway that can be killed and started again on the same database, plan and state."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.port = env, free_port()
        self._context: Any = None

    def start(self) -> httpx.Client:
        self._context = running(bentoml_serve("service:Fleet", self.port), self.port, self.env)
        self.process = self._context.__enter__()
        return httpx.Client(base_url=self.process.url, timeout=60)

    def kill(self) -> None:
        """SIGKILL the server and every process below it (a crash: no shutdown hook runs)."""
        below = psutil.Process(self.process.pid).children(recursive=True)
        os.killpg(self.process.pid, signal.SIGKILL)
        for child in below:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.stop()

    def stop(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None


@pytest.fixture(scope="module")
def server(setup: dict[str, Any]) -> Iterator[tuple[Server, list[httpx.Client]]]:
    found = Server(setup["env"])
    clients = [found.start()]
    yield found, clients
    found.stop()


def wait_for(client: httpx.Client, done: Callable[[dict], bool], seconds: float,
             model: str = "titanic") -> tuple[dict, float]:
    """Poll ``/admin/rollouts?model=…`` until ``done`` (or fail); the status and seconds waited."""
    started = time.monotonic()
    while True:
        status = client.get("/admin/rollouts", params={"model": model}, headers=ADMIN).json()
        if done(status):
            return status, time.monotonic() - started
        assert time.monotonic() - started < seconds, f"not done in {seconds} s: {status}"
        time.sleep(0.5)


def ended(rollout_id: int) -> Callable[[dict], bool]:
    return lambda status: any(r["id"] == rollout_id for r in status["ended"])


def routing(client: httpx.Client) -> dict:
    """Titanic's route once it matches the rollouts' status (a decision is recorded first and routed
    right after, so the route may lag the status by a moment)."""
    deadline = time.monotonic() + 10
    while True:
        route = client.get("/admin/routing", headers=ADMIN).json()["titanic"]
        status = client.get("/admin/rollouts", params={"model": "titanic"}, headers=ADMIN).json()
        running = status["running"]
        serving = route["shadow"] if running and running[0]["step"] == "shadow" else route["canary"]
        if serving == (running[0]["tag"] if running else None) or time.monotonic() > deadline:
            return route
        time.sleep(0.2)


def start(client: httpx.Client, tag: str, **overrides: Any) -> dict:
    answer = client.post("/admin/rollouts/titanic", json={"tag": tag, **overrides}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_shuffled_label_challenger_is_rolled_back_on_live_accuracy(server: Any, tags: dict) -> None:
    _, (client,) = server
    with Traffic(str(client.base_url), real_passengers()) as load:
        rollout = start(client, tags["noise"])
        status, seconds = wait_for(client, ended(rollout["id"]), 120)
    final = next(r for r in status["ended"] if r["id"] == rollout["id"])
    event = [e for e in status["events"] if e["rollout_id"] == rollout["id"]][-1]
    accuracy = next(m for m in event["evidence"]["verdict"]["measures"] if m["name"] == "accuracy")
    print(f"\nshuffled challenger: {final['reason']}; {seconds:.1f} s from start to decision; caught at "
          f"{event['evidence']['evidence']['canary']['labelled']} labelled canary predictions; "
          f"analysis {event['evidence']['analysis_ms']} ms; requests {sum(load.codes.values())}")
    assert final["state"] == "rolled_back" and final["step"] == STEPS[0]
    assert final["reason"].startswith(f"at step {STEPS[0]}: accuracy:") and accuracy["passed"] is False
    assert set(load.codes) == {200}
    assert routing(client)["stable"] == tags["good"] and routing(client)["canary"] is None
    metrics = client.get("/metrics").text
    assert 'fleet_loop_events_total{kind="rolled_back",model="titanic"} 1.0' in metrics


def test_a_better_challenger_is_promoted_through_every_step(server: Any, tags: dict) -> None:
    _, (client,) = server
    answer = client.put("/admin/routing/titanic", json={"stable": tags["noise"]}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    with Traffic(str(client.base_url), real_passengers()) as load:
        rollout = start(client, tags["good"])
        status, seconds = wait_for(client, ended(rollout["id"]), 120)
    final = next(r for r in status["ended"] if r["id"] == rollout["id"])
    kinds = [e["kind"] for e in status["events"] if e["rollout_id"] == rollout["id"] and e["kind"] != "held"]
    print(f"\nbetter challenger: {final['reason']}; {seconds:.1f} s from start to promotion")
    assert final["state"] == "promoted", final
    assert kinds == ["started", "advanced", "advanced", "promoted"]
    route = routing(client)
    assert route["stable"] == tags["good"] and route["previous"][-1] == tags["noise"]
    assert route["canary"] is None and set(load.codes) == {200}


def test_a_server_killed_mid_rollout_resumes_it_after_a_restart(server: Any, tags: dict) -> None:
    found, clients = server
    client = clients[-1]
    stable = routing(client)["stable"]
    challenger = tags["noise"] if stable != tags["noise"] else tags["good"]
    rollout = start(client, challenger, interval=3600)
    assert routing(client)["canary"] == challenger
    by_hand = client.post("/admin/routing/titanic/promote", headers=ADMIN)  # the rollout owns the route
    assert by_hand.status_code == 409 and "abort it first" in by_hand.json()["detail"]
    found.kill()
    clients.append(found.start())
    client = clients[-1]
    status, _ = wait_for(client, lambda s: any(e["kind"] == "resumed" and e["rollout_id"] == rollout["id"]
                                               for e in s["events"]), 60)
    assert [r["id"] for r in status["running"]] == [rollout["id"]]
    route = routing(client)
    assert route["canary"] == challenger and route["canary_weight"] == STEPS[0]
    shown = json.loads(fleet_cli("rollout", "status", "titanic", url=str(client.base_url)))
    assert [r["id"] for r in shown["running"]] == [rollout["id"]]
    aborted = json.loads(fleet_cli("rollout", "abort", "titanic", url=str(client.base_url)))
    assert aborted["state"] == "aborted"
    route = routing(client)
    assert (route["shadow"], route["canary"], route["stable"]) == (None, None, stable)


def fleet_cli(*args: str, url: str) -> str:
    """``python -m fleet …`` against ``url`` with the admin token, as README shows it; its output."""
    done = subprocess.run([sys.executable, "-m", "fleet", *args, "--url", url], capture_output=True,
                          text=True, env={**os.environ, "FLEET_ADMIN_TOKEN": ADMIN_TOKEN}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_drift_on_a_schedule_triggers_a_gated_retraining_and_a_rollout(
    server: Any, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = server[1][-1]  # the server the previous test started again
    monkeypatch.setenv("FLEET_ROUTING", str(setup["plan"]))  # the server's plan, edited as an operator
    monkeypatch.setenv("FLEET_STATE_DIR", setup["env"]["FLEET_STATE_DIR"])  # would; its workers follow
    triggers = {"titanic": Triggers(drift_every=2, drift_window=30, retrain_on_drift=True,
                                    params=titanic_pipeline.TINY),
                "loans": Triggers(retrain_every=3, params=loans_pipeline.TINY)}  # a clock, too
    held = plan_sync.lock()
    try:
        current = plan_sync.read()
        routes = {**current.routes, **{name: current.routes[name].model_copy(update={"triggers": rules})
                                       for name, rules in triggers.items()}}
        plan_sync.write(plan_sync.Revision(current.number + 1, routes), held)
    finally:
        plan_sync.unlock(held)
    started = time.monotonic()

    def decided(status: dict) -> bool:
        return any(e["kind"] == "gate_refused" or (e["kind"] == "started" and "retrained" in e["reason"])
                   for e in status["events"])

    with Traffic(str(client.base_url), shifted_passengers()) as load:  # with feedback: the new data
        status, _ = wait_for(client, decided, 150)
        seconds = time.monotonic() - started
    kinds = [e["kind"] for e in status["events"]]
    drift = next(e for e in status["events"] if e["kind"] == "drift_checked" and
                 e["reason"].startswith("drift in"))
    print(f"\ndrift trigger: {drift['reason']}; {seconds:.1f} s from the first shifted request to "
          f"{'a rollout' if 'gate_passed' in kinds else 'the gate refusing'}")
    assert kinds.index("drift_checked") < kinds.index("retrain_started")
    assert {"gate_passed", "started"} <= set(kinds) or "gate_refused" in kinds
    gate = next(e for e in status["events"] if e["kind"] in ("gate_passed", "gate_refused"))
    assert gate["evidence"]["feedback_rows"] > 0  # trained on the source plus the labelled log
    assert set(load.codes) == {200}
    report = client.get("/admin/report", params={"fresh": "true"}, headers=ADMIN)
    assert report.status_code == 200 and drift["reason"] in report.text
    loans, _ = wait_for(client, lambda s: any(e["kind"].startswith("gate_") for e in s["events"]), 120,
                        model="loans")
    reasons = [e["reason"] for e in loans["events"] if e["kind"] == "retrain_started"]
    assert reasons and reasons[0] == "the 3 s retraining schedule"
