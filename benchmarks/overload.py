"""Past capacity: is every admitted request answered, or refused, within the latency budget?

``python -m benchmarks.overload [--models titanic names] [--clients 200] [--duration 6]`` starts the
gateway as ``make serve`` does (two workers unless ``FLEET_WORKERS`` says otherwise) and sends each
model ``--clients`` closed-loop clients that resend the moment they are answered, far past what two
cores can serve. Each answer's latency is measured at the client; the admitted ones (200) should
all come within ``FLEET_LATENCY_BUDGET_MS`` (default 1000), the refused ones (503 with Retry-After)
at once. Prints one line per model and writes ``benchmarks/overload/RESULTS.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.load import Window, closed_loop
from benchmarks.targets import MODELS, TARGETS
from fleet.local_server import bentoml_serve, free_port, running

OUT = Path(__file__).resolve().parent / "overload"
BUDGET_MS = float(os.environ.get("FLEET_LATENCY_BUDGET_MS", "1000"))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overload", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["titanic", "names"])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--workers", default=os.environ.get("FLEET_WORKERS", "2"))
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def outcomes(window: Window) -> dict[str, dict[str, Any]]:
    """Per outcome (``ok``, ``503``, ``timeout`` …): how many, and their client latency p50/p99/max."""
    grouped: dict[str, list[float]] = defaultdict(list)
    for record in window.records:
        grouped[record.outcome].append((record.end - record.start) * 1000)
    found = {}
    for outcome, latencies in sorted(grouped.items()):
        values = np.array(latencies)
        found[outcome] = {"count": len(values), "p50_ms": round(float(np.percentile(values, 50)), 1),
                          "p99_ms": round(float(np.percentile(values, 99)), 1),
                          "max_ms": round(float(values.max()), 1),
                          "over_budget": int((values > BUDGET_MS).sum())}
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    results: dict[str, Any] = {"clients": args.clients, "duration_s": args.duration, "workers": args.workers,
                               "budget_ms": BUDGET_MS, "models": {},
                               "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="fleet-overload-") as folder, running(
            bentoml_serve("service:Fleet", port), port,
            {"FLEET_WORKERS": args.workers, "FLEET_STATE_DIR": folder,
             "DATABASE_URL": f"sqlite:///{folder}/predlog.db"}) as server:
        for model in args.models:
            target = TARGETS[model]
            window = Window(1.0, args.duration)
            asyncio.run(closed_loop(server.url + target.path, target.requests(), args.clients, window,
                                    timeout_s=10.0))
            results["models"][model] = outcomes(window)
            print(model, json.dumps(results["models"][model]), flush=True)
            time.sleep(2)  # let the backlog drain before the next model
    return results


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Overload: {results['clients']} clients resending at once, {results['duration_s']:g} s, "
             f"{results['workers']} workers ({results['started']})", "",
             f"Latency budget {results['budget_ms']:g} ms. `python -m benchmarks.overload` regenerates "
             "this file.", "",
             "| model | answer | count | p50 ms | p99 ms | max ms | over the budget |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for model, found in results["models"].items():
        for outcome, row in found.items():
            lines.append(f"| {model} | {outcome} | {row['count']} | {row['p50_ms']} | {row['p99_ms']} | "
                         f"{row['max_ms']} | {row['over_budget']} |")
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    results = run(args)
    write(results, args.out)
    print(f"wrote {args.out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
