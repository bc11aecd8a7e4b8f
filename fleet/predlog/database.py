"""The prediction log's database: which URL, how an engine is opened (SQLite with WAL and a busy
timeout, PostgreSQL with short connect timeouts), Alembic migrations under a lock so two processes
starting together never both create the tables, and the two questions the writer asks of every
statement: how to insert a row that may already be there, and whether an error means "database
down, spool and retry" rather than "bad row". Nothing here knows about queues or spools.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from fleet.paths import state_dir
from fleet.predlog.schema import predictions

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"  # fleet/migrations
VERSION_TABLE = "predlog_alembic_version"
SQLITE_BUSY_TIMEOUT_S = 30


def database_url(explicit: str | os.PathLike | None = None) -> str:
    """``explicit``, else ``DATABASE_URL``, else the SQLite file ``predlog.db`` in the state folder
    (``var/`` in a source checkout, under ``$BENTOML_HOME`` in a bento: ``fleet.paths``).

    A plain path means SQLite; ``postgres://``/``postgresql://`` mean psycopg 3 (psycopg2 is absent).
    """
    url = str(explicit or os.environ.get("DATABASE_URL") or state_dir() / "predlog.db")
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; FULL makes each commit survive an OS crash, not only
    # kill -9, and group commit pays its fsync once per batch.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.close()


def create_engine(url: str) -> sa.Engine:
    """An engine for the log: SQLite with WAL and a busy timeout, PostgreSQL with short connect timeouts."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    args = {"connect_timeout": 3} if parsed.get_backend_name() == "postgresql" else {}
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=4, connect_args=args)


@contextlib.contextmanager
def _migration_lock(connection: sa.Connection) -> Iterator[None]:
    """Two processes starting together must not both create the tables."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_lock(7245100)"))
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(7245100)"))
        return
    database = connection.engine.url.database
    if connection.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def advisory_lock(connection: sa.Connection, key: int, wait: bool = True) -> bool:
    """Take PostgreSQL's session advisory lock ``key`` on ``connection`` (``wait``: block until it is
    free; otherwise whether it was free). It is held until ``advisory_unlock`` or until the session
    ends, so a replica that dies frees it with its connection."""
    query = "SELECT pg_advisory_lock(:key)" if wait else "SELECT pg_try_advisory_lock(:key)"
    got = connection.execute(sa.text(query), {"key": key}).scalar()
    connection.commit()  # the lock outlives the statement's implicit transaction
    return wait or bool(got)


def advisory_unlock(connection: sa.Connection, key: int) -> None:
    """Release ``key`` and close ``connection``. A pooled connection would keep the lock, so if the
    unlock fails the connection is dropped, and its session's locks with it."""
    try:
        connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        connection.commit()
    except sa.exc.SQLAlchemyError:
        connection.invalidate()
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            connection.close()


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Alembic ``upgrade revision`` on this database (the tables are created the first time)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection, _migration_lock(connection):
        connection.commit()  # the advisory lock's own implicit transaction
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def insert_ignoring_duplicates(dialect: sa.Dialect) -> Any:
    """INSERT … ON CONFLICT (id) DO NOTHING: replaying a row that is already there is a no-op.

    Rows (``Prediction.to_row``) carry inputs and outputs as JSON text, ``inputs_json`` and
    ``outputs_json``, bound as text: SQLite stores JSON as that text, PostgreSQL casts it to JSONB.
    Letting the JSON columns encode them again took 1.5 % of a names worker's CPU at 32 clients.
    """
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect.name)
    if insert is None:
        raise NotImplementedError(f"the prediction log supports SQLite and PostgreSQL, not {dialect.name}")
    texts = {column: sa.bindparam(f"{column}_json", type_=sa.Text) for column in ("inputs", "outputs")}
    if dialect.name == "postgresql":
        texts = {column: sa.cast(text, postgresql.JSONB) for column, text in texts.items()}
    return insert(predictions).values(**texts).on_conflict_do_nothing(index_elements=["id"])


def is_unavailable(error: sa.exc.SQLAlchemyError) -> bool:
    """Errors that mean "the database is not there right now" (spool and retry), not "bad row"."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError,
                              sa.exc.TimeoutError))


class DatabaseUnavailable(RuntimeError):
    """A write the caller waits on was not made: the database cannot be reached (retry later)."""


def write_now(engine: sa.Engine, statement: Any, rows: list[dict[str, Any]]) -> int:
    """The write path of everything but predictions (feedback, drift results): the rows in one
    transaction, committed and durable on the database's own terms (SQLite ``synchronous=FULL``,
    PostgreSQL's commit) when this returns; their count.

    Predictions take the other path (``PredictionLog.record``: journal, group commit, spool) because a
    request must never fail for its log. These rows have a caller that can resend them, so when the
    database is unavailable they are not spooled: ``DatabaseUnavailable`` is raised, and the HTTP
    edge answers 503 with Retry-After.
    """
    if not rows:
        return 0
    with transaction(engine) as connection:
        connection.execute(statement, rows)
    return len(rows)


@contextlib.contextmanager
def transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """``engine.begin()``, with a database that cannot be reached raised as ``DatabaseUnavailable``
    (which callers map to 503) and every other error as itself."""
    try:
        with engine.begin() as connection:
            yield connection
    except sa.exc.SQLAlchemyError as error:
        if is_unavailable(error):
            raise DatabaseUnavailable(str(error).splitlines()[0]) from error
        raise
