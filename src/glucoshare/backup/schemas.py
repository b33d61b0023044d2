"""The backup manifest, and what the backup and restore commands report.

The manifest is the table of contents of a backup, encrypted like the rest: what it holds (every
table with its columns, row count, SHA-256 and member; every data file with its size, SHA-256 and
member), where it came from (schema revision, engine, Glucoshare version, time) and the state of
the audit chain it holds. The header is the one part in clear: how the members are encrypted and
which key file opens them (fingerprints, never keys). Neither says anything about any patient.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from glucoshare.backup.format import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES

ProgressCallback = Callable[[str, int, int], None]
"""Told ``(phase, done, total)`` as work goes on: rows done out of the total of a phase."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableEntry(_Strict):
    """One table's stream in a backup."""

    name: str
    member: str
    """Name of the (encrypted) zip member holding the table's rows, one JSON array per line."""
    columns: list[str]
    """The order of the values in every line."""
    rows: int
    sha256: str
    """SHA-256 (hex) of the rows as JSON lines (the member's payload, before compression and encryption)."""


class KeyFingerprint(_Strict):
    """A master key that wraps data keys in the backup: its id, and a keyed hash that proves the key."""

    id: str
    fingerprint: str | None
    """HMAC-SHA-256 of a fixed text under the key (hex, 128 bits); ``None``: the key file lacked it."""


class KeyFingerprints(_Strict):
    """What a restore needs of the key file: the lookup key and every master key that wraps a data key."""

    lookup: str
    master: list[KeyFingerprint]


class Header(_Strict):
    """The clear header of a backup (``header.json``; :mod:`glucoshare.backup.header`)."""

    format: Literal["glucoshare-backup"]
    version: int
    cipher: Literal["AES-256-GCM STREAM"]
    kdf: Literal["HKDF-SHA256"]
    purpose: str
    """The HKDF purpose label (``glucoshare-backup:v2``)."""
    salt: str
    """Base64 of 32 random bytes, new for every backup: the HKDF salt."""
    chunk_bytes: int = Field(ge=MIN_CHUNK_BYTES, le=MAX_CHUNK_BYTES)
    """Plaintext bytes per encrypted chunk."""
    master_key: KeyFingerprint
    """The master key the backup key derives from (the key file's primary when it was made)."""
    keys: KeyFingerprints
    """What else a restore needs of the key file: the lookup key and the keys wrapping data keys."""


class AuditState(_Strict):
    """The audit chain in the backup, as ``glucoshare audit verify`` found it in the snapshot."""

    events: int
    last_id: int | None
    head: str | None
    """The hash of the last event (the head of the chain); keep it apart to prove the trail later."""
    intact: bool
    first_bad_event: int | None = None


class Manifest(_Strict):
    """The table of contents of one backup (the encrypted member ``manifest``)."""

    format: Literal["glucoshare-backup"]
    version: int
    backup_id: str
    created_at: dt.datetime
    glucoshare_version: str
    revision: str
    """The Alembic revision of the schema the rows belong to."""
    source_engine: str
    tables: list[TableEntry]
    master_key_id: str
    """The master key the backup is encrypted under (as in the header)."""
    audit: AuditState

    @property
    def counts(self) -> dict[str, int]:
        """Rows per table, in the backup's order."""
        return {table.name: table.rows for table in self.tables}


class BackupOut(BaseModel):
    """What ``glucoshare backup --json`` prints."""

    path: str
    bytes: int
    tables: int
    counts: dict[str, int]
    seconds: float
    backup_id: str
    revision: str
    source_engine: str
    audit_head: str | None
    master_key_id: str
    """The master key the backup is encrypted under: the key file to keep (apart) for it."""


class RestoredOut(BaseModel):
    """What a restore verified besides the rows."""

    audit_events: int
    """Audit events restored and verified."""


class RestoreOut(BaseModel):
    """What ``glucoshare restore --json`` prints."""

    path: str
    tables: int
    counts: dict[str, int]
    seconds: float
    backup_id: str
    revision: str
    source_engine: str
    target_engine: str
    audit_events: int
    """Events in the restored chain, verified, plus the restore's own event appended after them."""
    audit_intact: bool
