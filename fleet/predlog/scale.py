"""``python -m fleet.predlog --scale [--rows 1000000]``: what the log's reads cost when it is big.

It fills a fresh log with ``rows`` predictions spread over 45 days (six models, two versions each,
stable, canary and shadow roles, feedback for one in ten), then times each read the server makes per
request or per refresh, the report's render from the aggregates, the first and an incremental
rollup, and retention (30 days: a third of the rows), with the database's size before and after.
A benchmark target, not a test: a million rows take minutes to write.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from fleet.predlog import rollup
from fleet.predlog.queries import LogReader
from fleet.predlog.schema import feedback, predictions, utcnow

MODELS = ("names", "loans", "digits_sklearn", "digits_cnn", "topics", "titanic")
DAYS = 45
CHUNK = 20_000


def _role(roll: float) -> tuple[str, str]:
    return ("v2", "canary") if roll < 0.1 else ("v3", "shadow") if roll < 0.15 else ("v1", "stable")


def fill(engine: sa.Engine, rows: int, seed: int = 0) -> list[str]:
    """Insert ``rows`` predictions (and feedback for one in ten) ending now; returns some request ids."""
    rng = np.random.default_rng(seed)
    start, span = utcnow() - timedelta(days=DAYS), DAYS * 86400
    offsets = np.sort(rng.uniform(0, span, rows))
    sample: list[str] = []
    for begin in range(0, rows, CHUNK):
        batch, truth = [], []
        for i in range(begin, min(rows, begin + CHUNK)):
            model, (version, role) = MODELS[i % len(MODELS)], _role(rng.random())
            label, when = str(int(rng.integers(0, 10))), start + timedelta(seconds=float(offsets[i]))
            request = uuid.uuid4().hex
            batch.append({"id": uuid.uuid4().hex, "request_id": request, "item": 0, "model": model,
                          "version": version, "role": role, "inputs": {"x": float(rng.normal())},
                          "outputs": {"label": label}, "label": label,
                          "latency_ms": float(rng.gamma(2, 3)), "created_at": when})
            if i % 10 == 0:
                truth.append({"model": model, "request_id": request, "item": 0, "label": label,
                              "label_key": label if rng.random() < 0.9 else "x", "created_at": when})
            if i % 50_000 == 0:
                sample.append(request)
        with engine.begin() as connection:
            connection.execute(predictions.insert(), batch)
            connection.execute(feedback.insert(), truth)
    return sample


def timed(call: Callable[[], Any], repeat: int = 5) -> float:
    """Median milliseconds of ``call`` over ``repeat`` runs (after one warm-up)."""
    call()
    took = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        took.append((time.perf_counter() - began) * 1000)
    return statistics.median(took)


def size(engine: sa.Engine) -> dict[str, float]:
    """MB the database holds: SQLite's pages in use (freed pages are reused, not returned), or
    PostgreSQL's database size."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            page = connection.exec_driver_sql("PRAGMA page_size").scalar()
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
            free = connection.exec_driver_sql("PRAGMA freelist_count").scalar()
            return {"file_mb": pages * page / 1e6, "in_use_mb": (pages - free) * page / 1e6}
        found = connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
        return {"database_mb": found / 1e6}


def count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar()


def reads(reader: LogReader, sample: list[str]) -> dict[str, float]:
    """Milliseconds of each read the server makes per request or per refresh."""
    from fleet import report

    ids = sample[:100]
    return {
        "query by request id (admin, feedback)": timed(lambda: reader.query(request_id=sample[0])),
        "unmatched feedback, 100 ids (per feedback request)": timed(
            lambda: reader.unmatched_feedback("names", ids)),
        "latest 100 of a model (admin predictions)": timed(lambda: reader.query(model="loans", limit=100)),
        "recent inputs, 2,000 (per drift check)": timed(lambda: reader.recent_inputs("titanic", "v1")),
        "live accuracy of one model's versions": timed(lambda: reader.accuracies(models=["names"])),
        "live accuracy of every version (the gauges' refresh, every 30 s)": timed(reader.accuracies),
        "drift history (report)": timed(reader.drift_history),
        "incremental rollup (report process, every 60 s)": timed(lambda: rollup.catch_up(reader.engine)),
        "report data: spans and the aggregates it draws": timed(lambda: _report_data(reader)),
        "report render (data and drawing)": timed(lambda: report.render(reader), repeat=3),
    }


def _report_data(reader: LogReader) -> int:
    """What the report reads before it draws: the spans, and each model's aggregates at its width."""
    from fleet import report

    spans = rollup.spans(reader.engine)
    return sum(len(report._traffic(reader, None, [model], span)[0]) for model, span in spans.items())


def run(url: str, rows: int) -> dict[str, Any]:
    reader = LogReader(url)
    began = time.perf_counter()
    sample = fill(reader.engine, rows)
    result: dict[str, Any] = {"database": reader.engine.dialect.name, "rows": count(reader.engine),
                              "fill_seconds": time.perf_counter() - began}
    print(f"filled {result['rows']:,} rows in {result['fill_seconds']:.0f} s", flush=True)
    result["first_rollup"] = rollup.catch_up(reader.engine)
    print(f"first rollup: {json.dumps(result['first_rollup'])}", flush=True)
    result["reads_ms"] = reads(reader, sample)
    for name, ms in result["reads_ms"].items():
        print(f"  {ms:9.1f} ms  {name}", flush=True)
    result["size_before"] = size(reader.engine)
    result["retention"] = rollup.prune(reader.engine, days=30)
    result["rows_after"], result["size_after"] = count(reader.engine), size(reader.engine)
    print(f"retention: {json.dumps(result['retention'])}\n  size {result['size_before']} -> "
          f"{result['size_after']}, rows {result['rows']:,} -> {result['rows_after']:,}", flush=True)
    result["reads_after_ms"] = reads(reader, sample[len(sample) // 2:])
    for name, ms in result["reads_after_ms"].items():
        print(f"  {ms:9.1f} ms  {name} (after retention)", flush=True)
    reader.close()
    return result
