"""Store, list and delete records and uploads. Services flush but never commit."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import sqlite3
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
"""Rows per call of :meth:`RecordWriter.write` from the import loop."""
_SQLITE_ROWS_PER_STATEMENT = 250  # 250 rows x 14 values stays far below SQLite's 32766 variables
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
_FILL = (None, None, None)


@dataclasses.dataclass(frozen=True, slots=True)
class ReadingColumns:
    """Rows that share device, upload, type, subtype and unit, as columns (no annotation or payload).

    The bulk form of readings and of evenly logged doses: :class:`RecordWriter` binds the shared
    values once per statement and the columns as they are, without a tuple per row. ``dedup_key``
    is one key for every row (readings) or a list of one per row; ``duration_ms`` is ``None`` for
    records without a duration.
    """

    device_seq: int
    upload_seq: int
    type: str
    subtype: str
    orig_unit: str
    dedup_key: str | list[str]
    time_ms: list[int]
    utc_offset_min: list[int]
    value: list[float]
    orig_value: list[float]
    source_line: list[int]
    duration_ms: list[int] | None = None

    def __len__(self) -> int:
        return len(self.time_ms)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """The rows as tuples: :data:`PLAIN_COLUMNS`, or all :data:`RECORD_COLUMNS` with a duration."""
        count = len(self.time_ms)
        keys = itertools.repeat(self.dedup_key, count) if isinstance(self.dedup_key, str) else self.dedup_key
        plain = zip(
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
            keys,
            strict=True,
        )
        if self.duration_ms is None:
            return plain
        return ((*row, duration, None, None) for row, duration in zip(plain, self.duration_ms, strict=True))

    def layout(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(shared, varying)``: the columns bound once per statement and those bound per row."""
        shared = ["device_seq", "upload_seq", "type", "subtype", "orig_unit"]
        varying = ["time_ms", "utc_offset_min", "value", "orig_value", "source_line"]
        (shared if isinstance(self.dedup_key, str) else varying).append("dedup_key")
        if self.duration_ms is not None:
            varying.append("duration_ms")
        return tuple(shared), tuple(varying)


Batch = Sequence[tuple[Any, ...]] | ReadingColumns
"""What :meth:`RecordWriter.write` takes."""


@cache
def _columns_sql(rows: int, shared: tuple[str, ...], varying: tuple[str, ...]) -> str:
    """A multi-row insert of ``rows`` rows with column-major parameters.

    The ``shared`` values of :class:`ReadingColumns` are bound once (``?1`` to ``?k``), then each of
    its ``varying`` columns in turn, so the caller concatenates list slices instead of building a
    tuple per row.
    """
    names = (*shared, *varying)
    first = len(shared) + 1
    values = []
    for at in range(rows):
        column = {name: f"?{first + at + rows * k}" for k, name in enumerate(varying)}
        column.update({name: f"?{k + 1}" for k, name in enumerate(shared)})
        values.append("(" + ", ".join(column[name] for name in names) + ")")
    return (
        f"INSERT INTO records ({', '.join(names)}) VALUES "  # noqa: S608 - only placeholders
        + ", ".join(values)
        + " ON CONFLICT DO NOTHING"
    )


@cache
def _rows_sql(rows: int, width: int) -> str:
    """A multi-row insert of ``rows`` row-major rows of the first ``width`` :data:`RECORD_COLUMNS`."""
    one = "(" + ", ".join(["?"] * width) + ")"
    return (
        f"INSERT INTO records ({', '.join(RECORD_COLUMNS[:width])}) VALUES "  # noqa: S608 - placeholders
        + ", ".join([one] * rows)
        + " ON CONFLICT DO NOTHING"
    )


