"""The bulk record writer on both databases: new counts, id bounds, database errors."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.devices.service import resolve_device
from glucoshare.records.models import Record
from glucoshare.records.service import RECORD_COLUMNS, ReadingColumns, RecordWriter, dedup_keys
from tests.records.helpers import bare_upload


def _setup(session: Session) -> tuple[int, int]:
    patient = add_patient(session, validate_patient(email="w@example.org", name="W"))
    device = resolve_device(session, patient_id=patient.id, manufacturer="Acme", model="M", serial="S1")
    return device.seq, bare_upload(session, patient.id).seq


def _row(device: int, upload: int, i: int, kind: str | None = "cbg") -> tuple[object, ...]:
    time_ms = 1_700_000_000_000 + i * 300_000
    plain = (device, upload, kind, "sensor", time_ms, 0, 100.0 + i, 100.0 + i, "mg/dL", i + 2, "sensor")
    return (*plain, None, None, {"i": i}) if i % 7 == 0 else plain  # full rows among plain ones


def test_batches_count_new_records_and_bound_their_ids(session: Session) -> None:
    device, upload = _setup(session)
    writer = RecordWriter(session)
    assert writer.write([_row(device, upload, i) for i in range(7000)]) == 7000
    assert writer.write([_row(device, upload, i) for i in range(6000, 9000)]) == 2000  # 1000 duplicates
    assert writer.new == 9000
    ids = session.execute(select(func.min(Record.id), func.max(Record.id), func.count())).one()
    assert (writer.first_id, writer.last_id) == (ids[0], ids[1])
    assert ids[2] == 9000
    stored = session.scalar(select(Record).where(Record.source_line == 9))
    assert stored is not None
    assert stored.payload == {"i": 7}


def test_a_database_error_reaches_the_caller(session: Session) -> None:
    device, upload = _setup(session)
    writer = RecordWriter(session)
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.NotNullViolation)):
        writer.write([_row(device, upload, 1, kind=None)])


def _readings(device: int, upload: int, count: int) -> ReadingColumns:
    """CGM readings: one key for every row, no duration."""
    rows = [_row(device, upload, i)[:11] for i in range(count)]
    return ReadingColumns(
        device_seq=device,
        upload_seq=upload,
        type="cbg",
        subtype="sensor",
        orig_unit="mg/dL",
        dedup_key="sensor",
        time_ms=[row[4] for row in rows],  # type: ignore[misc]
        utc_offset_min=[row[5] for row in rows],  # type: ignore[misc]
        value=[row[6] for row in rows],  # type: ignore[misc]
        orig_value=[row[7] for row in rows],  # type: ignore[misc]
        source_line=[row[9] for row in rows],  # type: ignore[misc]
    )


def _doses(device: int, upload: int, count: int) -> ReadingColumns:
    """Evenly logged doses: a key and a duration per row, no payload."""
    rates = [0.5 + (i % 40) / 20 for i in range(count)]
    return ReadingColumns(
        device_seq=device,
        upload_seq=upload,
        type="basal",
        subtype="automated",
        orig_unit="U",
        dedup_key=dedup_keys("basal", "automated", rates),
        time_ms=[1_700_000_000_000 + i * 300_000 for i in range(count)],
        utc_offset_min=[60] * count,
        value=rates,
        orig_value=[rate / 12 for rate in rates],
        source_line=[i + 2 for i in range(count)],
        duration_ms=[300_000 - i % 3 for i in range(count)],
    )


@pytest.mark.parametrize(
    ("count", "doses"),
    [(1, False), (250, False), (251, False), (1000, False), (4103, False), (1, True), (3, True), (517, True)],
)
def test_columns_store_the_same_rows_as_tuples(session: Session, count: int, doses: bool) -> None:
    device, upload = _setup(session)
    columns = (_doses if doses else _readings)(device, upload, count)
    rows = list(columns.rows())
    if doses:
        assert all(len(row) == len(RECORD_COLUMNS) for row in rows)
    else:
        assert rows == [_row(device, upload, i)[:11] for i in range(count)]
    writer = RecordWriter(session)
    assert writer.write(columns) == count
    assert writer.write(columns) == 0  # all duplicates the second time
    assert writer.write(rows) == 0  # and the same records as tuples
    assert writer.new == count
    width = len(rows[0])
    stored = session.execute(
        select(*(getattr(Record, name) for name in RECORD_COLUMNS[:width])).order_by(Record.time_ms)
    ).all()
    assert [tuple(row) for row in stored] == rows


def test_long_runs_of_full_rows_are_stored_whole(session: Session) -> None:
    """Full rows go many to a statement: every row arrives once, with its payload."""
    device, upload = _setup(session)
    rows = [
        (*_row(device, upload, i)[:11], 60_000 * i, None, {"i": i, "note": "x" * (i % 50)})
        for i in range(777)
    ]
    writer = RecordWriter(session)
    assert writer.write(rows) == 777
    assert writer.write(rows[100:300]) == 0
    payloads = session.scalars(select(Record.payload).order_by(Record.source_line)).all()
    assert payloads == [row[13] for row in rows]
    assert (writer.first_id, writer.last_id) == tuple(
        session.execute(select(func.min(Record.id), func.max(Record.id))).one()
    )


def test_a_batch_of_plain_and_full_rows_is_stored_in_order_in_few_statements(session: Session) -> None:
    """Plain rows among full ones are padded to the full shape, not written a run at a time.

    A Clarity export's events and readings at a sensor limit alternate; as runs of each shape,
    a batch of them became one short statement per run (SQLite).
    """
    device, upload = _setup(session)
    rows = [_row(device, upload, i) for i in range(1000)]  # every 7th row full
    dbapi = session.connection().connection.dbapi_connection
    statements: list[str] = []
    on_sqlite = isinstance(dbapi, sqlite3.Connection)
    if on_sqlite:
        dbapi.set_trace_callback(lambda sql: statements.append(sql) if sql.startswith("INSERT") else None)
    try:
        assert RecordWriter(session).write(rows) == 1000
    finally:
        if on_sqlite:
            dbapi.set_trace_callback(None)
    if on_sqlite:
        assert len(statements) == 4  # 250 rows each
    stored = session.execute(select(Record.source_line, Record.payload).order_by(Record.id)).all()
    assert [tuple(row) for row in stored] == [(row[9], row[13] if len(row) > 11 else None) for row in rows]
