"""One fleet on a shared database: throughput of two replicas against one, and what the database costs.

``python -m benchmarks.replicas [--model titanic] [--clients 32] [--duration 8]`` runs, side by side in
one run, 32 closed-loop clients against:
- one gateway logging to SQLite (the single-machine default),
- one gateway logging to PostgreSQL,
- two gateways (replicas) sharing that PostgreSQL database, the clients split between them,
every gateway with one worker, so two replicas hold twice the serving processes of one. During each
measured window the PostgreSQL server's own processes are metered (CPU seconds from /proc), so the
database's cost per prediction is counted, not guessed. The PostgreSQL server is ``--database-url``'s,
else a throw-away one started as the test suite starts it (``tests/postgres.py``). Writes
``benchmarks/replicas/results.json`` and ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from benchmarks.load import Window, closed_loop
from benchmarks.targets import MODELS, TARGETS
from fleet.local_server import bentoml_serve, free_port, running

OUT = Path(__file__).resolve().parent / "replicas"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="titanic")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per setup")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--database-url", help="a PostgreSQL URL (default: a throw-away server)")
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


@contextlib.contextmanager
def database(url: str | None) -> Iterator[tuple[str, Any]]:
    """``(a fresh database's URL, a function naming the server's pids)``."""
    if url:
        yield url, lambda: [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
        return
    from tests.postgres import postgres_server

    with postgres_server() as server:
        pid = int((server.data / "postmaster.pid").read_text().split()[0])

        def pids() -> list[psutil.Process]:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]

        yield server.create_database(), pids


@contextlib.contextmanager
def replicas(count: int, env: dict[str, str]) -> Iterator[list[str]]:
    """``count`` gateways (one worker each) on ``env``'s database; their base URLs."""
    with contextlib.ExitStack() as stack:
        urls = []
        for index in range(count):
            port = free_port()
            state = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"fleet-replica-{index}-"))
            server = stack.enter_context(running(bentoml_serve("service:Fleet", port), port, {
                **env, "FLEET_WORKERS": "1", "FLEET_STATE_DIR": state}))
            urls.append(server.url)
        yield urls


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def measure(urls: list[str], model: str, clients: int, warmup: float, duration: float,
                  pids: Any) -> dict[str, Any]:
    """``clients`` split evenly over ``urls``; throughput, latency and the database's CPU."""
    target = TARGETS[model]
    meters: dict[str, float] = {}

    def opened() -> None:
        meters["db_open"] = cpu_seconds(pids()) if pids else 0.0

    def closed() -> None:
        meters["db_close"] = cpu_seconds(pids()) if pids else 0.0

    windows = [Window(warmup, duration, opened if i == 0 else None, closed if i == 0 else None)
               for i in range(len(urls))]
    shares = [clients // len(urls) + (i < clients % len(urls)) for i in range(len(urls))]
    found = await asyncio.gather(*(closed_loop(url + target.path, target.requests(), share, window, 5.0)
                                   for url, share, window in zip(urls, shares, windows, strict=True)))
    answered = sum(r["rps"] for r in found) * duration
    latencies = sorted((r.end - r.start) * 1000 for w in windows for r in w.records if r.outcome == "ok")
    db_cpu = meters.get("db_close", 0.0) - meters.get("db_open", 0.0)
    return {"rps": round(sum(r["rps"] for r in found), 1),
            "p50_ms": round(latencies[len(latencies) // 2], 2) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
            "errors": sum(r["errors"] for r in found),
            "db_cpu_s": round(db_cpu, 2) if pids else None,
            "db_cpu_ms_per_prediction": round(db_cpu * 1000 / answered, 3) if pids and answered else None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"model": args.model, "clients": args.clients, "duration_s": args.duration,
                               "machine": f"{platform.machine()}, {psutil.cpu_count()} CPUs",
                               "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "setups": {}}
    with (tempfile.TemporaryDirectory(prefix="fleet-sqlite-") as folder,
          database(args.database_url) as (url, pids)):
        setups = [("one replica, SQLite", 1, f"sqlite:///{folder}/predlog.db", None),
                  ("one replica, PostgreSQL", 1, url, pids),
                  ("two replicas, PostgreSQL", 2, url, pids)]
        for name, count, database_url, meter in setups:
            print(f"{name}: starting {count} gateway(s)", flush=True)
            with replicas(count, {"DATABASE_URL": database_url}) as urls:
                found = asyncio.run(measure(urls, args.model, args.clients, args.warmup, args.duration,
                                            meter))
            print(f"{name}: {found}", flush=True)
            results["setups"][name] = {"replicas": count, **found}
    one, two = (results["setups"][k]["rps"] for k in ("one replica, PostgreSQL", "two replicas, PostgreSQL"))
    results["two_over_one"] = round(two / one, 2) if one else None
    return results


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Replicas on one database ({results['model']}, {results['clients']} clients, "
             f"{results['duration_s']:g} s windows, {results['started']}, {results['machine']})", "",
             "Every gateway runs one worker. `python -m benchmarks.replicas` regenerates this file.", "",
             "| setup | req/s | p50 ms | p99 ms | errors | database CPU s | database CPU ms / prediction |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in results["setups"].items():
        db = [row[k] if row[k] is not None else "—" for k in ("db_cpu_s", "db_cpu_ms_per_prediction")]
        lines.append(f"| {name} | {row['rps']} | {row['p50_ms']} | {row['p99_ms']} | {row['errors']} | "
                     f"{db[0]} | {db[1]} |")
    lines += ["", f"Two replicas / one on PostgreSQL: **{results['two_over_one']}×**."]
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    results = run(args)
    write(results, args.out)
    print(f"wrote {args.out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
