"""Import files: decode, detect, parse, normalise and store, all or nothing.

The caller owns the transaction (:func:`glucoshare.db.session_scope`); when any file is refused,
the caller rolls back and stored data stays exactly as it was. Raw files are kept, content
addressed, under ``$GLUCOSHARE_DATA_DIR/uploads`` so that every record's ``source_line`` points at
a row that can be shown again.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import gc
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.schemas import check_timezone
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.db.session import after_commit, after_rollback
from glucoshare.devices.errors import DeviceOwnedByAnotherPatientError
from glucoshare.devices.models import Device
from glucoshare.devices.service import resolve_device
from glucoshare.ingest.base import (
    DeviceInfo,
    Importer,
    ParseContext,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    SourceText,
)
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import (
    FileTooLargeError,
    InvalidTimezoneError,
    MalformedFileError,
    NoRecordsError,
)
from glucoshare.ingest.registry import detect_format, get_importer
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.records.models import Upload
from glucoshare.records.schemas import UploadOut
from glucoshare.records.service import (
    BATCH_SIZE,
    ReadingColumns,
    RecordWriter,
    dedup_key,
    delete_upload,
    note_place,
    upload_out,
    uploads_overlapping,
)
from glucoshare.records.vocabulary import RecordType
from glucoshare.summaries.service import mark_outdated
from glucoshare.vault.service import (
    data_key,
    destroy_data_key,
    keyring_of,
    open_file,
    seal_file,
    seal_mapping,
)

EARLIEST_PLAUSIBLE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
"""Records before this instant come from a device whose clock was never set; they are rejected."""

FUTURE_TOLERANCE = dt.timedelta(hours=24)
"""Records later than now plus this are rejected as dated in the future."""

MAX_REPORTED_REJECTIONS = 1000
"""At most this many rejected rows are listed in an upload's result (all are counted)."""

ProgressCallback = Callable[[int], None]


