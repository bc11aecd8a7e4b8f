"""The monitoring loop on real servers: every answered prediction is in the log (even after SIGKILL, and
through a database outage), feedback gives live accuracy, shifted inputs raise drift, the report renders."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from bentos.loans.schemas import EXAMPLE as APPLICATION
from data.titanic import load as load_titanic
from fleet.predlog import PredictionLog
from tests import postgres
from tests.conftest import ADMIN, ADMIN_TOKEN, serving

PASSENGER = [{"Sex": "female", "Age": 30, "Pclass": 1}]


def _gateway_env(plan: Path, database_url: str) -> dict[str, str]:
    return {"FLEET_ROUTING": str(plan), "FLEET_ADMIN_TOKEN": ADMIN_TOKEN, "DATABASE_URL": database_url}


class LoadLoop:
    """Clients posting predictions until stopped; remembers every request id that got a 200."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url, self.answered, self.failed = url, [], []
        self.unreachable = 0  # requests that got no answer at all (the server was down or killed)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                request_id = uuid.uuid4().hex
                try:
                    answer = client.post("/titanic/predict", json=PASSENGER,
                                         headers={"X-Request-ID": request_id})
                except httpx.HTTPError:
                    self.unreachable += 1  # never answered, so it need not be in the log
                    continue
                if answer.status_code == 200:
                    self.answered.append(request_id)
                else:
                    self.failed.append(f"{answer.status_code} {answer.text[:200]}")

    def __enter__(self) -> LoadLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def _logged_ids(database_url: str, model: str = "titanic") -> set[str]:
    """What the database holds once a log opens it again, as a restarted server does (it adopts and
    ships the journals of dead processes first)."""
    with PredictionLog(database_url) as log:
        assert log.drained(30)
        return {row["request_id"] for row in log.query(model=model, limit=None)}


def test_answered_predictions_survive_sigkill(routing_plan: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/predlog.db"
    with serving("service:Fleet", _gateway_env(routing_plan, database)) as url:
        server = _server_process(url)
        with LoadLoop(url) as load:
            time.sleep(4)
            for process in [server, *server.children(recursive=True)]:  # no shutdown hook, no flush
                process.send_signal(signal.SIGKILL)
            time.sleep(0.5)
    assert load.answered and not load.failed, load.failed[:5]
    missing = set(load.answered) - _logged_ids(database)
    print(f"\n{len(load.answered)} answered before SIGKILL, {len(missing)} missing from the log")
    assert not missing


def _server_process(url: str) -> psutil.Process:
    """The ``bentoml serve`` process listening on ``url``'s port; its workers are its children."""
    port = url.rsplit(":", 1)[1]
    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or []
        if "serve" in command and port in command:
            return process
    raise LookupError(f"no server process for {url}")


@pytest.fixture(scope="module")
def postgresql() -> Iterator[postgres.PostgresServer]:
    if postgres.find_bin() is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    with postgres.postgres_server() as server:
        yield server


def test_a_database_outage_loses_nothing(routing_plan: Path, postgresql: postgres.PostgresServer) -> None:
    database = postgresql.create_database()
    with serving("service:Fleet", _gateway_env(routing_plan, database)) as url, LoadLoop(url) as load:
        time.sleep(2)
        postgresql.stop()
        before = len(load.answered)
        time.sleep(3)
        # feedback is not spooled: its sender holds it, and is told to send it again
        refused = httpx.post(f"{url}/loans/feedback", json={"request_id": "x", "label": 1}, timeout=30)
        assert refused.status_code == 503 and "Retry-After" in refused.headers, refused.text
        assert "database is unavailable" in refused.json()["detail"]
        during = len(load.answered)
        postgresql.start()
        time.sleep(2)
        deadline = time.monotonic() + 60
        while set(load.answered[:during]) - _logged_ids(database) and time.monotonic() < deadline:
            time.sleep(1)
    assert load.answered and not load.failed and load.unreachable == 0, (load.failed[:5], load.unreachable)
    assert during - before > 20, f"only {during - before} predictions answered while the database was down"
    missing = set(load.answered) - _logged_ids(database)
    assert not missing, f"{len(missing)} of {len(load.answered)} answered predictions never reached the log"


@pytest.fixture(scope="module")
def quiet_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('quiet')}/predlog.db"


