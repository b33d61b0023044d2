"""Sealed attributes: model attributes stored encrypted, read and written as plain values.

``name = SealedText("name_sealed")`` on a model keeps the value encrypted in the ``name_sealed``
column under the data key of the row's subject, bound to table, column and row id. Values set
before the object is in a session are sealed when the session flushes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, object_session

from glucoshare.db.base import new_id
from glucoshare.errors import InternalError
from glucoshare.vault.cipher import unseal
from glucoshare.vault.service import data_key, lookup_hash, open_value, seal_value, was_destroyed

T = TypeVar("T")

_PLAIN = "_vault_plain"
_PENDING = "_vault_pending"
_FIELDS: dict[type, list[str]] = {}
"""The sealed attributes of each model class."""


class Sealed(Generic[T]):
    """Descriptor of one sealed attribute (the subclasses say how a value becomes bytes)."""

    def __init__(self, column: str, *, subject: str = "id", lookup_column: str | None = None) -> None:
        self.column = column
        self.subject = subject
        self.lookup_column = lookup_column
        self.name = column

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.table = str(owner.__dict__.get("__tablename__", owner.__name__))
        _FIELDS.setdefault(owner, []).append(name)

    def encode(self, value: Any) -> bytes:  # noqa: ANN401 - each subclass knows its type
        """The bytes sealed for ``value`` (never ``None``)."""
        raise NotImplementedError

    def decode(self, data: bytes) -> T:
        """The value sealed as ``data``."""
        raise NotImplementedError

    def place_of(self, row_id: str) -> str:
        """The associated data of this attribute's ciphertext in row ``row_id``."""
        return f"{self.table}.{self.column}:{row_id}"

    def _place(self, obj: object) -> str:
        return self.place_of(obj.id)  # type: ignore[attr-defined]

    def open_column(self, session: Session, subject_id: str, row_id: str, sealed: bytes | None) -> T:
        """The value of this column as a query of its own read it (bulk reads, without objects)."""
        if sealed is None:
            return None  # type: ignore[return-value]  # only optional attributes have no value
        return self.decode(open_value(session, subject_id, sealed, self.place_of(row_id)))

    def open_columns(
        self,
        session: Session,
        subject_ids: Sequence[str],
        row_ids: Sequence[str],
        sealed: Sequence[bytes | None],
    ) -> list[T]:
        """:meth:`open_column` for many rows at once (their data keys unwrapped beforehand or now)."""
        opened: list[T] = []
        for subject_id, row_id, value in zip(subject_ids, row_ids, sealed, strict=True):
            if value is None:
                opened.append(None)  # type: ignore[arg-type]  # only optional attributes have no value
            else:
                key = data_key(session, subject_id)
                opened.append(self.decode(unseal(key, value, f"{self.table}.{self.column}:{row_id}")))
        return opened

    @overload
    def __get__(self, obj: None, owner: type) -> Sealed[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...
    def __get__(self, obj: object | None, owner: type) -> Sealed[T] | T:
        if obj is None:
            return self
        plain: dict[str, Any] = obj.__dict__.setdefault(_PLAIN, {})
        if self.name in plain:
            value: T = plain[self.name]
            return value
        sealed: bytes | None = getattr(obj, self.column)
        if sealed is None:
            return None  # type: ignore[return-value]  # only optional attributes have no value
        session = object_session(obj)
        if session is None:
            msg = f"{self.table}.{self.name} is read outside a session; its key is not at hand"
            raise InternalError(msg)
        value = self.decode(open_value(session, getattr(obj, self.subject), sealed, self._place(obj)))
        plain[self.name] = value
        return value

    def __set__(self, obj: object, value: T) -> None:
        if getattr(obj, "id", None) is None:
            obj.id = new_id()  # type: ignore[attr-defined]
        obj.__dict__.setdefault(_PLAIN, {})[self.name] = value
        session = object_session(obj)
        if session is not None and getattr(obj, self.subject, None) is not None:
            self.store(session, obj)
        else:
            obj.__dict__.setdefault(_PENDING, set()).add(self.name)

    def store(self, session: Session, obj: object) -> None:
        """Seal the plain value into its column (and its lookup hash, if any)."""
        value = obj.__dict__[_PLAIN][self.name]
        if value is None:
            setattr(obj, self.column, None)
            if self.lookup_column:
                setattr(obj, self.lookup_column, None)
            return
        subject = getattr(obj, self.subject)
        setattr(obj, self.column, seal_value(session, subject, self.encode(value), self._place(obj)))
        if self.lookup_column:
            setattr(obj, self.lookup_column, lookup_hash(session, str(value)))


class SealedText(Sealed[str]):
    """A sealed ``str`` that every row has."""

    def encode(self, value: str) -> bytes:  # noqa: D102
        return value.encode()

    def decode(self, data: bytes) -> str:  # noqa: D102
        return data.decode()


class OptionalSealedText(Sealed[str | None]):
    """A sealed ``str`` that a row may lack."""

    def encode(self, value: str) -> bytes:  # noqa: D102
        return value.encode()

    def decode(self, data: bytes) -> str | None:  # noqa: D102
        return data.decode()


class OptionalSealedDate(Sealed[dt.date | None]):
    """A sealed calendar date (ISO 8601) that a row may lack."""

    def encode(self, value: dt.date) -> bytes:  # noqa: D102
        return value.isoformat().encode()

    def decode(self, data: bytes) -> dt.date | None:  # noqa: D102
        return dt.date.fromisoformat(data.decode())


@event.listens_for(Session, "before_flush")
def _seal_pending(session: Session, _context: object, _instances: object) -> None:
    """Seal the values set on objects before they joined the session."""
    for obj in (*session.new, *session.dirty):
        pending: set[str] | None = obj.__dict__.pop(_PENDING, None)
        for name in sorted(pending or ()):
            descriptor = getattr(type(obj), name)
            descriptor.store(session, obj)


@event.listens_for(Session, "before_commit")
def _open_loaded(session: Session) -> None:
    """Open the sealed values of every object still in the session before it commits.

    Objects outlive their session (sessions do not expire them on commit), and once it has closed
    their data keys are out of reach; what the transaction loaded stays readable afterwards.
    Skipped: objects deleted in the transaction, values not loaded (nothing to keep; loading them
    now could find the row deleted), and values of a subject whose data key was destroyed (an
    erased patient's uploads, deleted by the database's cascade).
    """
    for obj in list(session.identity_map.values()):
        fields = _FIELDS.get(type(obj), ())
        if not fields or inspect(obj).deleted:
            continue
        loaded = obj.__dict__
        for name in fields:
            descriptor: Sealed[Any] = getattr(type(obj), name)
            if name in loaded.get(_PLAIN, {}):
                continue
            if descriptor.column not in loaded or descriptor.subject not in loaded:
                continue
            if was_destroyed(session, loaded[descriptor.subject]):
                continue
            getattr(obj, name)
