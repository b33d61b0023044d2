"""Helpers shared by the importer tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TypeVar

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.errors import InputError
from glucoshare.ingest.base import ParseContext, ParsedRecord, ParseResult, SourceText, each_record
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.registry import detect_format
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file, import_files
from glucoshare.records.schemas import UploadOut
from glucoshare.simulator import PatientProfile
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport
from tests.conftest import table_snapshot

Key = tuple[str, str, int, float | None, str | None]
RefusalT = TypeVar("RefusalT", bound=InputError)


def profile(**overrides: object) -> PatientProfile:
    fields: dict[str, object] = {
        "name": "Test Person",
        "email": "test.person@example.org",
        "birthdate": dt.date(1990, 5, 17),
        "timezone": "Europe/Berlin",
        "therapy": "mdi",
        "cgm": "dexcom_g6",
        "units": "mg/dL",
        "control": 0.4,
        "seed": 7,
    }
    fields.update(overrides)
    return PatientProfile(**fields)  # type: ignore[arg-type]


def parse_export(export: WrittenExport, timezone: str) -> tuple[str, list[ParsedRecord], ParseResult]:
    decoded = decode_text(export.data, export.file_name)
    source = SourceText(export.file_name, decoded.text, decoded.encoding)
    importer = detect_format(source)
    result = importer.parse(source, ParseContext(timezone))
    records = list(each_record(result.records))
    return importer.format, records, result


def parsed_keys(records: list[ParsedRecord]) -> list[Key]:
    return sorted(
        (r.type, r.subtype, r.time_ms, None if r.value is None else round(r.value, 6), r.annotation)
        for r in records
    )


def expected_keys(expected: list[ExpectedRecord]) -> list[Key]:
    return sorted(
        (e.type, e.subtype, e.utc_ms, None if e.value is None else round(e.value, 6), e.annotation)
        for e in expected
    )


def store_export(
    session: Session, settings: Settings, patient: Patient, export: WrittenExport, timezone: str | None = None
) -> UploadOut:
    """Import a simulated vendor export for ``patient`` through the import service."""
    return import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile(export.file_name, export.data),
        timezone=timezone,
        actor="test",
    )


def committed_upload(
    engine: Engine,
    settings: Settings,
    upload: WrittenExport | IncomingFile,
    *,
    email: str = "p@example.org",
    name: str = "P",
    timezone: str = "Europe/Berlin",
) -> Patient:
    """Commit a new patient and one upload of ``upload`` (through ``import_file``); return the patient.

    This is the stored state that a refused import must leave as it is (see :func:`refused_unchanged`).
    The file is read in the patient's ``timezone``. Pass an :class:`IncomingFile` to store it under
    another name than the export's own.
    """
    incoming = upload if isinstance(upload, IncomingFile) else IncomingFile(upload.file_name, upload.data)
    with session_scope(engine) as session:
        patient = add_patient(session, validate_patient(email=email, name=name, timezone=timezone))
        import_file(
            session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
        )
    return patient


def refused_unchanged(
    engine: Engine,
    settings: Settings,
    patient_id: str,
    files: IncomingFile | Sequence[IncomingFile],
    error: type[RefusalT],
    *,
    match: str | None = None,
) -> RefusalT:
    """Import ``files`` for the patient in a transaction of their own; assert that ``error`` refuses
    them and that no table row (kept raw files included) and no file of the data folder has changed.

    One :class:`IncomingFile` goes through ``import_file``, a sequence of them through
    ``import_files`` (one batch). ``match`` is a regular expression the error text must contain,
    as in :func:`pytest.raises`. Returns the error, for the caller to check its message.
    """
    before = table_snapshot(engine)
    files_before = sorted(settings.data_dir.rglob("*"))
    with pytest.raises(error, match=match) as info, session_scope(engine) as session:
        patient = session.get(Patient, patient_id)
        assert patient is not None
        if isinstance(files, IncomingFile):
            import_file(
                session, settings=settings, patient=patient, incoming=files, timezone=None, actor="test"
            )
        else:
            import_files(
                session, settings=settings, patient=patient, files=files, timezone=None, actor="test"
            )
    assert table_snapshot(engine) == before, "a refused import changed the database"
    assert sorted(settings.data_dir.rglob("*")) == files_before, "a refused import changed the data folder"
    return info.value
