"""The backup file format (version 2): a zip archive of encrypted members, each a stream under one backup key.

Members, in the order they are written::

    glucoshare-backup.txt   marker, clear: says what the file is (first, so the first bytes tell)
    header.json             clear: how the members are encrypted, and which key file opens them
                            (glucoshare.backup.header)
    parts/000001 ...        encrypted: one table's rows each (ordered by primary key, one JSON array
                            per line); kept raw files are rows too (sealed_files)
    manifest                encrypted: the table of contents (schemas.Manifest), which names the
                            table each part holds

Every member after the header is encrypted the same way, whatever it holds
(glucoshare.backup.members): zlib, then STREAM over AES-256-GCM (glucoshare.backup.stream) under
a key derived from the key file's master key, so the file shows neither values nor table names:
only the number and sizes of its parts. The parts' opaque names keep the table names out of the
zip directory.

Values are engine-neutral: numbers, strings, booleans and ``null`` as in JSON; timestamps as ISO 8601
with their UTC offset; binary values (ciphertext) in base64; JSON columns as their JSON text (so that
an SQL ``NULL`` stays distinct from a JSON ``null``).

Format 1 (a zip of clear ``tables/<table>.jsonl`` streams, ``files/<path>`` and a ``manifest.json``
sealed by ``manifest.hmac``) is refused with the Glucoshare version to restore it with.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Date,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    cast,
    null,
)
from sqlalchemy import Text as TextType
from sqlalchemy.types import LargeBinary

from glucoshare.db.base import UTCDateTime
from glucoshare.errors import InternalError

FORMAT = "glucoshare-backup"
VERSION = 2
MARKER_MEMBER = "glucoshare-backup.txt"
MARKER_TEXT = (
    f"{FORMAT} {VERSION}\nA Glucoshare backup, encrypted: restore it with `glucoshare restore FILE` "
    "and the master key file it was made with.\n"
)
HEADER_MEMBER = "header.json"
MANIFEST_MEMBER = "manifest"
V1_MANIFEST_MEMBER = "manifest.json"
"""Where format 1 kept its (clear) manifest: read only to name the version that restores it."""
FINGERPRINT_LABEL = b"glucoshare-backup:key-fingerprint:v1"
PART_MEMBER = re.compile(r"parts/[0-9]{6,}")
"""The names of the members that hold tables (anything else in a manifest is refused)."""
CHUNK_BYTES = 1 << 20
"""Plaintext per encrypted chunk (1 MiB): a reader or writer holds about one chunk per layer."""
MIN_CHUNK_BYTES = 1 << 10
MAX_CHUNK_BYTES = 1 << 24
"""The chunk sizes a header may give (a reader holds one chunk: a header cannot make it hold more)."""

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


def part_member(number: int) -> str:
    """The name of the ``number``-th member that holds a table or a file (from 1)."""
    return f"parts/{number:06d}"


def key_fingerprint(key: bytes) -> str:
    """A keyed hash that identifies ``key`` without revealing it: HMAC-SHA-256 of a fixed text, 128 bits."""
    return hmac.new(key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]


def _kind(column: Column[Any]) -> str:
    """How a column's values are written: ``json``, ``bytes``, ``datetime``, ``date`` or ``plain``."""
    kind = column.type
    if isinstance(kind, JSON):
        return "json"
    if isinstance(kind, LargeBinary):
        return "bytes"
    if isinstance(kind, UTCDateTime | DateTime):
        return "datetime"
    if isinstance(kind, Date):
        return "date"
    if isinstance(kind, Integer | Float | Boolean | String):
        return "plain"
    msg = f"no backup encoding for column {column.table.name}.{column.name} ({type(kind).__name__})"
    raise InternalError(msg)


def _same(value: Any) -> Any:  # noqa: ANN401 - any JSON value
    return value


def _b64(value: Any) -> Any:  # noqa: ANN401 - bytes or None
    return None if value is None else base64.b64encode(bytes(value)).decode("ascii")


def _unb64(value: Any) -> Any:  # noqa: ANN401 - str or None
    return None if value is None else base64.b64decode(value, validate=True)


def _iso(value: Any) -> Any:  # noqa: ANN401 - datetime, date or None
    return None if value is None else value.isoformat()


def _datetime(value: Any) -> Any:  # noqa: ANN401 - str or None
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:  # written by a database that stores naive UTC
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _date(value: Any) -> Any:  # noqa: ANN401 - str or None
    return None if value is None else dt.date.fromisoformat(value)


def _json(value: Any) -> Any:  # noqa: ANN401 - JSON text or None
    # SQL NULL must stay SQL NULL: a plain None would be stored as the JSON text 'null'.
    return null() if value is None else json.loads(value)


_ENCODERS: dict[str, Encoder] = {"json": _same, "bytes": _b64, "datetime": _iso, "date": _iso, "plain": _same}
_DECODERS: dict[str, Decoder] = {
    "json": _json,
    "bytes": _unb64,
    "datetime": _datetime,
    "date": _date,
    "plain": _same,
}


_COPY_DECODERS: dict[str, Decoder] = {
    # PostgreSQL's COPY reads the text forms itself: only binary values need decoding.
    "json": _same,
    "bytes": _unb64,
    "datetime": _same,
    "date": _same,
    "plain": _same,
}


def selected_columns(table: Table) -> list[ColumnElement[Any]]:
    """What a backup reads of ``table``: every column, JSON columns as their text."""
    return [
        cast(column, TextType).label(column.name) if _kind(column) == "json" else column
        for column in table.columns
    ]


def encoders(table: Table) -> list[Encoder]:
    """Per column of ``table``, the function that turns a read value into a JSON value."""
    return [_ENCODERS[_kind(column)] for column in table.columns]


def decoders(table: Table) -> list[Decoder]:
    """Per column of ``table``, the function that turns a JSON value back into a value to insert."""
    return [_DECODERS[_kind(column)] for column in table.columns]


def copy_decoders(table: Table) -> list[Decoder]:
    """Per column of ``table``, the function that turns a JSON value into a value for PostgreSQL's COPY.

    Timestamps (ISO 8601 with offset) and JSON texts go as they are written: the server parses them.
    """
    return [_COPY_DECODERS[_kind(column)] for column in table.columns]


def encode_rows(rows: Sequence[Sequence[Any]], encode: Sequence[Encoder], *, plain: bool) -> bytes:
    """Rows as JSON lines (UTF-8); ``plain`` when every column is written as read."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    if plain:
        text = "".join(dumps(list(row)) + "\n" for row in rows)
    else:
        text = "".join(dumps([f(v) for f, v in zip(encode, row, strict=True)]) + "\n" for row in rows)
    return text.encode("utf-8")


def all_plain(table: Table) -> bool:
    """Whether every column of ``table`` is written exactly as read."""
    return all(_kind(column) == "plain" for column in table.columns)
