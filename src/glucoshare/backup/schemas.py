"""The backup manifest, and what the backup and restore commands report.

The manifest is the table of contents of a backup: what it holds (every table with its columns,
row count and SHA-256; every data file with its size and SHA-256), where it came from (schema
revision, engine, Glucoshare version, time), which key file it needs (fingerprints, never keys)
and the state of the audit chain it holds. It says nothing about any patient.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

ProgressCallback = Callable[[str, int, int], None]
"""Told ``(phase, done, total)`` as work goes on: rows (and files) done out of the total of a phase."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableEntry(_Strict):
    """One table's stream in a backup."""

    name: str
    member: str
    """Name of the zip member holding the table's rows, one JSON array per line."""
    columns: list[str]
    """The order of the values in every line."""
    rows: int
    sha256: str
    """SHA-256 (hex) of the member's uncompressed bytes."""


class FileEntry(_Strict):
    """One file of the data directory in a backup (a sealed raw upload or a held clinic upload)."""

    path: str
    """Relative to ``$GLUCOSHARE_DATA_DIR``: ``uploads/<patient>/<sha256>`` or ``pending/<clinic>/<id>``."""
    bytes: int
    sha256: str


class KeyFingerprint(_Strict):
    """A master key that wraps data keys in the backup: its id, and a keyed hash that proves the key."""

    id: str
    fingerprint: str | None
    """HMAC-SHA-256 of a fixed text under the key (hex, 128 bits); ``None``: the key file lacked it."""


class KeyFingerprints(_Strict):
    """What a restore needs of the key file: the lookup key and every master key that wraps a data key."""

    lookup: str
    master: list[KeyFingerprint]


class AuditState(_Strict):
    """The audit chain in the backup, as ``glucoshare audit verify`` found it in the snapshot."""

    events: int
    last_id: int | None
    head: str | None
    """The hash of the last event (the head of the chain); keep it apart to prove the trail later."""
    intact: bool
    first_bad_event: int | None = None


class Manifest(_Strict):
    """The table of contents of one backup (``manifest.json``)."""

    format: Literal["glucoshare-backup"]
    version: int
    backup_id: str
    created_at: dt.datetime
    glucoshare_version: str
    revision: str
    """The Alembic revision of the schema the rows belong to."""
    source_engine: str
    tables: list[TableEntry]
    files: list[FileEntry]
    missing_files: int
    """Files the rows refer to that were not found (removed after the snapshot began, or lost)."""
    keys: KeyFingerprints
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
    files: int
    missing_files: int
    seconds: float
    backup_id: str
    revision: str
    source_engine: str
    audit_head: str | None


class RestoredOut(BaseModel):
    """What a restore stored besides the rows."""

    files: int
    """Data files written (files already in place, identical, are not counted)."""
    audit_events: int
    """Audit events restored and verified."""


class RestoreOut(BaseModel):
    """What ``glucoshare restore --json`` prints."""

    path: str
    tables: int
    counts: dict[str, int]
    files: int
    seconds: float
    backup_id: str
    revision: str
    source_engine: str
    target_engine: str
    audit_events: int
    """Events in the restored chain, verified, plus the restore's own event appended after them."""
    audit_intact: bool
