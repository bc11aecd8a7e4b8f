"""The report is rendered by a process of its own, never in a serving worker: each worker starts a
monitor, one at a time holds the lock and renders, another takes over when it dies, and
``/admin/report?fresh=true`` answers with a render that began after the request."""

from __future__ import annotations

import contextlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from fleet import lifetime, monitor
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
