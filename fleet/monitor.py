"""``python -m fleet.monitor``: the report's own process, so a render never runs in a serving worker.

Rendering the report is seconds of pandas and matplotlib under the GIL; done in a worker, it doubled
that worker's latency while it ran. So every worker of the gateway starts one monitor (``spawn``),
they queue on a lock in the state folder, and the one holding it, on idle CPU time only
(``SCHED_IDLE``):
- brings the log's five-minute aggregates up to date and renders the report into
  ``<state>/report/<database>/report.html`` (atomically) at once when someone asks for a fresh one
  (``ask``), and every ``FLEET_REPORT_SECONDS`` (default 60) while the report is being read (a read in
  the last ``WATCHED_INTERVALS`` intervals, ``seen``): a render is about a second of CPU on the cores
  that serve, so a report nobody opens costs nothing;
- applies retention (``FLEET_PREDLOG_RETENTION_DAYS``) once an hour.
It dies with the worker that started it (``fleet.lifetime.die_with_parent``); the next in the queue
takes the lock. ``/admin/report`` serves the last render (``rendered``), asking and waiting for a
new one only when the caller wants it fresh or there is none yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fleet import PROJECT_ROOT
from fleet.paths import state_dir
from fleet.predlog.database import database_url

logger = logging.getLogger(__name__)

PRUNE_SECONDS = 3600.0
POLL_SECONDS = 0.1
WATCHED_INTERVALS = 10  # renders go on this many intervals after the last read of the report


def interval() -> float:
    """Seconds between renders while the report is read (``FLEET_REPORT_SECONDS``)."""
    return float(os.environ.get("FLEET_REPORT_SECONDS", "60"))


def folder() -> Path:
    """Where the report of this server's database is rendered: one folder (and lock) per database, so
    servers sharing a log share one monitor, and servers on different logs never serve each other's."""
    digest = hashlib.sha256(database_url().encode()).hexdigest()[:16]
    return state_dir() / "report" / digest


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def rendered() -> Path | None:
    """The last render, if there is one (its mtime is when its render began)."""
    path = folder() / "report.html"
    return path if path.exists() else None


def ask() -> int:
    """Ask the monitor for a render that begins after now; returns the time to wait for (ns)."""
    return _touch(folder() / "wanted")


def seen() -> None:
    """Someone read the report: the monitor keeps rendering it for ``WATCHED_INTERVALS`` intervals."""
    _touch(folder() / "seen")


def _touch(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    now = time.time_ns()
    os.utime(path, ns=(now, now))
    return now


async def fresh(timeout: float) -> Path | None:
    """Ask for a render and wait for it (None after ``timeout`` seconds)."""
    asked, deadline = ask(), time.monotonic() + timeout
    report = folder() / "report.html"
    while _mtime_ns(report) < asked:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(POLL_SECONDS)
    return report


def spawn() -> subprocess.Popen:
    """Start a monitor beside this worker (it waits its turn on the lock; see the module docstring)."""
    return subprocess.Popen([sys.executable, "-m", "fleet.monitor"], stdin=subprocess.DEVNULL,
                            close_fds=True, cwd=PROJECT_ROOT)


def run(every: float) -> None:
    """The monitor's loop, once it holds the lock: one reader (engine) for its whole life, opened
    when first needed and again after a failure (the database may be down at start)."""
    from fleet import report
    from fleet.predlog import LogReader, rollup

    out, wanted, seen_at = folder() / "report.html", folder() / "wanted", folder() / "seen"
    reader: LogReader | None = None
    # the first render waits for the interval or for someone to ask (a request finding no report
    # asks), so a server that nobody asks for a report spends nothing on one at start
    last_render, next_prune = time.monotonic(), time.monotonic()
    while True:
        watched = time.time_ns() - _mtime_ns(seen_at) < every * WATCHED_INTERVALS * 1e9
        due = watched and time.monotonic() - last_render >= every
        if due or _mtime_ns(wanted) > _mtime_ns(out):
            started_ns, last_render = time.time_ns(), time.monotonic()
            try:
                reader = reader or LogReader()
                # "rendered at" is when it began reading, set before the file appears: set after,
                # a reader between the two saw the time of the write (the report test caught it)
                report.write_report(reader, out, began_ns=started_ns)
            except Exception:  # the database may be down: try again next round, keep serving the last
                logger.exception("the report could not be rendered")
                reader = _closed(reader)
        if time.monotonic() >= next_prune:
            next_prune = time.monotonic() + PRUNE_SECONDS
            try:
                reader = reader or LogReader()
                logger.info("retention: %s", rollup.prune(reader.engine))
            except Exception:
                logger.exception("retention could not run")
                reader = _closed(reader)
        time.sleep(POLL_SECONDS)


def _closed(reader: Any) -> None:
    """Drop a reader after a failure, so the next round opens (and migrates) afresh."""
    if reader is not None:
        reader.close()


def _lowest_priority() -> None:
    """Run only on CPU time the serving workers leave: Linux's SCHED_IDLE policy, else nice 19."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(OSError):
        os.nice(19)


def main() -> None:
    from fleet import lifetime

    lifetime.die_with_parent()
    _lowest_priority()
    folder().mkdir(parents=True, exist_ok=True)
    with open(folder() / "monitor.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers' monitors wait here
        run(interval())


if __name__ == "__main__":
    main()
