"""The closed loop's events in the monitoring report: listed per model (``armed`` left out, only the
window's), drawn as markers on the model's timeline, and a failing read costs only that part."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from fleet import report, report_events
from fleet.loop import state
from fleet.predlog import Prediction, PredictionLog, loop_events, rollup, utcnow

POLICY = {"steps": [10, 50], "stages": [10, 50]}
ROLLED_BACK = "at step 20: accuracy: 0.5 vs 0.8"
DRIFT = "drift in Age (300 recent inputs)"
WINDOW = timedelta(hours=1)


def _predictions(log: PredictionLog, model: str, n: int = 40) -> None:
    start = utcnow() - timedelta(minutes=30)
    log.record([Prediction(request_id=f"{model}-{i}", model=model, version="v2" if i % 4 == 0 else "v1",
                           role="canary" if i % 4 == 0 else "stable", inputs={"Age": 30.0}, outputs={},
                           latency_ms=5.0, label="1", created_at=start + timedelta(seconds=30 * i))
                for i in range(n)])
    log.flush(timeout=10)


@pytest.fixture
def log(db_url: str) -> Iterator[PredictionLog]:
    """Titanic traffic with a rollout that rolled back, drift checks and an ``armed`` event, one event
    from before the window; and names traffic with no events at all."""
    found = PredictionLog(db_url, journal=False)
    _predictions(found, "titanic")
    _predictions(found, "names")
    with found.engine.begin() as connection:
        connection.execute(loop_events.insert().values(
            model="titanic", rollout_id=None, kind="gate_refused", reason="an old refusal", evidence={},
            created_at=utcnow() - timedelta(hours=3)))
    rollout = state.begin(found.engine, "titanic", "titanic:v2", "titanic:v1", POLICY, "challenger v2")
    state.record(found.engine, "titanic", "armed", "armed: next look in 60 s", rollout_id=rollout["id"])
    state.record(found.engine, "titanic", "rolled_back", ROLLED_BACK, {"n": 40}, rollout_id=rollout["id"])
    state.record(found.engine, "titanic", "drift_checked", "no drift (300 recent inputs)")
    state.record(found.engine, "titanic", "drift_checked", DRIFT)
    rollup.catch_up(found.engine)
    yield found
    found.close()


def _section(page: str, model: str) -> str:
    found = re.search(rf"<h2>{model}</h2>(.*?)(?=<h2>|</body>)", page, re.DOTALL)
    assert found, f"no section for {model}"
    return found.group(1)


def test_each_model_lists_its_loop_events_in_the_window(log: PredictionLog) -> None:
    page = report.render(log, since=WINDOW)
    titanic = _section(page, "titanic")
    table = re.search(r'<h3>Closed loop</h3>\s*<table class="events">(.*?)</table>', titanic, re.DOTALL)
    assert table, "no closed-loop table for titanic"
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table.group(1))
    assert [(kind, reason) for _, kind, _, reason in rows] == [
        ("started", "challenger v2"), ("rolled_back", ROLLED_BACK),
        ("drift_checked", "no drift (300 recent inputs)"), ("drift_checked", DRIFT)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", when) for when, *_ in rows)
    assert rows[0][2] == rows[1][2] != rows[3][2]  # the rollout's id on its events, none on the checks
    assert "armed" not in titanic and "an old refusal" not in page
    assert "No rollouts or triggers in this window." in _section(page, "names")
    assert '<table class="events">' not in _section(page, "names")


def test_decisive_events_are_marked_on_the_models_timeline(log: PredictionLog) -> None:
    events = report_events.read(log, "titanic", WINDOW)
    assert events is not None
    drawn = report_events.markers(events)
    assert [kind for _, kind in drawn] == ["started", "rolled_back", "drift"]  # not the check without drift
    spans = rollup.spans(log.engine, WINDOW, ["titanic"])
    traffic, bucket = report._traffic(log, WINDOW, ["titanic"], spans["titanic"])
    figure = report._model_figure(traffic, bucket, drawn)
    [legend] = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["rollout started", "rolled back", "drift found"]
    traffic_panel = figure.axes[0]
    assert len(traffic_panel.lines) == len(traffic["version"].unique()) + len(drawn)
    left, right = traffic_panel.get_xlim()
    assert all(left <= traffic_panel.convert_xunits(when) <= right for when, _ in drawn)


def test_a_failing_events_read_costs_only_its_part(log: PredictionLog, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> list[state.Event]:
        raise sa.exc.OperationalError("SELECT … FROM loop_events", {}, Exception("no such table"))

    monkeypatch.setattr(state, "events", broken)
    with caplog.at_level(logging.WARNING, logger="fleet.report_events"):
        page = report.render(log, since=WINDOW)
    titanic = _section(page, "titanic")
    assert "could not be read" in titanic and "<img" in titanic and "<h3>Input drift</h3>" in titanic
    assert any("titanic" in record.getMessage() for record in caplog.records)


def test_the_table_holds_the_newest_fifty_oldest_first() -> None:
    start = datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    events = [state.Event(id=i, model="m", rollout_id=1, kind="held", reason=f"look {i}", evidence={},
                          created_at=start + timedelta(seconds=i)) for i in range(60)]
    rows = report_events.rows(events)
    assert len(rows) == report_events.SHOWN == 50
    assert rows[0] == ["2025-01-02 03:04:15", "held", "1", "look 10"] and rows[-1][3] == "look 59"
