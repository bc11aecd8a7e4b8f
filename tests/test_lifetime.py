"""A server killed hard takes its workers with it, and ``make serve`` never starts over a live one.

The real ``make serve`` on a free loopback port: its parents (make and ``bentoml serve``) are
SIGKILLed as an OOM kill would, and the workers, which BentoML starts in sessions of their own, must
be gone within 5 s, their monitors and prediction-log shippers with them, so that the next ``make
serve`` binds the same port and serves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from fleet.local_server import free_port, running
from tests.conftest import ADMIN_TOKEN, ROOT

NAME = {"name": "Jordan", "n_predictions": 3}
WORKER = "_bentoml_impl.worker.service"  # the module every BentoML worker runs


def _make_serve(port: int) -> list[str]:
    return ["make", "-s", "serve", f"PORT={port}"]


def _env(plan: Path, tmp_path: Path) -> dict[str, str]:
    return {"FLEET_ROUTING": str(plan), "FLEET_ADMIN_TOKEN": ADMIN_TOKEN,
            "FLEET_STATE_DIR": str(tmp_path / "state"), "DATABASE_URL": f"sqlite:///{tmp_path}/predlog.db"}


def _arbiter(make_pid: int) -> psutil.Process:
    """The ``bentoml serve`` process make started."""
    for child in psutil.Process(make_pid).children(recursive=True):
        if "serve" in child.cmdline() and any(part.endswith("bentoml") for part in child.cmdline()):
            return child
    raise LookupError("make serve started no bentoml serve")


def test_a_killed_server_takes_its_workers_and_a_restart_binds(routing_plan: Path, tmp_path: Path) -> None:
    port = free_port()
    env = _env(routing_plan, tmp_path)
    with running(_make_serve(port), port, env, cwd=ROOT) as first:
        arbiter = _arbiter(first.pid)
        below = arbiter.children(recursive=True)  # workers, and each worker's monitor and log shipper
        workers = [p for p in below if WORKER in p.cmdline()]
        assert workers, "the server has no workers"
        assert any("fleet.predlog.shipper" in p.cmdline() for p in below), "no prediction-log shipper"
        ready = httpx.get(f"{first.url}/readyz", timeout=10).json()
        assert ready["ready"] and ready["generation"]["pid"] == arbiter.pid
        assert ready["worker"]["pid"] in {w.pid for w in workers} and ready["worker"]["plan_errors"] == {}

        again = subprocess.run(_make_serve(port), cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                               text=True, timeout=120)
        said = again.stdout + again.stderr
        assert again.returncode != 0 and f"127.0.0.1:{port} is already served" in said, said
        assert str(arbiter.pid) in said and "Traceback" not in said, said

        started = time.monotonic()
        for parent in (psutil.Process(first.pid), arbiter):  # no shutdown hook runs in either
            parent.send_signal(signal.SIGKILL)
        _, alive = psutil.wait_procs(below, timeout=5)
        assert not alive, f"processes alive 5 s after their server died: {[p.cmdline() for p in alive]}"
        print(f"\nworkers gone {time.monotonic() - started:.2f} s after the SIGKILL")

    with running(_make_serve(port), port, env, cwd=ROOT) as second:
        ready = httpx.get(f"{second.url}/readyz", timeout=10).json()
        assert ready["generation"]["pid"] == _arbiter(second.pid).pid != arbiter.pid
        answer = httpx.post(f"{second.url}/names/get_prediction", json=NAME, timeout=30)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3
