"""``python -m benchmarks``: the serving benchmark (``make bench``).

For each model: the in-process ceiling, then the gateway with adaptive batching, the same gateway
with ``FLEET_BATCHING=off`` and the plain FastAPI baseline, each driven closed-loop at fixed
concurrency and open-loop at fixed rates on 127.0.0.1. Writes results.json, RESULTS.md and
latency_vs_throughput.png. Uses the project store and ``deploy/routing.yaml`` (training only planned
models the store lacks); ``--tiny`` trains tiny models into a throw-away store instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.servers import DEFAULT_SERVERS, ROOT, SERVERS
from benchmarks.targets import MODELS

CLIENTS, RATES = [1, 8, 32, 128], [0.5, 1.0, 1.5]  # 1.5: past capacity, to show overload
FULL = {"duration": 3.0, "warmup": 0.5, "ceiling_s": 1.0, "concurrency": CLIENTS, "rates": RATES}
QUICK = {"duration": 1.0, "warmup": 0.3, "ceiling_s": 0.2, "concurrency": CLIENTS, "rates": RATES}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(DEFAULT_SERVERS),
                        help="unlogged: the batched gateway without the prediction log")
    parser.add_argument("--duration", type=float, help="measured seconds per point (3; quick 1)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each point (0.5; quick 0.3)")
    parser.add_argument("--concurrency", type=int, nargs="+", help="closed-loop clients (1 8 32 128)")
    parser.add_argument("--rates", type=float, nargs="+",
                        help="open-loop rates, fractions of each server's closed-loop peak (0.5 1 1.5)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds before a request is an error")
    parser.add_argument("--ceiling-s", type=float, help="seconds per batch size in process (full 1)")
    parser.add_argument("--burst-s", type=float, help="seconds at concurrency 1 after the burst (= duration)")
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a point disturbed by other work")
    parser.add_argument("--retry-budget", type=float, default=60.0, help="seconds for re-runs in all")
    parser.add_argument("--quick", action="store_true", help="short points (about 3 minutes for everything)")
    parser.add_argument("--tiny", action="store_true", help="tiny models in a temp store; implies --quick")
    parser.add_argument("--url", action="append", default=[], metavar="SERVER=URL",
                        help="use a running server instead of starting one, e.g. batched=http://127.0.0.1:3000")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help='server environment, e.g. BENTOML_CONFIG_OVERRIDES=\'{"services": {"fleet": '
                             '{"workers": 2}}}\' to try a setting without editing code')
    parser.add_argument("--out", type=Path, help="output folder (benchmarks/; --tiny: a temp one)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> object:
    from benchmarks.runner import Settings

    base = QUICK if args.quick or args.tiny else FULL
    duration = args.duration if args.duration is not None else base["duration"]
    return Settings(
        models=args.models, servers=[s for s in SERVERS if s in args.servers],
        concurrency=args.concurrency or base["concurrency"], rates=args.rates or base["rates"],
        duration_s=duration, warmup_s=args.warmup if args.warmup is not None else base["warmup"],
        timeout_s=args.timeout, ceiling_s=args.ceiling_s if args.ceiling_s is not None else base["ceiling_s"],
        burst_s=args.burst_s if args.burst_s is not None else duration, retries=args.retries,
        retry_budget_s=args.retry_budget,
        urls=dict(item.split("=", 1) for item in args.url), env=dict(item.split("=", 1) for item in args.env),
    )


def tiny_store(folder: Path) -> None:
    """Train tiny versions of every model into ``folder`` and serve them (environment, before ``fleet``)."""
    if "fleet" in sys.modules:
        raise SystemExit("--tiny must choose the store before fleet is imported: use python -m benchmarks")
    os.environ["BENTOML_HOME"] = str(folder / "store")
    import yaml

    from training.__main__ import trainers

    plan = {name: {"stable": train().tag} for name, train in trainers(tiny=True).items()}
    (folder / "routing.yaml").write_text(yaml.safe_dump(plan))
    os.environ["FLEET_ROUTING"] = str(folder / "routing.yaml")


def ensure_models() -> None:
    """Train every planned model the store lacks (every one: the gateway loads them all)."""
    from fleet import store
    from fleet.routing import stable_tag
    from training.__main__ import trainers

    for model, train in trainers().items():
        planned = stable_tag(model)
        try:
            store.get(planned)
        except store.ModelNotFound:
            print(f"[train] {planned} is not in the store; training it")
            if (trained := train().tag) != planned:
                raise SystemExit(f"trained {trained}, but the plan serves {planned}; edit the plan") from None


def main(argv: list[str] | None = None) -> Path:
    """Run the benchmark; returns the output folder."""
    args = parse(argv)
    scratch = Path(tempfile.mkdtemp(prefix="fleet-bench-store-")) if args.tiny else None
    out = args.out or (Path(tempfile.mkdtemp(prefix="fleet-bench-")) if args.tiny else ROOT / "benchmarks")
    try:
        if scratch:
            tiny_store(scratch)
        else:
            ensure_models()
        from benchmarks import report
        from benchmarks.runner import run

        results = run(settings_from(args), log=lambda line: print(line, flush=True))
        out.mkdir(parents=True, exist_ok=True)
        report.write(results, out)
        print(f"wrote {out / 'results.json'}, {out / 'RESULTS.md'}, {out / report.PLOT}")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
