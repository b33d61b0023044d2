"""Store, list and delete records and uploads. Services flush but never commit."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any, cast

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from glucoshare.devices.models import Device
from glucoshare.devices.schemas import DeviceOut
from glucoshare.records.errors import UploadNotFoundError
from glucoshare.records.models import Record, Upload
from glucoshare.records.schemas import RejectedRowOut, UploadOut, iso_utc
from glucoshare.records.vocabulary import RecordType

BATCH_SIZE = 5000
"""Rows per round trip of :class:`RecordWriter`."""
_SQLITE_ROWS_PER_STATEMENT = 250  # 250 rows x 11 values stays far below SQLite's 32766 variables
_POSTGRES_DIRECT_ROWS = 200
"""Up to this many rows, PostgreSQL gets one multi-row ``INSERT`` instead of ``COPY`` via a staging table."""
_MAX_KEY = 120

PLAIN_COLUMNS = (
    "device_seq",
    "upload_seq",
    "type",
    "subtype",
    "time_ms",
    "utc_offset_min",
    "value",
    "orig_value",
    "orig_unit",
    "source_line",
    "dedup_key",
)
"""The columns of a *plain* row: one without duration, annotation or payload (most CGM readings)."""
RECORD_COLUMNS = (*PLAIN_COLUMNS, "duration_ms", "annotation", "payload")
"""The columns of a full row."""
_PAYLOAD_AT = RECORD_COLUMNS.index("payload")
_SHARED = ("device_seq", "upload_seq", "type", "subtype", "orig_unit", "dedup_key")
_VARYING = ("time_ms", "utc_offset_min", "value", "orig_value", "source_line")
_FILL = (None, None, None)


@dataclasses.dataclass(frozen=True, slots=True)
class ReadingColumns:
    """Plain rows that share device, upload, type, subtype, unit and dedup key, as columns.

    The bulk form of CGM readings: :class:`RecordWriter` binds the shared values once per statement
    and the columns as they are, without a tuple per row.
    """

    device_seq: int
    upload_seq: int
    type: str
    subtype: str
    orig_unit: str
    dedup_key: str
    time_ms: list[int]
    utc_offset_min: list[int]
    value: list[float]
    orig_value: list[float]
    source_line: list[int]

    def __len__(self) -> int:
        return len(self.time_ms)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """The same rows as tuples in :data:`PLAIN_COLUMNS` order."""
        count = len(self.time_ms)
        return zip(
            itertools.repeat(self.device_seq, count),
            itertools.repeat(self.upload_seq, count),
            itertools.repeat(self.type, count),
            itertools.repeat(self.subtype, count),
            self.time_ms,
            self.utc_offset_min,
            self.value,
            self.orig_value,
            itertools.repeat(self.orig_unit, count),
            self.source_line,
            itertools.repeat(self.dedup_key, count),
            strict=True,
        )


Batch = list[tuple[Any, ...]] | ReadingColumns
"""What :meth:`RecordWriter.submit` takes."""


@cache
def _columns_sql(rows: int) -> str:
    """A multi-row insert of ``rows`` plain rows, with column-major parameters.

    The shared values of :class:`ReadingColumns` are bound once (``?1`` to ``?6``), then each of
    its columns in turn, so the caller concatenates list slices instead of building a tuple per row.
    """
    first = len(_SHARED) + 1
    values = []
    for at in range(rows):
        column = {name: f"?{first + at + rows * k}" for k, name in enumerate(_VARYING)}
        column.update({name: f"?{k + 1}" for k, name in enumerate(_SHARED)})
        values.append("(" + ", ".join(column[name] for name in PLAIN_COLUMNS) + ")")
    return (
        f"INSERT INTO records ({', '.join(PLAIN_COLUMNS)}) VALUES "  # noqa: S608 - only placeholders
        + ", ".join(values)
        + " ON CONFLICT DO NOTHING"
    )


def note_place(patient_id: str) -> str:
    """Where a patient's note texts are sealed (the associated data of their ciphertexts)."""
    return f"records.note:{patient_id}"


def dedup_key(record_type: str, subtype: str, value: float | None, identity: str) -> str:
    """The part of a record's natural identity beyond (device, type, instant).

    A CGM reading is identified by its device, instant and origin (sensor or scan) alone, so a
    re-export that rounds differently cannot double it; other types add their value (6
    significant digits) and the importer's ``identity`` text (an alarm's name, a note's text).
    """
    if record_type == RecordType.CBG:
        key = subtype
    else:
        number = "" if value is None else f"{value:.6g}"
        key = f"{subtype}|{number}|{identity}"
    if len(key) > _MAX_KEY:
        key = "sha1:" + hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()
    return key


