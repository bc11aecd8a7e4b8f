"""The prediction log on SQLite and on a throw-away PostgreSQL: round trips, group commit, durability
across SIGKILL, database outages (spool and replay), and migrations that keep rows."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from bentos.digits.spec import loggable
from fleet import predlog
from fleet.local_server import free_port
from fleet.paths import state_dir
from fleet.predlog import Prediction, PredictionLog, Spool, rollup
from fleet.predlog.database import insert_ignoring_duplicates
from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


def open_log(url: str, tmp_path: Path, registry: CollectorRegistry | None = None,
             **kwargs: object) -> PredictionLog:
    return PredictionLog(url, spool_dir=tmp_path / "spool", registry=registry or CollectorRegistry(),
                         **kwargs)


def row(request_id: str, **fields: object) -> Prediction:
    values = {"model": "loans", "version": "v1", "role": "stable", "inputs": {"age": 37.7},
              "outputs": {"approved": 1, "probability": 0.9}, "latency_ms": 2.5, "label": 1} | fields
    return Prediction(request_id=request_id, **values)


def count_rows(log: PredictionLog) -> tuple[int, int]:
    """(rows, distinct ids) in the predictions table."""
    with log.engine.connect() as connection:
        distinct = sa.func.count(predlog.predictions.c.id.distinct())
        return connection.execute(sa.select(sa.func.count(), distinct).select_from(predlog.predictions)).one()


def test_rows_round_trip(db_url: str, tmp_path: Path) -> None:
    when = datetime(2026, 11, 23, 7, 30, 1, 123456, tzinfo=UTC)
    pixels = np.linspace(0, 16, 64).reshape(8, 8)
    rows = [row("r-1", item=0, inputs={"name": "Zoë", "n": np.int64(3)}, created_at=when),
            row("r-1", item=1, role="canary", version="v2", label=np.int64(0)),
            row("r-2", model="digits", inputs=loggable(pixels),
                outputs={"prediction": 8, "score": 0.98}, label=8, role="shadow")]
    with open_log(db_url, tmp_path) as log:
        outcome = asyncio.run(_await(log.record(rows)))
        assert outcome == "committed"
        first, second = sorted(log.query(request_id="r-1"), key=lambda r: r["item"])
        assert first == {"id": rows[0].id, "request_id": "r-1", "item": 0, "model": "loans", "version": "v1",
                         "role": "stable", "inputs": {"name": "Zoë", "n": 3},
                         "outputs": {"approved": 1, "probability": 0.9}, "label": "1", "latency_ms": 2.5,
                         "created_at": when}
        assert second["role"] == "canary" and second["label"] == "0"
        (digit,) = log.query(model="digits")
        assert digit["inputs"]["pixels"][7][7] == 16.0 and len(json.dumps(digit["inputs"])) < 500
        assert [r["request_id"] for r in log.query(since=timedelta(minutes=5))] == ["r-2", "r-1"]
        assert len(log.query(limit=1)) == 1 and log.query(role="shadow")[0]["request_id"] == "r-2"
        assert log.recent_inputs("loans", "v1") == [{"name": "Zoë", "n": 3}]


async def _await(receipt: predlog.Receipt) -> str:
    return await receipt


def test_feedback_and_live_accuracy(db_url: str, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    with open_log(db_url, tmp_path, registry) as log:
        answered = [row(f"q{i}", version="v1" if i < 6 else "v2", label=i % 2) for i in range(10)]
        shadow = [row(f"q{i}", version="v3", role="shadow", label=1) for i in range(10)]
        assert log.record(answered + shadow).result(10) == "committed"
        # the truth is 1 (True matches 1) except for q0; v1 is right on q0, q1, q3, q5, v2 on q7, q9
        truth = [{"request_id": f"q{i}", "label": True} for i in range(10)]
        assert log.add_feedback_many("loans", truth) == 10
        log.add_feedback("loans", "q0", 0)  # a later label replaces the first
        assert log.live_accuracy("loans", "v1").total == 6
        assert log.live_accuracy("loans", "v1").value == pytest.approx(4 / 6)
        assert log.live_accuracy("loans", "v3").value == pytest.approx(0.9)
        overall = log.live_accuracy("loans")  # answered roles only: the shadow's copies are not counted
        assert (overall.correct, overall.total) == (6, 10)
        assert log.live_accuracy("loans", "v1", last=2).total == 2
        assert log.live_accuracy("titanic").value is None
        assert log.unmatched_feedback("loans", ["q1", "nope"]) == ["nope"]
        gauges = {(a.model, a.version): a.value for a in log.refresh_accuracy_gauges()}
        assert gauges[("loans", "v2")] == pytest.approx(2 / 4)
        labels = {"model": "loans", "version": "v2"}
        assert registry.get_sample_value("fleet_live_accuracy", labels) == pytest.approx(2 / 4)
        assert registry.get_sample_value("fleet_live_accuracy_samples", labels) == 4
        rollup.catch_up(log.engine)  # what the report draws over time: hits and misses per version
        hits: collections.Counter = collections.Counter()
        for bucket in rollup.read_buckets(log.engine, models=["loans"]):
            hits[(bucket["version"], 1)] += bucket["correct"]
            hits[(bucket["version"], 0)] += bucket["feedback"] - bucket["correct"]
        assert hits == {("v1", 1): 4, ("v1", 0): 2, ("v2", 1): 2, ("v2", 0): 2, ("v3", 1): 9, ("v3", 0): 1}


def test_group_commit_shares_commits(db_url: str, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    with open_log(db_url, tmp_path, registry) as log:
        log.flush()
        commits = []
        sa.event.listen(log.engine, "commit", lambda _connection: commits.append(1))

        async def requests() -> list[str]:
            async def one(i: int) -> str:
                return await log.record(row(f"g{i}"))
            return await asyncio.gather(*(one(i) for i in range(400)))

        assert set(asyncio.run(requests())) == {"committed"}
        assert count_rows(log) == (400, 400)
        assert 1 <= len(commits) <= 40, f"{len(commits)} commits for 400 concurrent records"
        assert log.stats.commits == len(commits)
        assert registry.get_sample_value("fleet_predlog_rows_total", {"outcome": "committed"}) >= 400
        assert registry.get_sample_value("fleet_predlog_commit_seconds_count") == len(commits)


CHILD = textwrap.dedent("""
    import sys
    from fleet.predlog import Prediction, PredictionLog
    mode = sys.argv[3]
    log = PredictionLog(sys.argv[1], spool_dir=sys.argv[2], journal=mode != "commit",
                        sync="write" if mode == "write-through" else "fsync")
    i = 0
    while True:
        rows = [Prediction(f"kill-{i}-{j}", "loans", "v1", "stable", {"i": i}, {"approved": 1}, 1.0)
                for j in range(4)]
        receipt = log.record(rows)
        outcome = receipt.result(30)
        for row_id in receipt.ids:
            print(outcome, row_id, flush=True)
        i += 1
