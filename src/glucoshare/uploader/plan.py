"""Device exports read on this machine, as an import reads them, and their records made ready to send.

Nothing here touches a database. A path is read the way ``glucoshare import`` reads it
(:mod:`glucoshare.ingest.service`): a zip archive or a folder gives its files, each is decoded and
its format recognised from the content, parsed with the other files that came with it as its
siblings, and refused for the same reasons (truncated, no records, mostly unreadable rows, a
device named beyond :data:`~glucoshare.ingest.service.MAX_DEVICE_TEXT` characters). Records dated
before 2000 or more than a day ahead, and values out of their type's range
(:data:`~glucoshare.ingest.service.VALUE_RANGES`: glucose above 0 and up to
:data:`~glucoshare.ingest.service.GLUCOSE_CEILING_MGDL` mg/dL, insulin, carbohydrate and ketones up
to a ceiling no device reports), are left out, as an import rejects them.

The records of a file are grouped by device, because a data set of the upload API belongs to one
device (:func:`dataset_name`). :func:`sendable` turns a device's records, in the file's order,
into the JSON records of the upload API (:func:`glucoshare.datasets.records.record_json`):

* a record of a type the API does not carry (``wizard``, ``pumpSettings``, ``cgmSettings``) is left
  out and counted;
* a record that is not newer than the newest the server holds for its type and device
  (``device_latest``) is counted as already on the server and not sent;
* every other record is checked here with the server's own rules
  (:func:`glucoshare.datasets.records.validate_records`); one that breaks a rule is left out and
  counted under the rule's message (which names a field and a rule, never a value), so that it
  cannot refuse the batch it would have travelled in.

The stream :func:`sendable` yields depends only on the file, the time zone and ``device_latest``:
that is what lets an interrupted upload skip the records the server already received.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from glucoshare.config import Settings
from glucoshare.datasets.errors import RecordsInvalidError
from glucoshare.datasets.records import MAX_RECORDS, record_json, validate_records
from glucoshare.ingest.base import (
    DeviceInfo,
    Importer,
    ParseContext,
    ParsedRecord,
    ReadingBlock,
    RejectedRow,
    Restart,
    SourceText,
)
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import (
    VALUE_RANGES,
    check_device_text,
    check_outcome,
    collector_paused,
    plausible_bounds,
    plausible_part,
    prepare_files,
)

DATASET_PREFIX: Final = "upload:"
"""Names of the data sets the uploader opens start with this."""
FUTURE: Final = "dated more than a day in the future"
"""Why a record dated more than a day ahead is left out (an import rejects it too)."""
BEFORE_2000: Final = "dated before 2000 (device clock not set?)"
"""Why a record dated before 2000 is left out (an import rejects it too)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """What one path given to the uploader holds: its files, and the folder they came from.

    ``container`` is the folder's name for the files of a folder, ``None`` for a file given on
    its own (a zip archive is a file given on its own: :func:`prepare` unpacks it).
    """

    label: str
    files: Sequence[IncomingFile]
    container: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """A file ready to parse: decoded, its format recognised, its content hash known."""

    name: str
    """As ``glucoshare import`` names it: the file name, or ``archive.zip/inner/path.csv``."""
    sha256: str
    source: SourceText
    importer: Importer
    container: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Preparation:
    """The files of one :class:`Source`, and what of an archive or folder was left out (with why)."""

    files: list[Prepared]
    left_out: list[str]


