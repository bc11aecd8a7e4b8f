"""README behaviours a user relies on, each tried as README says, on real servers and real stores: the
Python client, digits logged as 8×8 pixels, a plan change written back to the plan file, the ``fleet``
command line (models, routing, report, cards), ``training --missing``, ``FLEET_BATCHING=off``, 503
with ``Retry-After`` past capacity above the floor of 8 always admitted, smoke tests of new versions,
drift profiles, and the access log and tracing off by default."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import bentoml
import httpx
import pytest
import yaml

from bentos.digits.schemas import SEED_JPEG
from bentos.loans.schemas import EXAMPLE as APPLICATION
from fleet.admission import FLOOR
from tests.conftest import ADMIN, ADMIN_TOKEN, ROOT, serving


def test_the_python_client_calls_loans_and_topics(fleet_url: str) -> None:
    with bentoml.SyncHTTPClient(fleet_url) as client:
        single = client.loans_predict(APPLICATION)
        batch = client.loans_predict_batch([APPLICATION, {**APPLICATION, "income": 1.0}])
        topics = client.topics_classify({"sentence": "The striker scored twice in the final", "top_k": 2})
    assert single["prediction"] in (0, 1) and len(batch["predictions"]) == 2
    assert len(topics) == 2 and topics[0]["score"] >= topics[1]["score"]


def test_digits_are_logged_as_normalised_8x8_pixels(fleet: httpx.Client) -> None:
    answer = fleet.post("/digits/predict", json={"request_id": "px", "model": "cnn", "image": SEED_JPEG})
    rows = fleet.get("/admin/predictions", params={"request_id": answer.headers["X-Request-ID"]},
                     headers=ADMIN).json()
    assert [row["model"] for row in rows] == ["digits_cnn"]
    pixels = rows[0]["inputs"]["pixels"]
    assert len(pixels) == 8 and all(len(row) == 8 for row in pixels)
    assert SEED_JPEG[:40] not in json.dumps(rows)  # the caller's image is not kept


def fleet_cli(*args: str) -> str:
    env = {**os.environ, "FLEET_ADMIN_TOKEN": ADMIN_TOKEN}
    done = subprocess.run([sys.executable, "-m", "fleet", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_cli_shows_models_and_a_plan_change_is_written_back(fleet_url: str, routing_plan: Path) -> None:
    """``python -m fleet routing set`` goes through the running server, which writes the plan file."""
    before = yaml.safe_load(routing_plan.read_text())
    shown = json.loads(fleet_cli("routing", "show", "--url", fleet_url))
    stable = shown["names"]["stable"]
    assert stable == before["names"]["stable"]
    fleet_cli("routing", "set", "names", "--stable", stable, "--url", fleet_url)
    after = yaml.safe_load(routing_plan.read_text())
    assert after["revision"] == before.get("revision", 0) + 1 and after["names"]["stable"] == stable
    listed = fleet_cli("models")
    assert f"names  (stable {stable}" in listed and stable.split(":")[1] in listed


@pytest.fixture(scope="module")
def unbatched_tight(routing_plan: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A gateway with batching off and a 1 ms latency budget, so capacity is passed at once."""
    plan = tmp_path_factory.mktemp("tight") / "routing.yaml"
    plan.write_text(routing_plan.read_text())
    env = {"FLEET_ROUTING": str(plan), "FLEET_BATCHING": "off", "FLEET_LATENCY_BUDGET_MS": "1",
           "FLEET_WORKERS": "1", "FLEET_PREDICTION_LOG": "off"}
    with serving("service:Fleet", env) as url:
        yield url


async def burst(url: str, clients: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post("/names/get_prediction", json={"name": "Smith"})
                                      for _ in range(clients)))


def batch_sizes(url: str) -> tuple[float, float]:
    """``fleet_batch_size`` for names: (items, model calls) so far."""
    total = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        for part in total:
            if line.startswith(f"fleet_batch_size_{part}{{") and 'model="names"' in line:
                total[part] += float(line.split()[-1])
    return total["sum"], total["count"]


def test_batching_off_scores_each_request_alone(unbatched_tight: str) -> None:
    for _ in range(5):
        assert {r.status_code for r in asyncio.run(burst(unbatched_tight, FLOOR))} == {200}
    items, calls = batch_sizes(unbatched_tight)
    assert items >= 5 * FLOOR and items == calls  # one item per model call, however many were waiting


def test_past_capacity_a_running_server_answers_503_with_retry_after(unbatched_tight: str) -> None:
    """The floor: up to ``FLOOR`` requests in flight are always admitted, even over the budget."""
    assert {r.status_code for r in asyncio.run(burst(unbatched_tight, FLOOR))} == {200}
    refused: list[httpx.Response] = []
    for _ in range(10):
        refused = [r for r in asyncio.run(burst(unbatched_tight, 64)) if r.status_code == 503]
        if refused:
            break
    assert refused, "64 concurrent requests against a 1 ms budget were never refused"
    assert all(r.headers["Retry-After"] == "1" and "past capacity" in r.json()["detail"] for r in refused)
    assert httpx.get(f"{unbatched_tight}/readyz").status_code == 200


