"""The three servers under test, on 127.0.0.1 (``fleet.local_server``, as the tests run them), and
their CPU use."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")
# "unlogged": the batched gateway with FLEET_PREDICTION_LOG=off, to measure what the log costs in the
# same run (`--servers batched unlogged`); not part of `make bench`'s default set.
SERVERS = ("batched", "unbatched", "fastapi", "unlogged")
DEFAULT_SERVERS = SERVERS[:3]
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
    env = {"FLEET_BATCHING": "off" if server == "unbatched" else "on"}
    if server == "unlogged":
        env["FLEET_PREDICTION_LOG"] = "off"
    return [str(BIN / "bentoml"), "serve", "service:Fleet", *address], env


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


@contextmanager
def serving(server: str, env: dict[str, str] | None = None, timeout: float = 240) -> Iterator[Server]:
    """Run one server until the block ends; yields it once ``/readyz`` answers 200."""
    from fleet.local_server import free_port, running  # not at import: --tiny chooses the store first

    port = free_port()
    argv, extra = command(server, port)
    with running(argv, port, {**extra, **(env or {})}, ROOT, timeout) as local:
        started = Server(server, local.url, local.pid, local.log)
        started.refresh()
        yield started


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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
