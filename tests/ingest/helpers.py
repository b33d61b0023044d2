"""Helpers shared by the importer tests."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.config import Settings
from glucoshare.ingest.base import ParseContext, ParsedRecord, ParseResult, SourceText, each_record
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.registry import detect_format
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.schemas import UploadOut
from glucoshare.simulator import PatientProfile
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

Key = tuple[str, str, int, float | None, str | None]


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
