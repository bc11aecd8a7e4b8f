"""The servers under test, on 127.0.0.1 (``fleet.local_server``, as the tests run them), their CPU use
and memory.

batched: the gateway (``service:Fleet``) as shipped; unbatched: the same with ``FLEET_BATCHING=off``;
fastapi: one FastAPI app with the models inline, one uvicorn worker (the seeds' way); fastapi_workers:
the same app with as many uvicorn workers as ours; floor: BentoML with the same middleware, pydantic
inputs and worker count but no model (``benchmarks/floor_service.py``).
"""

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
SERVERS = ("batched", "unbatched", "fastapi", "fastapi_workers", "floor", "unlogged")
DEFAULT_SERVERS = SERVERS[:5]
FASTAPI = ("fastapi", "fastapi_workers")


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
        """Map roles (``gateway``: the first serving worker, ``server``: every process) to pids."""
        if self.pid is None:
            return
        below = descendants(self.pid)
        workers = [pid for pid in below if "--service-name" in cmdline(pid)]
        self.processes = {"gateway": (workers or [self.pid])[0]}
        self.processes |= {f"process-{pid}": pid for pid in (self.pid, *below)}

    def pids(self) -> list[int]:
        """Every process of the server now (the arbiter, its workers and anything they started)."""
        return [self.pid, *descendants(self.pid)] if self.pid else []

    def rss_mb(self) -> float | None:
        """Resident memory of the whole server (every process), in MB."""
        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return round(total / 1e6, 1) if total else None


def command(server: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of one kind of server."""
    address = ["--host", "127.0.0.1", "--port", str(port)]
    from fleet.serving import cores, workers  # not at import: --tiny chooses the store first

    if server in FASTAPI:
        count = workers() if server == "fastapi_workers" else 1
        # With several workers each gets its share of the cores for torch and BLAS, as ours do
        # (fleet.serving.limit_threads): left at one thread per core, the workers' threads fight
        # (names at one client: 48 ms p50 with 2 workers against 4 ms with one).
        threads = {"OMP_NUM_THREADS": str(max(1, cores() // count))} if count > 1 else {}
        return [str(BIN / "python"), "-m", "uvicorn", "benchmarks.baseline_app:app", "--no-access-log",
                "--log-level", "warning", "--workers", str(count), *address], threads
    if server == "floor":
        return [str(BIN / "bentoml"), "serve", "benchmarks.floor_service:Floor", *address], {}
    env = {"FLEET_BATCHING": "off" if server == "unbatched" else "on"}
    if server == "unlogged":
        env["FLEET_PREDICTION_LOG"] = "off"
    return [str(BIN / "bentoml"), "serve", "service:Fleet", *address], env


def batch_totals(server: Server, model: str) -> tuple[float, float] | None:
    """(items, model calls) of ``model`` so far, from the fleet's ``fleet_batch_size`` histogram."""
    if server.name in (*FASTAPI, "floor"):
        return None
    totals = {"sum": 0.0, "count": 0.0}
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        kind = name.removeprefix("fleet_batch_size_")
        if kind in totals and re.search(f'model="{model}"', rest):
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
