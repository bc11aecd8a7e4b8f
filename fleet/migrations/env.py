"""Alembic environment of the prediction log: runs on the connection fleet.predlog.migrate passes in.

Called without one (``alembic`` on the command line with ``-x url=…``), it opens its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from fleet.predlog import VERSION_TABLE, database_url

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = sa.create_engine(database_url(context.get_x_argument(as_dictionary=True).get("url")))
    with engine.connect() as own:
        _run(own)
        own.commit()
