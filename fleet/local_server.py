"""A real ``bentoml serve`` (or any server command) on 127.0.0.1, for tests and benchmarks.

Each server gets a BENTOML_HOME of its own whose ``models`` and ``bentos`` are the store's: ``bentoml
serve`` empties ``$BENTOML_HOME/prometheus_multiproc_dir`` when it starts, so two servers sharing a home
wipe each other's metrics. BentoML's workers start process groups of their own, so stopping signals
every process below the server, not only its group.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from fleet import PROJECT_ROOT

BENTOML = Path(sys.executable).parent / "bentoml"
SHARED = ("models", "bentos")  # what every server's home links to the real store


@dataclass(frozen=True)
class LocalServer:
    url: str
    pid: int
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bentoml_serve(target: str, port: int) -> list[str]:
    return [str(BENTOML), "serve", target, "--host", "127.0.0.1", "--port", str(port)]


@contextmanager
def own_home(store: Path) -> Iterator[Path]:
    """A fresh BENTOML_HOME whose models and bentos are ``store``'s (links, removed afterwards)."""
    home = Path(tempfile.mkdtemp(prefix="fleet-home-"))
    for part in SHARED:
        (store / part).mkdir(parents=True, exist_ok=True)
        (home / part).symlink_to(store / part, target_is_directory=True)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)  # removes the links, not the store


@contextmanager
def running(argv: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 180) -> Iterator[LocalServer]:
    """Run ``argv`` (listening on ``port``) until the block ends; yields once ``/readyz`` answers 200."""
    store = Path(os.environ.get("BENTOML_HOME", PROJECT_ROOT / ".bentoml")).absolute()
    log_path = Path(tempfile.mkstemp(prefix="fleet-serve-", suffix=".log")[1])
    with own_home(store) as home, open(log_path, "w") as log:
        environment = {**os.environ, "BENTOML_HOME": str(home), **(env or {})}
        process = subprocess.Popen(argv, cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        server = LocalServer(f"http://127.0.0.1:{port}", process.pid, log_path)
        try:
            wait_ready(process, server, timeout)
            yield server
        finally:
            stop(process)


def wait_ready(process: subprocess.Popen, server: LocalServer, timeout: float) -> None:
    """Poll ``/readyz`` until 200; fail early if the server exits, with the end of its log."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{server.url} exited; log {server.log}:\n{server.log.read_text()[-3000:]}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.url} not ready in {timeout} s; log {server.log}")
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's group, then SIGKILL whatever is left of it and of its descendants."""
    below: list[psutil.Process] = []
    with suppress(psutil.NoSuchProcess):
        below = psutil.Process(process.pid).children(recursive=True)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    _, alive = psutil.wait_procs(below, timeout=10)
    for child in alive:
        with suppress(psutil.NoSuchProcess):
            child.kill()
