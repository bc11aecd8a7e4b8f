"""The log's five-minute aggregates and retention, on SQLite and PostgreSQL: the buckets say what the
raw rows say (counts, feedback, latency quantiles to one histogram step), a second catch-up counts
nothing twice, late rows and late feedback are picked up, and retention removes raw rows while the
report still shows their traffic."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from fleet import report
from fleet.predlog import Prediction, PredictionLog, prediction_buckets, predictions, rollup
from tests.test_predlog import open_log


@pytest.fixture
def now() -> datetime:
    """The start of the current five-minute bucket: feedback is stamped with the real time, so each
    test takes its own (a module-level one is minutes old by the time a long suite reaches it)."""
    return rollup.floor(datetime.now(UTC))


def _traffic(log: PredictionLog, start: datetime, n: int, version: str = "v1", prefix: str = "r",
             seconds: float = 30) -> list[float]:
    """``n`` loans predictions from ``start``, one every ``seconds``; returns their latencies."""
    rng = np.random.default_rng(len(prefix) + n)
    latencies = [float(x) for x in rng.gamma(2, 3, n)]
    rows = [Prediction(f"{prefix}{i}", "loans", version, "stable", {"age": 40.0}, {"approved": i % 2},
                       latencies[i], label=i % 2, created_at=start + timedelta(seconds=seconds * i))
            for i in range(n)]
    log.record(rows).result(30)
    return latencies


def _totals(log: PredictionLog) -> dict[str, int]:
    """What the buckets add up to; the five-minute, hour and day buckets must agree."""
    b = prediction_buckets.c
    totals = []
    with log.engine.connect() as connection:
        for width in rollup.WIDTHS:
            found = connection.execute(sa.select(sa.func.sum(b.predictions), sa.func.sum(b.feedback),
                                                 sa.func.sum(b.correct)).where(b.seconds == width)).one()
            totals.append({"predictions": int(found[0] or 0), "feedback": int(found[1] or 0),
                           "correct": int(found[2] or 0)})
    assert totals[0] == totals[1] == totals[2], totals
    return totals[0]


def test_buckets_agree_with_the_raw_rows_and_count_nothing_twice(
    db_url: str, tmp_path: Path, now: datetime
) -> None:
    with open_log(db_url, tmp_path) as log:
        latencies = _traffic(log, now - timedelta(hours=2), 240)  # two hours, 24 buckets
        # feedback on every even row (predicted 0), right for every fourth
        truth = [{"request_id": f"r{i}", "label": i % 4 // 2} for i in range(0, 240, 2)]
        log.add_feedback_many("loans", truth)
        first = rollup.catch_up(log.engine, now)
        assert first["rows"] == 240 and first["buckets"] == 24
        for minutes in (30, 60):  # the first re-reads the buckets whose feedback came after now − LAG
            again = rollup.catch_up(log.engine, now + timedelta(minutes=minutes))
            assert _totals(log) == {"predictions": 240, "feedback": 120, "correct": 60}
        assert again["rows"] == 0  # nothing new since: nothing read again
        hist = rollup.merged(row["latency_hist"] for row in rollup.read_buckets(log.engine))
        exact = float(np.quantile(latencies, 0.5))
        assert abs(rollup.quantile(hist, 0.5) / exact - 1) < 0.2  # within one 1.2× step


def test_the_database_bins_latencies_as_python_does(db_url: str, tmp_path: Path, now: datetime) -> None:
    """The buckets are counted by the database: each latency lands in the bin ``latency_bin`` gives it,
    on the edges too, and a prediction 0.3 ms before the next five minutes is still in its own (SQLite
    reads times to the millisecond, rounding)."""
    edges = rollup.LATENCY_EDGES
    latencies = [0.0, edges[0], edges[0] * 0.999, *edges[10:13], edges[40] * 1.0001, edges[-1], 1e9]
    times = [now + timedelta(seconds=i) for i in range(len(latencies) - 1)]
    times.append(now + rollup.BUCKET - timedelta(microseconds=300))
    with open_log(db_url, tmp_path) as log:
        log.record([Prediction(f"b{i}", "loans", "v1", "stable", {}, {}, latency, created_at=at)
                    for i, (latency, at) in enumerate(zip(latencies, times, strict=True))]).result(30)
        done = rollup.catch_up(log.engine, now + timedelta(minutes=1))
        (bucket,) = rollup.read_buckets(log.engine)
    assert (done["buckets"], done["rows"]) == (1, len(latencies))
    assert bucket["latency_hist"] == dict(Counter(str(rollup.latency_bin(x)) for x in latencies))
    assert (bucket["bucket"], bucket["first_at"], bucket["last_at"]) == (now, now, times[-1])


def test_late_rows_and_late_feedback_are_picked_up(db_url: str, tmp_path: Path, now: datetime) -> None:
    with open_log(db_url, tmp_path) as log:
        _traffic(log, now - timedelta(hours=3), 10, seconds=1)
        rollup.catch_up(log.engine, now)
        # a row shipped late (a journal, a short outage) and feedback for predictions three hours old
        _traffic(log, now - timedelta(minutes=4), 1, prefix="late")
        log.add_feedback_many("loans", [{"request_id": f"r{i}", "label": i % 2} for i in range(10)])
        rollup.catch_up(log.engine, now + timedelta(minutes=1))
        assert _totals(log) == {"predictions": 11, "feedback": 10, "correct": 10}


def test_retention_removes_raw_rows_and_keeps_their_buckets(
    db_url: str, tmp_path: Path, now: datetime
) -> None:
    with open_log(db_url, tmp_path) as log:
        _traffic(log, now - timedelta(days=40), 20, prefix="old", seconds=3600)
        _traffic(log, now - timedelta(days=1), 20, prefix="new", seconds=60)
        log.add_feedback_many("loans", [{"request_id": r, "label": 1} for r in ("old1", "new1")])
        done = rollup.prune(log.engine, days=30, now=now)
        assert (done["predictions"], done["feedback"]) == (20, 0)  # the feedback arrived just now
        with log.engine.connect() as connection:
            left = connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar()
        assert left == 20
        rollup.catch_up(log.engine, now + timedelta(hours=1))  # never recomputes what retention removed
        assert _totals(log) == {"predictions": 40, "feedback": 2, "correct": 2}
        page = report.render(log, since=timedelta(days=400))
        assert "40 predictions" in page


def test_a_single_point_spans_minutes_not_years(tmp_path: Path, now: datetime) -> None:
    """One bucket of traffic: every time axis of the model's figure spans a few buckets (matplotlib's
    default for a single date spans years)."""
    with open_log(str(tmp_path / "log.db"), tmp_path) as log:
        _traffic(log, now, 1)
        rollup.catch_up(log.engine, now)
        frame = report._frame(rollup.read_buckets(log.engine), report.TRAFFIC)
    figure = report._model_figure(frame, "5min")
    for axis in figure.axes:
        if axis.axison:
            low, high = axis.get_xlim()  # days since the epoch
            assert 0 < (high - low) * 24 * 60 <= 30, (axis.get_title(), high - low)
    assert pd.Timestamp(now).floor("5min") == frame["bucket"].iloc[0]
