"""The per-type CSV export (``glucoshare export --format csv --per-type``): a zip of one CSV per type."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.audit.models import AuditEvent
from glucoshare.config import Settings
from glucoshare.devices.models import Device
from glucoshare.export import per_type
from glucoshare.export.per_type import (
    COMMON_COLUMNS,
    README_NAME,
    TYPE_COLUMNS,
    ExportChangedError,
    csv_cell,
    export_per_type,
    fixed_columns,
    payload_cells,
    payload_columns,
)
from glucoshare.export.service import ExportTargetError, export_patient
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.models import Record
from glucoshare.records.vocabulary import MGDL_PER_MMOLL, RECORD_TYPES
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import ClarityOptions, write_clarity
from tests.ingest.helpers import profile

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\x00")
HOSTILE = "=cmd|' /C calc'!A0"
START = dt.date(2026, 3, 2)
PROVENANCE = [
    "local_time",
    "time_utc",
    "utc_offset_min",
    "subtype",
    "device_manufacturer",
    "device_model",
    "device_serial",
    "upload_id",
    "source_line",
    "record_id",
]
# A Dexcom Clarity file with one reading and a "Health" event whose text is a spreadsheet formula.
HOSTILE_CLARITY = (
    "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,Source Device ID,"
    "Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),"
    "Glucose Rate of Change (mg/dL/min),Transmitter Time (Long Integer),Transmitter ID\n"
    "1,2026-03-03T10:00:30,EGV,,,,Android G6,120,,,,,100,8ABCDE\n"
    f'2,2026-03-03T10:01:00,Health,"{HOSTILE}",,,Android G6,,,,,,\n'
)
runner = CliRunner()


@pytest.fixture(scope="module")
def carelink() -> WrittenExport:
    """Three days of a simulated Medtronic pump with sensor (basal, boluses, wizard, events, notes)."""
    timeline = simulate(
        profile(seed=5, therapy="pump", cgm="guardian4", email="pat@example.org", name="Pat Pump"),
        start=START,
        days=3,
    )
    return write_carelink(timeline)


@pytest.fixture(scope="module")
def clarity() -> WrittenExport:
    """Three days of a simulated Dexcom Clarity export in mmol/L (CGM, pens, food, activity, alerts)."""
    timeline = simulate(profile(seed=11, units="mmol/L"), start=START, days=3)
    return write_clarity(timeline, ClarityOptions(units="mmol/L"))


def _import(session: Session, settings: Settings, patient: Patient, name: str, data: bytes) -> None:
    import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile(name, data),
        timezone="Europe/Berlin",
        actor="test",
    )


@pytest.fixture
def patient(session: Session, settings: Settings, carelink: WrittenExport, clarity: WrittenExport) -> Patient:
    """A pump user who also wore a Dexcom and once typed a formula into a note."""
    person = add_patient(
        session, validate_patient(email="pat@example.org", name="Pat Pump", timezone="Europe/Berlin")
    )
    _import(session, settings, person, carelink.file_name, carelink.data)
    _import(session, settings, person, clarity.file_name, clarity.data)
    _import(session, settings, person, "hostile.csv", HOSTILE_CLARITY.encode())
    return person


def _stored(session: Session, patient: Patient) -> dict[str, int]:
    query = (
        select(Record.type, func.count())
        .join(Device, Device.seq == Record.device_seq)
        .where(Device.patient_id == patient.id)
        .group_by(Record.type)
    )
    return {str(t): int(n) for t, n in session.execute(query)}


def _read(archive: Path) -> dict[str, Any]:
    """The archive's members: CSVs as (header, rows as dicts), README.txt as text."""
    members: dict[str, Any] = {}
    with zipfile.ZipFile(archive) as zipped:
        for name in zipped.namelist():
            data = zipped.read(name)
            if name.endswith(".csv"):
                assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark, for Excel
                reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
                header, *rows = list(reader)
                members[name] = (header, [dict(zip(header, row, strict=True)) for row in rows])
            else:
                members[name] = data.decode("utf-8")
    return members


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_every_record_type_has_columns() -> None:
    assert set(TYPE_COLUMNS) == set(RECORD_TYPES)
    assert [c.name for c in COMMON_COLUMNS] == PROVENANCE
    for record_type in RECORD_TYPES:
        names = [c.name for c in fixed_columns(record_type)]
        assert len(names) == len(set(names)), record_type
        assert "value" not in names
        assert "unit" not in names


