"""The prediction log's local journal: append-only JSON-lines files in a folder, one per log
instance, each flock'ed by its owner. The writer appends here when the database is down (and, in
journal mode, always) and replays the files in order; a file whose lock is free belonged to a process
that died, and is adopted and replayed by the next log that opens the folder. A log that ships its
journal from another process releases its rotated files (``release``) for that process to adopt the
same way. It is separate from the writer because its whole job is file handling: rotation, fsync,
torn tails and offsets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from fleet.predlog.schema import encoded

logger = logging.getLogger(__name__)
_encode = json.JSONEncoder(default=str).encode  # built once: ``json.dumps`` with options builds one a call
UNBORN_AGE_S = 60.0  # a ``*.jsonl.new`` file is renamed microseconds after it is made; one this old is litter


class Spool:
    """Append-only JSON-lines files in a folder, one per log instance, each flock'ed by its owner.

    Files left by a process that died (their lock is free) are claimed and replayed first, oldest first.
    """

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._own: Path | None = None
        self._own_handle: Any = None
        self._own_size = 0  # bytes in the own file, kept here: ``tell()`` is a system call an append
        self._claimed: list[tuple[Path, Any]] = []  # (path, locked handle) of orphans and rotated files
        self._offsets: dict[Path, int] = {}
        self._rows: dict[Path, int] = {}  # rows still to replay in each file held here
        self._lock = threading.RLock()  # journal mode: the writer appends while the shipper replays

    @property
    def pending(self) -> int:
        """Rows still to replay in the files this spool holds (released ones no longer count)."""
        with self._lock:  # a new file's entry may be added meanwhile
            return sum(self._rows.values())

    def rotate(self) -> None:
        """Stop appending to the current file: the next append starts a new one, and this one can be
        replayed and deleted while appends go on (journal mode)."""
        with self._lock:
            if self._own_handle is not None and self._own_handle.tell() > 0:
                self._claimed.append((self._own, self._own_handle))
                self._own, self._own_handle = None, None

    def release(self) -> list[Path]:
        """Unlock and forget the rotated files not yet replayed, for another process to adopt and
        replay (``claim_orphans``); they no longer count as pending here. Returns their paths."""
        with self._lock:
            released = [(p, h) for p, h in self._claimed if p not in self._offsets]
            for path, handle in released:
                handle.close()
                self._claimed.remove((path, handle))
                self._rows.pop(path, None)
            return [p for p, _ in released]

    def claim_orphans(self, min_age_s: float = 0.0) -> None:
        """Lock and adopt every spool file in the folder that no living log holds (and, with
        ``min_age_s``, that has not been written to for that long)."""
        with self._lock:
            self._claim_orphans(time.time() - min_age_s)

    def _claim_orphans(self, written_before: float) -> None:
        if not self.folder.is_dir():
            return
        self._sweep_unborn(time.time() - UNBORN_AGE_S)
        held = {self._own, *(p for p, _ in self._claimed)}
        for path, mtime in sorted(_mtimes(self.folder.glob("*.jsonl")), key=lambda found: found[1]):
            if path in held or mtime > written_before:
                continue
            try:
                handle = open(path, "rb")  # noqa: SIM115 - kept open to hold the lock until replayed
            except FileNotFoundError:
                continue  # replayed and deleted by its holder since the listing
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            rows = sum(1 for line in handle if line.strip())
            if not rows:  # a process that died before its first append: nothing to replay, ever
                with contextlib.suppress(OSError):
                    path.unlink()
                handle.close()
                continue
            self._claimed.append((path, handle))
            self._rows[path] = rows

    def _sweep_unborn(self, created_before: float) -> None:
        """Delete the empty ``*.jsonl.new`` files of processes that died between creating a new file and
        renaming it (``_own_file``); one whose lock is held is still being born and is left alone."""
        for path, mtime in _mtimes(self.folder.glob("*.jsonl.new")):
            if mtime > created_before:
                continue
            with contextlib.suppress(OSError), open(path, "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink()

    def _own_file(self) -> Any:
        """A new file, locked before any scan can see it: it is created under a name the scan skips
        and renamed once locked. Created under its final name, a scan between the create and the
        lock took it for a dead process's file and held it (a shipper process scans ten times a
        second), and the append that created it blocked in ``flock`` with the spool's lock held,
        freezing the worker's event loop until the scanner let go, then wrote to a file the scanner
        had deleted."""
        if self._own_handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{int(time.time() * 1000):015d}-{uuid.uuid4().hex[:12]}.jsonl"
            creating = path.with_name(path.name + ".new")  # not ``*.jsonl``: no scan looks at it
            handle = open(creating, "ab")  # noqa: SIM115 - lives as long as the log
            fcntl.flock(handle, fcntl.LOCK_EX)
            os.rename(creating, path)
            self._own, self._own_handle, self._own_size = path, handle, 0  # a new file: its name is unique
        return self._own_handle

    def append(self, rows: list[dict[str, Any]], fsync: bool = True) -> str:
        """Append (and fsync, unless told not to); "" when done, else why not: ``spool_full`` (over
        ``max_bytes``) or ``spool_error`` (no space left, I/O error)."""
        data = b"".join(_encode(r).encode() + b"\n" for r in rows)
        with self._lock:
            return self._append(data, len(rows), fsync)

    def sync(self) -> None:
        """Fsync every file still to be shipped (journal mode, before a shipment)."""
        with self._lock:
            handles = [h for _, h in self._claimed]
            if self._own_handle is not None:
                handles.append(self._own_handle)
            for handle in handles:
                with contextlib.suppress(OSError, ValueError):
                    os.fsync(handle.fileno())

    def _append(self, data: bytes, count: int, fsync: bool) -> str:
        start = None
        try:
            handle = self._own_file()
            start = self._own_size
            if start + len(data) > self.max_bytes:
                return "spool_full"
            handle.write(data)
            handle.flush()
            self._own_size += len(data)
            if fsync:
                os.fsync(handle.fileno())
        except OSError:
            logger.exception("prediction log spool %s is not writable", self.folder)
            if start is not None:  # cut a half-written tail, so replay never meets a torn row
                self._own_size = start
                with contextlib.suppress(OSError):
                    self._own_handle.truncate(start)
                    self._own_handle.seek(start)
            return "spool_error"
        self._rows[self._own] = self._rows.get(self._own, 0) + count
        return ""

    def files(self, own: bool = True) -> list[Path]:
        """Files to replay, oldest first (``own``: the one being appended to as well)."""
        with self._lock:
            mine = [self._own] if own and self._own is not None and self._own_handle.tell() > 0 else []
            return [p for p, _ in self._claimed] + mine

    def chunks(self, path: Path, size: int) -> Iterator[tuple[list[dict[str, Any]], int, int]]:
        """``(rows, end_offset, unreadable)`` from where replay last stopped in ``path``."""
        with open(path, "rb") as reader:
            reader.seek(self._offsets.get(path, 0))
            rows: list[dict[str, Any]] = []
            bad = 0
            for line in reader:
                if not line.endswith(b"\n"):
                    bad += 1  # torn last line of a writer that crashed: never acknowledged, but counted
                    break
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    bad += 1
                if len(rows) >= size:
                    yield rows, reader.tell(), bad
                    rows, bad = [], 0
            yield rows, reader.tell(), bad

    def advance(self, path: Path, offset: int, rows: int) -> None:
        with self._lock:
            self._offsets[path] = offset
            self._rows[path] = max(0, self._rows.get(path, 0) - rows)

    def done(self, path: Path) -> None:
        """Forget a fully replayed file: orphans are deleted, our own is emptied."""
        with self._lock:
            self._done(path)

    def _done(self, path: Path) -> None:
        self._offsets.pop(path, None)
        self._rows.pop(path, None)
        if path == self._own:
            self._own_handle.truncate(0)
            self._own_handle.seek(0)
            self._own_size = 0
            return
        for claimed in [c for c in self._claimed if c[0] == path]:
            with contextlib.suppress(OSError):
                path.unlink()
            claimed[1].close()
            self._claimed.remove(claimed)

    def close(self) -> None:
        for _, handle in self._claimed:
            handle.close()
        self._claimed.clear()
        if self._own_handle is not None:
            empty = self._own_handle.tell() == 0
            self._own_handle.close()
            if empty:
                with contextlib.suppress(OSError):
                    self._own.unlink()
            self._own_handle = None


def _mtimes(paths: Iterator[Path]) -> Iterator[tuple[Path, float]]:
    """Each file with its mtime, leaving out any that another process deleted meanwhile."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            yield path, path.stat().st_mtime


def from_spool(row: dict[str, Any]) -> dict[str, Any]:
    """A spooled row as the writer commits it: ``created_at`` went to JSON as text (``default=str``).
    A line written before inputs and outputs were spooled as JSON text holds them decoded."""
    row = row | {"created_at": datetime.fromisoformat(row["created_at"])}
    for column in ("inputs", "outputs"):
        if column in row:
            row[f"{column}_json"] = encoded(row.pop(column))
    return row
