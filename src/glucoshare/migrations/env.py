"""Alembic environment: runs migrations on the engine handed over by :mod:`glucoshare.db.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from glucoshare.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Run the migrations inside one transaction (batch mode on SQLite for ALTERs)."""
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