def _statement_sizes(total: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each multi-row statement for ``total`` rows.

    Full statements, then the rest in powers of two: few statement shapes for SQLite to prepare
    (and keep in its statement cache).
    """
    start = 0
    while start < total:
        left = total - start
        size = _SQLITE_ROWS_PER_STATEMENT
        if left < _SQLITE_ROWS_PER_STATEMENT:
            size = 1 << (left.bit_length() - 1)
        yield start, start + size
        start += size


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


def dedup_keys(record_type: str, subtype: str, values: Sequence[float]) -> str | list[str]:
    """:func:`dedup_key` of records without identity text, for many values at once.

    One key for every CGM reading (the value is not part of its identity), else one per value:
    the hot path of a block of evenly logged doses.
    """
    if record_type == RecordType.CBG:
        return dedup_key(record_type, subtype, None, "")
    if len(subtype) > _MAX_KEY // 2:  # a key that may need hashing: the general way
        return [dedup_key(record_type, subtype, value, "") for value in values]
    distinct = set(values)
    if len(distinct) * 2 > len(values):
        return [f"{subtype}|{value:.6g}|" for value in values]
    # A pump repeats a few rates and doses: each key is formatted once (but 0.0 and -0.0, equal
    # as numbers, are written apart, each as dedup_key writes it).
    keys = {value: f"{subtype}|{value:.6g}|" for value in distinct}
    return [keys[value] if value else f"{subtype}|{value:.6g}|" for value in values]


class RecordWriter:
    """Insert records in batches; a record whose natural identity is already stored is skipped.

    Rows are tuples in :data:`RECORD_COLUMNS` order (``payload`` a mapping or ``None``), or shorter
    tuples in :data:`PLAIN_COLUMNS` order for rows without duration, annotation and payload, which
    SQLite inserts faster (fewer values to bind); or :class:`ReadingColumns`, which is faster still.
    Works inside the caller's transaction, on its DBAPI connection: multi-row ``INSERT ... ON
    CONFLICT DO NOTHING`` on SQLite; ``COPY`` into a temporary table and one ``INSERT ... SELECT ...
    ON CONFLICT DO NOTHING`` per batch on PostgreSQL. This is the hot path of every import, so it
    skips the ORM's per-row processing.

    It writes on the caller's thread. A background writer thread was tried and measured slower: the
    parse holds the interpreter lock, and the writer waits for it after every statement.
    """

    def __init__(self, session: Session) -> None:
        self._connection = session.connection()
        self._dialect = self._connection.dialect.name
        columns = ", ".join(RECORD_COLUMNS)
        if self._dialect == "postgresql":
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
        elif self._dialect != "sqlite":  # pragma: no cover - only the two engines are supported
            msg = f"unsupported database {self._dialect}"
            raise RuntimeError(msg)
        self.first_id: int | None = None
        self.last_id: int | None = None
        self.new = 0
        """How many of the records written so far were new."""

    def _note_ids(self, first: int | None, last: int | None) -> None:
        if first is not None and (self.first_id is None or first < self.first_id):
            self.first_id = first
        if last is not None and (self.last_id is None or last > self.last_id):
            self.last_id = last

    def write(self, batch: Batch) -> int:
        """Write rows (tuples, or columns); return how many were new (and add them to :attr:`new`).

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
                inserted = self._write_sqlite(
                    cast("sqlite3.Connection", dbapi), cast("sqlite3.Cursor", cursor), batch
                )
            else:
                inserted = self._write_postgres(cast("Any", cursor), batch)
        finally:
            cursor.close()
        self.new += inserted
        return inserted

    def _write_postgres(self, cursor: Any, batch: Batch) -> int:  # noqa: ANN401 - psycopg's
        if not isinstance(batch, ReadingColumns) and len(batch) <= _POSTGRES_DIRECT_ROWS:
            return self._insert_direct(cursor, batch)
        if not self._staged:
            cursor.execute(self._staging)
            self._staged = True
        rows = batch.rows() if isinstance(batch, ReadingColumns) else batch
        with cursor.copy(self._copy) as copy:
            for row in rows:
                copy.write_row(_full_row(row))
        cursor.execute(self._sql)
        inserted, first, last = cursor.fetchone() or (0, None, None)
        cursor.execute("TRUNCATE records_incoming")
        self._note_ids(first, last)
        return int(inserted)

    def _insert_direct(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> int:  # noqa: ANN401 - psycopg's
        """A few rows on PostgreSQL: one multi-row insert (a staging table costs more than it saves)."""
        params = [value for row in rows for value in _full_row(row)]
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
        rows: Batch,
    ) -> int:
        # SQLite hands out rowids above the current maximum, and this transaction holds the write
        # lock (the upload row was written first), so the new records are the ids above ``before``.
        cursor.execute("SELECT coalesce(max(id), 0) FROM records")
        before = int(cursor.fetchone()[0])
        changes = dbapi.total_changes
        if isinstance(rows, ReadingColumns):
            _insert_columns(cursor, rows)
        else:
            plain_width = len(PLAIN_COLUMNS)
            if all(len(row) == plain_width for row in rows):
                _insert_rows(cursor, rows, plain_width)
            else:  # one shape for all, in order: runs of each would make many short statements
                _insert_rows(cursor, [_full_row(row) for row in rows], len(RECORD_COLUMNS))
        inserted = int(dbapi.total_changes - changes)
        if inserted:
            cursor.execute("SELECT max(id) FROM records")
            self._note_ids(before + 1, int(cursor.fetchone()[0]))
        return inserted


def _insert_columns(cursor: sqlite3.Cursor, columns: ReadingColumns) -> None:
    """Insert :class:`ReadingColumns` on SQLite: shared values bound once per statement."""
    shared_names, varying_names = columns.layout()
    shared = [getattr(columns, name) for name in shared_names]
    varying = [getattr(columns, name) for name in varying_names]
    for start, end in _statement_sizes(len(columns)):
        parameters = shared.copy()
        for column in varying:
            parameters += column[start:end]
        cursor.execute(_columns_sql(end - start, shared_names, varying_names), parameters)


def _insert_rows(cursor: sqlite3.Cursor, rows: Sequence[tuple[Any, ...]], width: int) -> None:
    """Insert rows of ``width`` values on SQLite, many rows per statement."""
    for start, end in _statement_sizes(len(rows)):
        cursor.execute(_rows_sql(end - start, width), list(itertools.chain.from_iterable(rows[start:end])))


def _full_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row of every :data:`RECORD_COLUMNS` (a plain row padded), its payload as JSON text."""
    return row + _FILL if len(row) == len(PLAIN_COLUMNS) else _with_json_payload(row)


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
