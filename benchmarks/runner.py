"""One benchmark run: ceilings in process, then each server in turn, every model against it."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from benchmarks import ceiling, load
from benchmarks.servers import (
    FASTAPI,
    ROOT,
    Server,
    batch_totals,
    cpu_seconds,
    descendants,
    machine_busy_seconds,
    serving,
)
from benchmarks.targets import TARGETS

CONTENDED = 0.3  # cores used by processes outside the benchmark during a point
LIBRARIES = ("bentoml", "torch", "scikit-learn", "numpy", "pandas", "transformers", "pydantic", "fastapi",
             "uvicorn", "starlette", "aiohttp", "pillow")


@dataclass
class Settings:
    """What to run and for how long (seconds)."""

    models: list[str]
    servers: list[str]
    concurrency: list[int]
    rates: list[float]  # fractions of each server's own closed-loop peak
    duration_s: float
    warmup_s: float
    timeout_s: float
    ceiling_s: float
    burst_s: float
    retries: int = 1  # re-measure a point this often when other work took > CONTENDED cores
    retry_budget_s: float = 60.0  # at most this long spent on re-measuring in the whole run
    retry_spent_s: float = 0.0
    urls: dict[str, str] = field(default_factory=dict)  # servers already running elsewhere
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the servers started here

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "urls"} | {"reused_servers": sorted(self.urls)}


def run(settings: Settings, log: Any = print) -> dict[str, Any]:
    """The whole benchmark; the results in the shape of results.json."""
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "versions": versions(settings.models),
                               "settings": settings.as_dict(), "models": {}}
    for model in settings.models:
        log(f"[ceiling] {model}")
        results["models"][model] = {**ceiling.measure(model, settings.ceiling_s), "runs": []}
    with ServerSet(settings) as servers:
        for model in settings.models:
            bench_model(servers, model, settings, results["models"][model], log)
    results["settings"]["retry_spent_s"] = round(settings.retry_spent_s, 1)
    results["machine"] |= {"loadavg_end": list(os.getloadavg()),
                           "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                           "benchmark_s": round(time.monotonic() - started, 1)}
    return results


class ServerDown(RuntimeError):
    """A server under test stopped (something outside the benchmark ended it)."""

    def __init__(self, server: Server) -> None:
        super().__init__(f"{server.name} server at {server.url} is gone")
        self.server = server.name


class ServerSet:
    """Every server under test, running at the same time so that the servers are measured point by
    point in turn, under the same background load; one that dies is started again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.running: dict[str, Server] = {}
        self._contexts: dict[str, Any] = {}

    def __enter__(self) -> ServerSet:
        try:
            for name in self.settings.servers:
                self.start(name)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for name in list(self._contexts):
            self.stop(name)

    def start(self, name: str) -> None:
        context = started_server(name, self.settings)
        self.running[name] = context.__enter__()
        self._contexts[name] = context

    def stop(self, name: str) -> None:
        self.running.pop(name, None)
        self._contexts.pop(name).__exit__(None, None, None)

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)

    def pids(self) -> set[int]:
        """Every process of every server started here (idle ones are not counted as other work)."""
        return {pid for s in self.running.values() if s.pid for pid in (s.pid, *descendants(s.pid))}


@contextmanager
def started_server(server: str, settings: Settings) -> Iterator[Server]:
    """A server given by URL, or one started here (stopped when the block ends)."""
    if server in settings.urls:
        yield Server(server, settings.urls[server].rstrip("/"))
        return
    env = {"FLEET_BASELINE_MODELS": ",".join(settings.models)} if server in FASTAPI else {}
    with serving(server, settings.env | env) as running:
        yield running


def bench_model(servers: ServerSet, model: str, settings: Settings, entry: dict[str, Any], log: Any,
                attempts: int = 3) -> None:
    """One model on every server; when a server dies it is started again and the model measured again."""
    for _ in range(attempts):
        entry["runs"].clear()
        entry.pop("after_burst", None)
        try:
            measure_model(servers, model, settings, entry, log)
            return
        except ServerDown as down:
            log(f"[{down.server}] {down}; starting it again and measuring {model} again")
            servers.restart(down.server)
    raise RuntimeError(f"a server kept stopping; gave up on {model}")


