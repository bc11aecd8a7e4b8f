"""The three servers under test, on 127.0.0.1, stopped when the block ends, and their CPU use.

``serving`` follows tests/conftest.py: a subprocess in its own session, ready when ``/readyz`` answers
200. BentoML's workers start their own process groups, so on exit every process started below the
server is signalled by id, not only the server's group.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = ("batched", "unbatched", "fastapi")
# The model service that scores each benchmarked model (its process is found by --service-name).
MODEL_SERVICE = {"names": "names-model", "loans": "loans-model", "digits_sklearn": "digits-model",
                 "digits_cnn": "digits-model", "topics": "topics-model", "titanic": "titanic-model"}
# What the name of its batchable method contains (digits has one per model; the others have one).
BATCH_METHOD = {"digits_sklearn": "sklearn", "digits_cnn": "cnn"}


@dataclass
class Server:
    """A running server: its base URL, and the process ids whose CPU time is sampled."""

    name: str
    url: str
    pid: int | None = None  # None: started elsewhere (e.g. a test fixture); no CPU sampling
    log: Path | None = None
    processes: dict[str, int] = field(default_factory=dict)

    def alive(self) -> bool:
        """The server and its gateway process still run (a server started elsewhere is trusted)."""
        pids = (self.pid, self.processes.get("gateway", self.pid))
        return self.pid is None or all(_alive(pid) for pid in pids)

    def refresh(self) -> None:
        """Map roles (``gateway``, ``<service>-model``, ``server``) to pids from the process tree."""
        if self.pid is None:
            return
        for pid in descendants(self.pid):
            args = cmdline(pid)
            if "--service-name" in args:
                name = args[args.index("--service-name") + 1]
                self.processes["gateway" if name == "fleet" else name] = pid
        if self.name == "fastapi":
            self.processes["gateway"] = self.pid


def command(server: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of one kind of server."""
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if server == "fastapi":
        return [str(BIN / "python"), "-m", "uvicorn", "benchmarks.baseline_app:app", "--no-access-log",
                "--log-level", "warning", *address], {}
    batching = "off" if server == "unbatched" else "on"
    return [str(BIN / "bentoml"), "serve", "service:Fleet", *address], {"FLEET_BATCHING": batching}


def batch_totals(server: Server, model: str) -> tuple[float, float] | None:
    """(items, batches) the model's batchable method has seen so far, from the gateway's /metrics."""
    if server.name == "fastapi":
        return None
    service, method = f'service_name="{MODEL_SERVICE[model]}"', BATCH_METHOD.get(model, "")
    totals = {"sum": 0.0, "count": 0.0}
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        kind = name.removeprefix("bentoml_service_adaptive_batch_size_")
        if kind in totals and service in rest and re.search(f'method_name="[^"]*{method}', rest):
            totals[kind] += float(line.rsplit(" ", 1)[1])
    return (totals["sum"], totals["count"]) if totals["count"] else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def own_home() -> Iterator[dict[str, str]]:
    """A BENTOML_HOME of its own whose models are the store's, as environment.

    ``bentoml serve`` empties ``$BENTOML_HOME/prometheus_multiproc_dir`` when it starts, so a second
    server on the same home silently wipes the first one's metrics (its batch sizes, here).
    """
    store = Path(os.environ.get("BENTOML_HOME", ROOT / ".bentoml")).absolute()
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    (home / "models").symlink_to(store / "models", target_is_directory=True)
    try:
        yield {"BENTOML_HOME": str(home)}
    finally:
        shutil.rmtree(home, ignore_errors=True)  # removes the link, not the store


@contextmanager
def serving(server: str, env: dict[str, str] | None = None, timeout: float = 240) -> Iterator[Server]:
    """Run one server until the block ends; yields it once ``/readyz`` answers 200."""
    with own_home() as home:
        yield from _serving(server, {**home, **(env or {})}, timeout)


def _serving(server: str, env: dict[str, str], timeout: float) -> Iterator[Server]:
    port = free_port()
    argv, extra = command(server, port)
    log_path = Path(tempfile.mkstemp(prefix=f"bench-{server}-", suffix=".log")[1])
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **extra, **env}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        running = Server(server, f"http://127.0.0.1:{port}", process.pid, log_path)
        try:
            wait_ready(process, running.url, log_path, timeout)
            running.refresh()
            yield running
        finally:
            stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's group, then SIGKILL whatever is left of it and of its descendants."""
    below = descendants(process.pid)
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in below if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive:
        _kill(pid)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_ready(process: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    """Poll ``/readyz`` until 200; fail early if the server exits, with the end of its log."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited; log {log_path}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready in {timeout} s; log {log_path}")
        time.sleep(0.5)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            found += children
            todo += children
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS, sum(values) / TICKS