def test_a_version_that_fails_its_smoke_test_is_never_served(routing_plan: Path) -> None:
    """Loading a tag scores the spec's smoke input first; a version answering NaN, or the wrong number
    of answers, is refused (a plan change naming it then keeps the old plan: 409)."""
    from bentos.loans.spec import SPEC
    from fleet.routing import load_plan
    from fleet.versions import ServedVersions, SmokeTestFailed

    stable = load_plan(routing_plan)["loans"].stable
    answers = {"nan": lambda _, rows: [{"approved": 1, "probability": float("nan")} for _ in rows],
               "short": lambda _, rows: []}
    for broken in answers.values():
        with pytest.raises(SmokeTestFailed):
            ServedVersions("loans", SPEC.load, broken, SPEC.smoke_input, [stable], stable)
    served = ServedVersions("loans", SPEC.load, SPEC.score, SPEC.smoke_input, [stable], stable)
    assert list(served.models) == [stable.split(":")[1]]


def test_training_missing_trains_only_what_the_plan_lacks(routing_plan: Path, tmp_path: Path) -> None:
    plan = yaml.safe_load(routing_plan.read_text())
    plan["titanic"]["stable"] = "titanic:v1"
    (tmp_path / "routing.yaml").write_text(yaml.safe_dump(plan))
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "store"),
           "FLEET_ROUTING": str(tmp_path / "routing.yaml")}

    def training(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "titanic:v1" in training("--missing", "--tiny", "titanic")  # an empty store: trained
    assert "nothing to train" in training("--missing", "--tiny", "titanic")  # now it is there


def test_access_log_and_tracing_are_off_unless_asked(
    fleet: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No OpenTelemetry span is made for a request by default (BentoML then sends no span id header),
    and ``FLEET_ACCESS_LOG`` / ``FLEET_TRACING`` turn the access log and the spans back on."""
    from fleet.serving import observability

    answer = fleet.post("/names/get_prediction", json={"name": "Smith"})
    assert answer.status_code == 200 and "x-bentoml-request-id" not in answer.headers
    assert observability() == {"logging": {"access": {"enabled": False}}, "tracing": {"excluded_urls": ".*"}}
    monkeypatch.setenv("FLEET_ACCESS_LOG", "on")
    monkeypatch.setenv("FLEET_TRACING", "on")
    assert observability() == {"logging": {"access": {"enabled": True}}}


def test_every_trained_model_carries_a_drift_profile_of_what_it_reads(routing_plan: Path) -> None:
    """README: each training run saves a profile of its training inputs with the model, the reference
    that drift checks compare served inputs with; every feature is measured on some rows."""
    from fleet import store
    from fleet.routing import load_plan

    for name, route in load_plan(routing_plan).items():
        profile = store.get(route.stable).info.metadata.get("drift_profile")
        assert profile is not None, f"{route.stable} was saved without a drift profile"
        assert profile["n"] > 0 and profile["inputs"] and profile["features"], name


def test_the_report_cli_writes_the_html_report(fleet: httpx.Client, tmp_path: Path) -> None:
    fleet.post("/loans/predict", json=APPLICATION).raise_for_status()
    out = tmp_path / "report.html"
    fleet_cli("report", "--db", os.environ["DATABASE_URL"], "--out", str(out))
    html = out.read_text()
    assert "data:image/png;base64," in html and "loans" in html


def test_make_cards_writes_each_card_and_the_readme_table(routing_plan: Path, tmp_path: Path) -> None:
    """``make cards`` (``python -m fleet cards``): a card per served model from its store metadata, and
    README's metrics table between its markers, the rest of README untouched (here into copies)."""
    from fleet import cards
    from fleet.routing import load_plan

    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    tags = {name: route.stable for name, route in load_plan(routing_plan).items()}
    written = cards.write(tags, readme=readme, folder=tmp_path / "cards")
    assert {path.name for path in written} == {f"{name}.md" for name in tags} | {"README.md"}
    for name, tag in tags.items():
        assert tag in (tmp_path / "cards" / f"{name}.md").read_text()
    before, after = (ROOT / "README.md").read_text(), readme.read_text()
    table = after.split(cards.START, 1)[1].split(cards.END, 1)[0]
    assert all(f"`{tag}`" in table for tag in tags.values())
    assert after.split(cards.START)[0] == before.split(cards.START)[0]
    assert after.split(cards.END)[1] == before.split(cards.END)[1]
