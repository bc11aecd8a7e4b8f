"""The journal shipped from a process of its own (``ship_elsewhere``, what the gateway's workers do): a
real shipper process commits every row while the recording process commits none, a reader still sees
its own rows at once, and a shipper that dies is replaced without a row lost (through a database
outage: ``test_predlog.test_journal_mode_serves_through_an_outage``)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from fleet import PROJECT_ROOT
from fleet.predlog import PredictionLog, Spool
from tests.test_predlog import count_rows, open_log, row


def wait_for_rows(log: PredictionLog, count: int, timeout: float = 20) -> tuple[int, int]:
    """Poll the database (never flushing) until it holds ``count`` rows or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while (found := count_rows(log))[0] < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_a_shipper_process_commits_the_journal_and_a_reader_sees_its_own_rows(db_url: str,
                                                                             tmp_path: Path) -> None:
    with open_log(db_url, tmp_path, journal=True, sync="write", ship_elsewhere=True) as log:
        shipper = psutil.Process(log.shipper_pid)
        assert shipper.ppid() == psutil.Process().pid and "fleet.predlog.shipper" in shipper.cmdline()
        for i in range(20):
            assert log.record([row(f"s-{i}-{k}") for k in range(3)]).result(5) == "journaled"
        assert wait_for_rows(log, 60) == (60, 60)
        assert log.stats.replayed == 0  # every row was committed by the shipper, none by this process
        log.record([row("just-now")])
        assert [r["request_id"] for r in log.query(request_id="just-now")] == ["just-now"]  # flushed
        assert log.drained(10) and count_rows(log) == (61, 61)
    assert not shipper.is_running() or shipper.wait(10) is not None  # stopped with its log


def test_a_dead_shipper_is_replaced_and_no_row_is_lost(tmp_path: Path) -> None:
    with open_log(str(tmp_path / "log.db"), tmp_path, journal=True, sync="write", ship_elsewhere=True) as log:
        log.record([row(f"before-{i}") for i in range(10)])
        first = psutil.Process(log.shipper_pid)
        first.kill()
        first.wait(10)
        log.record([row(f"after-{i}") for i in range(10)])
        assert wait_for_rows(log, 20) == (20, 20)
        assert log.shipper_pid != first.pid and psutil.Process(log.shipper_pid).is_running()


def test_released_files_are_adopted_by_another_spool_and_no_longer_counted(tmp_path: Path) -> None:
    mine, other = Spool(tmp_path, 1 << 20), Spool(tmp_path, 1 << 20)
    assert mine.append([{"id": "a"}, {"id": "b"}], fsync=False) == ""
    mine.rotate()
    other.claim_orphans()
    assert other.pending == 0  # still held: rotated, not released
    (released,) = mine.release()
    assert mine.pending == 0 and mine.files() == []
    other.claim_orphans()
    assert other.pending == 2 and other.files() == [released]



def test_a_flush_commits_what_another_process_holds_without_waiting_for_it(tmp_path: Path) -> None:
    """A flush (feedback matching, ``query``) commits the handed-over files itself: it does not wait for
    the process holding them, which under load held a gateway thread per flush for seconds."""
    with open_log(str(tmp_path / "log.db"), tmp_path, journal=True, sync="write", ship_elsewhere=True) as log:
        shipper = psutil.Process(log.shipper_pid)
        shipper.suspend()  # takes nothing from now on
        holder = Spool(log.spool.folder, 1 << 20)  # stands for a shipper in the middle of a shipment
        try:
            log.record([row(f"held-{i}") for i in range(5)])
            deadline = time.monotonic() + 10
            while holder.pending < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
                holder.claim_orphans()  # adoptable once the worker's ship loop has released it
            assert holder.pending == 5 and count_rows(log) == (0, 0)
            assert log.flush(timeout=10) == "committed"
            assert count_rows(log) == (5, 5) and holder.pending == 5  # committed, and still held
        finally:
            holder.close()
            shipper.resume()


SCANNER = """import sys
from pathlib import Path
from fleet.predlog import Spool
spool, stop = Spool(Path(sys.argv[1]), 1 << 20), Path(sys.argv[2])
while not stop.exists():
    spool.claim_orphans()
print(len(spool.files()))
"""


def test_a_scan_never_takes_a_living_log_s_new_file(tmp_path: Path) -> None:
    """A log starts a new journal file after every rotation while another process scans the folder
    (a shipper scans ten times a second): the scan adopts none of them, the appends never block, and
    every row lands in a file the log holds. A file created under its final name and locked after
    was adopted in between, and the append blocked in ``flock`` with the worker's event loop on it."""
    folder, stop = tmp_path / "spool", tmp_path / "stop"
    writer = Spool(folder, 1 << 20)
    writer.append([{"id": "first"}], fsync=False)  # the folder exists before the scanner starts
    scanner = subprocess.Popen([sys.executable, "-c", SCANNER, str(folder), str(stop)], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, text=True)

    def write() -> None:
        for i in range(1000):
            writer.append([{"id": f"r-{i}"}], fsync=False)
            writer.rotate()

    def spin() -> None:  # another busy thread, as in a worker: the writer waits for the GIL after open()
        while not stop.exists():
            sum(range(1000))

    thread, busy = threading.Thread(target=write, daemon=True), threading.Thread(target=spin, daemon=True)
    busy.start()
    thread.start()
    thread.join(60)
    stop.touch()
    adopted = int(scanner.communicate(timeout=30)[0])
    busy.join(10)
    assert not thread.is_alive(), "an append blocked on a file the scan had taken"
    assert adopted == 0 and writer.pending == 1001 and len(writer.files()) == 1000


def test_a_scan_deletes_the_new_file_a_dead_process_left_and_no_other(tmp_path: Path) -> None:
    """A process killed between creating its next journal file and renaming it leaves an empty
    ``*.jsonl.new``: a scan deletes it once it is a minute old, and leaves a young one and one whose
    lock is held (a process stopped while creating it, still alive)."""
    folder = tmp_path / "spool"
    folder.mkdir()
    dead, young, held = (folder / f"{name}.jsonl.new" for name in ("dead", "young", "held"))
    for path in (dead, young, held):
        path.touch()
    an_hour_ago = time.time() - 3600
    for path in (dead, held):
        os.utime(path, (an_hour_ago, an_hour_ago))
    with open(held, "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        Spool(folder, 1 << 20).claim_orphans()
    assert sorted(p.name for p in folder.iterdir()) == ["held.jsonl.new", "young.jsonl.new"]
