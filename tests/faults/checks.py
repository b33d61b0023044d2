"""What the fault tests check after a fault: what a patient holds, integrity, the audit chain."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from sqlalchemy import Engine, func, select, text

from glucoshare.audit.models import AuditEvent
from glucoshare.audit.service import verify_chain
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.devices.models import Device
from glucoshare.ingest.service import read_raw, remove_upload
from glucoshare.records.models import Record, Upload
from glucoshare.records.service import list_uploads
from glucoshare.vault.models import SealedFile
from tests.faults.harness import Running

VICTIM_APPLICATION = "glucoshare-fault-victim"
"""The PostgreSQL ``application_name`` of the processes the tests kill (``PGAPPNAME``)."""

IMPORT_TABLES = ("records", "uploads", "devices", "device_identifiers", "sealed_files", "sealed_file_pieces")
"""The tables an import adds rows to (its kept raw file included) and nothing else changes behind its back.

An import also marks the patient's summary outdated (``summary_backlog``), but a server on
PostgreSQL runs background jobs that refresh summaries and drain that backlog at any moment, so
the backlog's row count is not the import's alone and would read as a partial state.
"""


@dataclasses.dataclass(frozen=True)
class Holdings:
    """What a patient holds, and how many rows the tables an import writes hold in all."""

    uploads: tuple[tuple[str, int, int, tuple[tuple[str, int], ...]], ...]
    """(id, new, duplicates, counts) per upload, oldest first."""
    records: int
    devices: int
    rows: tuple[tuple[str, int], ...]
    upload_events: int
    """Audit events of created uploads (all patients)."""


def holdings(engine: Engine, patient_id: str) -> Holdings:
    """Read what ``patient_id`` holds (uploads, records, devices) and the row counts of import tables."""
    with session_scope(engine) as session:
        uploads = list_uploads(session, patient_id)  # as ``uploads list`` shows them
        records = session.scalar(
            select(func.count())
            .select_from(Record)
            .join(Device, Device.seq == Record.device_seq)
            .where(Device.patient_id == patient_id)
        )
        devices = session.scalar(
            select(func.count()).select_from(Device).where(Device.patient_id == patient_id)
        )
        rows = tuple(
            (name, int(session.scalar(text(f'SELECT count(*) FROM "{name}"')) or 0)) for name in IMPORT_TABLES
        )
        events = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == AuditTag.UPLOAD_CREATE)
        )
    return Holdings(
        uploads=tuple((u.id, u.new, u.duplicates, tuple(sorted(u.counts.items()))) for u in uploads),
        records=int(records or 0),
        devices=int(devices or 0),
        rows=rows,
        upload_events=int(events or 0),
    )


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an uninterrupted import of the file reports."""

    new: int
    duplicates: int
    counts: tuple[tuple[str, int], ...]

    @classmethod
    def of_json(cls, document: str) -> Outcome:
        """From ``import --json`` output (one upload)."""
        (upload,) = json.loads(document)["uploads"]
        return cls.of_upload(upload)

    @classmethod
    def of_upload(cls, upload: dict[str, object]) -> Outcome:
        """From one upload in the API's shape."""
        counts = upload["counts"]
        assert isinstance(counts, dict)
        return cls(int(str(upload["new"])), int(str(upload["duplicates"])), tuple(sorted(counts.items())))


def assert_sound(engine: Engine) -> None:
    """The database passes its integrity check (SQLite) and the audit chain verifies."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalars().all() == ["ok"]
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    with session_scope(engine) as session:
        report = verify_chain(session)
    assert report.intact, f"audit chain broken at {report.first_bad_event}: {report.reason}"


def wait_for_victims(engine: Engine, timeout: float = 30) -> None:
    """Wait until the killed processes' PostgreSQL backends have ended (their transactions rolled back)."""
    if engine.dialect.name != "postgresql":
        return
    deadline = time.monotonic() + timeout
    query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
    while True:
        with engine.connect() as conn:
            if not conn.execute(query, {"name": VICTIM_APPLICATION}).scalar():
                return
        assert time.monotonic() < deadline, "the killed process's database session did not end"
        time.sleep(0.02)


def seconds_until_visible(engine: Engine, running: Running, timeout: float = 120) -> float:
    """Seconds from now until an upload appears in the database (the import's commit), polling."""
    began = time.monotonic()
    query = text("SELECT count(*) FROM uploads")
    with engine.connect() as conn:
        while not conn.execute(query).scalar():
            conn.rollback()  # a new snapshot for the next look
            assert running.poll() is None, "the import ended without storing an upload"
            assert time.monotonic() - began < timeout, "the import did not commit in time"
            time.sleep(0.02)
    return time.monotonic() - began


def complete(found: Holdings, before: Holdings, expected: Outcome) -> bool:
    """Whether ``found`` is ``before`` plus exactly one upload with the expected outcome, all of it."""
    if len(found.uploads) != len(before.uploads) + 1 or found.uploads[:-1] != before.uploads:
        return False
    _id, new, duplicates, counts = found.uploads[-1]
    return (new, duplicates, counts) == (expected.new, expected.duplicates, expected.counts) and (
        found.records == before.records + expected.new
    )


def remove_last_upload(engine: Engine, settings: Settings, found: Holdings) -> None:
    """Remove the patient's newest upload (a kill that came after the commit), as ``uploads delete`` does."""
    upload_id = found.uploads[-1][0]
    with session_scope(engine) as session:
        remove_upload(session, settings=settings, upload_id=upload_id, actor="test")


def raw_leftovers(engine: Engine, patient_id: str) -> list[str]:
    """Kept raw files of the patient that no stored upload refers to (their places)."""
    with session_scope(engine) as session:
        kept = set(session.scalars(select(Upload.sha256).where(Upload.patient_id == patient_id)))
        places = session.scalars(select(SealedFile.place).where(SealedFile.subject_id == patient_id))
        return sorted(p for p in places if p.removeprefix(f"raw:{patient_id}:") not in kept)


def raw_file_of(engine: Engine, upload_id: str) -> bytes | None:
    """The kept raw bytes of an upload, opened with the patient's data key."""
    with session_scope(engine) as session:
        upload = session.scalars(select(Upload).where(Upload.id == upload_id)).one()
        return read_raw(session, upload)


def data_dir_files(root: Path) -> list[str]:
    """Every file under ``root``, relative, sorted (to list what a fault left in the data directory)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
