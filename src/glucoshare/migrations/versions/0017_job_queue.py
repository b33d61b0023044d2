"""The background job queue on PostgreSQL: procrastinate's tables, types, functions and triggers.

SQLite holds no queue (the serving process does the work itself), so this revision does nothing
there. The schema is procrastinate's own, as shipped by the pinned version (3.10.0). When that pin
moves, a new revision must apply procrastinate's migrations between the two versions (they ship in
``procrastinate/sql/migrations``); this one must then keep creating the 3.10.0 schema.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op
from procrastinate.schema import SchemaManager

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_jobs",
    "procrastinate_workers",
)
_TYPES = ("procrastinate_job_to_defer_v1", "procrastinate_job_event_type", "procrastinate_job_status")


def upgrade() -> None:
    """Apply this revision."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # Through the driver, on the migration's own connection and transaction: the schema's function
    # bodies hold colons and percent signs that SQLAlchemy or a parameter parser would misread.
    bind.connection.driver_connection.execute(SchemaManager.get_schema())  # type: ignore[union-attr]


def downgrade() -> None:
    """Revert this revision."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    driver = bind.connection.driver_connection
    for table in _TABLES:
        driver.execute(f"DROP TABLE IF EXISTS {table} CASCADE")  # type: ignore[union-attr]
    functions = driver.execute(  # type: ignore[union-attr]
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%'"
    ).fetchall()
    for (signature,) in functions:
        driver.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")  # type: ignore[union-attr]
    for type_name in _TYPES:
        driver.execute(f"DROP TYPE IF EXISTS {type_name} CASCADE")  # type: ignore[union-attr]
