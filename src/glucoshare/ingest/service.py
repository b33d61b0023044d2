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
import functools
import gc
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.schemas import check_timezone
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.db.base import new_id
from glucoshare.devices.errors import DeviceOwnedByAnotherPatientError
from glucoshare.devices.models import Device
from glucoshare.devices.service import resolve_device
from glucoshare.errors import UnreadableFileError
from glucoshare.ingest.archives import ArchiveLimits, expand_archive, is_archive
from glucoshare.ingest.base import (
    DeviceInfo,
    Importer,
    ParseContext,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    Restart,
    SourceText,
)
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import (
    ArchiveRefusedError,
    FileTooLargeError,
    InvalidTimezoneError,
    MalformedFileError,
    NoRecordsError,
    UnknownFormatError,
)
from glucoshare.ingest.parse_process import (
    HourCounts,
    ParseAhead,
    Parser,
    ParseTask,
    forking_pays,
    parse_here,
)
from glucoshare.ingest.registry import detect_format, get_importer, importers, source_rank
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.workbooks import OLE2_MAGIC, is_workbook, workbook_text
from glucoshare.nightscout.models import NightscoutDocument
from glucoshare.records.models import Record, Upload
from glucoshare.records.schemas import UploadOut
from glucoshare.records.service import (
    BATCH_SIZE,
    ReadingColumns,
    RecordWriter,
    dedup_key,
    dedup_keys,
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
    remove_file,
    remove_files_of,
    seal_file,
    seal_mapping,
)

EARLIEST_PLAUSIBLE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
"""Records before this instant come from a device whose clock was never set; they are rejected."""

FUTURE_TOLERANCE = dt.timedelta(hours=24)
"""Records later than now plus this are rejected as dated in the future."""

GLUCOSE_CEILING_MGDL = 5000.0
"""A glucose record (``cbg``, ``smbg``) above this, or not above 0 mg/dL, is rejected: no device
reports it. The backstop behind the importers' own, narrower, limits (the widest of them is 5,000)."""

IMPLAUSIBLE_GLUCOSE = f"glucose out of range (0 to {GLUCOSE_CEILING_MGDL:g} mg/dL)"
"""The reason a row with such a glucose is rejected."""


@dataclasses.dataclass(frozen=True, slots=True)
class ValueRange:
    """The values a record type may store: from 0 up to ``ceiling`` in the type's canonical unit.

    Glucose must be above 0 and present; other values may be 0 (a suspended basal) or absent. Not a
    number is never in range. A backstop behind the importers' own limits (each ceiling is the
    widest of theirs): no device or diary reports more, so a larger value is a damaged or hostile
    file's, not a reading.
    """

    ceiling: float
    unit: str
    glucose: bool = False

    @property
    def reason(self) -> str:
        """Why a row outside the range is rejected."""
        if self.glucose:
            return IMPLAUSIBLE_GLUCOSE
        return f"value out of range (0 to {self.ceiling:g} {self.unit})"

    def admits(self, value: float | None) -> bool:
        """Whether ``value`` may be stored."""
        if value is None:
            return not self.glucose
        return (value > 0.0 if self.glucose else value >= 0.0) and value <= self.ceiling


VALUE_RANGES: dict[str, ValueRange] = {
    RecordType.CBG.value: ValueRange(GLUCOSE_CEILING_MGDL, "mg/dL", glucose=True),
    RecordType.SMBG.value: ValueRange(GLUCOSE_CEILING_MGDL, "mg/dL", glucose=True),
    RecordType.BLOOD_KETONE.value: ValueRange(100.0, "mmol/L"),  # meters read up to 8
    RecordType.BASAL.value: ValueRange(100.0, "U/h"),  # pumps deliver up to 15 to 35 U/h
    RecordType.BOLUS.value: ValueRange(1000.0, "U"),  # pumps deliver up to 25 to 35 U at once
    RecordType.INSULIN.value: ValueRange(1000.0, "U"),  # pens give up to 80 U
    RecordType.DEVICE_EVENT.value: ValueRange(1000.0, "U"),  # a prime; reservoirs hold up to 300 U
    RecordType.FOOD.value: ValueRange(10_000.0, "g"),
    RecordType.WIZARD.value: ValueRange(10_000.0, "g"),
}
"""The range of each record type's ``value`` (types not named here store none)."""

MAX_DEVICE_TEXT = 100
"""The longest manufacturer, model, serial number or identifier a device may have (its columns')."""

MAX_REPORTED_REJECTIONS = 1000
"""At most this many rejected rows are listed in an upload's result (all are counted)."""

ProgressCallback = Callable[[int], None]


