"""Alembic environment: runs migrations on the engine handed over by :mod:`glucoshare.db.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from glucoshare.db.models import Base

config = context.config
target_metadata = Base.metadata

QUEUE_PREFIX = "procrastinate_"
"""The job queue's tables (PostgreSQL) belong to procrastinate's schema, not to the models."""


def _include_name(name: str | None, type_: str, _parents: object) -> bool:
    return not (type_ == "table" and name is not None and name.startswith(QUEUE_PREFIX))


def run_migrations_online() -> None:
    """Run the migrations inside one transaction (batch mode on SQLite for ALTERs).

    On SQLite, batch mode re-creates a table (copy, ``DROP``, rename); with foreign keys on, the
    ``DROP`` would delete or unlink every row that refers to it (``ON DELETE CASCADE`` / ``SET
    NULL``). Foreign keys are therefore off while migrations run and checked once they are done.
    """
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # the pragma only takes effect outside a transaction
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
            include_name=_include_name,
        )
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
            if broken:
                msg = f"the migrated database has {len(broken)} rows referring to missing rows ({broken[0]})"
                raise RuntimeError(msg)


run_migrations_online()