def measure_model(servers: ServerSet, model: str, settings: Settings, entry: dict[str, Any],
                  log: Any) -> None:
    """Closed loop at each concurrency, every server in turn (batched last at the largest, so the
    after-burst probe follows its burst at once), then open loop at each rate, every server in turn."""
    url = {name: s.url + TARGETS[model].path for name, s in servers.running.items()}
    for server in servers.running.values():
        warm(server, url[server.name], TARGETS[model].requests())
    top = max(settings.concurrency)
    for concurrency in settings.concurrency:
        last = "batched" if concurrency == top else ""
        for server in sorted(servers.running.values(), key=lambda s, last=last: s.name == last):
            point = measure(server, servers, model, settings, lambda w, u=url[server.name], c=concurrency:
                            load.closed_loop(u, TARGETS[model].requests(), c, w, settings.timeout_s))
            entry["runs"].append({"server": server.name, "mode": "closed", "concurrency": concurrency,
                                  "rate": None, **point})
            log(f"[{server.name}] {model} closed c={concurrency}: {brief(point)}")
    entry["rss_mb"] = {name: s.rss_mb() for name, s in servers.running.items()}
    if "batched" in servers.running:
        entry["after_burst"] = after_burst(servers.running["batched"], model, settings, entry["runs"])
        log(f"[batched] {model} after burst: {brief(entry['after_burst'])}")
    for fraction in settings.rates:
        for server in servers.running.values():
            rate = round(fraction * peak(entry["runs"], server.name), 1)
            point = measure(server, servers, model, settings, lambda w, u=url[server.name], r=rate:
                            load.open_loop(u, TARGETS[model].requests(), r, w, settings.timeout_s))
            entry["runs"].append({"server": server.name, "mode": "open", "concurrency": 0, "rate": rate,
                                  "rate_fraction": fraction, **point})
            log(f"[{server.name}] {model} open {rate}/s: {brief(point)}")


def warm(server: Server, url: str, bodies: Iterator[bytes], count: int = 5, patience_s: float = 300) -> None:
    """A few sequential requests first (lazy imports, first connections, and a backlog left by the
    previous overload point drained); refuses a broken route."""
    deadline = time.monotonic() + patience_s
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            while True:
                try:
                    response = client.post(url, content=next(bodies), headers=load.JSON)
                except httpx.HTTPError:
                    check_alive(server)
                    if time.monotonic() > deadline:
                        raise
                    continue
                if response.status_code != 503 or time.monotonic() > deadline:
                    break
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")


def peak(runs: list[dict[str, Any]], server: str) -> float:
    """This server's best closed-loop throughput, at least 1 request per second.

    Open-loop rates are fractions of each server's own peak: at another server's peak a slower one
    builds a backlog of minutes that it keeps working through after the point has ended."""
    closed = [r["rps"] for r in runs if r["server"] == server and r["mode"] == "closed"]
    return max(*closed, 1.0) if closed else 1.0


def check_alive(server: Server) -> None:
    if not server.alive():
        raise ServerDown(server)


def measure(server: Server, servers: ServerSet, model: str, settings: Settings, drive: Any) -> dict[str, Any]:
    """One point, measured again (up to ``retries`` times) when other work loaded the machine or the
    window got no answer at all (a server's first answers after a cold start can outlast a short
    window); the least contended answered attempt is kept, flagged ``contended`` if still above
    CONTENDED cores."""
    attempts = [measure_once(server, servers, model, settings, drive)]
    check_alive(server)
    while ((other_load(attempts[-1]) > CONTENDED or not attempts[-1]["rps"])
           and len(attempts) <= settings.retries and settings.retry_spent_s < settings.retry_budget_s):
        began = time.monotonic()
        time.sleep(1)
        attempts.append(measure_once(server, servers, model, settings, drive))
        check_alive(server)
        settings.retry_spent_s += time.monotonic() - began
    best = min(attempts, key=lambda point: (not point["rps"], other_load(point)))
    return {**best, "contended": other_load(best) > CONTENDED, "attempts": len(attempts)}