""")


@pytest.mark.parametrize("mode", ["commit", "journal", "write-through"])
def test_answered_rows_survive_sigkill(db_url: str, tmp_path: Path, mode: str) -> None:
    """Killed mid-load: every row the log said was durable is in the database once a log opens again
    (in journal mode, after the new log adopts and ships the dead one's journal; written through, the
    rows were only written, never fsync'd, by the time the receipt said so)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, db_url, str(tmp_path / "spool"), mode], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    printed = []
    try:
        while len(printed) < 400:
            line = child.stdout.readline()
            assert line, "the child exited early"
            printed.append(line.split())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    # The kill can land while a line is half written (the buffer flushed mid-line): only whole lines count.
    printed += [line.split() for line in child.stdout.read().splitlines(keepends=True) if line.endswith("\n")]
    assert {outcome for outcome, _ in printed} == {"committed" if mode == "commit" else "journaled"}
    with PredictionLog(db_url, spool_dir=tmp_path / "spool", registry=CollectorRegistry()) as log:
        assert log.drained(30)
        ids = {r["id"] for r in log.query(limit=None)}
    assert {row_id for _, row_id in printed} <= ids


@pytest.mark.parametrize("sync", ["fsync", "write"])
def test_journal_mode_answers_from_the_journal_and_ships_every_row(db_url: str, tmp_path: Path,
                                                                  sync: str) -> None:
    with open_log(db_url, tmp_path, journal=True, sync=sync) as log:
        receipts = [log.record([row(f"j-{i}-{k}") for k in range(3)]) for i in range(20)]
        if sync == "write":  # written in the caller's thread: done before record returns
            assert all(r.done() for r in receipts)
        outcomes = {r.result(10) for r in receipts}
        assert outcomes == {"journaled"}
        assert len(log.query(limit=None)) == 60  # a reader sees its own rows: query flushes first
        assert count_rows(log) == (60, 60) and log.spool.pending == 0
    assert all(p.stat().st_size == 0 for p in (tmp_path / "spool").glob("*.jsonl"))


@pytest.mark.parametrize(("sync", "elsewhere"), [("fsync", False), ("write", False), ("write", True)])
def test_journal_mode_serves_through_an_outage(pg: PostgresServer, tmp_path: Path, sync: str,
                                               elsewhere: bool) -> None:
    """``elsewhere``: the journal is handed to a shipper process, which cannot commit it either; a
    flush tries the database itself and answers "spooled" at once, not when it times out."""
    log = open_log(pg.create_database(), tmp_path, journal=True, retry_seconds=0.1, sync=sync,
                   ship_elsewhere=elsewhere)
    try:
        assert log.record([row(f"before-{i}") for i in range(10)]).result(10) == "journaled"
        assert log.drained(10)
        pg.stop("fast")
        try:
            during = {log.record([row(f"down-{i}")]).result(15) for i in range(30)}
            assert during == {"journaled"}
            if elsewhere:
                time.sleep(2.5)
                assert log.spool.pending == 0  # handed over: the shipper process holds them
                started = time.monotonic()
                assert log.flush(timeout=10) == "spooled" and time.monotonic() - started < 5
            else:
                assert log.spool.pending == 30
        finally:
            pg.start()
        assert log.drained(30), "the journal was not shipped after the outage"
        assert count_rows(log) == (40, 40) and log.stats.dropped == 0
    finally:
        log.close()


def test_database_outage_spools_then_replays_everything_once(pg: PostgresServer, tmp_path: Path) -> None:
    url, late_url = pg.create_database(), pg.create_database()
    registry = CollectorRegistry()
    log = open_log(url, tmp_path, registry, retry_seconds=0.1)
    late = None
    try:
        before = [row(f"up-{i}") for i in range(50)]
        assert log.record(before).result(10) == "committed"
        pg.stop("fast")  # clients see their connections closed, as in a crash; restart is quicker
        try:
            during = [row(f"down-{i}") for i in range(100)]
            outcomes = {log.record(during[i:i + 10]).result(15) for i in range(0, 100, 10)}
            assert outcomes == {"spooled"}
            assert log.stats.spooled == 100 and log.spool.pending == 100
            assert registry.get_sample_value("fleet_predlog_spooled_rows") == 100
            # a server that starts while the database is down serves (spools) and migrates later
            late = open_log(late_url, tmp_path / "late", retry_seconds=0.1)
            assert late.record(row("late-1")).result(15) == "spooled"
        finally:
            pg.start()
        after = [row(f"after-{i}") for i in range(20)]
        log.record(after)
        assert log.drained(30) and late.drained(30), "the spool was not replayed"
        assert count_rows(log) == (170, 170)
        stored = {r["id"] for r in log.query(limit=None)}
        assert stored == {r.id for r in before + during + after}
        assert log.stats.replayed >= 100 and log.stats.dropped == 0
        assert registry.get_sample_value("fleet_predlog_rows_total", {"outcome": "replayed"}) >= 100
        assert registry.get_sample_value("fleet_predlog_spooled_rows") == 0
        assert [r["request_id"] for r in late.query()] == ["late-1"]
        assert all(p.stat().st_size == 0 for p in (tmp_path / "spool").glob("*.jsonl"))
    finally:
        log.close()
        if late is not None:
            late.close()


def test_replay_after_a_crash_does_not_duplicate(tmp_path: Path) -> None:
    url = str(tmp_path / "log.db")
    committed = [row(f"c{i}") for i in range(10)]
    with open_log(url, tmp_path) as log:
        log.record(committed).result(10)
    # A process that spooled these rows, committed them, and died before emptying its spool file:
    orphan = Spool(tmp_path / "spool", 1 << 20)
    fresh = [row(f"n{i}") for i in range(5)]
    assert orphan.append([r.to_row() for r in committed + fresh]) == ""
    orphan.close()
    (spooled,) = (tmp_path / "spool").glob("*.jsonl")
    with open(spooled, "ab") as handle:
        handle.write(b'{"id": "torn')  # it died in the middle of a write, too
    with open_log(url, tmp_path, retry_seconds=0.05) as log:
        assert log.spool.pending == 16
        assert log.drained(10)
        assert count_rows(log) == (15, 15)
        assert log.stats.dropped == 1  # the torn row is counted, not silently lost
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def test_spool_lines_of_the_earlier_format_replay(tmp_path: Path) -> None:
    """Spool files written before inputs and outputs were spooled as JSON text hold them decoded;
    an upgraded server adopts and commits them like its own."""
    (tmp_path / "spool").mkdir()
    earlier = [row(f"e{i}", inputs={"name": "Zoë", "n": i}) for i in range(3)]
    lines = [json.dumps({k: v for k, v in r.to_row().items() if not k.endswith("_json")}
                        | {"inputs": r.inputs, "outputs": r.outputs}, default=str) for r in earlier]
    (tmp_path / "spool" / "0000000000001-earlier.jsonl").write_text("\n".join(lines) + "\n")
    with open_log(str(tmp_path / "log.db"), tmp_path, retry_seconds=0.05) as log:
        assert log.drained(10)
        found = {r["request_id"]: r for r in log.query(model="loans")}
    assert [found[f"e{i}"]["inputs"] for i in range(3)] == [{"name": "Zoë", "n": i} for i in range(3)]
    assert found["e0"]["outputs"] == {"approved": 1, "probability": 0.9}


@pytest.mark.parametrize("mode", ["queued", "write-through"])
def test_nothing_is_dropped_silently(tmp_path: Path, mode: str) -> None:
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    registry = CollectorRegistry()
    kept = "spooled" if mode == "queued" else "journaled"
    journal = {"journal": True, "sync": "write"} if mode == "write-through" else {}
    with open_log(unreachable, tmp_path, registry, max_spool_bytes=4000, **journal) as log:
        outcomes = [log.record(row(f"d{i}")).result(10) for i in range(30)]
        assert outcomes[0] == kept and outcomes[-1] == "dropped"
        spooled, dropped = outcomes.count(kept), outcomes.count("dropped")
        assert (log.stats.spooled, log.stats.dropped) == (spooled, dropped)
        dropped_total = registry.get_sample_value("fleet_predlog_dropped_rows_total",
                                                  {"reason": "spool_full"})
        assert dropped_total == dropped
        assert registry.get_sample_value("fleet_predlog_rows_total", {"outcome": kept}) == spooled
        if mode == "queued":  # a journal's rows are shipped, not waiting: the gauge is the spool's
            assert registry.get_sample_value("fleet_predlog_spooled_rows") == spooled
    (tmp_path / "a-file").write_text("")  # a spool that cannot be written at all
    with PredictionLog(unreachable, spool_dir=tmp_path / "a-file" / "spool", registry=registry,
                       **journal) as log:
        assert log.record(row("e1")).result(10) == "dropped"
    assert registry.get_sample_value("fleet_predlog_dropped_rows_total", {"reason": "spool_error"}) == 1


def test_the_spool_limit_counts_what_its_files_hold_across_rotation_and_replay(tmp_path: Path) -> None:
    """The spool tracks its own file's size instead of asking the kernel each append: a full file
    refuses, an emptied (replayed) or rotated one takes the limit's worth again."""
    spool = predlog.Spool(tmp_path / "spool", max_bytes=1000)
    line = {"id": "x" * 80}  # 91 bytes a line
    assert [spool.append([line], fsync=False) for _ in range(11)] == [""] * 10 + ["spool_full"]
    (own,) = spool.files()
    assert own.stat().st_size == 910
    spool.done(own)  # replayed: emptied, the whole limit again
    assert [spool.append([line], fsync=False) for _ in range(11)] == [""] * 10 + ["spool_full"]
    spool.rotate()  # the next append starts a new file with the limit of its own
    assert spool.append([line], fsync=False) == ""
    assert sorted(p.stat().st_size for p in spool.files()) == [91, 910]
    spool.close()


def test_migrations_keep_existing_rows(db_url: str, tmp_path: Path) -> None:
    engine = predlog.create_engine(predlog.database_url(db_url))
    predlog.migrate(engine, "0001")
    assert predlog.current_revision(engine) == "0001"
    old = row("old-1")
    with engine.begin() as connection:
        connection.execute(insert_ignoring_duplicates(engine.dialect), [old.to_row()])
        connection.execute(predlog.feedback.insert(), [{"model": "loans", "request_id": "old-1", "item": 0,
                                                       "label": 1, "label_key": "1",
                                                       "created_at": datetime.now(UTC)}])
    engine.dispose()
    with open_log(db_url, tmp_path) as log:
        assert predlog.current_revision(log.engine) == "0006"
        assert [r["id"] for r in log.query(request_id="old-1")] == [old.id]
        assert log.live_accuracy("loans", "v1").value == 1.0
        assert log.save_drift("loans", "v1", [{"feature": "age", "kind": "numeric", "measure": "psi",
                                               "value": 0.3, "threshold": 0.2, "noise_floor": 0.1,
                                               "drifted": True, "n": 500}]) == 1
        assert log.drift_history()[0]["drifted"] is True


def test_tables_match_the_migrations(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = predlog.create_engine(predlog.database_url(db_url))
    predlog.migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(context, predlog.metadata)
                 if predlog.VERSION_TABLE not in str(d)]
    engine.dispose()
    assert diffs == []


def test_bounded_forms_and_label_keys() -> None:
    big = {"text": "x" * (predlog.MAX_FIELD_CHARS + 1)}
    text = json.dumps(big)
    assert predlog.bounded(big) == {"_truncated": True, "chars": len(text),
                                    "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert predlog.bounded({"a": np.float32(0.5), "b": (1, 2)}) == {"a": 0.5, "b": [1, 2]}
    assert {predlog.label_key(v) for v in (1, 1.0, True, "1", np.int64(1), np.bool_(True))} == {"1"}
    assert predlog.label_key(["a", 1]) == '["a",1]'
    with pytest.raises(ValueError, match="role"):
        row("x", role="primary").to_row()
    with pytest.raises(ValueError):
        predlog.bounded({"x": float("nan")})


def test_database_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert predlog.database_url() == f"sqlite:///{state_dir() / 'predlog.db'}"
    assert predlog.database_url(tmp_path / "x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db:5432/fleet")
    assert predlog.database_url() == "postgresql+psycopg://u:p@db:5432/fleet"
