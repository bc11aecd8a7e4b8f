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

import httpx
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
    parser.add_argument("--admit-ms", type=float,
                        help="the server's admission threshold (FLEET_LATENCY_BUDGET_MS there; default: "
                             "the budget), to try one while judging against the budget")
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


def served_within(url: str, path: str) -> tuple[float, float]:
    """(answers so far, those within the budget) for ``path``, from BentoML's own request-duration
    histogram: the time inside the server, without the load generator's share of the cores."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("request_duration_seconds_bucket") and labels.get("endpoint") == path:
                buckets[labels["le"]] += sample.value
    return buckets.get("+Inf", 0.0), buckets.get(f"{BUDGET_MS / 1000:.1f}", 0.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    results: dict[str, Any] = {"clients": args.clients, "duration_s": args.duration, "workers": args.workers,
                               "budget_ms": BUDGET_MS, "admit_ms": args.admit_ms or BUDGET_MS, "models": {},
                               "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="fleet-overload-") as folder, running(
            bentoml_serve("service:Fleet", port), port,
            {"FLEET_WORKERS": args.workers, "FLEET_STATE_DIR": folder,
             "DATABASE_URL": f"sqlite:///{folder}/predlog.db",
             "FLEET_LATENCY_BUDGET_MS": f"{args.admit_ms or BUDGET_MS:g}"}) as server:
        for model in args.models:
            target = TARGETS[model]
            window = Window(1.0, args.duration)
            before = served_within(server.url, target.path)
            asyncio.run(closed_loop(server.url + target.path, target.requests(), args.clients, window,
                                    timeout_s=10.0))
            time.sleep(1)  # every answer counted in the histogram
            after = served_within(server.url, target.path)
            total, within = (a - b for a, b in zip(after, before, strict=True))
            results["models"][model] = {**outcomes(window), "server": {
                "answers": int(total), "over_budget": int(total - within)}}
            print(model, json.dumps(results["models"][model]), flush=True)
            time.sleep(2)  # let the backlog drain before the next model
    return results


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# Overload: {results['clients']} clients resending at once, {results['duration_s']:g} s, "
             f"{results['workers']} workers ({results['started']})", "",
             f"Latency budget {results['budget_ms']:g} ms; the server refuses new requests once its oldest "
             f"has waited {results['admit_ms']:g} ms. `python -m benchmarks.overload` regenerates this file.",
             "",
             "Latencies are the client's (the load generator shares the two cores); the last column",
             "counts the answers that spent longer than the budget inside the server (BentoML's",
             "request-duration histogram, warm-up included).", "",
             "| model | answer | count | p50 ms | p99 ms | max ms | over budget (client) | over (server) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for model, found in results["models"].items():
        server = found["server"]
        for outcome, row in found.items():
            if outcome != "server":
                lines.append(f"| {model} | {outcome} | {row['count']} | {row['p50_ms']} | {row['p99_ms']} | "
                             f"{row['max_ms']} | {row['over_budget']} | "
                             f"{server['over_budget']} of {server['answers']} |")
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    results = run(args)
    write(results, args.out)
    print(f"wrote {args.out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
