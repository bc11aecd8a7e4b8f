"""The report is rendered by a process of its own, never in a serving worker: each worker starts a
monitor, one at a time holds the lock and renders, another takes over when it dies, and
``/admin/report?fresh=true`` answers with a render that began after the request. It renders on its
own only while someone reads the report; the first read after a quiet spell waits for a new one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import sqlalchemy as sa

from fleet import PROJECT_ROOT, lifetime, monitor, monitoring
from fleet.predlog import Prediction, PredictionLog, rollup_state
from tests.conftest import ADMIN


def _monitors(url: str) -> list[psutil.Process]:
    """The monitor processes started by the workers of the server at ``url``."""
    workers = lifetime.listeners(int(url.rsplit(":", 1)[1]))
    return [child for worker in workers for child in worker.children()
            if "fleet.monitor" in " ".join(child.cmdline())]


def _lock_holder() -> int | None:
    """The pid holding the monitor lock of this test run's database (from /proc/locks)."""
    inode = os.stat(monitor.folder() / "monitor.lock").st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "FLOCK" and int(fields[5].split(":")[2]) == inode:
            return int(fields[4])
    return None


def _gone(process: psutil.Process, timeout: float = 10) -> None:
    """Wait until ``process`` is dead (a zombie until its worker reaps it: not our child to wait for)."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(psutil.NoSuchProcess):
        while process.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, f"{process} still alive"
            time.sleep(0.05)


def _fresh(fleet: httpx.Client) -> tuple[httpx.Response, datetime]:
    asked = datetime.now(UTC).replace(microsecond=0)
    return fleet.get("/admin/report", params={"fresh": "true"}, headers=ADMIN), asked


def test_the_report_is_rendered_by_its_own_process(fleet: httpx.Client, fleet_url: str) -> None:
    fleet.post("/names/get_prediction", json={"name": "Nakamura"}).raise_for_status()
    page, asked = _fresh(fleet)
    assert page.status_code == 200 and "<h2>names</h2>" in page.text
    assert datetime.fromisoformat(page.headers["X-Report-Rendered-At"]) >= asked
    cached = fleet.get("/admin/report", headers=ADMIN)  # the last render, at once
    assert cached.headers["X-Report-Rendered-At"] == page.headers["X-Report-Rendered-At"]

    monitors = _monitors(fleet_url)
    holder = _lock_holder()
    assert monitors and holder in {m.pid for m in monitors}, (monitors, holder)
    renderer = psutil.Process(holder)
    assert "_bentoml_impl.worker" not in " ".join(renderer.cmdline())
    renderer.kill()
    _gone(renderer)
    page, asked = _fresh(fleet)  # another worker's monitor, or a new one, takes over
    assert page.status_code == 200 and "<h2>names</h2>" in page.text
    assert datetime.fromisoformat(page.headers["X-Report-Rendered-At"]) >= asked
    assert _lock_holder() not in (None, holder)


def _rendered_after(report: Path, after_ns: int, timeout: float = 90) -> int:
    """Wait for a render of ``report`` newer than ``after_ns``; its mtime (when that render began)."""
    deadline = time.monotonic() + timeout
    while not report.exists() or report.stat().st_mtime_ns <= after_ns:
        assert time.monotonic() < deadline, f"no render of {report} after {after_ns}"
        time.sleep(0.1)
    return report.stat().st_mtime_ns


def _rolled_up(log: PredictionLog) -> bool:
    with log.engine.connect() as connection:
        return connection.execute(sa.select(rollup_state.c.at)).first() is not None


def test_the_report_is_rendered_only_while_it_is_read(tmp_path: Path, monkeypatch) -> None:
    every = 0.5
    for name, value in {"FLEET_STATE_DIR": str(tmp_path), "DATABASE_URL": str(tmp_path / "log.db"),
                        "FLEET_REPORT_SECONDS": str(every)}.items():
        monkeypatch.setenv(name, value)
    log = PredictionLog(spool_dir=tmp_path / "spool")
    log.record(Prediction("r1", "names", "v1", "stable", "Nakamura", {"labels": ["Japanese"]}, 2.0,
                          label="Japanese")).result(30)
    report = monitor.folder() / "report.html"
    process = subprocess.Popen([sys.executable, "-m", "fleet.monitor"], cwd=PROJECT_ROOT,
                               env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60  # its first round (retention) catches the aggregates up
        while not _rolled_up(log):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        time.sleep(8 * every)
        assert not report.exists()  # nobody has read it: nothing rendered
        monitor.seen()
        first = _rendered_after(report, 0)
        _rendered_after(report, first)  # and again while it is being read
        time.sleep(every * monitor.WATCHED_INTERVALS + 3)  # nobody reads it: the renders stop
        settled = report.stat().st_mtime_ns
        time.sleep(8 * every)
        assert report.stat().st_mtime_ns == settled
        asked = time.time_ns()
        page, rendered_at = asyncio.run(monitoring.report_page(fresh=False))  # the old render is stale
        assert "<h2>names</h2>" in page
        assert datetime.fromisoformat(rendered_at) >= datetime.fromtimestamp(asked // 10**9, UTC)
    finally:
        process.kill()
        process.wait()
        log.close()
