"""Declarative base with a deterministic constraint naming convention, and shared column helpers."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Final

from sqlalchemy import DateTime, MetaData, Table, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every engine (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetime given where a UTC instant is required"
            raise ValueError(msg)
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: object, dialect: Dialect) -> dt.datetime | None:  # noqa: ARG002
        """Return aware UTC datetimes."""
        if value is None:
            return None
        if not isinstance(value, dt.datetime):  # pragma: no cover - drivers always return datetimes
            msg = f"unexpected timestamp value {type(value).__name__}"
            raise TypeError(msg)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


ID_LENGTH = 32
"""Length of every identifier :func:`new_id` makes."""


def new_id() -> str:
    """A new random identifier: 32 lower-case hex digits (a UUID4 without dashes)."""
    return uuid.uuid4().hex


def utcnow() -> dt.datetime:
    """The current instant, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


BULKY: Final[dict[str, object]] = {"bulky": True}
"""``info`` of a column whose values may each be megabytes (kept files, PDFs, queued uploads).

Whoever reads or writes a whole table (backup and restore) takes such a table a few rows at a
time, so that memory stays bounded by bytes, not only by rows.
"""


def is_bulky(table: Table) -> bool:
    """Whether ``table`` has a column marked :data:`BULKY`."""
    return any(column.info.get("bulky") for column in table.columns)