def test_archive_has_one_csv_per_type_present(session: Session, patient: Patient, tmp_path: Path) -> None:
    out = tmp_path / "export.zip"
    written = export_per_type(session, patient=patient, out=out)
    stored = _stored(session, patient)
    assert {"cbg", "smbg", "basal", "bolus", "wizard", "deviceEvent", "note"} <= set(stored)  # CareLink
    assert {"insulin", "food", "physicalActivity", "cgmSettings"} <= set(stored)  # Clarity
    members = _read(out)
    assert set(members) == {f"{t}.csv" for t in stored} | {README_NAME}
    assert dict(written.files) == {f"{t}.csv": n for t, n in stored.items()}
    assert written.records == sum(stored.values())
    for record_type, count in stored.items():
        header, rows = members[f"{record_type}.csv"]
        assert len(rows) == count, record_type
        assert header[: len(PROVENANCE)] == PROVENANCE
        fixed = [c.name for c in fixed_columns(record_type)]
        assert header[: len(fixed)] == fixed
        payload = header[len(fixed) :]
        assert payload == sorted(payload)
        times = [r["time_utc"] for r in rows]
        assert times == sorted(times)
        assert all(r["upload_id"] and int(r["source_line"]) >= 1 for r in rows)
    # The named value columns replace the generic value/unit; the payload follows.
    assert "carb_ratio" in members["wizard.csv"][0]
    assert "bg_input" in members["wizard.csv"][0]
    assert "isig" in members["cbg.csv"][0]
    assert "programmed" in members["bolus.csv"][0]
    assert {"rate_u_h", "duration_min", "temp_type"} <= set(members["basal.csv"][0])
    assert {"text", "category"} <= set(members["note.csv"][0])
    wizard = [r for r in members["wizard.csv"][1] if r["carb_ratio"]]
    assert wizard
    payloads = dict(session.execute(select(Record.id, Record.payload).where(Record.type == "wizard")).all())
    for row in wizard:
        stored_payload = payloads[int(row["record_id"])]
        assert float(row["carb_ratio"]) == stored_payload["carb_ratio"]
        assert row["bg_input"] == (
            "" if stored_payload["bg_input"] is None else str(stored_payload["bg_input"])
        )
    (alerts,) = members["cgmSettings.csv"][1]
    assert isinstance(json.loads(alerts["alerts"]), dict)
    assert ": " not in alerts["alerts"]  # compact JSON
    assert out.stat().st_mode & 0o777 == 0o600
    with zipfile.ZipFile(out) as zipped:
        assert zipped.testzip() is None
        assert all((info.external_attr >> 16) & 0o777 == 0o600 for info in zipped.infolist())


def test_glucose_columns_match_the_stored_values(session: Session, patient: Patient, tmp_path: Path) -> None:
    out = tmp_path / "export.zip"
    export_per_type(session, patient=patient, out=out)
    members = _read(out)
    query = (
        select(Record.id, Record.value)
        .join(Device, Device.seq == Record.device_seq)
        .where(Device.patient_id == patient.id, Record.type.in_(["cbg", "smbg"]))
    )
    stored = {record_id: value for record_id, value in session.execute(query)}
    units = set()
    for name in ("cbg.csv", "smbg.csv"):
        header, rows = members[name]
        assert header[len(PROVENANCE) : len(PROVENANCE) + 5] == [
            "glucose_mgdl",
            "glucose_mmoll",
            "orig_value",
            "orig_unit",
            "annotation",
        ]
        for row in rows:
            mgdl = stored.pop(int(row["record_id"]))
            assert float(row["glucose_mgdl"]) == mgdl
            assert float(row["glucose_mmoll"]) == round(mgdl / MGDL_PER_MMOLL, 1)
            assert len(row["glucose_mmoll"].split(".")[1]) == 1
            units.add(row["orig_unit"])
            if row["orig_unit"] == "mmol/L" and not row["annotation"]:
                assert float(row["orig_value"]) * MGDL_PER_MMOLL == pytest.approx(mgdl)
    assert stored == {}
    assert {"mg/dL", "mmol/L"} <= units  # the pump's mg/dL and the Dexcom's mmol/L


def test_hostile_text_is_neutralised_in_csv_and_verbatim_in_json(
    session: Session, patient: Patient, tmp_path: Path
) -> None:
    out = tmp_path / "export.zip"
    export_per_type(session, patient=patient, out=out)
    members = _read(out)
    notes = members["note.csv"][1]
    assert "'" + HOSTILE in [r["text"] for r in notes]
    assert HOSTILE not in [r["text"] for r in notes]
    for name, member in members.items():
        if name == README_NAME:
            continue
        header, rows = member
        assert not any(h.startswith(TRIGGERS) for h in header)
        for row in rows:
            for column, cell in row.items():
                assert not cell.startswith(TRIGGERS) or _is_number(cell), (name, column, cell)

    # JSON is not a spreadsheet: it keeps the text exactly as stored, and stays valid.
    document_path = tmp_path / "export.json"
    count = export_patient(session, patient=patient, fmt="json", out=document_path)
    document = json.loads(document_path.read_text(encoding="utf-8"))
    assert count == len(document["records"]) == sum(_stored(session, patient).values())
    texts = [r["payload"]["text"] for r in document["records"] if r["type"] == "note"]
    assert HOSTILE in texts
    assert "'" + HOSTILE not in texts
    # Both exports hold the same records, the same values.
    by_id = {r["id"]: r for r in document["records"]}
    csv_ids = [int(row["record_id"]) for name, m in members.items() if name != README_NAME for row in m[1]]
    assert sorted(csv_ids) == sorted(by_id)
    for row in members["cbg.csv"][1]:
        assert by_id[int(row["record_id"])]["value"] == float(row["glucose_mgdl"])