class RecordWriter:
    """Insert records in batches; a record whose natural identity is already stored is skipped.

    Rows are tuples in :data:`RECORD_COLUMNS` order (``payload`` a mapping or ``None``), or shorter
    tuples in :data:`PLAIN_COLUMNS` order for rows without duration, annotation and payload, which
    SQLite inserts about twice as fast (fewer values to bind), handed over in batches of
    :data:`BATCH_SIZE`; or as :class:`ReadingColumns`, which is faster still. Works inside the
    caller's transaction, on its DBAPI connection: multi-row ``INSERT ... ON CONFLICT DO NOTHING``
    on SQLite; ``COPY`` into a temporary table and one ``INSERT ... SELECT ... ON CONFLICT DO
    NOTHING`` per batch on PostgreSQL. This is the hot path of every import, so it skips the
    ORM's per-row processing.

    :meth:`submit` writes on a background thread, so that the database works (the drivers release
    the GIL while SQLite or the server works) while the caller parses the next batch. The caller
    must :meth:`drain` before it uses the session for anything else, and at the end; a database
    error is raised there (or by the next :meth:`submit`).
    """

    def __init__(self, session: Session) -> None:
        self._connection = session.connection()
        self._dialect = self._connection.dialect.name
        columns = ", ".join(RECORD_COLUMNS)
        if self._dialect == "sqlite":
            full = "(" + ", ".join("?" for _ in RECORD_COLUMNS) + ")"
            plain = "(" + ", ".join("?" for _ in PLAIN_COLUMNS) + ")"
            plain_columns = ", ".join(PLAIN_COLUMNS)
            self._sql = f"INSERT INTO records ({columns}) VALUES {full} ON CONFLICT DO NOTHING"  # noqa: S608
            self._plain_sql = f"INSERT INTO records ({plain_columns}) VALUES {plain} ON CONFLICT DO NOTHING"  # noqa: S608
            self._multi_sql = (
                f"INSERT INTO records ({plain_columns}) VALUES "  # noqa: S608
                + ", ".join([plain] * _SQLITE_ROWS_PER_STATEMENT)
                + " ON CONFLICT DO NOTHING"
            )
        elif self._dialect == "postgresql":
            # Only the written columns, without defaults: staged rows draw nothing from the id sequence.
            self._staging = (
                "CREATE TEMPORARY TABLE IF NOT EXISTS records_incoming ON COMMIT DROP "  # noqa: S608
                f"AS SELECT {columns} FROM records WITH NO DATA"
            )
            self._staged = False
            self._copy = f"COPY records_incoming ({columns}) FROM STDIN"
            self._row_values = "(" + ", ".join(["%s"] * len(RECORD_COLUMNS)) + ")"
            self._direct = f"INSERT INTO records ({columns}) VALUES "  # noqa: S608
            self._sql = (
                f"WITH inserted AS (INSERT INTO records ({columns}) "  # noqa: S608
                f"SELECT {columns} FROM records_incoming ON CONFLICT DO NOTHING RETURNING id) "
                "SELECT count(*), min(id), max(id) FROM inserted"
            )
        else:  # pragma: no cover - only the two engines are supported
            msg = f"unsupported database {self._dialect}"
            raise RuntimeError(msg)

        self.first_id: int | None = None
        self.last_id: int | None = None
        self.new = 0
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, batch: Batch) -> None:
        """Queue a batch for writing on the background thread (the writer owns the list now)."""
        if self._error is not None:
            self.drain()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="record-writer", daemon=True)
            self._thread.start()
        self._queue.put(batch)

    def drain(self) -> int:
        """Wait until every submitted batch is written; return the records that were new so far.

        Re-raises the first database error of the background thread.
        """
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self.new

    def _work(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is not None:
                continue  # keep taking batches so that submit() never blocks; drain() raises
            try:
                self.new += self.write(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by drain()
                self._error = exc

    def _note_ids(self, first: int | None, last: int | None) -> None:
        if first is not None and (self.first_id is None or first < self.first_id):
            self.first_id = first
        if last is not None and (self.last_id is None or last > self.last_id):
            self.last_id = last

    def write(self, batch: Sequence[tuple[Any, ...]] | ReadingColumns) -> int:
        """Write rows (tuples, or columns); return how many were new.

        :attr:`first_id` and :attr:`last_id` follow the lowest and highest record id written.
        """
        if not batch:
            return 0
        dbapi = self._connection.connection.dbapi_connection
        if dbapi is None:  # pragma: no cover - the session's connection is always open here
            msg = "no database connection"
            raise RuntimeError(msg)
        cursor = dbapi.cursor()
        try:
            if self._dialect == "sqlite":
                return self._write_sqlite(
                    cast("sqlite3.Connection", dbapi), cast("sqlite3.Cursor", cursor), batch
                )
            plain_width = len(PLAIN_COLUMNS)
            if not isinstance(batch, ReadingColumns) and len(batch) <= _POSTGRES_DIRECT_ROWS:
                return self._insert_direct(cast("Any", cursor), batch)
            if not self._staged:
                cursor.execute(self._staging)
                self._staged = True
            rows = batch.rows() if isinstance(batch, ReadingColumns) else batch
            with cursor.copy(self._copy) as copy:
                for row in rows:
                    copy.write_row(row + _FILL if len(row) == plain_width else _with_json_payload(row))
            cursor.execute(self._sql)
            inserted, first, last = cursor.fetchone() or (0, None, None)
            cursor.execute("TRUNCATE records_incoming")
            self._note_ids(first, last)
            return int(inserted)
        finally:
            cursor.close()

    def _insert_direct(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> int:  # noqa: ANN401 - psycopg's
        """A few rows on PostgreSQL: one multi-row insert (a staging table costs more than it saves)."""
        plain_width = len(PLAIN_COLUMNS)
        params = [
            value
            for row in rows
            for value in (row + _FILL if len(row) == plain_width else _with_json_payload(row))
        ]
        cursor.execute(
            self._direct + ", ".join([self._row_values] * len(rows)) + " ON CONFLICT DO NOTHING RETURNING id",
            params,
        )
        ids = [int(found[0]) for found in cursor.fetchall()]
        if ids:
            self._note_ids(min(ids), max(ids))
        return len(ids)

    def _write_sqlite(
        self,
        dbapi: sqlite3.Connection,
        cursor: sqlite3.Cursor,
        rows: Sequence[tuple[Any, ...]] | ReadingColumns,
    ) -> int:
        # SQLite hands out rowids above the current maximum, and this transaction holds the write
        # lock (the upload row was written first), so the new records are the ids above ``before``.
        cursor.execute("SELECT coalesce(max(id), 0) FROM records")
        before = int(cursor.fetchone()[0])
        changes = dbapi.total_changes
        plain_width = len(PLAIN_COLUMNS)
        start = 0
        if isinstance(rows, ReadingColumns):
            self._insert_columns(cursor, rows)
            rows = ()
        while start < len(rows):  # runs of plain and of full rows, in order
            plain = len(rows[start]) == plain_width
            end = start + 1
            while end < len(rows) and (len(rows[end]) == plain_width) == plain:
                end += 1
            if plain:
                self._insert_plain(cursor, rows[start:end])
            else:
                cursor.executemany(self._sql, [_with_json_payload(row) for row in rows[start:end]])
            start = end
        inserted = int(dbapi.total_changes - changes)
        if inserted:
            cursor.execute("SELECT max(id) FROM records")
            self._note_ids(before + 1, int(cursor.fetchone()[0]))
        return inserted

    @staticmethod
    def _insert_columns(cursor: sqlite3.Cursor, columns: ReadingColumns) -> None:
        shared = [getattr(columns, name) for name in _SHARED]
        varying = [getattr(columns, name) for name in _VARYING]
        start, total = 0, len(columns)
        while start < total:
            # Full statements, then the rest in powers of two: few statement shapes to prepare.
            left = total - start
            end = start + (
                _SQLITE_ROWS_PER_STATEMENT
                if left >= _SQLITE_ROWS_PER_STATEMENT
                else 1 << (left.bit_length() - 1)
            )
            parameters = shared.copy()
            for column in varying:
                parameters += column[start:end]
            cursor.execute(_columns_sql(end - start), parameters)
            start = end

    def _insert_plain(self, cursor: sqlite3.Cursor, rows: Sequence[tuple[Any, ...]]) -> None:
        per = _SQLITE_ROWS_PER_STATEMENT
        whole = len(rows) - len(rows) % per
        for start in range(0, whole, per):
            cursor.execute(self._multi_sql, list(itertools.chain.from_iterable(rows[start : start + per])))
        if whole < len(rows):
            cursor.executemany(self._plain_sql, rows[whole:])


def _with_json_payload(row: tuple[Any, ...]) -> tuple[Any, ...]:
    payload = row[_PAYLOAD_AT]
    if payload is None:
        return row
    return (*row[:_PAYLOAD_AT], json.dumps(payload), *row[_PAYLOAD_AT + 1 :])


def upload_out(upload: Upload, device: Device | None, warnings: Sequence[str] = ()) -> UploadOut:
    """The output shape of an upload."""
    return UploadOut(
        id=upload.id,
        file=upload.file_name,
        format=upload.format,
        device=DeviceOut.model_validate(device) if device is not None else None,
        counts=dict(upload.counts),
        new=upload.new_count,
        duplicates=upload.duplicate_count,
        first=iso_utc(upload.first_ms),
        last=iso_utc(upload.last_ms),
        patient_id=upload.patient_id,
        timezone=upload.timezone,
        encoding=upload.encoding,
        sha256=upload.sha256,
        size_bytes=upload.size_bytes,
        created_at=upload.created_at,
        rejected_count=upload.rejected_count,
        rejected=[RejectedRowOut.model_validate(r) for r in upload.rejected],
        warnings=list(warnings),
    )


def list_uploads(session: Session, patient_id: str) -> list[UploadOut]:
    """The patient's uploads, oldest first."""
    rows = session.execute(
        select(Upload, Device)
        .outerjoin(Device, Device.seq == Upload.device_seq)
        .where(Upload.patient_id == patient_id)
        .order_by(Upload.created_at, Upload.seq)
    ).all()
    return [upload_out(upload, device) for upload, device in rows]


def get_upload(session: Session, upload_id: str) -> Upload:
    """One upload by id."""
    upload = session.scalar(select(Upload).where(Upload.id == upload_id.strip()))
    if upload is None:
        msg = "no upload with this id"
        raise UploadNotFoundError(msg)
    return upload


def uploads_overlapping(session: Session, patient_id: str, first_ms: int, last_ms: int) -> list[Upload]:
    """The patient's uploads whose time span meets ``[first_ms, last_ms]``, oldest first."""
    return list(
        session.scalars(
            select(Upload)
            .where(Upload.patient_id == patient_id, Upload.first_ms <= last_ms, Upload.last_ms >= first_ms)
            .order_by(Upload.created_at, Upload.seq)
        )
    )


def delete_upload(session: Session, upload_id: str) -> tuple[Upload, int]:
    """Delete one upload and exactly the records it stored; return it and how many records went."""
    upload = get_upload(session, upload_id)
    removed = 0
    if upload.first_record_id is not None and upload.last_record_id is not None:
        result = session.execute(
            delete(Record).where(
                Record.id.between(upload.first_record_id, upload.last_record_id),
                Record.upload_seq == upload.seq,
            )
        )
        removed = int(getattr(result, "rowcount", 0) or 0)
    session.delete(upload)
    session.flush()
    return upload, int(removed or 0)


def records_query(
    patient_id: str, *, start_ms: int | None = None, end_ms: int | None = None
) -> Select[Record, Device]:
    """The patient's records with their device, in time order, optionally within [start, end)."""
    query = (
        select(Record, Device)
        .join(Device, Device.seq == Record.device_seq)
        .where(Device.patient_id == patient_id)
    )
    if start_ms is not None:
        query = query.where(Record.time_ms >= start_ms)
    if end_ms is not None:
        query = query.where(Record.time_ms < end_ms)
    return query.order_by(Record.time_ms, Record.type, Record.id)


def upload_public_ids(session: Session, patient_id: str) -> dict[int, str]:
    """Map the internal key of each of the patient's uploads to its public id."""
    rows = session.execute(select(Upload.seq, Upload.id).where(Upload.patient_id == patient_id))
    return {int(row[0]): str(row[1]) for row in rows}


def iter_records(
    session: Session, patient_id: str, *, start_ms: int | None = None, end_ms: int | None = None
) -> Iterator[tuple[Record, Device]]:
    """Stream the patient's records with their device, in time order."""
    query = records_query(patient_id, start_ms=start_ms, end_ms=end_ms).execution_options(yield_per=2000)
    for row in session.execute(query):
        yield row[0], row[1]
