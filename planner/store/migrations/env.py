"""Alembic environment for the store, run programmatically (see ``planner.store.engine``).

The connection comes in through ``config.attributes["connection"]``; there is no alembic.ini
and no logging setup here (the daemon owns logging). Offline mode (SQL scripts) uses the
``sqlalchemy.url`` main option when one is set.
"""

from __future__ import annotations

from alembic import context

from planner.store.tables import METADATA

config = context.config


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=METADATA,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from planner.store.engine import make_engine

        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("planner migrations need a connection or sqlalchemy.url")
        engine = make_engine(url)
        try:
            with engine.begin() as own:
                _migrate(own)
        finally:
            engine.dispose()
        return
    _migrate(connection)


def _migrate(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=METADATA,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