def test_readme_explains_every_column(session: Session, patient: Patient, tmp_path: Path) -> None:
    out = tmp_path / "export.zip"
    export_per_type(session, patient=patient, out=out)
    members = _read(out)
    readme = members[README_NAME]
    assert "\r\n" in readme
    assert str(MGDL_PER_MMOLL) in readme
    sections = readme.split("\r\n\r\n\r\n")[1:]
    assert sorted(s.split(":", 1)[0] for s in sections) == sorted(n for n in members if n != README_NAME)
    for section in sections:
        name = section.split(":", 1)[0]
        header, rows = members[name]
        assert f"({len(rows)} rows)" in section.splitlines()[0]
        described = [line.split()[0] for line in section.splitlines() if line.startswith("  ")]
        assert described == header, name
    assert "carbohydrate ratio in force, g of carbohydrate per U" in readme


def test_period_is_respected(session: Session, patient: Patient, tmp_path: Path) -> None:
    start = dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
    start_ms = int(start.timestamp() * 1000)
    end_ms = start_ms + 86_400_000
    out = tmp_path / "day.zip"
    written = export_per_type(session, patient=patient, out=out, start_ms=start_ms, end_ms=end_ms)
    members = _read(out)
    in_period = session.scalar(
        select(func.count())
        .select_from(Record)
        .join(Device, Device.seq == Record.device_seq)
        .where(Device.patient_id == patient.id, Record.time_ms >= start_ms, Record.time_ms < end_ms)
    )
    assert 0 < written.records == in_period < sum(_stored(session, patient).values())
    for name, member in members.items():
        if name != README_NAME:
            assert all(r["time_utc"].startswith("2026-03-03T") for r in member[1])
    assert "2026-03-03T00:00:00Z" in members[README_NAME]


def test_no_records_gives_an_archive_with_the_readme_only(session: Session, tmp_path: Path) -> None:
    nobody = add_patient(session, validate_patient(email="e@example.org", name="E", timezone="UTC"))
    out = tmp_path / "empty.zip"
    assert export_per_type(session, patient=nobody, out=out).records == 0
    members = _read(out)
    assert list(members) == [README_NAME]
    assert "no records" in members[README_NAME]


