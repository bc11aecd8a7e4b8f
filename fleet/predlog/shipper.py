"""``python -m fleet.predlog.shipper``: a serving worker's prediction journal, committed to the database
by a process of its own.

A shipment is Python work for every row (reading the journal back, building the rows, SQLAlchemy's
executemany: about 30 us a row), done once a second. In a thread of the worker it held the worker's
GIL for tens of milliseconds at a time, and the requests answered meanwhile waited for it: names at 8
clients had a p99 of 18.8 ms with it and 13.9 ms without (p50 6 ms, ten alternated rounds). So the
worker only rotates and fsyncs its journal and releases the files (``Spool.release``); this process
adopts them the way a dead process's files are adopted (their lock is free) and commits them in
order, retrying while the database is down. The worker starts it (``spawn``) and starts another if it
dies; it dies with the worker, and the files it held are adopted by the next shipper or log.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from fleet import PROJECT_ROOT
from fleet.predlog.spool import Spool

POLL_SECONDS = 0.1  # how often the shipper looks for released journal files (a glob and a few flocks)


def spawn(url: str, folder: Path) -> subprocess.Popen:
    """Start a shipper for the journal files in ``folder``, committing them to ``url`` (passed in the
    environment, not the command line, where a password would show in ``ps``)."""
    env = {**os.environ, "DATABASE_URL": url, "FLEET_PREDLOG_SPOOL": str(folder)}
    return subprocess.Popen([sys.executable, "-m", "fleet.predlog.shipper"], env=env, cwd=PROJECT_ROOT,
                            stdin=subprocess.DEVNULL, close_fds=True)


class Handover:
    """The worker's side: its shipper process (started again if it died) and the journal files released
    to it that are not committed yet (a file is deleted once its rows are in the database)."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.released: list[Path] = []
        self.process: subprocess.Popen | None = None
        self.keep_running()

    def keep_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = spawn(self.url, self.folder)

    def hand_over(self, spool: Spool) -> None:
        """Rotate, fsync and release ``spool``'s journal to the shipper process."""
        spool.rotate()
        spool.sync()
        self.released = self.unshipped() + spool.release()
        self.keep_running()

    def unshipped(self) -> list[Path]:
        """The released files whose rows are not all in the database yet (shipped ones are deleted)."""
        return [path for path in self.released if path.exists()]

    def stop(self, timeout: float) -> None:
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)


def main() -> None:
    from fleet import lifetime
    from fleet.predlog.writer import PredictionLog

    lifetime.die_with_parent()
    # A log that records nothing: its writer thread looks for released files every POLL_SECONDS and
    # commits them at once, so a row reaches the database within about SHIP_SECONDS + POLL_SECONDS of
    # its answer, as when the worker shipped it itself (the closed loop's steps read it from there).
    PredictionLog(scan_seconds=POLL_SECONDS)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
