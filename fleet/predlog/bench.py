"""``python -m fleet.predlog``: the prediction log's benchmark (throughput, and how long a request waits
for its rows to be durable at a given offered rate), its reads at scale (``--scale``) and ``--migrate``
to bring a database to head without starting a server. It sits on top of the package and nothing in
the package imports it, so the server never loads argparse or the benchmark's helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from fleet.predlog.database import create_engine, current_revision, database_url, migrate
from fleet.predlog.receipt import Receipt
from fleet.predlog.schema import Prediction
from fleet.predlog.writer import PredictionLog

# the package docstring's first line, as --help showed it when this was fleet/predlog.py
DESCRIPTION = "The prediction log: one row per answered prediction, durable before the answer leaves."


def _bench_row(i: int) -> Prediction:
    return Prediction(request_id=f"bench-{i}", model="loans", version="v1", role="stable",
                      inputs={"age": 37.7, "income": 4.52, "owner": True, "reports": 0, "months": 54},
                      outputs={"approved": 1, "probability": 0.93}, latency_ms=3.2, label=1)


def bench_throughput(log: PredictionLog, rows: int, writers: int) -> float:
    """Rows/second from ``writers`` threads recording one row per call, until all are durable."""
    per = rows // writers

    def write(offset: int) -> list[Receipt]:
        return [log.record(_bench_row(offset + i)) for i in range(per)]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
        receipts = [r for batch in pool.map(write, range(0, rows, per)) for r in batch]
    for receipt in receipts:
        receipt.result(120)
    return len(receipts) / (time.perf_counter() - started)


async def bench_latency(log: PredictionLog, rate: float, seconds: float) -> list[float]:
    """Milliseconds of ``await log.record(row)`` for requests arriving at ``rate`` per second (open loop)."""
    took: list[float] = []

    async def request(i: int) -> None:
        started = time.perf_counter()
        await log.record(_bench_row(i))
        took.append((time.perf_counter() - started) * 1000)

    tasks, sent, began = [], 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        while sent < int(elapsed * rate):
            tasks.append(asyncio.create_task(request(sent)))
            sent += 1
        await asyncio.sleep(0.0005)
    await asyncio.gather(*tasks)
    return took


def _bench(url: str | None, rows: int, rates: Sequence[float], seconds: float) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        target = url or str(Path(folder) / "bench.db")
        with PredictionLog(target, spool_dir=Path(folder) / "spool") as log:
            print(f"database: {log.engine.url.render_as_string(hide_password=True)}")
            bench_throughput(log, 2000, 4)  # warm-up
            print(f"throughput: {bench_throughput(log, rows, 8):,.0f} rows/s "
                  f"({rows} rows, 8 writer threads, 1 row per record)")
            for rate in rates:
                before = log.stats.commits
                took = sorted(asyncio.run(bench_latency(log, rate, seconds)))
                p50, p99 = took[len(took) // 2], took[int(len(took) * 0.99)]
                per_commit = len(took) / max(1, log.stats.commits - before)
                print(f"record+durable at {rate:>6,.0f} rows/s offered: p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
                      f"max {took[-1]:.1f} ms  {per_commit:.1f} rows/commit")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fleet.predlog", description=DESCRIPTION)
    parser.add_argument("--bench", action="store_true", help="measure throughput and record+durable latency")
    parser.add_argument("--migrate", action="store_true", help="upgrade the database to head and exit")
    parser.add_argument("--scale", action="store_true",
                        help="fill a fresh log with --rows predictions (e.g. 1000000) and time its reads, "
                             "the report and retention (fleet.predlog.scale)")
    parser.add_argument("--out", help="--scale: also write the figures to this JSON file")
    parser.add_argument("--url", help="database URL or SQLite path (default: DATABASE_URL, else a temp file "
                                      "for --bench, var/predlog.db otherwise)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rates", default="100,1000,3000", help="offered rows/s for the latency runs")
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args(argv)
    if args.migrate:
        engine = create_engine(database_url(args.url))
        migrate(engine)
        print(f"{engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")
    elif args.scale:
        from fleet.predlog import scale

        url = args.url or os.environ.get("DATABASE_URL")
        if url is None:
            raise SystemExit("--scale writes millions of rows: name a fresh database with --url")
        result = scale.run(url, args.rows)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    elif args.bench:
        rates = [float(r) for r in args.rates.split(",")]
        _bench(args.url or os.environ.get("DATABASE_URL"), args.rows, rates, args.seconds)
    else:
        parser.print_help()