def _too_many_rejected(rejected: int, total: int) -> bool:
    """A file is refused when more than 10 rows and more than 10 % of its rows are unreadable."""
    return rejected > max(10, total // 10)


def _read_source(name: str, data: bytes, limits: ArchiveLimits) -> SourceText:
    """Decode a file's bytes for the importers (a workbook is rendered as text, sheet by sheet)."""
    if is_workbook(data):
        kind = "xls" if data.startswith(OLE2_MAGIC) else "xlsx"
        return SourceText(name=name, text=workbook_text(name, data, limits), encoding=kind)
    decoded = decode_text(data, name)
    return SourceText(name=name, text=decoded.text, encoding=decoded.encoding)


def _raw_place(patient_id: str, sha256: str) -> str:
    """Where the raw bytes of a patient's upload are kept (sealed with the patient's data key)."""
    return f"raw:{patient_id}:{sha256}"


def read_raw(session: Session, upload: Upload) -> bytes | None:
    """The raw bytes of ``upload`` as they arrived, or ``None`` when the file is gone."""
    return open_file(session, upload.patient_id, _raw_place(upload.patient_id, upload.sha256))


def move_upload(session: Session, upload: Upload, patient_id: str) -> None:
    """Give an upload to another patient (a device moved to them), its raw file sealed again for them.

    The old owner's copy goes when none of their uploads is the same file any more.
    """
    data = read_raw(session, upload)
    name = upload.file_name  # sealed with the owner's data key: sealed again for the new owner
    old_owner = upload.patient_id
    if data is not None:
        _store_raw(session, patient_id, upload.sha256, data)
    upload.patient_id = patient_id
    upload.file_name = name
    session.flush()
    _forget_raw_when_unused(session, old_owner, upload.sha256)


def _store_raw(session: Session, patient_id: str, sha256: str, data: bytes) -> None:
    """Keep the raw bytes, sealed, with the transaction (once per patient and content)."""
    seal_file(session, patient_id, data, _raw_place(patient_id, sha256))


def _forget_raw_when_unused(session: Session, patient_id: str, sha256: str) -> None:
    """Remove a patient's kept raw file once no upload of theirs refers to it."""
    still_used = session.scalar(
        select(Upload.id).where(Upload.sha256 == sha256, Upload.patient_id == patient_id).limit(1)
    )
    if still_used is None:
        remove_file(session, _raw_place(patient_id, sha256))


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


def plausible_part(
    block: ReadingBlock, bounds: tuple[int, int], date_reason: Callable[[int, tuple[int, int]], str]
) -> tuple[ReadingBlock, list[RejectedRow]]:
    """The rows of ``block`` an import stores, and the others as rejected rows with their reason.

    A stored row is dated within ``bounds`` (UTC ms; ``date_reason(time_ms, bounds)`` says why not)
    and its value is in the range of its type (:data:`VALUE_RANGES`; glucose above 0, not a number
    never). The one rule of every import and of the command-line uploader's plan.
    """
    inside = (block.time_ms >= bounds[0]) & (block.time_ms <= bounds[1])
    kept = inside
    span = VALUE_RANGES.get(block.type)
    if span is not None:
        floor = (block.value > 0.0) if span.glucose else (block.value >= 0.0)
        kept = inside & floor & (block.value <= span.ceiling)
    if kept.all():
        return block, []
    rejected = [
        RejectedRow(
            int(block.line[at]),
            span.reason if span is not None and inside[at] else date_reason(int(block.time_ms[at]), bounds),
        )
        for at in np.flatnonzero(~kept).tolist()
    ]
    return block.kept(kept), rejected


def _out_of_bounds(time_ms: int, bounds: tuple[int, int]) -> str:
    """Why a record dated outside ``bounds`` (UTC ms) is rejected."""
    return "date is in the future" if time_ms > bounds[1] else "date before 2000 (device clock not set?)"


def check_device_text(info: DeviceInfo, file_name: str) -> None:
    """Refuse a file whose device is named beyond its columns (a cell that swallowed others).

    Longer than :data:`MAX_DEVICE_TEXT` characters: :class:`MalformedFileError` naming the file.
    """
    texts = (info.manufacturer, info.model, info.serial or "", *(value for _, value in info.identifiers))
    if any(len(text) > MAX_DEVICE_TEXT for text in texts):
        msg = (
            f"{file_name}: a device's name, serial number or identifier is longer than {MAX_DEVICE_TEXT} "
            "characters (a damaged file?)"
        )
        raise MalformedFileError(msg)


def plausible_bounds() -> tuple[int, int]:
    """The earliest and latest instants (UTC ms, inclusive) a stored record may have.

    From 2000 to a day from now (a device clock set ahead by a time-zone mistake is still read).
    """
    now = dt.datetime.now(dt.UTC)
    return int(EARLIEST_PLAUSIBLE.timestamp() * 1000), int((now + FUTURE_TOLERANCE).timestamp() * 1000)


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
        self.first_record_id: int | None = None
        self.last_record_id: int | None = None
        """The lowest and highest id of the records this run stored."""

    def _device_seq(self, key: str) -> int:
        device = self.devices.get(key)
        if device is None:
            info = self.result.devices[key]
            check_device_text(info, self.upload.file_name)
            device = resolve_device(
                self.session,
                patient_id=self.patient.id,
                manufacturer=info.manufacturer,
                model=info.model,
                serial=info.serial,
            )
            self._rank(device)
            self.devices[key] = device
        return device.seq

    def _rank(self, device: Device) -> None:
        """Note the route this upload's data came by on the device, when it is the best so far."""
        rank = source_rank(self.upload.format)
        if device.source_rank is None or rank < device.source_rank:
            device.source_rank = rank

    def consume(self, progress: ProgressCallback | None) -> None:
        """Store every record of the parse (the hot loop of an import); count and bound-check."""
        min_ms, max_ms = plausible_bounds()
        writer = RecordWriter(self.session)
        upload_seq = self.upload.seq
        counts, device_counts = self.counts, self.device_counts
        first, last = max_ms, min_ms  # narrowed by every stored record
        rejected = self.rejected.append
        device_seqs: dict[str, int] = {}
        batch: list[tuple[Any, ...]] = []
        append = batch.append
        cbg, note = RecordType.CBG.value, RecordType.NOTE.value
        ranges = VALUE_RANGES
        ring = keyring_of(self.session)
        note_key = data_key(self.session, self.patient.id)
        notes_at = note_place(self.patient.id)
        for record in self.result.records:
            if type(record) is ReadingBlock:
                columns = self._block_columns(record, device_seqs, (min_ms, max_ms))
                if columns is not None:
                    writer.write(columns)
                    if progress is not None:
                        progress(len(columns))
                if batch:  # the records among the blocks go now, not all after the last block
                    writer.write(batch)
                    if progress is not None:
                        progress(len(batch))
                    batch = []
                    append = batch.append
                continue
            if type(record) is Restart:  # the importer reads the file again: what it gave so far goes
                self._withdraw(writer)
                writer = RecordWriter(self.session)
                batch = []
                append = batch.append
                first, last = max_ms, min_ms
                continue
            assert type(record) is ParsedRecord  # noqa: S101 - narrows the type for mypy
            time_ms = record.time_ms
            if not min_ms <= time_ms <= max_ms:
                rejected(RejectedRow(record.line, _out_of_bounds(time_ms, (min_ms, max_ms))))
                continue
            kind, subtype, value = record.type, record.subtype, record.value
            span = ranges.get(kind)
            if span is not None and not span.admits(value):
                rejected(RejectedRow(record.line, span.reason))
                continue
            device_key = record.device
            device_seq = device_seqs.get(device_key)
            if device_seq is None:
                device_seq = device_seqs[device_key] = self._device_seq(device_key)
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
                writer.write(batch)
                if progress is not None:
                    progress(len(batch))
                batch = []
                append = batch.append
        if batch:
            writer.write(batch)
            if progress is not None:
                progress(len(batch))
        self.new = writer.new
        self.first_record_id, self.last_record_id = writer.first_id, writer.last_id
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

    def _withdraw(self, writer: RecordWriter) -> None:
        """Delete the records ``writer`` stored of this run, and forget what was counted of them."""
        if writer.first_id is not None and writer.last_id is not None:
            stored = Record.id.between(writer.first_id, writer.last_id)
            self.session.execute(
                delete(Record)
                .where(Record.upload_seq == self.upload.seq, stored)
                .execution_options(synchronize_session=False)
            )
        self.counts.clear()
        self.device_counts.clear()
        self.rejected.clear()
        self.first_ms = self.last_ms = None

    def _block_columns(
        self,
        block: ReadingBlock,
        device_seqs: dict[str, int],
        bounds: tuple[int, int],
    ) -> ReadingColumns | None:
        """A block as columns to store; its implausible rows are rejected (:func:`plausible_part`)."""
        block, rejected = plausible_part(block, bounds, _out_of_bounds)
        self.rejected += rejected
        count = len(block)
        if not count:
            return None
        device_seq = device_seqs.get(block.device)
        if device_seq is None:
            device_seq = device_seqs[block.device] = self._device_seq(block.device)
        self.counts[block.type] += count
        self.device_counts[block.device] += count
        low, high = int(block.time_ms.min()), int(block.time_ms.max())
        self.first_ms = low if self.first_ms is None else min(self.first_ms, low)
        self.last_ms = high if self.last_ms is None else max(self.last_ms, high)
        values = block.value.tolist()
        return ReadingColumns(
            device_seq=device_seq,
            upload_seq=self.upload.seq,
            type=block.type,
            subtype=block.subtype,
            orig_unit=block.orig_unit,
            dedup_key=dedup_keys(block.type, block.subtype, values),
            time_ms=block.time_ms.tolist(),
            utc_offset_min=block.utc_offset_min.tolist(),
            value=values,
            orig_value=block.orig_value.tolist(),
            source_line=block.line.tolist(),
            duration_ms=None if block.duration_ms is None else block.duration_ms.tolist(),
        )

    def claim_devices(self) -> Device | None:
        """Register every device of the file (and its parts) with the patient; return the primary."""
        for key, info in self.result.devices.items():
            if key in self.devices and not info.identifiers:
                continue  # found (and ranked) while its records were stored
            check_device_text(info, self.upload.file_name)
            device = resolve_device(
                self.session,
                patient_id=self.patient.id,
                manufacturer=info.manufacturer,
                model=info.model,
                serial=info.serial,
                identifiers=info.identifiers,
            )
            self._rank(device)
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


def _check_outcome(source: SourceText, builder: _UploadBuilder, importer: Importer) -> None:
    """Refuse a file that turned out truncated, empty of records or mostly unreadable."""
    check_outcome(
        source,
        importer,
        records=sum(builder.counts.values()),
        rejected=builder.rejected,
        notes=builder.result.notes,
    )


def check_outcome(
    source: SourceText,
    importer: Importer,
    *,
    records: int,
    rejected: Sequence[RejectedRow],
    notes: Sequence[str],
) -> None:
    """Refuse a parsed file that is truncated, empty of records or mostly unreadable.

    ``records`` is how many records the parse gave, ``rejected`` its unreadable rows in line
    order, ``notes`` what the importer said it left out. The one rule of every import (and of
    the command-line uploader, which parses files before sending them).
    """
    name = source.name
    judged = getattr(importer, "checks_truncation", False)  # the importer refuses a cut-off file itself
    unterminated = not judged and not source.text.endswith(("\n", "\r"))
    if rejected and unterminated and rejected[-1].line == source.text.count("\n") + 1:
        msg = f"{name}: line {rejected[-1].line}: the file ends in the middle of a row (truncated?)"
        raise MalformedFileError(msg)
    if records == 0:
        if rejected:
            first = rejected[0]
            msg = f"{name}: line {first.line}: {first.reason}; no row of the file could be read"
            raise MalformedFileError(msg)
        why = "; ".join(notes) if notes else "was an empty date range exported?"
        msg = f"{name}: the file holds no records ({why})"
        raise NoRecordsError(msg, list(notes))
    if _too_many_rejected(len(rejected), records + len(rejected)):
        first = rejected[0]
        msg = (
            f"{name}: line {first.line}: {first.reason}; {len(rejected)} of "
            f"{records + len(rejected)} rows cannot be read, so the file is refused"
        )
        raise MalformedFileError(msg)


def archive_limits(settings: Settings) -> ArchiveLimits:
    """The limits one archive or folder given to an import is held to."""
    return ArchiveLimits(
        max_members=settings.max_archive_members,
        max_member_bytes=settings.max_upload_bytes,
        max_total_bytes=settings.max_unpacked_bytes,
    )


def _check_size(settings: Settings, incoming: IncomingFile) -> None:
    if len(incoming.data) > settings.max_upload_bytes:
        msg = (
            f"{incoming.name}: the file is {len(incoming.data) / 1e6:.1f} MB, more than the limit of "
            f"{settings.max_upload_bytes / 1e6:.0f} MB (GLUCOSHARE_MAX_UPLOAD_BYTES)"
        )
        raise FileTooLargeError(msg)


def _check_zone(zone: str) -> None:
    try:
        check_timezone(zone)
    except ValueError as exc:
        raise InvalidTimezoneError(str(exc)) from exc


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedFile:
    """A file ready to parse: decoded, its format recognised, and where it came from."""

    incoming: IncomingFile
    source: SourceText
    importer: Importer
    container: str | None
    """The archive (or folder) it was found in; ``None`` for a file given on its own."""
    sha256: str
    """Of the file's bytes (hex): names its upload's content and its kept raw file."""


@dataclasses.dataclass(slots=True)
class PreparedBatch:
    """The files of one import: what will be parsed, and what of the containers was left out."""

    files: list[PreparedFile]
    skipped: dict[str, list[str]]
    """Per container, the members left out, each with the reason."""

    @property
    def siblings(self) -> tuple[SourceText, ...]:
        """Every recognised file of the batch (an importer may read a file's siblings)."""
        return tuple(p.source for p in self.files)


def _prepare_one(settings: Settings, incoming: IncomingFile, container: str | None) -> PreparedFile:
    """Decode a file, recognise its format and refuse a truncated one."""
    source = _read_source(incoming.name, incoming.data, archive_limits(settings))
    importer = detect_format(source)
    _refuse_if_truncated(source, final_newline=getattr(importer, "final_newline", False))
    return PreparedFile(incoming, source, importer, container, hashlib.sha256(incoming.data).hexdigest())


def prepare_files(
    settings: Settings, files: Sequence[IncomingFile], containers: Sequence[str | None]
) -> PreparedBatch:
    """Check, unpack, decode and recognise every file of one import.

    A zip archive is replaced by its members (:mod:`glucoshare.ingest.archives`). A member that is
    not a device export Glucoshare reads (a PDF, a read-me, a kind of file no importer knows) is left
    out and listed; a file given on its own, or an archive in which nothing is recognised or that holds
    no file at all, is refused.
    """
    batch = PreparedBatch([], {})
    for incoming, given_container in zip(files, containers, strict=True):
        _check_size(settings, incoming)
        if is_archive(incoming.data) and not is_workbook(incoming.data):
            members = expand_archive(incoming.name, incoming.data, archive_limits(settings))
            if not members:  # empty, or only folders and the operating system's own files
                msg = f"{incoming.name}: the archive holds no files"
                raise NoRecordsError(msg)
            container: str | None = incoming.name
        else:
            members, container = [incoming], given_container
        for member in members:
            if container is None:
                batch.files.append(_prepare_one(settings, member, None))
                continue
            try:
                batch.files.append(_prepare_one(settings, member, container))
            except (UnreadableFileError, UnknownFormatError) as exc:
                reason = exc.message.removeprefix(f"{member.name}: ").split(";")[0]
                batch.skipped.setdefault(container, []).append(f"{_inner(member.name, container)} ({reason})")
    for container, left_out in batch.skipped.items():
        if not any(p.container == container for p in batch.files):
            known = ", ".join(f"{i.label} ({i.format})" for i in importers())
            msg = (
                f"{container}: none of its {len(left_out)} files is an export Glucoshare reads "
                f"({'; '.join(left_out[:5])}); Glucoshare reads: {known}"
            )
            raise UnknownFormatError(msg)
    return batch


def _inner(name: str, container: str) -> str:
    """A member's path inside its container, for messages."""
    return name.removeprefix(container).lstrip("/") or name


@dataclasses.dataclass(slots=True)
class _OutdatedSpan:
    """The instants (UTC ms) an import's new records span: their days' summaries are outdated.

    Marked once per import (:meth:`mark`) rather than once per file: the backlog keeps one span per
    patient, widened to cover each span marked (:func:`~glucoshare.summaries.service.mark_outdated`),
    so one mark of the covering span leaves it as one mark per file would.
    """

    first_ms: int | None = None
    last_ms: int | None = None

    def add(self, first_ms: int, last_ms: int) -> None:
        """Widen the span to cover ``first_ms`` to ``last_ms``."""
        self.first_ms = first_ms if self.first_ms is None else min(self.first_ms, first_ms)
        self.last_ms = last_ms if self.last_ms is None else max(self.last_ms, last_ms)

    def mark(self, session: Session, patient_id: str) -> None:
        """Note the span's days for recomputing, when the import added any record."""
        if self.first_ms is not None and self.last_ms is not None:
            mark_outdated(session, patient_id, self.first_ms, self.last_ms, "upload")


def _store(
    session: Session,
    *,
    patient: Patient,
    prepared: PreparedFile,
    zone: str,
    actor: str,
    parse: Callable[[], tuple[ParseResult, HourCounts]],
    batch_id: str | None,
    progress: ProgressCallback | None,
    outdated: _OutdatedSpan,
) -> UploadOut:
    """Parse (``parse``: here or in the parse process) and store one recognised file as one upload.

    The caller has kept the raw file (:func:`_store_raw`, while a parse process reads the first rows),
    marks the days of ``outdated`` once all its files are stored, and owns the transaction.
    """
    incoming, source, importer = prepared.incoming, prepared.source, prepared.importer
    name, data, sha256 = incoming.name, incoming.data, prepared.sha256
    result, ctx = parse()
    upload = Upload(
        patient_id=patient.id,
        file_name=name[:255],
        sha256=sha256,
        size_bytes=len(data),
        format=importer.format,
        encoding=source.encoding,
        timezone=zone,
        uploaded_by=actor,
        batch_id=batch_id,
    )
    session.add(upload)
    session.flush()
    builder = _UploadBuilder(session, patient, upload, result)
    try:
        with collector_paused():
            builder.consume(progress)
        _check_outcome(source, builder, importer)
        primary = builder.claim_devices()
    except DeviceOwnedByAnotherPatientError as exc:
        raise DeviceOwnedByAnotherPatientError(f"{name}: {exc.message}") from exc
    except NoRecordsError:
        # Nothing was stored for the file (no record, so no device either): only its upload row
        # and its raw file, which go again, so that a batch can leave the file out and go on.
        session.delete(upload)
        session.flush()
        _forget_raw_when_unused(session, patient.id, sha256)
        raise
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
        outdated.add(builder.first_ms, builder.last_ms)
    record_event(
        session,
        actor=actor,
        action=AuditTag.UPLOAD_CREATE,
        patient_id=patient.id,
        target=upload.id,
        details={"format": importer.format, "sha256": sha256, "new": new, "duplicates": total - new},
    )
    warnings = list(result.notes)
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
    """Import one plain (not archived) file for ``patient``; raise an :class:`InputError` to refuse it.

    ``timezone`` (IANA name) maps the file's local wall times to UTC; default: the patient's.
    Archives and folders go through :func:`import_files`, which may make several uploads of one.
    """
    zone = timezone or patient.timezone
    _check_size(settings, incoming)
    _check_zone(zone)
    if is_archive(incoming.data) and not is_workbook(incoming.data):
        msg = f"{incoming.name}: this is a zip archive; its files are imported together as a batch"
        raise ArchiveRefusedError(msg)
    prepared = _prepare_one(settings, incoming, None)
    tasks = [ParseTask(prepared.source, prepared.importer, ())]
    outdated = _OutdatedSpan()
    with _parser(session, settings, tasks, zone) as parse:
        _store_raw(session, patient.id, prepared.sha256, incoming.data)  # while a parse process reads
        out = _store(
            session,
            patient=patient,
            prepared=prepared,
            zone=zone,
            actor=actor,
            parse=functools.partial(parse, 0),
            batch_id=None,
            progress=progress,
            outdated=outdated,
        )
    outdated.mark(session, patient.id)
    return out


@contextlib.contextmanager
def _parser(session: Session, settings: Settings, tasks: Sequence[ParseTask], zone: str) -> Iterator[Parser]:
    """The parse of an import's files: in a child process when that pays, else in this one.

    On SQLite only: there the parse and the store take about as long as each other. On PostgreSQL
    the server's own work is most of an import (it takes three to four times the parse), and a
    server on the same machine would lose a core to the child (measured: a third slower).
    """
    on_sqlite = session.get_bind().dialect.name == "sqlite"
    if not on_sqlite or not forking_pays(tasks, settings.parse_process_min_chars):
        yield parse_here(tasks, zone)
        return
    with ParseAhead(tasks, zone) as ahead:
        yield ahead.parse


@dataclasses.dataclass(frozen=True, slots=True)
class Inspection:
    """What a file holds, read without storing anything: its format, devices and extent."""

    format: str
    primary: DeviceInfo | None
    """The device the file is mostly about (the one a clinic assigns to a patient)."""
    records: int
    first_ms: int | None
    last_ms: int | None


@dataclasses.dataclass(slots=True)
class _FileExtent:
    """What one file of an inspection holds: records per device, and their time span."""

    per_device: collections.Counter[tuple[str, str, str | None]] = dataclasses.field(
        default_factory=collections.Counter
    )
    infos: dict[tuple[str, str, str | None], DeviceInfo] = dataclasses.field(default_factory=dict)
    span: tuple[int, int] | None = None

    def add(self, item: ParsedRecord | ReadingBlock | None, info: DeviceInfo) -> None:
        """Count ``item`` (a non-empty block or a record) for its device; ``None``: the device alone."""
        key = (info.manufacturer, info.model, info.serial)
        self.infos.setdefault(key, info)
        if item is None:
            self.per_device[key] += 0
            return
        if isinstance(item, ReadingBlock):
            size, low, high = len(item), int(item.time_ms.min()), int(item.time_ms.max())
        else:
            size, low, high = 1, item.time_ms, item.time_ms
        self.per_device[key] += size
        self.span = (low, high) if self.span is None else (min(self.span[0], low), max(self.span[1], high))


def inspect_file(settings: Settings, incoming: IncomingFile, *, timezone: str) -> Inspection:
    """Read a file (or every file of an archive) the way an import would, and store nothing.

    The same checks and refusals as an import; for an archive, ``format`` is the format of most of
    its records and ``primary`` the device most records come from.
    """
    _check_zone(timezone)
    batch = prepare_files(settings, [incoming], [None])
    per_device: collections.Counter[tuple[str, str, str | None]] = collections.Counter()
    per_format: collections.Counter[str] = collections.Counter()
    infos: dict[tuple[str, str, str | None], DeviceInfo] = {}
    spans: list[tuple[int, int]] = []
    with collector_paused():  # as an import does: parsing makes many short-lived objects
        for prepared in batch.files:
            result = prepared.importer.parse(
                prepared.source,
                ParseContext(timezone, [s for s in batch.siblings if s is not prepared.source]),
            )
            seen = _FileExtent()
            for item in result.records:
                if isinstance(item, Restart):
                    seen = _FileExtent()  # what the importer withdrew
                elif not isinstance(item, ReadingBlock) or len(item):
                    seen.add(item, result.devices[item.device])
            if result.primary_device is not None and result.primary_device in result.devices:
                seen.add(None, result.devices[result.primary_device])
            for key, count in seen.per_device.items():
                per_device[key] += count
                per_format[prepared.importer.format] += count
            infos.update((key, info) for key, info in seen.infos.items() if key not in infos)
            if seen.span is not None:
                spans.append(seen.span)
    first = min((low for low, _ in spans), default=None)
    last = max((high for _, high in spans), default=None)
    if not per_device:
        fmt = batch.files[0].importer.format
        return Inspection(fmt, None, 0, None, None)
    key = per_device.most_common(1)[0][0]
    return Inspection(per_format.most_common(1)[0][0], infos[key], sum(per_device.values()), first, last)


def import_files(
    session: Session,
    *,
    settings: Settings,
    patient: Patient,
    files: Sequence[IncomingFile],
    timezone: str | None,
    actor: str,
    progress: Callable[[str], ProgressCallback | None] | None = None,
    containers: Sequence[str | None] | None = None,
) -> list[UploadOut]:
    """Import several files as one batch, in one unit of work: all are stored, or (on any refusal) none.

    A zip archive among ``files`` is imported member by member (one upload each); ``containers``
    names, per file, the folder it was found in (``None``: given on its own), so that a folder's
    files are treated like an archive's members: one that is not a device export is left out and
    listed in the warnings of the container's first upload, and one that holds no records is left
    out too. Of several files given together, one without records is left out the same way (a
    Tandem Source hourly file whose hours the basal doses beside it cover); a single file without
    records, or a batch in which no file has any, is refused. Every file can see the others of the
    batch (:attr:`ParseContext.siblings`).
    ``progress`` gives, per file name, a callback for the records stored.
    """
    zone = timezone or patient.timezone
    _check_zone(zone)
    batch = prepare_files(settings, files, containers or [None] * len(files))
    siblings = batch.siblings
    tasks = [
        ParseTask(p.source, p.importer, tuple(s for s in siblings if s is not p.source)) for p in batch.files
    ]
    with _parser(session, settings, tasks, zone) as parse:
        for prepared in batch.files:  # while a parse process reads the first file
            _store_raw(session, patient.id, prepared.sha256, prepared.incoming.data)
        return _store_batch(
            session, patient=patient, batch=batch, parse=parse, zone=zone, actor=actor, progress=progress
        )


def _store_batch(
    session: Session,
    *,
    patient: Patient,
    batch: PreparedBatch,
    parse: Parser,
    zone: str,
    actor: str,
    progress: Callable[[str], ProgressCallback | None] | None,
) -> list[UploadOut]:
    """Store the files of a prepared batch, one upload each (see :func:`import_files`)."""
    batch_id = new_id() if len(batch.files) > 1 else None
    outdated = _OutdatedSpan()
    out: list[UploadOut] = []
    first_of: dict[str, int] = {}
    several = len(batch.files) > 1
    for index, prepared in enumerate(batch.files):
        callback = None if progress is None else progress(prepared.incoming.name)
        store = functools.partial(
            _store,
            session,
            patient=patient,
            prepared=prepared,
            zone=zone,
            actor=actor,
            parse=functools.partial(parse, index),
            batch_id=batch_id,
            progress=callback,
            outdated=outdated,
        )
        container = prepared.container
        if container is None and not several:
            out.append(store())
            continue
        group = container or ""  # "": the files given on their own
        try:
            upload = store()  # a file without records leaves nothing behind (see _store)
        except NoRecordsError as exc:
            inner = prepared.incoming.name if container is None else _inner(prepared.incoming.name, container)
            why = "; ".join(("no records", *exc.notes))
            batch.skipped.setdefault(group, []).append(f"{inner} ({why})")
            continue
        first_of.setdefault(group, len(out))
        out.append(upload)
    for group, left_out in batch.skipped.items():
        if group not in first_of:
            if group:
                msg = f"{group}: none of its files holds records (was an empty date range exported?)"
            else:
                msg = f"none of the files holds records ({'; '.join(left_out)})"
            raise NoRecordsError(msg)
        at = first_of[group]
        where = f" of {group}" if group else ""
        count = "1 file" if len(left_out) == 1 else f"{len(left_out)} files"
        verb = "was" if len(left_out) == 1 else "were"
        note = f"{count}{where} {verb} not imported: {'; '.join(left_out)}"
        out[at] = out[at].model_copy(update={"warnings": [*out[at].warnings, note]})
    outdated.mark(session, patient.id)
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class StoredRun:
    """What :func:`store_parsed` added to an upload: new records (with the range of their ids)."""

    new: int
    total: int
    first_record_id: int | None
    last_record_id: int | None
    primary: Device | None


def store_parsed(
    session: Session, *, patient: Patient, upload: Upload, result: ParseResult, count: bool = True
) -> StoredRun:
    """Store the records of ``result`` for a data set or API upload that already exists, and add them up.

    The records go through the same path as a file's (bounds checks, sealed notes, natural-key
    deduplication, devices registered with the patient); the upload's counts, time range and
    record-id range grow by what this run stored, and the summaries of the days it touched are
    marked for recomputing (``count=False``: a restore, nothing added up). A row of ``result`` that
    is rejected raises
    :class:`~glucoshare.ingest.errors.MalformedFileError` (API callers validate before).
    """
    builder = _UploadBuilder(session, patient, upload, result)
    with collector_paused():
        builder.consume(None)
    if builder.rejected:
        first = builder.rejected[0]
        msg = f"record {first.line}: {first.reason}"
        raise MalformedFileError(msg)
    primary = builder.claim_devices()
    total = sum(builder.counts.values())
    if not count:  # a restore: the records were counted when they first arrived
        return StoredRun(builder.new, total, builder.first_record_id, builder.last_record_id, primary)
    counts = collections.Counter(upload.counts or {})
    counts.update(builder.counts)
    upload.counts = {key: counts[key] for key in sorted(counts)}
    upload.new_count += builder.new
    upload.duplicate_count += total - builder.new
    if builder.first_ms is not None and builder.last_ms is not None:
        upload.first_ms = (
            builder.first_ms if upload.first_ms is None else min(upload.first_ms, builder.first_ms)
        )
        upload.last_ms = builder.last_ms if upload.last_ms is None else max(upload.last_ms, builder.last_ms)
        if builder.new:
            mark_outdated(session, patient.id, builder.first_ms, builder.last_ms, "upload")
    if upload.device_seq is None and primary is not None:
        upload.device_seq = primary.seq
    session.flush()
    return StoredRun(builder.new, total, builder.first_record_id, builder.last_record_id, primary)


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
    if upload.format == NIGHTSCOUT_API_FORMAT:  # its documents go with it
        session.execute(delete(NightscoutDocument).where(NightscoutDocument.upload_seq == upload.seq))
    patient = session.get(Patient, upload.patient_id)
    restored = 0
    if patient is not None and removed and upload.first_ms is not None and upload.last_ms is not None:
        batches: dict[str, dict[int, SourceText]] = {}  # each batch's kept files, read once
        for other in uploads_overlapping(session, patient.id, upload.first_ms, upload.last_ms):
            if other.batch_id is None:
                members = _kept_sources(session, settings, [other])
            elif other.batch_id in batches:
                members = batches[other.batch_id]
            else:
                batch = session.scalars(
                    select(Upload).where(Upload.patient_id == patient.id, Upload.batch_id == other.batch_id)
                ).all()
                if other.batch_id == upload.batch_id:
                    # The removed file is still a sibling of the rest of its batch (its raw file goes
                    # only after the commit): they are read again exactly as they were imported.
                    batch = [*batch, upload]
                members = batches[other.batch_id] = _kept_sources(session, settings, batch)
            if other.state != "file":
                restored += _restore_api_upload(session, patient, other)
                continue
            source = members.get(other.seq)
            if source is None:
                continue
            siblings = [kept for seq, kept in members.items() if seq != other.seq]
            result = get_importer(other.format).parse(source, ParseContext(other.timezone, siblings))
            builder = _UploadBuilder(session, patient, other, result)
            builder.consume(None)
            restored += builder.new
        mark_outdated(session, patient.id, upload.first_ms, upload.last_ms, "upload deleted")
    _forget_raw_when_unused(session, upload.patient_id, upload.sha256)
    record_event(
        session,
        actor=actor,
        action=AuditTag.UPLOAD_DELETE,
        patient_id=upload.patient_id,
        target=upload.id,
        details={"records_deleted": removed, "records_restored": restored},
    )
    return UploadRemoval(upload.id, upload.patient_id, removed, restored)


NIGHTSCOUT_API_FORMAT = "nightscout_api"
"""The format of a patient's continuous upload of the Nightscout API (:mod:`glucoshare.nightscout`)."""


def _restore_api_upload(session: Session, patient: Patient, upload: Upload) -> int:
    """Store again the records of an API upload that another upload's removal took away.

    A data set or the Nightscout API's upload: read again from the requests they keep; returns
    how many records came back.
    """
    # Imported here: those services store their records through this module.
    from glucoshare.datasets.service import restore_dataset  # noqa: PLC0415
    from glucoshare.nightscout.service import restore_documents  # noqa: PLC0415

    if upload.format == NIGHTSCOUT_API_FORMAT:
        return restore_documents(session, patient, upload)
    if upload.state in ("closed", "continuous"):
        return restore_dataset(session, patient, upload)
    return 0


def _kept_sources(session: Session, settings: Settings, uploads: Iterable[Upload]) -> dict[int, SourceText]:
    """The kept raw files of ``uploads``, decoded, by upload (those whose file is gone left out)."""
    sources: dict[int, SourceText] = {}
    for upload in uploads:
        if upload.state != "file":
            continue
        kept = read_raw(session, upload)
        if kept is not None:
            sources[upload.seq] = _read_source(upload.file_name, kept, archive_limits(settings))
    return sources


@dataclasses.dataclass(frozen=True, slots=True)
class PatientErasure:
    """What erasing a patient removed."""

    patient_id: str
    uploads: int
    raw_files: int


def erase_patient(session: Session, *, patient: Patient, actor: str) -> PatientErasure:
    """Delete a patient with everything stored about them.

    That is their account, devices, uploads, records, aggregates, tokens, kept raw files and data
    keys (so that no copy of their sealed values left in this database can be opened; a backup taken
    earlier still holds the wrapped keys). The audit trail keeps its events (they hold the patient's
    id, never their data) and records the erasure. All of it commits, or none, with the caller.
    """
    uploads = (
        session.scalar(select(func.count()).select_from(Upload).where(Upload.patient_id == patient.id)) or 0
    )
    patient_id, user_id = patient.id, patient.user_id
    session.delete(patient)
    raw_files = remove_files_of(session, patient_id)
    destroy_data_key(session, patient_id)
    if user_id is not None:
        user = session.get(User, user_id)
        if user is not None:
            session.delete(user)
            remove_files_of(session, user_id)
            destroy_data_key(session, user_id)
    session.flush()
    record_event(
        session,
        actor=actor,
        action=AuditTag.PATIENT_DELETE,
        patient_id=patient_id,
        target=patient_id,
        details={"uploads": int(uploads), "raw_files": raw_files},
    )
    return PatientErasure(patient_id=patient_id, uploads=int(uploads), raw_files=raw_files)
