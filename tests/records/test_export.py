"""Exports: formula-injection safety and the exported fields."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.export.rows import EXPORT_FIELDS, local_time
from glucoshare.export.safety import safe_cell
from glucoshare.export.service import export_patient
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file

HEADER = (
    "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,Source Device ID,"
    "Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),"
    "Glucose Rate of Change (mg/dL/min),Transmitter Time (Long Integer),Transmitter ID\n"
)


@pytest.mark.parametrize("text", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", '=HYPERLINK("http://x")'])
def test_formula_triggers_are_neutralised(text: str) -> None:
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["hello", "120", "a=b", "", "'quoted"])
def test_plain_text_is_unchanged(text: str) -> None:
    assert safe_cell(text) == text


def test_local_time_is_wall_time() -> None:
    assert local_time(1_700_000_000_000, 60) == "2023-11-14T23:13:20"
    assert local_time(1_700_000_000_123, -300) == "2023-11-14T17:13:20.123"


def test_csv_export_neutralises_hostile_note_text(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    patient = add_patient(session, validate_patient(email="n@example.org", name="N", timezone="UTC"))
    text = HEADER + (
        "1,2024-01-01T10:00:00,EGV,,,,Android G6,120,,,,,100,8ABCDE\n"
        "2,2024-01-01T10:01:00,Health,\"=cmd|' /C calc'!A0\",,,Android G6,,,,,,\n"
    )
    import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile("x.csv", text.encode()),
        timezone=None,
        actor="t",
    )
    out = tmp_path / "out.csv"
    count = export_patient(session, patient=patient, fmt="csv", out=out)
    assert count == 2
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(EXPORT_FIELDS)
    note = next(r for r in rows if r["type"] == "note")
    assert note["payload"].startswith("{")
    assert json.loads(note["payload"])["text"].startswith("=cmd")
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), value
    reading = next(r for r in rows if r["type"] == "cbg")
    assert (reading["value"], reading["unit"], reading["local_time"]) == (
        "120.0",
        "mg/dL",
        "2024-01-01T10:00:00",
    )
    assert out.stat().st_mode & 0o777 == 0o600


def test_json_export_is_valid_and_complete(session: Session, settings: Settings, tmp_path: Path) -> None:
    patient = add_patient(
        session, validate_patient(email="j@example.org", name="J", timezone="Europe/Berlin")
    )
    text = HEADER + "".join(
        f"{i},2024-01-0{1 + i // 288}T{(i % 288) // 12:02d}:{(i % 12) * 5:02d}:00,EGV,,,,Android G6,{100 + i % 50},,,,,"
        f"{i * 300},8ABCDE\n"
        for i in range(1, 600)
    )
    import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile("x.csv", text.encode()),
        timezone=None,
        actor="t",
    )
    out = tmp_path / "out.json"
    count = export_patient(session, patient=patient, fmt="json", out=out)
    document = json.loads(out.read_text(encoding="utf-8"))
    assert count == len(document["records"]) == 599
    assert document["format"] == "glucoshare-export"
    assert document["devices"] == [{"manufacturer": "Dexcom", "model": "G6", "serial": None}]
    assert len(document["uploads"]) == 1
    times = [r["time_utc"] for r in document["records"]]
    assert times == sorted(times)
    assert dt.datetime.fromisoformat(times[0]) == dt.datetime(
        2023, 12, 31, 23, 5, tzinfo=dt.UTC
    )  # 00:05 in Berlin
