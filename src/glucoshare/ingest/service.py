"""Import files: decode, detect, parse, normalise and store, all or nothing.

The caller owns the transaction (:func:`glucoshare.db.session_scope`); when any file is refused,
the caller rolls back and stored data stays exactly as it was. Raw files are kept, content
addressed, under ``$GLUCOSHARE_DATA_DIR/uploads`` so that every record's ``source_line`` points at
a row that can be shown again.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.schemas import check_timezone
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.devices.models import Device
from glucoshare.devices.service import resolve_device
from glucoshare.ingest.base import ParseContext, ParsedRecord, ParseResult, RejectedRow, SourceText
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import (
    FileTooLargeError,
    InvalidTimezoneError,
    MalformedFileError,
    NoRecordsError,
)
from glucoshare.ingest.registry import detect_format
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.records.models import Upload
from glucoshare.records.schemas import UploadOut
from glucoshare.records.service import RecordWriter, count_upload_records, dedup_key, upload_out

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


def _store_raw(settings: Settings, sha256: str, data: bytes, session: Session) -> None:
    """Keep the raw bytes, content addressed; remove them again if the transaction rolls back."""
    target = settings.raw_files_dir / sha256[:2] / sha256
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o600)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    hooks: list[Callable[[], None]] = session.info.setdefault("rollback_hooks", [])
    hooks.append(lambda: target.unlink(missing_ok=True))


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

    def _device_id(self, key: str) -> str:
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
        return device.id

    def consume(self, progress: ProgressCallback | None) -> None:
        now = dt.datetime.now(dt.UTC)
        min_ms = int(EARLIEST_PLAUSIBLE.timestamp() * 1000)
        max_ms = int((now + FUTURE_TOLERANCE).timestamp() * 1000)
        writer = RecordWriter(self.session)
        patient_id, upload_id = self.patient.id, self.upload.id
        counts, device_counts = self.counts, self.device_counts
        first, last = self.first_ms, self.last_ms
        seen = 0
        device_ids: dict[str, str] = {}
        record: ParsedRecord
        for record in self.result.records:
            seen += 1
            if progress is not None and seen % 10_000 == 0:
                progress(10_000)
            time_ms = record.time_ms
            if time_ms > max_ms:
                self.rejected.append(RejectedRow(record.line, "date is in the future"))
                continue
            if time_ms < min_ms:
                self.rejected.append(RejectedRow(record.line, "date before 2000 (device clock not set?)"))
                continue
            device_id = device_ids.get(record.device)
            if device_id is None:
                device_id = device_ids[record.device] = self._device_id(record.device)
            counts[record.type] += 1
            device_counts[record.device] += 1
            if first is None or time_ms < first:
                first = time_ms
            if last is None or time_ms > last:
                last = time_ms
            writer.add(
                (
                    patient_id,
                    device_id,
                    upload_id,
                    record.type,
                    record.subtype,
                    time_ms,
                    record.utc_offset_min,
                    record.value,
                    record.orig_value,
                    record.orig_unit,
                    record.duration_ms,
                    record.annotation,
                    record.payload,
                    record.line,
                    dedup_key(record.type, record.subtype, record.value, record.identity),
                )
            )
        writer.flush()
        if progress is not None:
            progress(seen % 10_000)
        self.first_ms, self.last_ms = first, last
        self.rejected = sorted(self.result.rejected + self.rejected, key=lambda r: r.line)

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


def _check_outcome(source: SourceText, builder: _UploadBuilder) -> None:
    records = sum(builder.counts.values())
    rejected = builder.rejected
    name = source.name
    if rejected:
        last_line = source.text.count("\n") + (0 if source.text.endswith("\n") else 1)
        worst = rejected[-1]
        if worst.line == last_line and not source.text.endswith(("\n", "\r")):
            msg = f"{name}: line {worst.line}: the file ends in the middle of a row (truncated?)"
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
    if len(data) > settings.max_upload_bytes:
        msg = (
            f"{name}: the file is {len(data) / 1e6:.1f} MB, more than the limit of "
            f"{settings.max_upload_bytes / 1e6:.0f} MB (GLUCOSHARE_MAX_UPLOAD_BYTES)"
        )
        raise FileTooLargeError(msg)
    zone = timezone or patient.timezone
    try:
        check_timezone(zone)
    except ValueError as exc:
        raise InvalidTimezoneError(str(exc)) from exc
    decoded = decode_text(data, name)
    source = SourceText(name=name, text=decoded.text, encoding=decoded.encoding)
    importer = detect_format(source)
    ctx = ParseContext(zone)
    result = importer.parse(source, ctx)
    sha256 = hashlib.sha256(data).hexdigest()
    upload = Upload(
        patient_id=patient.id,
        file_name=name[:255],
        sha256=sha256,
        size_bytes=len(data),
        format=importer.format,
        encoding=decoded.encoding,
        timezone=zone,
        uploaded_by=actor,
        counts={},
        new_count=0,
        duplicate_count=0,
        rejected_count=0,
        rejected=[],
    )
    session.add(upload)
    session.flush()
    builder = _UploadBuilder(session, patient, upload, result)
    builder.consume(progress)
    _check_outcome(source, builder)
    primary = builder.claim_devices()
    total = sum(builder.counts.values())
    new = count_upload_records(session, upload.id)
    upload.device_id = primary.id if primary is not None else None
    upload.counts = {key: builder.counts[key] for key in sorted(builder.counts)}
    upload.new_count = new
    upload.duplicate_count = total - new
    upload.rejected_count = len(builder.rejected)
    upload.rejected = [
        {"line": r.line, "reason": r.reason} for r in builder.rejected[:MAX_REPORTED_REJECTIONS]
    ]
    upload.first_ms, upload.last_ms = builder.first_ms, builder.last_ms
    session.flush()
    _store_raw(settings, sha256, data, session)
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
