"""The backup file format: a zip archive of JSON-lines table streams, data files and a sealed manifest.

Members, in the order they are written::

    glucoshare-backup.txt      marker: says what the file is (first, so the first bytes tell)
    tables/<table>.jsonl       one table's rows, ordered by primary key, one JSON array per line
    files/<path>               a data-directory file, byte for byte (already sealed by the vault)
    manifest.json              the table of contents (schemas.Manifest)
    manifest.hmac              HMAC-SHA-256 (hex) of manifest.json under the key file's lookup key

Values are engine-neutral: numbers, strings, booleans and ``null`` as in JSON; timestamps as ISO 8601
with their UTC offset; binary values (ciphertext) in base64; JSON columns as their JSON text (so that
an SQL ``NULL`` stays distinct from a JSON ``null``).
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
from glucoshare.vault.keyfile import KeyRing

FORMAT = "glucoshare-backup"
VERSION = 1
MARKER_MEMBER = "glucoshare-backup.txt"
MARKER_TEXT = f"{FORMAT} {VERSION}\nA Glucoshare backup: restore it with `glucoshare restore FILE`.\n"
MANIFEST_MEMBER = "manifest.json"
SEAL_MEMBER = "manifest.hmac"
SEAL_PURPOSE = "backup-manifest"
FINGERPRINT_LABEL = b"glucoshare-backup:key-fingerprint:v1"

DATA_FILE = re.compile(r"(uploads|pending)/[A-Za-z0-9_-]{1,128}/[A-Za-z0-9_-]{1,128}")
"""The data-directory files a backup may hold (anything else in a manifest is refused)."""

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


def table_member(table: str) -> str:
    """The zip member of a table's stream."""
    return f"tables/{table}.jsonl"


def file_member(path: str) -> str:
    """The zip member of a data-directory file."""
    return f"files/{path}"


def key_fingerprint(key: bytes) -> str:
    """A keyed hash that identifies ``key`` without revealing it: HMAC-SHA-256 of a fixed text, 128 bits."""
    return hmac.new(key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]


def manifest_seal(ring: KeyRing, manifest_text: str) -> str:
    """The manifest's seal: HMAC-SHA-256 under the key file's lookup key (hex).

    Whoever changes a table and its entry in the manifest cannot make a matching seal without the
    key file; a restore checks it before anything else is read.
    """
    return ring.mac(SEAL_PURPOSE, manifest_text)


def seal_matches(ring: KeyRing, manifest_text: str, seal: str) -> bool:
    """Whether ``seal`` is the seal of ``manifest_text`` under ``ring`` (constant-time comparison)."""
    return hmac.compare_digest(manifest_seal(ring, manifest_text), seal.strip())


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
