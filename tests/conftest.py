"""Test set-up: a private model store for the whole run, tiny models in it, and real servers.

The store and routing plan are throw-away, so tests never touch the project's own models; servers
are real ``bentoml serve`` processes on a free loopback port.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

# Before BentoML is imported anywhere: every test process uses a throw-away store.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="fleet-test-store-")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# The prediction log of every server the tests start (each test that needs its own sets another).
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='fleet-test-log-')}/predlog.db"
# The report renders only when a test asks for one (``/admin/report`` waits for it), not every minute.
os.environ["FLEET_REPORT_SECONDS"] = "3600"

# Only now: fleet sets a default store when imported.
from fleet.local_server import bentoml_serve, free_port, running
from tests.postgres import PostgresServer, find_bin, postgres_server

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@contextmanager
def serving(target: str, env: dict[str, str], timeout: float = 180, cwd: Path = ROOT) -> Iterator[str]:
    """Run ``bentoml serve target`` on 127.0.0.1 until the block ends; yields its base URL."""
    port = free_port()
    with running(bentoml_serve(target, port), port, env, cwd, timeout) as server:
        yield server.url


@pytest.fixture(scope="session")
def routing_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny versions of every model, trained into the test store, and a plan that serves them."""
    from fleet.routing import DEFAULT_PLAN, load_plan, save_plan
    from training.__main__ import trainers

    plan = load_plan(DEFAULT_PLAN)  # the project's gates, with tiny versions as stable
    for name, run in trainers(tiny=True).items():
        plan[name] = plan[name].model_copy(update={"stable": run().tag})
    path = tmp_path_factory.mktemp("plan") / "routing.yaml"
    save_plan(plan, path)
    os.environ["FLEET_ROUTING"] = str(path)
    return path


@pytest.fixture(scope="session")
def fleet_url(routing_plan: Path) -> Iterator[str]:
    """The all-in-one gateway, served for real."""
    env = {"FLEET_ROUTING": str(routing_plan), "FLEET_ADMIN_TOKEN": ADMIN_TOKEN}
    with serving("service:Fleet", env) as url:
        yield url


@pytest.fixture(scope="session")
def fleet(fleet_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; each test takes a fresh database of it."""
    if find_bin() is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin, "
                    "PG_BIN or PATH")
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The prediction log's database, once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "log.db")
    return request.getfixturevalue("pg").create_database()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly which tests of real components (PostgreSQL, Chromium) did not run, and why."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    terminalreporter.section(f"{len(skipped)} test(s) skipped: real components not tested", sep="!")
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        terminalreporter.write_line(f"SKIPPED {report.nodeid}: {reason}", red=True, bold=True)