@dataclasses.dataclass(slots=True)
class DeviceRecords:
    """The records of one device in one file, in the file's order (blocks of readings kept whole)."""

    key: str
    """16 hex digits naming the device (its manufacturer, model and serial) in data set names."""
    device: DeviceInfo
    items: list[ParsedRecord | ReadingBlock] = dataclasses.field(default_factory=list)
    count: int = 0
    """Records in ``items`` (a block counts its readings)."""
    left_out: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Records left out while reading (dated out of range), per reason."""

    @property
    def device_json(self) -> dict[str, str | None]:
        """The device as the upload API names it."""
        info = self.device
        return {"manufacturer": info.manufacturer, "model": info.model, "serial": info.serial}


@dataclasses.dataclass(slots=True)
class FilePlan:
    """A file read: its format, its records by device, and what of it could not be read."""

    name: str
    sha256: str
    format: str
    timezone: str
    devices: list[DeviceRecords]
    rejected_rows: int
    """Rows the importer could not read (an import lists them as rejected)."""
    notes: list[str]

    def dataset_name(self, device: DeviceRecords) -> str:
        """The name of the data set of one device of this file: ``upload:<sha256>:<device key>``.

        The server returns the data set already opened under a name, so the same file sent again
        finds its data set: closed (the file was uploaded) or open (an interrupted upload).
        """
        return f"{DATASET_PREFIX}{self.sha256}:{device.key}"

    @property
    def records(self) -> int:
        """Records of the file that can be dated (the devices' together)."""
        return sum(device.count for device in self.devices)


def device_key(info: DeviceInfo) -> str:
    """16 hex digits of a device's identity, normalised as the server normalises it.

    Manufacturer and model are compared without case and surrounding spaces, the serial without
    surrounding spaces and in upper case (:func:`glucoshare.devices.service.device_key`).
    """
    identity = "|".join(
        (info.manufacturer.strip().lower(), info.model.strip().lower(), (info.serial or "").strip().upper())
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def prepare(settings: Settings, source: Source) -> Preparation:
    """Unpack, decode and recognise the files of one path, as ``glucoshare import`` does.

    Raises the import's :class:`~glucoshare.errors.InputError` when the path is refused: a file
    given on its own that cannot be read or is of no known format, an archive or folder in which
    no file is a device export, an archive over the limits of ``settings``. A member of an archive
    or folder that is not a device export is left out and listed in :attr:`Preparation.left_out`.
    """
    files = list(source.files)
    batch = prepare_files(settings, files, [source.container] * len(files))
    prepared = [
        Prepared(
            name=p.incoming.name,
            sha256=p.sha256,
            source=p.source,
            importer=p.importer,
            container=p.container,
        )
        for p in batch.files
    ]
    return Preparation(prepared, [item for items in batch.skipped.values() for item in items])


def _date_reason(time_ms: int, bounds: tuple[int, int]) -> str:
    return FUTURE if time_ms > bounds[1] else BEFORE_2000


def _implausible(record: ParsedRecord, bounds: tuple[int, int]) -> str | None:
    """Why an import rejects a record: dated out of ``bounds``, or its value out of its type's range."""
    if not bounds[0] <= record.time_ms <= bounds[1]:
        return _date_reason(record.time_ms, bounds)
    span = VALUE_RANGES.get(record.type)
    if span is not None and not span.admits(record.value):
        return span.reason
    return None


def _keep_plausible(
    block: ReadingBlock,
    bounds: tuple[int, int],
    rejected: list[RejectedRow],
    left_out: collections.Counter[str],
) -> ReadingBlock:
    """The block without the readings an import rejects (each noted as a rejected row).

    Those :func:`~glucoshare.ingest.service.plausible_part` leaves out: dated out of ``bounds``,
    and values out of their type's range.
    """
    kept, left = plausible_part(block, bounds, _date_reason)
    rejected += left
    left_out.update(row.reason for row in left)
    return kept


def read_records(prepared: Prepared, *, timezone: str, siblings: Sequence[SourceText] = ()) -> FilePlan:
    """Parse a prepared file in ``timezone`` (IANA) and group its records by device.

    ``siblings`` are the sources of the files that came with it (itself may be among them). The
    file is refused as an import refuses it: :class:`~glucoshare.ingest.errors.NoRecordsError`
    without records, :class:`~glucoshare.ingest.errors.MalformedFileError` when it ends in the middle
    of a row, when more than 10 rows and more than 10 % of its rows cannot be read (records an
    import rejects count as such rows) or when a device's manufacturer, model, serial number or
    identifier is longer than :data:`~glucoshare.ingest.service.MAX_DEVICE_TEXT` characters.
    """
    context = ParseContext(timezone, [s for s in siblings if s is not prepared.source])
    result = prepared.importer.parse(prepared.source, context)
    bounds = plausible_bounds()
    rejected: list[RejectedRow] = []
    by_result_key: dict[str, DeviceRecords] = {}
    by_identity: dict[str, DeviceRecords] = {}
    named: set[str] = set()  # the result's devices with a record kept: their names checked
    with collector_paused():  # as an import does: parsing makes many short-lived objects
        for item in result.records:
            if isinstance(item, Restart):  # what the importer withdrew goes with its rejections
                rejected.clear()
                by_result_key.clear()
                by_identity.clear()
                named.clear()
                continue
            group = by_result_key.get(item.device)
            if group is None:
                info = result.devices[item.device]
                key = device_key(info)
                group = by_identity.get(key)
                if group is None:
                    group = by_identity[key] = DeviceRecords(key, info)
                by_result_key[item.device] = group
            kept: ParsedRecord | ReadingBlock = item
            if isinstance(item, ReadingBlock):
                kept = _keep_plausible(item, bounds, rejected, group.left_out)
                count = len(kept)
                if not count:
                    continue
            else:
                reason = _implausible(item, bounds)
                if reason is not None:
                    rejected.append(RejectedRow(item.line, reason))
                    group.left_out[reason] += 1
                    continue
                count = 1
            if item.device not in named:  # an import checks a device's names before its first record
                check_device_text(result.devices[item.device], prepared.name)
                named.add(item.device)
            group.items.append(kept)
            group.count += count
    rejected = sorted([*result.rejected, *rejected], key=lambda row: row.line)
    devices = [group for group in by_identity.values() if group.count]
    plan = FilePlan(
        name=prepared.name,
        sha256=prepared.sha256,
        format=prepared.importer.format,
        timezone=timezone,
        devices=devices,
        rejected_rows=len(rejected),
        notes=list(result.notes),
    )
    check_outcome(
        prepared.source, prepared.importer, records=plan.records, rejected=rejected, notes=plan.notes
    )
    for info in result.devices.values():  # an import then registers every device of the file
        check_device_text(info, prepared.name)
    return plan


# --- the records to send ---------------------------------------------------------------------------


def unsendable_reason(record_type: str) -> str:
    """Why records of a type outside the upload API are left out."""
    return f"{record_type} records cannot be sent through the upload API"


@dataclasses.dataclass(slots=True)
class Tally:
    """What :func:`sendable` did not send, and why."""

    already_on_server: int = 0
    """Records not newer than the newest of their type the server holds for the device."""
    left_out: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Records that cannot be sent, per reason (a type outside the API, a rule of the API)."""


def _records(items: Iterable[ParsedRecord | ReadingBlock]) -> Iterator[ParsedRecord]:
    for item in items:
        if isinstance(item, ReadingBlock):
            yield from item.records()
        else:
            yield item


def _pointer_index(pointer: str) -> int | None:
    """The record index of a pointer ``/records/<i>...`` (``None`` for one into the body)."""
    parts = pointer.split("/")
    if len(parts) >= 3 and parts[1] == "records" and parts[2].isdigit():  # noqa: PLR2004
        return int(parts[2])
    return None


def keep_valid(
    records: list[dict[str, Any]], zone: zoneinfo.ZoneInfo, left_out: collections.Counter[str]
) -> list[dict[str, Any]]:
    """``records`` (at most :data:`MAX_RECORDS`) without those the server's rules refuse.

    Each refused record is counted in ``left_out`` under the message of its first problem. The
    records carry their offsets, so one record's validity does not depend on the others.
    """
    pending = records
    while pending:
        try:
            validate_records(pending, device="device", first_line=1, zone=zone)
        except RecordsInvalidError as exc:
            refused: dict[int, str] = {}
            for error in exc.errors:
                index = _pointer_index(error.pointer)
                if index is None:  # a problem of the whole batch: cannot happen for a list of records
                    left_out[error.message] += len(pending)
                    return []
                refused.setdefault(index, error.message)
            for reason in refused.values():
                left_out[reason] += 1
            pending = [record for at, record in enumerate(pending) if at not in refused]
        else:
            return pending
    return pending


def sendable(
    device: DeviceRecords, *, latest: Mapping[str, int], zone: str, tally: Tally
) -> Iterator[dict[str, Any]]:
    """The device's records to send, in the file's order, as JSON records of the upload API.

    ``latest`` is the server's newest instant (UTC epoch ms) per record type of the device: a
    record not strictly newer is already there (counted in ``tally.already_on_server``); ``{}``
    sends everything. ``zone`` is the data set's time zone (the server checks with it). Types
    outside the API and records its rules refuse are counted in ``tally.left_out`` (module notes).
    """
    tally.left_out.update(device.left_out)
    tz = zoneinfo.ZoneInfo(zone)
    chunk: list[dict[str, Any]] = []
    for record in _records(device.items):
        newest = latest.get(record.type)
        written = record_json(record)
        if written is None:
            tally.left_out[unsendable_reason(record.type)] += 1
            continue
        if newest is not None and record.time_ms <= newest:
            tally.already_on_server += 1
            continue
        chunk.append(written)
        if len(chunk) == MAX_RECORDS:
            yield from keep_valid(chunk, tz, tally.left_out)
            chunk = []
    if chunk:
        yield from keep_valid(chunk, tz, tally.left_out)
