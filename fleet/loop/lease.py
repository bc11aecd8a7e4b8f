"""The right to drive the closed loop: one holder per database, taken over when the holder dies.

Every worker of every server on the database asks each round; one gets it. On PostgreSQL it is a
session advisory lock on a connection the holder keeps open (the server drops it with the session,
so a dead replica's lease frees itself); on SQLite, whose file only one machine shares, a ``flock`` on
a file beside the database, which the kernel drops with the process.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from pathlib import Path
from typing import IO

import sqlalchemy as sa

from fleet.predlog.database import advisory_lock, advisory_unlock

KEY = int.from_bytes(hashlib.sha256(b"bento-fleet closed loop").digest()[:8], "big", signed=True)


class Lease:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._file: IO[str] | None = None
        self._connection: sa.Connection | None = None

    def hold(self) -> bool:
        """Whether this process holds the lease now (taking it if it is free). Blocking: call in a thread."""
        if self.engine.dialect.name == "postgresql":
            return self._hold_advisory()
        return self._hold_file()

    def _hold_file(self) -> bool:
        if self._file is not None:
            return True
        handle = open(lock_path(self.engine), "w")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def _hold_advisory(self) -> bool:
        if self._connection is not None:
            try:  # still ours while the session lives
                self._connection.execute(sa.text("SELECT 1"))
                self._connection.commit()
                return True
            except sa.exc.SQLAlchemyError:  # the session is gone, and the lock with it
                self._connection.invalidate()
                self.release()
                return False
        try:
            connection = self.engine.connect()
        except sa.exc.SQLAlchemyError:
            return False
        try:
            got = advisory_lock(connection, KEY, wait=False)
        except sa.exc.SQLAlchemyError:
            connection.close()
            return False
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._connection is not None:
            advisory_unlock(self._connection, KEY)
            self._connection = None


def lock_path(engine: sa.Engine) -> Path:
    """Beside a SQLite file; for anything else (an in-memory database), in the temporary folder."""
    database = engine.url.database
    if database and database != ":memory:":
        return Path(f"{database}.loop-lock")
    digest = hashlib.sha256(str(engine.url).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"fleet-loop-{digest}.lock"