@pytest.fixture(scope="module")
def quiet_gateway(routing_plan: Path, quiet_database: str) -> Iterator[httpx.Client]:
    """A gateway with an empty log of its own, so drift and accuracy see only these tests' traffic."""
    env = {**_gateway_env(routing_plan, quiet_database), "FLEET_ACCURACY_REFRESH_SECONDS": "0.5"}
    with serving("service:Fleet", env) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_feedback_gives_live_accuracy_and_the_log_reads_back(
    quiet_gateway: httpx.Client, quiet_database: str
) -> None:
    ids = [f"fb-{i}" for i in range(10)]
    answers = [quiet_gateway.post("/loans/predict", json=APPLICATION, headers={"X-Request-ID": i})
               for i in ids]
    assert [a.headers["X-Request-ID"] for a in answers] == ids
    predicted = [a.json()["prediction"] for a in answers]
    truth = [p if n < 7 else 1 - p for n, p in enumerate(predicted)]  # 7 of 10 right
    stored = quiet_gateway.post("/loans/feedback", json=[{"request_id": i, "label": t}
                                                          for i, t in zip(ids, truth, strict=True)])
    assert stored.json() == {"stored": 10, "unmatched": []}
    assert quiet_gateway.post("/loans/feedback", json={"request_id": "never-seen", "label": 1}).json() == \
        {"stored": 1, "unmatched": ["never-seen"]}
    assert quiet_gateway.post("/loans/feedback", json={"request_id": "x", "label": None}).status_code == 400
    assert quiet_gateway.post("/nope/feedback", json={"request_id": "x", "label": 1}).status_code == 404
    logged = quiet_gateway.get("/admin/predictions", params={"request_id": ids[0]}, headers=ADMIN).json()
    assert [(row["model"], row["role"]) for row in logged] == [("loans", "stable")]
    generated = quiet_gateway.post("/titanic/predict", json=PASSENGER).headers["X-Request-ID"]
    assert len(generated) == 32
    assert _live_accuracy(quiet_gateway, "loans") == pytest.approx(0.7)  # the server's own gauge
    report = quiet_gateway.get("/admin/report", headers=ADMIN)
    assert report.status_code == 200 and "data:image/png;base64," in report.text
    assert "<script" not in report.text.lower()


def test_feedback_items_are_matched_to_each_row_of_a_batch(quiet_gateway: httpx.Client) -> None:
    """``item`` names a row of a batch request: both rows right gives 1.0; matched by id alone, the
    second label would meet the first row's prediction and give 0.5."""
    passengers = [{"Sex": "female", "Pclass": 1, "Age": 30}, {"Sex": "male", "Pclass": 3, "Age": 30}]
    answer = quiet_gateway.post("/titanic/predict", json=passengers, headers={"X-Request-ID": "two-rows"})
    predicted = answer.json()["predictions"]
    assert predicted[0] != predicted[1], predicted  # otherwise the test could not tell the rows apart
    labels = [{"request_id": "two-rows", "label": label, "item": i} for i, label in enumerate(predicted)]
    assert quiet_gateway.post("/titanic/feedback", json=labels).json() == {"stored": 2, "unmatched": []}
    assert _live_accuracy(quiet_gateway, "titanic") == pytest.approx(1.0)


def _live_accuracy(client: httpx.Client, model: str, patience_s: float = 15) -> float | None:
    """``fleet_live_accuracy`` for ``model`` as the server's /metrics shows it, once it is there."""
    deadline = time.monotonic() + patience_s
    while True:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("fleet_live_accuracy{") and f'model="{model}"' in line:
                return float(line.split()[-1])
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def test_shifted_inputs_raise_drift_and_unshifted_do_not(quiet_gateway: httpx.Client) -> None:
    passengers = load_titanic().drop(columns="Survived").sample(300, random_state=3)
    rows = [{k: v for k, v in row.items() if v == v} for row in passengers.to_dict("records")]
    for start in range(0, 300, 100):
        assert quiet_gateway.post("/titanic/predict", json=rows[start:start + 100]).status_code == 200
    calm = quiet_gateway.get("/admin/drift", params={"model": "titanic"}, headers=ADMIN).json()
    (result,) = calm.values()
    assert result["enough_data"] and not result["drifted"], [f for f in result["features"] if f["drifted"]]
    shifted = [{**row, "Pclass": 1, "Age": 70.0} for row in rows]
    sent = 0
    for start in range(0, 300, 50):
        quiet_gateway.post("/titanic/predict", json=shifted[start:start + 50])
        sent += 50
        checked = quiet_gateway.get("/admin/drift", params={"model": "titanic"}, headers=ADMIN)
        (result,) = checked.json().values()
        if result["drifted"]:
            break
    print(f"\ndrift raised after {sent} shifted passengers (on top of 300 unshifted)")
    assert result["drifted"] and {"Age", "Pclass"} & set(result["drifted_features"])
