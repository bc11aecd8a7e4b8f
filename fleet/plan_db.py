"""The routing plan in PostgreSQL, when ``DATABASE_URL`` names one: one plan for every replica.

Each change is a new row (``routing_plans``: revision, routes), written under a session advisory lock
so revisions never fork; the newest row is the plan. Every worker of every replica polls the newest
revision (an index lookup every 250 ms, ``fleet.plan_sync``) and follows it, so a change made through
any replica is served by all of them within a second or two. An empty table is seeded from the plan
file (``deploy/routing.yaml``, or the bento's packed plan); ``python -m fleet routing export`` writes
the plan back out. Without PostgreSQL the plan stays a file, as on one machine.

Every worker of every replica also keeps a row in ``plan_workers`` (what it serves, refreshed every
second), so a change is acknowledged once every live worker of the fleet serves it (or has said why
not), and ``/admin/routing`` shows each replica's workers.
"""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.dialects import postgresql

from fleet.predlog import create_engine, migrate, plan_workers, routing_plans, utcnow
from fleet.predlog.database import advisory_lock, advisory_unlock
from fleet.routing import Route, parse_plan, plan_path

KEY = int.from_bytes(hashlib.sha256(b"bento-fleet routing plan").digest()[:8], "big", signed=True)


def shared() -> bool:
    """Whether the plan lives in the database: ``DATABASE_URL`` is PostgreSQL (a plan file, even
    ``FLEET_ROUTING``, then only seeds an empty database)."""
    return sa.make_url(os.environ.get("DATABASE_URL") or "sqlite://").get_backend_name() == "postgresql"


@cache
def _engine(url: str) -> sa.Engine:
    engine = create_engine(url)
    migrate(engine)
    return engine


def engine() -> sa.Engine:
    return _engine(os.environ["DATABASE_URL"])


def _routes_json(routes: dict[str, Route]) -> dict[str, Any]:
    return {name: {"stable": route.stable, **route.model_dump(exclude_defaults=True)}
            for name, route in routes.items()}


def newest(connection: sa.Connection) -> tuple[int, dict[str, Route]] | None:
    row = connection.execute(sa.select(routing_plans.c.revision, routing_plans.c.routes)
                             .order_by(routing_plans.c.revision.desc()).limit(1)).first()
    return None if row is None else (row.revision, parse_plan(row.routes))


def read(seed: Path | None = None) -> tuple[int, dict[str, Route]]:
    """The newest plan; an empty table is first seeded from the plan file (under the lock)."""
    with engine().connect() as connection:
        found = newest(connection)
    if found is not None:
        return found
    held = lock()
    try:
        found = newest(held)
        if found is None:
            raw = yaml.safe_load((seed or plan_path()).read_text()) or {}
            found = (int(raw.get("revision", 0)), parse_plan(raw))
            _insert(held, *found)
        return found
    finally:
        unlock(held)


def revision() -> int | None:
    """The newest revision number (what workers poll); None before the table is seeded."""
    with engine().connect() as connection:
        return connection.execute(sa.select(sa.func.max(routing_plans.c.revision))).scalar()


def write(held: sa.Connection, number: int, routes: dict[str, Route]) -> None:
    """Write revision ``number`` on the connection that holds the lock (``lock``)."""
    _insert(held, number, routes)


def _insert(connection: sa.Connection, number: int, routes: dict[str, Route]) -> None:
    connection.execute(routing_plans.insert().values(revision=number, routes=_routes_json(routes),
                                                     written_at=utcnow()))
    connection.commit()


def lock() -> sa.Connection:
    """Wait for the right to change the plan across every replica (blocking; ``unlock`` it)."""
    connection = engine().connect()
    advisory_lock(connection, KEY)
    return connection


def unlock(connection: sa.Connection) -> None:
    advisory_unlock(connection, KEY)


# -- what every worker of every replica serves ----------------------------------------------------------

LIVE_SECONDS = 3.0  # a worker not seen for this long is gone (workers refresh their row every second)
FORGET_SECONDS = 3600.0


def replica() -> str:
    """This server among the replicas: the host (the pod's name on Kubernetes) and its arbiter's pid."""
    return f"{socket.gethostname()}:{os.getppid()}"


def publish_worker(status: dict[str, Any]) -> None:
    """Upsert this worker's row (``status``: what ``plan_sync.publish`` records), and forget the rows of
    replicas gone for an hour."""
    now = utcnow()
    row = {"replica": replica(), "pid": os.getpid(), "status": status, "seen_at": now}
    upsert = postgresql.insert(plan_workers).values(row)
    upsert = upsert.on_conflict_do_update(index_elements=["replica", "pid"],
                                          set_={"status": upsert.excluded.status, "seen_at": now})
    with engine().begin() as connection:
        connection.execute(upsert)
        connection.execute(plan_workers.delete().where(
            plan_workers.c.seen_at < now - timedelta(seconds=FORGET_SECONDS)))


def live_workers() -> list[dict[str, Any]]:
    """Every worker of every replica seen in the last ``LIVE_SECONDS``, each with its replica."""
    since = utcnow() - timedelta(seconds=LIVE_SECONDS)
    with engine().connect() as connection:
        rows = connection.execute(sa.select(plan_workers).where(plan_workers.c.seen_at >= since)
                                  .order_by(plan_workers.c.replica, plan_workers.c.pid)).all()
    return [{**row.status, "replica": row.replica} for row in rows]
