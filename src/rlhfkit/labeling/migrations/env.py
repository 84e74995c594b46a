"""Alembic environment for the label store. `LabelStore` runs it programmatically and
hands over its own connection (`config.attributes["connection"]`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from rlhfkit.labeling.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # `alembic -x` style use with a URL in the config
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
