"""The import service on both databases: all or nothing, deduplication, provenance, bad input."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.accounts.users import add_user, validate_user
from glucoshare.audit.models import AuditEvent
from glucoshare.audit.service import verify_chain
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.devices.errors import DeviceOwnedByAnotherPatientError
from glucoshare.errors import InputError
from glucoshare.ingest.errors import (
    BinaryFileError,
    EmptyFileError,
    EncodingError,
    FileTooLargeError,
    InvalidTimezoneError,
    MalformedFileError,
    NoRecordsError,
    UnknownFormatError,
)
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import erase_patient, import_file, import_files, read_raw, remove_upload
from glucoshare.records.models import Record, Upload
from glucoshare.records.service import delete_upload
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.glooko import GlookoOptions, write_glooko
from glucoshare.summaries.models import DailySummary, SummaryBacklog
from glucoshare.summaries.service import refresh_outdated
from tests.conftest import table_snapshot
from tests.ingest.helpers import committed_upload, profile, refused_unchanged
from tests.kept import kept_places, raw_place, sealed_bytes

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return simulate(profile(seed=21, control=0.3), start=dt.date(2025, 5, 1), days=15)


def _clarity(timeline: Timeline) -> IncomingFile:
    export = write_clarity(timeline)
    return IncomingFile(export.file_name, export.data)


def _patient(session: Session, email: str = "p@example.org") -> Patient:
    return add_patient(session, validate_patient(email=email, name="P", timezone="Europe/Berlin"))


def _import(session: Session, settings: Settings, patient: Patient, incoming: IncomingFile):
    return import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="test"
    )


@pytest.fixture
def stored(engine: Engine, settings: Settings, timeline: Timeline) -> Patient:
    """A committed patient with one committed upload: the state a refused import must not change."""
    return committed_upload(
        engine, settings, _clarity(timeline.window(timeline.start_ms, timeline.start_ms + 5 * DAY_MS))
    )


def test_import_then_reimport_adds_nothing(session: Session, settings: Settings, timeline: Timeline) -> None:
    patient = _patient(session)
    incoming = _clarity(timeline)
    first = _import(session, settings, patient, incoming)
    total = sum(first.counts.values())
    assert first.new == total > 4000
    assert first.duplicates == 0
    assert first.format == "dexcom_clarity"
    assert first.device is not None
    assert (first.device.manufacturer, first.device.model) == ("Dexcom", "G6")
    again = _import(session, settings, patient, incoming)
    assert (again.new, again.duplicates) == (0, total)
    assert session.scalar(select(func.count()).select_from(Record)) == total


def test_overlapping_exports_add_only_what_is_new(
    session: Session, settings: Settings, timeline: Timeline
) -> None:
    patient = _patient(session)
    start = timeline.start_ms
    early = timeline.window(start, start + 10 * DAY_MS)
    late = timeline.window(start + 5 * DAY_MS, timeline.end_ms)
    full = write_clarity(timeline)
    first = _import(session, settings, patient, _clarity(early))
    second = _import(session, settings, patient, _clarity(late))
    assert second.duplicates > 0
    stored = session.scalar(select(func.count()).select_from(Record).where(Record.type != "cgmSettings"))
    expected = len([e for e in full.expected if e.type != "cgmSettings"])
    assert stored == expected
    assert first.new + second.new == stored + 2  # each export also holds one settings snapshot


def test_records_keep_provenance(session: Session, settings: Settings, timeline: Timeline) -> None:
    patient = _patient(session)
    incoming = _clarity(timeline.window(timeline.start_ms, timeline.start_ms + DAY_MS))
    result = _import(session, settings, patient, incoming)
    sealed = sealed_bytes(session, raw_place(patient.id, result.sha256))
    assert sealed is not None
    assert incoming.data[:200] not in sealed  # sealed with the patient's data key
    upload = session.scalars(select(Upload).where(Upload.id == result.id)).one()
    kept = read_raw(session, upload)
    assert kept == incoming.data
    lines = kept.decode("utf-8-sig").splitlines()
    record = session.scalars(select(Record).where(Record.type == "cbg").order_by(Record.time_ms)).first()
    assert record is not None
    assert session.scalar(select(Upload.id).where(Upload.seq == record.upload_seq)) == result.id
    row = lines[record.source_line - 1].split(",")
    wall = dt.datetime.fromtimestamp((record.time_ms / 1000) + record.utc_offset_min * 60, tz=dt.UTC)
    assert row[1] == wall.strftime("%Y-%m-%dT%H:%M:%S")
    assert float(row[7]) == record.orig_value


def test_delete_removes_exactly_that_upload(session: Session, settings: Settings, timeline: Timeline) -> None:
    patient = _patient(session)
    a = _import(
        session,
        settings,
        patient,
        _clarity(timeline.window(timeline.start_ms, timeline.start_ms + 3 * DAY_MS)),
    )
    b = _import(
        session, settings, patient, _clarity(timeline.window(timeline.start_ms + 5 * DAY_MS, timeline.end_ms))
    )
    _, removed = delete_upload(session, a.id)
    assert removed == a.new
    remaining = session.scalars(select(Upload.id).where(Upload.seq.in_(select(Record.upload_seq)))).all()
    assert remaining == [b.id]
    assert session.scalar(select(func.count()).select_from(Record)) == b.new
    assert session.scalar(select(Upload).where(Upload.id == a.id)) is None


def test_removing_an_upload_keeps_what_other_uploads_hold(
    engine: Engine, settings: Settings, timeline: Timeline
) -> None:
    start = timeline.start_ms
    with session_scope(engine) as session:
        patient = _patient(session)
        full = _import(session, settings, patient, _clarity(timeline))
        part = _import(
            session, settings, patient, _clarity(timeline.window(start + 2 * DAY_MS, start + 4 * DAY_MS))
        )
        assert part.new == 1  # only its own settings snapshot is new
    with session_scope(engine) as session:
        removal = remove_upload(session, settings=settings, upload_id=full.id, actor="test")
    assert removal.records_deleted == full.new
    assert removal.records_restored == part.duplicates
    with session_scope(engine) as session:
        remaining = session.scalars(select(Upload.id).where(Upload.seq.in_(select(Record.upload_seq)))).all()
        assert remaining == [part.id]
        assert session.scalar(select(func.count()).select_from(Record)) == sum(part.counts.values())
        assert verify_chain(session).intact
    assert kept_places(engine, patient.id) == {raw_place(patient.id, part.sha256)}


def test_audit_records_the_import(session: Session, settings: Settings, timeline: Timeline) -> None:
    patient = _patient(session)
    _import(
        session, settings, patient, _clarity(timeline.window(timeline.start_ms, timeline.start_ms + DAY_MS))
    )
    report = verify_chain(session)
    assert report.intact
    assert report.events == 1


def _lines(incoming: IncomingFile) -> list[bytes]:
    return incoming.data.splitlines(keepends=True)


def _bad_inputs(timeline: Timeline) -> dict[str, tuple[bytes, type[InputError], str]]:
    good = _clarity(timeline.window(timeline.start_ms + 6 * DAY_MS, timeline.start_ms + 7 * DAY_MS))
    lines = _lines(good)
    header = lines[0]
    egv = next(line for line in lines if b",EGV," in line)
    future = egv.replace(egv.split(b",")[1], b"2099-01-01T10:00:00")
    not_numeric = [
        line.replace(b",EGV,,,,Android G6,", b",EGV,,,,Android G6,x") if b",EGV," in line else line
        for line in lines
    ]
    return {
        "empty": (b"", EmptyFileError, "the file is empty"),
        "truncated": (b"".join(lines)[:-9], MalformedFileError, "truncated"),
        "binary": (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,
            BinaryFileError,
            "binary file",
        ),
        "wrong encoding": (
            header + b"1,2025-05-07T10:00:00,EGV,,,,\x81\x8d,120,,,,,1,8A\n",
            EncodingError,
            "line 2: invalid UTF-8 text; the file is damaged",
        ),
        "unknown format": (
            b"date;value\n2025-01-01;5\n",
            UnknownFormatError,
            "unrecognised format; Glucoshare reads:",
        ),
        "only a header": (header, NoRecordsError, "holds no records"),
        "all in the future": (header + future * 3, MalformedFileError, "date is in the future"),
        "non-numeric values": (b"".join(not_numeric), MalformedFileError, "glucose value is not a number"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "truncated",
        "binary",
        "wrong encoding",
        "unknown format",
        "only a header",
        "all in the future",
        "non-numeric values",
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    case: str, engine: Engine, settings: Settings, stored: Patient, timeline: Timeline
) -> None:
    data, error, message = _bad_inputs(timeline)[case]
    refused = refused_unchanged(engine, settings, stored.id, IncomingFile("bad.csv", data), error)
    assert refused.message.startswith("bad.csv")
    assert message in refused.message
    assert refused.exit_code == 2


def test_oversized_file_is_refused(
    engine: Engine, settings: Settings, stored: Patient, timeline: Timeline
) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 1000})
    limit = r"more than the limit of 0 MB \(GLUCOSHARE_MAX_UPLOAD_BYTES\)"
    refused_unchanged(engine, small, stored.id, _clarity(timeline), FileTooLargeError, match=limit)


@pytest.mark.parametrize("where", ["serial", "transmitter"])
def test_a_device_serial_longer_than_its_column_refuses_the_file(
    engine: Engine, settings: Settings, stored: Patient, timeline: Timeline, where: str
) -> None:
    # Found by the fuzzer (tests/fuzz): a quote left open in a Tandem serial cell swallowed the rows
    # after it into the serial; SQLite stored it, PostgreSQL raised an unhandled DataError
    # (varchar(100)). A Clarity transmitter ID is a device identifier of the same length.
    if where == "serial":
        data = (
            "Device Type,Serial Number,Description,Event Date Time,Readings (mg/dL)\n"
            f"Tandem Mobi\u2122 System,{'7' * 101},EGV,2025-05-02T06:04:01,180\n"
        ).encode()
    else:
        lines = _lines(_clarity(timeline.window(timeline.start_ms, timeline.start_ms + DAY_MS)))
        at = next(i for i, line in enumerate(lines) if b",EGV," in line)
        cells = lines[at].rstrip(b"\r\n").split(b",")
        cells[13] = b"8" * 101  # Transmitter ID
        lines[at] = b",".join(cells) + b"\n"
        data = b"".join(lines)
    refused = refused_unchanged(
        engine, settings, stored.id, IncomingFile("long.csv", data), MalformedFileError
    )
    assert refused.message == (
        "long.csv: a device's name, serial number or identifier is longer than 100 characters "
        "(a damaged file?)"
    )


def test_a_later_bad_file_rolls_back_the_whole_command(
    engine: Engine, settings: Settings, stored: Patient, timeline: Timeline
) -> None:
    good = _clarity(timeline.window(timeline.start_ms + 8 * DAY_MS, timeline.end_ms))
    refused_unchanged(engine, settings, stored.id, [good, IncomingFile("empty.csv", b"")], EmptyFileError)


def test_another_patients_device_is_refused(
    engine: Engine, settings: Settings, stored: Patient, timeline: Timeline
) -> None:
    before = table_snapshot(engine)
    with (
        pytest.raises(
            DeviceOwnedByAnotherPatientError, match=r"^Clarity_Export_\S+\.csv: .*belongs to another patient"
        ),
        session_scope(engine) as session,
    ):
        other = _patient(session, "other@example.org")
        _import(
            session, settings, other, _clarity(timeline.window(timeline.start_ms, timeline.start_ms + DAY_MS))
        )
    assert table_snapshot(engine) == before


def test_single_bad_rows_are_reported_and_the_rest_is_stored(
    session: Session, settings: Settings, timeline: Timeline
) -> None:
    patient = _patient(session)
    good = _clarity(timeline.window(timeline.start_ms, timeline.start_ms + DAY_MS))
    lines = _lines(good)
    egv_lines = [i for i, line in enumerate(lines) if b",EGV," in line]
    future_at, bad_at = egv_lines[3], egv_lines[10]
    lines[future_at] = lines[future_at].replace(lines[future_at].split(b",")[1], b"2099-01-01T10:00:00")
    lines[bad_at] = lines[bad_at].replace(b",EGV,", b",EGV-ish,")
    result = _import(session, settings, patient, IncomingFile("some-bad.csv", b"".join(lines)))
    assert [(r.line, r.reason) for r in result.rejected] == [
        (future_at + 1, "date is in the future"),
        (bad_at + 1, "unknown event type"),
    ]
    assert result.rejected_count == 2
    assert result.new == sum(result.counts.values())


def test_a_glucose_no_device_reports_is_rejected_like_an_implausible_date(
    session: Session, settings: Settings, timeline: Timeline
) -> None:
    # Found by the fuzzer (tests/fuzz): several importers (Clarity, LibreView, CareLink, Glooko,
    # Tandem, Tidepool) stored any positive glucose, 1e300 mg/dL included, and Clarity a calibration
    # of 0. The service rejects such rows for every importer, on both paths (blocks and records).
    patient = _patient(session)
    lines = _lines(_clarity(timeline.window(timeline.start_ms, timeline.start_ms + 2 * DAY_MS)))
    egv = [i for i, line in enumerate(lines) if b",EGV," in line]
    calibrations = [i for i, line in enumerate(lines) if b",Calibration," in line]
    damaged = {egv[3]: b"99999", egv[10]: b"1e300", calibrations[0]: b"0", calibrations[1]: b"6000"}
    for at, value in damaged.items():
        cells = lines[at].split(b",")
        cells[7] = value
        lines[at] = b",".join(cells)
    result = _import(session, settings, patient, IncomingFile("implausible.csv", b"".join(lines)))
    assert sorted((r.line, r.reason) for r in result.rejected) == sorted(
        (at + 1, "glucose out of range (0 to 5000 mg/dL)") for at in damaged
    )
    stored = session.scalars(select(Record.value).where(Record.type.in_(["cbg", "smbg"]))).all()
    assert stored
    assert all(0 < value <= 400 for value in stored)


def test_invalid_timezone(session: Session, settings: Settings, timeline: Timeline) -> None:
    patient = _patient(session)
    with pytest.raises(InvalidTimezoneError, match="unknown time zone 'Mars/Olympus'"):
        import_file(
            session,
            settings=settings,
            patient=patient,
            incoming=_clarity(timeline),
            timezone="Mars/Olympus",
            actor="test",
        )


def test_timezone_option_moves_instants(session: Session, settings: Settings, timeline: Timeline) -> None:
    patient = _patient(session)
    incoming = _clarity(timeline.window(timeline.start_ms, timeline.start_ms + DAY_MS))
    berlin = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone=None, actor="t"
    )
    session.rollback()
    patient = _patient(session)
    tokyo = import_file(
        session, settings=settings, patient=patient, incoming=incoming, timezone="Asia/Tokyo", actor="t"
    )
    assert berlin.first is not None
    assert tokyo.first is not None
    shift = dt.datetime.fromisoformat(berlin.first) - dt.datetime.fromisoformat(tokyo.first)
    assert shift == dt.timedelta(hours=7)  # Tokyo is 7 h ahead of Berlin in May
    assert tokyo.timezone == "Asia/Tokyo"


def test_the_raw_file_is_kept_in_the_database_not_in_the_data_folder(
    settings: Settings, session: Session, timeline: Timeline
) -> None:
    """Application servers hold no state: an import writes nothing beside the database."""
    files_before = sorted(settings.data_dir.rglob("*"))
    patient = _patient(session)
    result = _import(
        session, settings, patient, _clarity(timeline.window(timeline.start_ms, timeline.start_ms + DAY_MS))
    )
    assert kept_places(session, patient.id) == {raw_place(patient.id, result.sha256)}
    assert sorted(settings.data_dir.rglob("*")) == files_before


def test_erasing_a_patient_removes_everything_but_the_audit_trail(
    engine: Engine, settings: Settings, timeline: Timeline
) -> None:
    with session_scope(engine) as session:
        patient = _patient(session)
        other = _patient(session, "other@example.org")
        user = add_user(
            session,
            validate_user(email=patient.email, name="P", role="patient"),
            "a long personal passphrase",
        )
        patient.user_id = user.id
        first = _import(session, settings, patient, _clarity(timeline))
        second = _import(
            session, settings, patient, _clarity(simulate(profile(seed=3), start=dt.date(2025, 1, 1), days=2))
        )
        kept = _import(
            session, settings, other, _clarity(simulate(profile(seed=4), start=dt.date(2025, 2, 1), days=2))
        )
        refresh_outdated(session)
        other_records = session.scalar(select(func.count()).select_from(Record))
    with session_scope(engine) as session:
        erased = erase_patient(session, patient=session.get(Patient, patient.id), actor="t")  # type: ignore[arg-type]
    assert (erased.uploads, erased.raw_files) == (2, 2)
    assert kept_places(engine) == {raw_place(other.id, kept.sha256)}
    assert first.sha256 != second.sha256
    with session_scope(engine) as session:
        assert session.get(Patient, patient.id) is None
        assert session.get(User, user.id) is None
        assert session.scalar(select(func.count()).select_from(Upload)) == 1
        assert (
            session.scalar(
                select(func.count()).select_from(DailySummary).where(DailySummary.patient_id == patient.id)
            )
            == 0
        )
        assert session.scalar(select(func.count()).select_from(Record)) == kept.new < other_records
        events = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "accounts:patient:delete")
        )
        assert events == 1
        assert verify_chain(session).intact


def test_the_records_among_reading_blocks_are_stored_as_the_blocks_go(
    session: Session, settings: Settings
) -> None:
    """Events between a Clarity export's runs of readings do not wait for the last run.

    Thirty days are three runs of readings (4,096 rows each at most); the insulin, food and
    calibration rows read before the second run are stored right after the first block (progress
    reports each write), so the end of an import stores one run and few records, not every event.
    """
    month = simulate(profile(seed=22, control=0.3), start=dt.date(2025, 5, 1), days=30)
    calls: list[int] = []
    upload = import_file(
        session,
        settings=settings,
        patient=_patient(session),
        incoming=_clarity(month),
        timezone=None,
        actor="test",
        progress=calls.append,
    )
    assert sum(calls) == sum(upload.counts.values())
    first_block, records_before_the_second, second_block = calls[:3]
    assert first_block > 4000 < second_block
    assert 0 < records_before_the_second < 1000


def test_an_archive_marks_the_days_of_all_its_files_at_once(
    session: Session, settings: Settings, timeline: Timeline
) -> None:
    """The summaries an import outdates are noted once, covering every file of the archive.

    A Glooko export is a file per kind of data, each its own upload; one note per file would update
    the patient's backlog entry once for each, to the same covering span.
    """
    export = write_glooko(timeline, GlookoOptions(empty_files=False))
    patient = _patient(session)
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "summary_backlog" in statement:
            statements.append(statement.split(None, 1)[0].upper())

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", note)
    try:
        uploads = import_files(
            session,
            settings=settings,
            patient=patient,
            files=[IncomingFile(export.file_name, export.data)],
            timezone=None,
            actor="test",
        )
    finally:
        event.remove(engine, "before_cursor_execute", note)
    spans = [(u.first_ms, u.last_ms) for u in session.scalars(select(Upload)) if u.new_count]
    assert len(spans) > 2  # several files with records
    assert statements == ["INSERT"]
    entry = session.get(SummaryBacklog, patient.id)
    assert entry is not None
    assert (entry.first_ms, entry.last_ms) == (min(f for f, _ in spans), max(last for _, last in spans))
    assert sum(u.new for u in uploads) == session.scalar(select(func.count()).select_from(Record))