def test_a_failing_write_leaves_nothing(
    session: Session, patient: Patient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = tmp_path / "exports"
    folder = exports / "folder.zip"
    folder.mkdir(parents=True)
    with pytest.raises(ExportTargetError, match="is a directory"):
        export_per_type(session, patient=patient, out=folder)
    assert list(folder.iterdir()) == []
    assert [p.name for p in exports.iterdir()] == ["folder.zip"]

    # A failure in the middle of the archive: neither the archive nor a temporary file stays.
    calls = 0
    real = per_type.csv_cell

    def failing(value: object) -> str | int | float:
        nonlocal calls
        calls += 1
        if calls > 5000:
            msg = "disk on fire"
            raise OSError(msg)
        return real(value)

    monkeypatch.setattr(per_type, "csv_cell", failing)
    out = exports / "export.zip"
    with pytest.raises(ExportTargetError, match="cannot write there"):
        export_per_type(session, patient=patient, out=out)
    assert [p.name for p in exports.iterdir()] == ["folder.zip"]


def test_records_changed_between_the_passes_are_refused(
    session: Session, patient: Patient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = per_type._survey

    def forgetful(*args: Any) -> tuple[dict[str, set[str]], dict[str, int], int]:
        keys, counts, last_id = real(*args)
        keys["wizard"].discard("carb_ratio")  # as if a wizard record had gained the key since
        return keys, counts, last_id

    monkeypatch.setattr(per_type, "_survey", forgetful)
    exports = tmp_path / "exports"
    with pytest.raises(ExportChangedError):
        export_per_type(session, patient=patient, out=exports / "export.zip")
    assert list(exports.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (-2, -2),
        (-1.5, -1.5),
        ("-1.5", "'-1.5"),
        (HOSTILE, "'" + HOSTILE),
        ("plain", "plain"),
        ({"b": [1, "=x"], "a": None}, '{"a":null,"b":[1,"=x"]}'),
        (["@x"], '["@x"]'),
    ],
)
def test_csv_cell(value: object, cell: object) -> None:
    assert csv_cell(value) == cell


def test_payload_key_named_like_a_fixed_column_gets_a_prefix() -> None:
    reserved = [c.name for c in fixed_columns("deviceEvent")]
    headers = payload_columns(["subtype", "payload_subtype", "event", "", "=1+1"], reserved)
    assert headers == {
        "": "payload_",
        "=1+1": "'=1+1",
        "event": "event",
        "payload_subtype": "payload_subtype",
        "subtype": "payload_payload_subtype",
    }


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
_reserved = [c.name for c in fixed_columns("cbg")]


@given(
    payload=st.dictionaries(st.text(max_size=8) | st.sampled_from(_reserved), _json_values, max_size=8),
)
def test_flattening_gives_one_safe_column_per_key(payload: dict[str, Any]) -> None:
    headers = payload_columns(payload, _reserved)
    assert list(headers) == sorted(payload)
    names = list(headers.values())
    assert len(set(names)) == len(names)
    assert not set(names) & set(_reserved)
    assert all(name and not name.startswith(TRIGGERS) for name in names)
    cells = payload_cells(payload, headers)
    assert len(cells) == len(payload)
    for key, cell in zip(headers, cells, strict=True):
        value = payload[key]
        if isinstance(cell, str):
            assert not cell.startswith(TRIGGERS), cell
        if isinstance(value, bool) or value is None:
            assert cell == {True: "true", False: "false", None: ""}[value]
        elif isinstance(value, int | float):
            assert cell == value
        elif isinstance(value, str):
            assert cell in (value, "'" + value)
        else:
            assert json.loads(str(cell)) == value
    # Through the CSV writer and back: one cell per column, whatever the text holds.
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows([names, cells])
    back = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    assert back[0] == names
    assert len(back[1]) == len(names)


# --- the command line ---------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str, str]:
    from glucoshare.cli import app  # noqa: PLC0415 - the command line is only loaded by its tests

    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_per_type(cli_env: Settings, carelink: WrittenExport, tmp_path: Path) -> None:
    source = tmp_path / "carelink.csv"
    source.write_bytes(carelink.data)
    email = "pat@example.org"
    assert _cli("patients", "add", "--email", email, "--name", "Pat", "--timezone", "Europe/Berlin")[0] == 0
    code, _, err = _cli("import", str(source), "--patient", email)
    assert code == 0, err

    out = tmp_path / "out" / "pat.zip"
    code, stdout, err = _cli(
        "export", "--patient", email, "--format", "csv", "--per-type", "--out", str(out), "--json"
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert report["format"] == "csv"
    assert report["per_type"] is True
    members = _read(out)
    assert report["files"] == {name: len(m[1]) for name, m in members.items() if name != README_NAME}
    assert report["records"] == sum(report["files"].values())
    assert out.stat().st_mode & 0o777 == 0o600

    code, stdout, err = _cli(
        "export", "--patient", email, "--format", "csv", "--per-type", "--out", str(out),
        "--from", "2026-03-03", "--to", "2026-03-03",
    )  # fmt: skip
    assert code == 0, err
    assert f"CSV files to {out}" in stdout
    day = _read(out)
    assert all(
        r["local_time"].startswith("2026-03-03")
        for name, m in day.items()
        if name != README_NAME
        for r in m[1]
    )

    for fmt in ("json", "fhir"):
        code, stdout, err = _cli(
            "export", "--patient", email, "--format", fmt, "--per-type", "--out", str(tmp_path / "x.zip")
        )
        assert code == 2
        assert "--per-type applies to --format csv only" in err
        assert stdout == ""
        assert not (tmp_path / "x.zip").exists()

    code, _, err = _cli("export", "--patient", email, "--format", "csv", "--per-type", "--out", str(tmp_path))
    assert code == 2
    assert "is a directory" in err

    from glucoshare.cli import runtime  # noqa: PLC0415

    with runtime.unit_of_work() as session:
        details = session.scalars(
            select(AuditEvent.details)
            .where(AuditEvent.action == "records:data:export")
            .order_by(AuditEvent.id)
        ).all()
    assert details == [
        {"format": "csv", "per_type": True, "records": report["records"], "from": None, "to": None},
        {
            "format": "csv",
            "per_type": True,
            "records": sum(len(m[1]) for n, m in day.items() if n != README_NAME),
            "from": "2026-03-03",
            "to": "2026-03-03",
        },
    ]