def _too_many_rejected(rejected: int, total: int) -> bool:
    """A file is refused when more than 10 rows and more than 10 % of its rows are unreadable."""
    return rejected > max(10, total // 10)


def _read_source(name: str, data: bytes) -> SourceText:
    """Decode a file's bytes for the importers."""
    decoded = decode_text(data, name)
    return SourceText(name=name, text=decoded.text, encoding=decoded.encoding)


def _raw_path(settings: Settings, patient_id: str, sha256: str) -> Path:
    """Where the raw bytes of a patient's upload are kept, sealed with the patient's data key."""
    return settings.raw_files_dir / patient_id / sha256


def _raw_place(patient_id: str, sha256: str) -> str:
    return f"raw:{patient_id}:{sha256}"


def read_raw(session: Session, settings: Settings, upload: Upload) -> bytes | None:
    """The raw bytes of ``upload`` as they arrived, or ``None`` when the file is gone."""
    path = _raw_path(settings, upload.patient_id, upload.sha256)
    return open_file(session, upload.patient_id, _raw_place(upload.patient_id, upload.sha256), path)


def move_upload(session: Session, settings: Settings, upload: Upload, patient_id: str) -> Path | None:
    """Give an upload to another patient (a device moved to them), sealed again with their data key.

    The raw file is written for the new owner (removed again if the transaction rolls back); the
    old one is returned for the caller to remove once the move has committed (``None``: no file).
    """
    data = read_raw(session, settings, upload)
    name = upload.file_name  # sealed with the owner's data key: sealed again for the new owner
    old = _raw_path(settings, upload.patient_id, upload.sha256)
    if data is not None:
        _store_raw(settings, patient_id, upload.sha256, data, session)
    upload.patient_id = patient_id
    upload.file_name = name
    return old if data is not None else None


def _store_raw(settings: Settings, patient_id: str, sha256: str, data: bytes, session: Session) -> None:
    """Keep the raw bytes, sealed; remove them again if the transaction rolls back."""
    target = _raw_path(settings, patient_id, sha256)
    if target.exists():
        return
    seal_file(session, patient_id, data, _raw_place(patient_id, sha256), target)

    def forget() -> None:
        target.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # only succeeds when no other raw file shares the folder

    after_rollback(session, forget)


class _CollectorPause:
    """The process-wide pause of the cyclic collector, shared by concurrent imports."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pauses = 0
        self.was_enabled = True


_COLLECTOR = _CollectorPause()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while records are parsed and stored.

    An import allocates a few short-lived, acyclic objects per row (csv rows, tuples); the cyclic
    collector would walk them, and every other live object, again and again: about a fifth of the
    time of a CGM import (measured on the Clarity benchmark). Reference counting still frees them.
    Concurrent imports share the pause; the collector resumes when the last of them ends, and only
    if it was running before.
    """
    with _COLLECTOR.lock:
        if _COLLECTOR.pauses == 0:
            _COLLECTOR.was_enabled = gc.isenabled()
            gc.disable()
        _COLLECTOR.pauses += 1
    try:
        yield
    finally:
        with _COLLECTOR.lock:
            _COLLECTOR.pauses -= 1
            if _COLLECTOR.pauses == 0 and _COLLECTOR.was_enabled:
                gc.enable()


def _out_of_bounds(time_ms: int, bounds: tuple[int, int]) -> str:
    """Why a record dated outside ``bounds`` (UTC ms) is rejected."""
    return "date is in the future" if time_ms > bounds[1] else "date before 2000 (device clock not set?)"


class _UploadBuilder:
    """Consumes one :class:`ParseResult` into stored records and the upload's figures."""

    def __init__(self, session: Session, patient: Patient, upload: Upload, result: ParseResult) -> None:
        self.session = session
        self.patient = patient
        self.upload = upload
        self.result = result
        self.devices: dict[str, Device] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.device_counts: collections.Counter[str] = collections.Counter()
        self.rejected: list[RejectedRow] = []
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.new = 0

    def _device_seq(self, key: str) -> int:
        device = self.devices.get(key)
        if device is None:
            info = self.result.devices[key]
            device = resolve_device(
                self.session,
                patient_id=self.patient.id,
                manufacturer=info.manufacturer,
                model=info.model,
                serial=info.serial,
            )
            self.devices[key] = device
        return device.seq

    def consume(self, progress: ProgressCallback | None) -> None:
        """Store every record of the parse (the hot loop of an import); count and bound-check."""
        now = dt.datetime.now(dt.UTC)
        min_ms = int(EARLIEST_PLAUSIBLE.timestamp() * 1000)
        max_ms = int((now + FUTURE_TOLERANCE).timestamp() * 1000)
        writer = RecordWriter(self.session)
        upload_seq = self.upload.seq
        counts, device_counts = self.counts, self.device_counts
        first, last = max_ms, min_ms  # narrowed by every stored record
        rejected = self.rejected.append
        device_seqs: dict[str, int] = {}
        batch: list[tuple[Any, ...]] = []
        append = batch.append
        cbg, note = RecordType.CBG.value, RecordType.NOTE.value
        ring = keyring_of(self.session)
        note_key = data_key(self.session, self.patient.id)  # before the writer thread owns the connection
        notes_at = note_place(self.patient.id)
        try:
            for record in self.result.records:
                if type(record) is ReadingBlock:
                    columns = self._block_columns(record, writer, device_seqs, (min_ms, max_ms))
                    if columns is not None:
                        writer.submit(columns)
                        if progress is not None:
                            progress(len(columns))
                    continue
                assert type(record) is ParsedRecord  # noqa: S101 - narrows the type for mypy
                time_ms = record.time_ms
                if not min_ms <= time_ms <= max_ms:
                    rejected(RejectedRow(record.line, _out_of_bounds(time_ms, (min_ms, max_ms))))
                    continue
                device_key = record.device
                device_seq = device_seqs.get(device_key)
                if device_seq is None:
                    writer.drain()  # the session is about to be used on this thread
                    device_seq = device_seqs[device_key] = self._device_seq(device_key)
                kind, subtype, value = record.type, record.subtype, record.value
                counts[kind] += 1
                device_counts[device_key] += 1
                if time_ms < first:  # noqa: PLR1730 - faster than min() in this loop
                    first = time_ms
                if time_ms > last:  # noqa: PLR1730
                    last = time_ms
                payload = record.payload
                if kind == note:  # free text the patient wrote: sealed, and identified by a keyed hash
                    identity = ring.mac("note", record.identity)
                    if payload is not None:
                        payload = seal_mapping(note_key, payload, notes_at)
                else:
                    identity = record.identity
                key = subtype if kind == cbg else dedup_key(kind, subtype, value, identity)
                row = (
                    device_seq,
                    upload_seq,
                    kind,
                    subtype,
                    time_ms,
                    record.utc_offset_min,
                    value,
                    record.orig_value,
                    record.orig_unit,
                    record.line,
                    key,
                )
                duration, annotation = record.duration_ms, record.annotation
                if duration is None and annotation is None and payload is None:
                    append(row)  # a plain row: see RecordWriter
                else:
                    append((*row, duration, annotation, payload))
                if len(batch) >= BATCH_SIZE:
                    writer.submit(batch)
                    if progress is not None:
                        progress(len(batch))
                    batch = []
                    append = batch.append
            if batch:
                writer.submit(batch)
                if progress is not None:
                    progress(len(batch))
        except BaseException:
            with contextlib.suppress(Exception):
                writer.drain()  # never leave the thread writing on a connection about to roll back
            raise
        self.new = writer.drain()
        upload = self.upload
        for record_id in (writer.first_id, writer.last_id):
            if record_id is None:
                continue
            if upload.first_record_id is None or record_id < upload.first_record_id:
                upload.first_record_id = record_id
            if upload.last_record_id is None or record_id > upload.last_record_id:
                upload.last_record_id = record_id
        if self.first_ms is not None:  # blocks were stored
            first, last = min(first, self.first_ms), max(last, self.last_ms or last)
        if counts:
            self.first_ms, self.last_ms = first, last
        self.rejected = sorted(self.result.rejected + self.rejected, key=lambda r: r.line)

    def _block_columns(
        self,
        block: ReadingBlock,
        writer: RecordWriter,
        device_seqs: dict[str, int],
        bounds: tuple[int, int],
    ) -> ReadingColumns | None:
        """A block of readings as columns to store; readings dated out of ``bounds`` are rejected."""
        times, offsets, line = block.time_ms, block.utc_offset_min, block.line
        values, originals = block.value, block.orig_value
        inside = (times >= bounds[0]) & (times <= bounds[1])
        if not inside.all():
            for at in np.flatnonzero(~inside).tolist():
                self.rejected.append(RejectedRow(int(line[at]), _out_of_bounds(int(times[at]), bounds)))
            times, offsets, line = times[inside], offsets[inside], line[inside]
            values, originals = values[inside], originals[inside]
        count = len(times)
        if not count:
            return None
        device_seq = device_seqs.get(block.device)
        if device_seq is None:
            writer.drain()  # the session is about to be used on this thread
            device_seq = device_seqs[block.device] = self._device_seq(block.device)
        self.counts[block.type] += count
        self.device_counts[block.device] += count
        low, high = int(times.min()), int(times.max())
        self.first_ms = low if self.first_ms is None else min(self.first_ms, low)
        self.last_ms = high if self.last_ms is None else max(self.last_ms, high)
        return ReadingColumns(
            device_seq=device_seq,
            upload_seq=self.upload.seq,
            type=block.type,
            subtype=block.subtype,
            orig_unit=block.orig_unit,
            dedup_key=dedup_key(block.type, block.subtype, None, ""),
            time_ms=times.tolist(),
            utc_offset_min=offsets.tolist(),
            value=values.tolist(),
            orig_value=originals.tolist(),
            source_line=line.tolist(),
        )

    def claim_devices(self) -> Device | None:
        """Register every device of the file (and its parts) with the patient; return the primary."""
        for key, info in self.result.devices.items():
            device = resolve_device(
                self.session,
                patient_id=self.patient.id,
                manufacturer=info.manufacturer,
                model=info.model,
                serial=info.serial,
                identifiers=info.identifiers,
            )
            self.devices[key] = device
        primary = self.result.primary_device
        if primary is None and self.device_counts:
            primary = self.device_counts.most_common(1)[0][0]
        return self.devices.get(primary) if primary is not None else None


def _refuse_if_truncated(source: SourceText, *, final_newline: bool) -> None:
    """Refuse a file of a format whose files end with a line break when this one does not."""
    if final_newline and not source.text.endswith(("\n", "\r")):
        last_line = source.text.count("\n") + 1
        msg = f"{source.name}: line {last_line}: the file ends in the middle of a row (truncated?)"
        raise MalformedFileError(msg)


def _check_outcome(source: SourceText, builder: _UploadBuilder) -> None:
    """Refuse a file that turned out truncated, empty of records or mostly unreadable."""
    records = sum(builder.counts.values())
    rejected = builder.rejected
    name = source.name
    unterminated = not source.text.endswith(("\n", "\r"))
    if rejected and unterminated and rejected[-1].line == source.text.count("\n") + 1:
        msg = f"{name}: line {rejected[-1].line}: the file ends in the middle of a row (truncated?)"
        raise MalformedFileError(msg)
    if records == 0:
        if rejected:
            first = rejected[0]
            msg = f"{name}: line {first.line}: {first.reason}; no row of the file could be read"
            raise MalformedFileError(msg)
        msg = f"{name}: the file holds no records (was an empty date range exported?)"
        raise NoRecordsError(msg)
    if _too_many_rejected(len(rejected), records + len(rejected)):
        first = rejected[0]
        msg = (
            f"{name}: line {first.line}: {first.reason}; {len(rejected)} of "
            f"{records + len(rejected)} rows cannot be read, so the file is refused"
        )
        raise MalformedFileError(msg)


def _parse(
    settings: Settings, incoming: IncomingFile, zone: str
) -> tuple[SourceText, Importer, ParseContext, ParseResult]:
    """Check and parse a file the way every import does: size, time zone, text, format, truncation."""
    name, data = incoming.name, incoming.data
    if len(data) > settings.max_upload_bytes:
        msg = (
            f"{name}: the file is {len(data) / 1e6:.1f} MB, more than the limit of "
            f"{settings.max_upload_bytes / 1e6:.0f} MB (GLUCOSHARE_MAX_UPLOAD_BYTES)"
        )
        raise FileTooLargeError(msg)
    try:
        check_timezone(zone)
    except ValueError as exc:
        raise InvalidTimezoneError(str(exc)) from exc
    source = _read_source(name, data)
    importer = detect_format(source)
    _refuse_if_truncated(source, final_newline=getattr(importer, "final_newline", False))
    ctx = ParseContext(zone)
    return source, importer, ctx, importer.parse(source, ctx)


def import_file(
    session: Session,
    *,
    settings: Settings,
    patient: Patient,
    incoming: IncomingFile,
    timezone: str | None,
    actor: str,
    progress: ProgressCallback | None = None,
) -> UploadOut:
    """Import one file for ``patient``; raise an :class:`~glucoshare.errors.InputError` to refuse it.

    ``timezone`` (IANA name) maps the file's local wall times to UTC; default: the patient's.
    """
    name, data = incoming.name, incoming.data
    zone = timezone or patient.timezone
    source, importer, ctx, result = _parse(settings, incoming, zone)
    sha256 = hashlib.sha256(data).hexdigest()
    upload = Upload(
        patient_id=patient.id,
        file_name=name[:255],
        sha256=sha256,
        size_bytes=len(data),
        format=importer.format,
        encoding=source.encoding,
        timezone=zone,
        uploaded_by=actor,
    )
    session.add(upload)
    session.flush()
    builder = _UploadBuilder(session, patient, upload, result)
    try:
        with collector_paused():
            builder.consume(progress)
        _check_outcome(source, builder)
        primary = builder.claim_devices()
    except DeviceOwnedByAnotherPatientError as exc:
        raise DeviceOwnedByAnotherPatientError(f"{name}: {exc.message}") from exc
    total = sum(builder.counts.values())
    new = builder.new
    upload.device_seq = primary.seq if primary is not None else None
    upload.counts = {key: builder.counts[key] for key in sorted(builder.counts)}
    upload.new_count = new
    upload.duplicate_count = total - new
    upload.rejected_count = len(builder.rejected)
    upload.rejected = [
        {"line": r.line, "reason": r.reason} for r in builder.rejected[:MAX_REPORTED_REJECTIONS]
    ]
    upload.first_ms, upload.last_ms = builder.first_ms, builder.last_ms
    session.flush()
    if new and builder.first_ms is not None and builder.last_ms is not None:
        mark_outdated(session, patient.id, builder.first_ms, builder.last_ms, "upload")
    _store_raw(settings, patient.id, sha256, data, session)
    record_event(
        session,
        actor=actor,
        action=AuditTag.UPLOAD_CREATE,
        patient_id=patient.id,
        target=upload.id,
        details={"format": importer.format, "sha256": sha256, "new": new, "duplicates": total - new},
    )
    warnings = []
    if ctx.skipped_hour_records:
        warnings.append(
            f"{ctx.skipped_hour_records} records fall in the hour skipped by a daylight-saving "
            "change; they were read with the offset in force before the change"
        )
    if ctx.repeated_hour_records:
        warnings.append(
            f"{ctx.repeated_hour_records} records fall in the hour repeated by a daylight-saving "
            "change; their order placed them in the first or second pass of that hour"
        )
    return upload_out(upload, primary, warnings)


@dataclasses.dataclass(frozen=True, slots=True)
class Inspection:
    """What a file holds, read without storing anything: its format, devices and extent."""

    format: str
    primary: DeviceInfo | None
    """The device the file is mostly about (the one a clinic assigns to a patient)."""
    records: int
    first_ms: int | None
    last_ms: int | None


def inspect_file(settings: Settings, incoming: IncomingFile, *, timezone: str) -> Inspection:
    """Read a file the way an import would (same checks, same refusals) and store nothing."""
    _, importer, _, result = _parse(settings, incoming, timezone)
    per_device: collections.Counter[str] = collections.Counter()
    first: int | None = None
    last: int | None = None
    for item in result.records:
        if isinstance(item, ReadingBlock):
            size = len(item)
            if size:
                low, high = int(item.time_ms.min()), int(item.time_ms.max())
                per_device[item.device] += size
                first = low if first is None else min(first, low)
                last = high if last is None else max(last, high)
            continue
        per_device[item.device] += 1
        first = item.time_ms if first is None else min(first, item.time_ms)
        last = item.time_ms if last is None else max(last, item.time_ms)
    key = result.primary_device or (per_device.most_common(1)[0][0] if per_device else None)
    primary = result.devices.get(key) if key is not None else None
    return Inspection(importer.format, primary, sum(per_device.values()), first, last)


def import_files(
    session: Session,
    *,
    settings: Settings,
    patient: Patient,
    files: Sequence[IncomingFile],
    timezone: str | None,
    actor: str,
    progress: ProgressCallback | None = None,
) -> list[UploadOut]:
    """Import several files in one unit of work: all are stored, or (on any refusal) none."""
    return [
        import_file(
            session,
            settings=settings,
            patient=patient,
            incoming=incoming,
            timezone=timezone,
            actor=actor,
            progress=progress,
        )
        for incoming in files
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class UploadRemoval:
    """What removing an upload did."""

    upload_id: str
    patient_id: str
    records_deleted: int
    records_restored: int


def remove_upload(session: Session, *, settings: Settings, upload_id: str, actor: str) -> UploadRemoval:
    """Delete one upload and exactly the records it stored, losing nothing another upload brought.

    Records the patient's other uploads also contained are restored from those uploads' kept raw
    files. The raw file goes once no upload refers to it any more.
    """
    upload, removed = delete_upload(session, upload_id)
    patient = session.get(Patient, upload.patient_id)
    restored = 0
    if patient is not None and removed and upload.first_ms is not None and upload.last_ms is not None:
        for other in uploads_overlapping(session, patient.id, upload.first_ms, upload.last_ms):
            kept = read_raw(session, settings, other)
            if kept is None:
                continue
            source = _read_source(other.file_name, kept)
            result = get_importer(other.format).parse(source, ParseContext(other.timezone))
            builder = _UploadBuilder(session, patient, other, result)
            builder.consume(None)
            restored += builder.new
        mark_outdated(session, patient.id, upload.first_ms, upload.last_ms, "upload deleted")
    still_used = session.scalar(
        select(Upload.id)
        .where(Upload.sha256 == upload.sha256, Upload.patient_id == upload.patient_id)
        .limit(1)
    )
    if still_used is None:
        raw = _raw_path(settings, upload.patient_id, upload.sha256)
        after_commit(session, lambda: raw.unlink(missing_ok=True))
    record_event(
        session,
        actor=actor,
        action=AuditTag.UPLOAD_DELETE,
        patient_id=upload.patient_id,
        target=upload.id,
        details={"records_deleted": removed, "records_restored": restored},
    )
    return UploadRemoval(upload.id, upload.patient_id, removed, restored)


@dataclasses.dataclass(frozen=True, slots=True)
class PatientErasure:
    """What erasing a patient removed."""

    patient_id: str
    uploads: int
    raw_files: int


def erase_patient(session: Session, *, settings: Settings, patient: Patient, actor: str) -> PatientErasure:
    """Delete a patient with everything stored about them.

    That is their account, devices, uploads, records, aggregates, tokens, raw files and data keys
    (so that no copy of their sealed values left in this database or its files can be opened; a
    backup taken earlier still holds the wrapped keys). The audit trail keeps its events (they hold
    the patient's id, never their data) and records the erasure. Raw files go once the transaction
    has committed.
    """
    hashes = set(session.scalars(select(Upload.sha256).where(Upload.patient_id == patient.id)))
    uploads = (
        session.scalar(select(func.count()).select_from(Upload).where(Upload.patient_id == patient.id)) or 0
    )
    patient_id, user_id = patient.id, patient.user_id
    session.delete(patient)
    destroy_data_key(session, patient_id)
    if user_id is not None:
        user = session.get(User, user_id)
        if user is not None:
            session.delete(user)
            destroy_data_key(session, user_id)
    session.flush()
    folder = settings.raw_files_dir / patient_id
    doomed = [_raw_path(settings, patient_id, sha256) for sha256 in sorted(hashes)]
    after_commit(session, lambda: _unlink_all(doomed, folder))
    record_event(
        session,
        actor=actor,
        action=AuditTag.PATIENT_DELETE,
        patient_id=patient_id,
        target=patient_id,
        details={"uploads": int(uploads), "raw_files": len(doomed)},
    )
    return PatientErasure(patient_id=patient_id, uploads=int(uploads), raw_files=len(doomed))


def _unlink_all(paths: list[Path], folder: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()