def other_load(point: dict[str, Any]) -> float:
    return point["cpu"].get("other", 0.0)


def measure_once(server: Server, servers: ServerSet, model: str, settings: Settings, drive: Any
                 ) -> dict[str, Any]:
    """``drive(window)`` under the CPU meters: its summary, cores used per process, mean batch size."""
    meter = CpuMeter(server, model, servers.pids())
    window = load.Window(settings.warmup_s, settings.duration_s, meter.open, meter.close)
    before = batch_totals(server, model)
    point = asyncio.run(drive(window))
    after = batch_totals(server, model)
    point["cpu"] = meter.cores()
    if before and after and after[1] > before[1]:
        point["mean_batch"] = round((after[0] - before[0]) / (after[1] - before[1]), 2)
    return point


def after_burst(server: Server, model: str, settings: Settings, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Concurrency 1 straight after the largest closed-loop burst (BentoML's learnt batch wait)."""
    target = TARGETS[model]
    window = load.Window(0.0, settings.burst_s)
    point = asyncio.run(load.closed_loop(server.url + target.path, target.requests(), 1, window,
                                         settings.timeout_s))
    check_alive(server)
    before = [r for r in runs if (r["server"], r["mode"], r["concurrency"]) == (server.name, "closed", 1)]
    step = max(0.25, settings.burst_s / 10)
    return {**point, "burst_concurrency": max(settings.concurrency),
            "before_p50_ms": before[0]["p50_ms"] if before else None,
            "series_step_s": step, "series_p50_ms": load.series(window.records, window.opened_at, step)}


def brief(point: dict[str, Any]) -> str:
    return (f"{point['rps']:.1f}/s p50 {point['p50_ms']} p99 {point['p99_ms']} ms, "
            f"{point['errors']} errors {point.get('error_kinds') or ''}")


class CpuMeter:
    """Cores used by the server's processes, this client and the whole machine over the window."""

    def __init__(self, server: Server, model: str, bench_pids: set[int]) -> None:
        self.mine = set(server.pids())
        self.idle = bench_pids - self.mine  # the other servers' processes
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}

    def snapshot(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy, _ = machine_busy_seconds()
        shot = {"server": sum(cpu_seconds(pid) for pid in self.mine)}
        shot["servers_idle"] = sum(cpu_seconds(pid) for pid in self.idle)
        return shot | {"client": usage.ru_utime + usage.ru_stime, "machine": busy, "wall": time.monotonic()}

    def open(self) -> None:
        self.start = self.snapshot()

    def close(self) -> None:
        self.end = self.snapshot()

    def cores(self) -> dict[str, float]:
        if not self.start or not self.end:
            return {}
        wall = self.end["wall"] - self.start["wall"]
        used = {k: (self.end[k] - self.start[k]) / wall for k in self.start if k != "wall"}
        used["other"] = used["machine"] - sum(v for k, v in used.items() if k != "machine")
        return {k: round(v, 2) for k, v in used.items()}


def machine() -> dict[str, Any]:
    """The machine, and how loaded it was when the run started."""
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model, "memory_gb": round(memory_kb / 2**20, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_start": list(os.getloadavg()),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "network": "127.0.0.1 only"}


def versions(models: list[str]) -> dict[str, Any]:
    """Library versions, the code's commit (and whether it had local edits), model tags, batching settings."""
    from fleet.routing import stable_tag

    found: dict[str, Any] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found |= git_state() | {"models": {m: stable_tag(m) for m in models}}
    from dataclasses import asdict

    from bentos.registry import SPECS

    found["batching"] = {m: asdict(SPECS[m].batching) for m in models}
    return found


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {"git_commit": git("rev-parse", "HEAD") or None, "uncommitted_files": changed}
