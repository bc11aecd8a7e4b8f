"""The routing plan shared by every worker of a server: one file, changed under a lock, followed by all
(with a PostgreSQL ``DATABASE_URL`` the plan is a table instead, shared by every replica: ``fleet.plan_db``).

A change is made by whichever worker received it: under an exclusive lock it re-reads the file (another
worker may have changed another model meanwhile), loads and smoke-tests the new tags itself, then writes
the plan with the next revision number and fsyncs it, so it is durable before it is acknowledged. Every
other worker polls the file (a ``stat`` every 250 ms), loads what changed off the request path and swaps
it in; a worker that cannot load a tag keeps its old plan for that model and says so in its status file,
which ``/admin/routing`` reads back for every live worker.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import sqlalchemy as sa
import yaml

from fleet import plan_db
from fleet.paths import bentoml_home, state_dir, write_atomically
from fleet.routing import Route, parse_plan, plan_path, save_plan, written_plan

POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 1.0  # across replicas, each worker refreshes its row this often (plan_db.LIVE_SECONDS)


def across_replicas() -> bool:
    """Whether the plan (and every worker's status) is shared by replicas through the database."""
    return plan_db.shared()


@dataclass(frozen=True)
class Revision:
    """A plan as written: its revision number (0 before any change) and each model's route."""

    number: int
    routes: dict[str, Route]


def read(path: Path | None = None) -> Revision:
    """The plan in force (``path``: that file, whatever the mode)."""
    if path is None and plan_db.shared():
        return Revision(*plan_db.read())
    path = path or plan_path()
    raw = yaml.safe_load(path.read_text()) or {}
    return Revision(int(raw.pop("revision", 0)), parse_plan(raw))


def stamp(path: Path | None = None) -> tuple[int, ...] | None:
    """What changes when the plan changes (the file's identity, or the newest revision in the
    database); None when there is none. Blocking: call it in a thread."""
    if path is None and plan_db.shared():
        found = plan_db.revision()
        return None if found is None else (found,)
    try:
        info = os.stat(path or plan_path())
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


Held = IO[str] | sa.Connection  # what ``lock`` returns: the lock file, or the database session


def write(revision: Revision, held: Held) -> None:
    """Write the next revision, under ``held``: a new row in the database, or the plan file replaced
    atomically and durably (the data and the folder entry are fsync'd)."""
    if isinstance(held, sa.Connection):
        plan_db.write(held, revision.number, revision.routes)
        return
    save_plan(revision.routes, written_plan(), revision.number, durable=True)


def lock() -> Held:
    """Wait for the right to change the plan: one change at a time across every worker and process on
    this state folder (every replica, in the database). Blocking (call it in a thread); ``unlock``
    what it returns."""
    if plan_db.shared():
        return plan_db.lock()
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "routing.lock", "w")  # noqa: SIM115 - held until unlock()
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def unlock(handle: Held) -> None:
    if isinstance(handle, sa.Connection):
        plan_db.unlock(handle)
        return
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


# -- what each worker serves, for /admin/routing ------------------------------------------------------


def _status_dir() -> Path:
    """Per server: each local server has a BENTOML_HOME of its own (fleet.local_server)."""
    return bentoml_home() / "fleet" / "workers"


def publish(worker: int, revision: int, loaded: dict[str, list[str]], errors: dict[str, str]) -> None:
    """Record what this worker serves now (atomically; readers never see half a file)."""
    status = {"worker": worker, "pid": os.getpid(), "generation": os.getppid(), "revision": revision,
              "loaded": loaded, "errors": errors, "at": time.time()}
    write_atomically(_status_dir() / f"{os.getpid()}.json", json.dumps(status))
    if plan_db.shared():  # blocking: the worker calls this in a thread once it serves
        plan_db.publish_worker(status)


def own_status() -> dict[str, Any] | None:
    """What this worker last published, if it has."""
    try:
        return json.loads((_status_dir() / f"{os.getpid()}.json").read_text())
    except (OSError, ValueError):
        return None


def workers() -> list[dict[str, Any]]:
    """The status of every live worker: of every replica when the plan is in the database (blocking:
    call it in a thread), else of this server (this generation), by worker index."""
    if plan_db.shared():
        return plan_db.live_workers()
    found = []
    for path in sorted(_status_dir().glob("*.json")):
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not psutil.pid_exists(status["pid"]):
            path.unlink(missing_ok=True)
        elif status.get("generation") == os.getppid():
            found.append(status)
    return sorted(found, key=lambda s: s["worker"])
