"""The per-type CSV export: one zip archive with one spreadsheet-ready CSV per record type.

``glucoshare export --format csv --per-type`` writes it for spreadsheet users and clinics. The
archive holds ``<type>.csv`` for each record type present in the period (``cbg.csv``,
``basal.csv``, ...) and ``README.txt``, which explains every column of every file written and the
units. Each file has, in this order,

1. the provenance columns every type has (:data:`COMMON_COLUMNS`);
2. the type's named value columns (:data:`TYPE_COLUMNS`) in place of the generic ``value`` and
   ``unit`` of the single CSV: ``glucose_mgdl`` and ``glucose_mmoll`` for glucose, ``rate_u_h`` for
   basal rates, ``delivered_u`` for boluses, ...;
3. the record's payload, flattened: one column per top-level key that any record of the type in
   the export has, sorted (:func:`payload_columns`), nested values as compact JSON text.

Every text cell (headers too) goes through :func:`glucoshare.export.safety.safe_cell`, so a
spreadsheet never runs one as a formula; numbers stay numbers (:func:`csv_cell`). The files are
UTF-8 with a byte-order mark (so that Excel reads accents right), comma-separated, CRLF.

The export streams, whatever the number of records: a first pass reads only each record's id,
type and payload and collects the payload keys of each type (a header needs them before the first
row); the second pass reads the records of one type at a time, in time order, and writes them
straight into the archive's entry. The second pass takes only records the first one saw (``id``
at most the highest it saw), so records stored in between (a concurrent import) cannot bring a
key the header lacks. The archive is written all or nothing, owner-only (0600), through
:func:`glucoshare.export.service.export_binary_target`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy.orm import Session

from glucoshare import __version__
from glucoshare.accounts.models import Patient
from glucoshare.errors import ConflictError
from glucoshare.export.rows import record_row
from glucoshare.export.safety import safe_cell
from glucoshare.export.service import export_binary_target
from glucoshare.records.models import Record
from glucoshare.records.schemas import iso_utc
from glucoshare.records.service import note_place, records_query, upload_public_ids
from glucoshare.records.vocabulary import MGDL_PER_MMOLL, RECORD_TYPES, SUBTYPES, RecordType, mgdl_to_mmol
from glucoshare.vault.service import open_mapping

README_NAME: Final = "README.txt"
"""The archive member that explains the files."""
PAYLOAD_PREFIX: Final = "payload_"
"""Put in front of a payload key whose name a fixed column (or another key) already has."""
_YIELD_PER = 2000
# Above this many rows an entry might pass 2 GiB (ZIP64), which zipfile must know before writing it.
_ZIP64_ROWS = 1_000_000

Cell = str | int | float
"""A value as the CSV writer takes it."""
Row = Mapping[str, Any]
"""One record as :func:`glucoshare.export.rows.record_row` gives it (a note's payload opened)."""


class ExportChangedError(ConflictError):
    """A record changed between the two passes of the per-type export."""

    code = "export_changed"


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """A fixed column of the per-type files: its header, its meaning (for README.txt) and its cell."""

    name: str
    meaning: str
    value: Callable[[Row], object]


@dataclasses.dataclass(frozen=True, slots=True)
class PerTypeExport:
    """What :func:`export_per_type` wrote: the data rows of each file, in archive order."""

    files: Mapping[str, int]

    @property
    def records(self) -> int:
        """The records written, over all files."""
        return sum(self.files.values())


def _minutes(row: Row) -> float | None:
    duration: int | None = row["duration_ms"]
    return None if duration is None else duration / 60_000


def _mmoll(row: Row) -> float | None:
    mgdl: float | None = row["value"]
    return None if mgdl is None else round(mgdl_to_mmol(mgdl), 1)


def _column(name: str, meaning: str, field: str | None = None) -> Column:
    return Column(name, meaning, itemgetter(field or name))


COMMON_COLUMNS: Final = (
    _column("local_time", "the source's wall time (ISO 8601, no offset): what the device's clock showed"),
    _column("time_utc", "the same instant in UTC (ISO 8601, Z = UTC)"),
    _column(
        "utc_offset_min",
        "the source's offset from UTC at that instant, minutes (local_time = time_utc + utc_offset_min)",
    ),
    _column("subtype", "the kind of record within the type (the values are listed with each file)"),
    _column("device_manufacturer", "the manufacturer of the device that recorded it"),
    _column("device_model", "the model of that device"),
    _column("device_serial", "the serial number of that device (empty where the source names none)"),
    _column(
        "upload_id", "the upload (imported file) that stored the record: its id in `glucoshare uploads list`"
    ),
    _column("source_line", "the line of the record in that uploaded file"),
    _column("record_id", "Glucoshare's id of the record (`id` in the single CSV and the JSON export)", "id"),
)
"""The provenance columns every file starts with."""

_GLUCOSE: Final = (
    _column(
        "glucose_mgdl",
        "glucose, mg/dL, as stored (a reading annotated low or high holds the sensor's limit)",
        "value",
    ),
    Column(
        "glucose_mmoll",
        f"glucose, mmol/L: glucose_mgdl divided by {MGDL_PER_MMOLL}, rounded to 1 decimal",
        _mmoll,
    ),
    _column("orig_value", "the value as the source file wrote it, in orig_unit"),
    _column("orig_unit", "the unit the source file used (mg/dL, mmol/L, BE, U for a dose read as a rate)"),
    _column(
        "annotation",
        "low or high: the device reported the reading as out of its range (Low, LO, HI, ...), else empty",
    ),
)

TYPE_COLUMNS: Final[Mapping[str, tuple[Column, ...]]] = {
    RecordType.CBG: _GLUCOSE,
    RecordType.SMBG: _GLUCOSE,
    RecordType.BLOOD_KETONE: (
        _column("ketone_mmoll", "blood ketone (beta-hydroxybutyrate), mmol/L", "value"),
    ),
    RecordType.BASAL: (
        _column("rate_u_h", "basal rate, U/h", "value"),
        Column(
            "duration_min",
            "how long the rate ran, minutes: a scheduled rate until the next basal record, a "
            "temporary one as programmed (empty: not known)",
            _minutes,
        ),
    ),
    RecordType.BOLUS: (
        _column("delivered_u", "insulin delivered, U", "value"),
        Column("duration_min", "how long an extended (square) bolus or part ran, minutes", _minutes),
    ),
    RecordType.WIZARD: (_column("carbs_g", "carbohydrate entered into the bolus calculator, g", "value"),),
    RecordType.FOOD: (_column("carbs_g", "carbohydrate, g", "value"),),
    RecordType.INSULIN: (_column("dose_u", "insulin dose (pen, syringe or app entry), U", "value"),),
    RecordType.DEVICE_EVENT: (
        _column("volume_u", "insulin volume, U: the volume a prime used (empty for other events)", "value"),
        Column("duration_min", "the event's duration, minutes, where the source gives one", _minutes),
    ),
    RecordType.PUMP_SETTINGS: (),
    RecordType.CGM_SETTINGS: (),
    RecordType.NOTE: (),
    RecordType.PHYSICAL_ACTIVITY: (
        Column("duration_min", "how long the activity lasted, minutes", _minutes),
    ),
}
"""The named value columns of each type, after :data:`COMMON_COLUMNS`."""

TYPE_TITLES: Final[Mapping[str, str]] = {
    RecordType.CBG: "continuous glucose monitoring (CGM) readings",
    RecordType.SMBG: "blood glucose from a meter (fingerstick), manual entries and CGM calibrations",
    RecordType.BLOOD_KETONE: "blood ketone readings",
    RecordType.BASAL: "basal insulin rates of a pump",
    RecordType.BOLUS: "insulin boluses of a pump",
    RecordType.WIZARD: "bolus calculator (wizard) entries: its inputs, settings and estimates",
    RecordType.FOOD: "carbohydrate entries",
    RecordType.INSULIN: "insulin doses outside a pump (pens, syringes)",
    RecordType.DEVICE_EVENT: "device events: alarms, primes, reservoir changes, suspends, time changes, ...",
    RecordType.PUMP_SETTINGS: "snapshots of a pump's settings",
    RecordType.CGM_SETTINGS: "a CGM's alert settings",
    RecordType.NOTE: "notes and event markers as text",
    RecordType.PHYSICAL_ACTIVITY: "physical activity (exercise)",
}
"""What each file holds (README.txt)."""

_PAYLOAD_MEANINGS: Final[Mapping[str, str]] = {
    # glucose
    "isig": "the sensor signal (ISIG) the pump recorded with the reading, nA",
    "meter_id": "the linked blood glucose meter's id",
    "bg_source": "how the reading reached the pump, as written (a linked meter, a manual entry, ...)",
    # basal
    "temp_type": "how the temporary basal was set, as written (Percent or Rate)",
    "percent": "the temporary basal as a percent of the scheduled rate, %",
    "scheduled_rate": "the scheduled rate in force when the temporary basal began, U/h",
    # boluses
    "bolus_type": "the bolus type as the pump wrote it (Normal, Square, Dual, ...)",
    "programmed": "insulin programmed (selected), U; more than delivered when the bolus was stopped",
    "bolus_number": "the pump's number of the bolus",
    "cancellation_reason": "why the bolus was cancelled, as written",
    "preset": "the preset bolus used, as written",
    "source": "where the insulin came from, as written (e.g. the closed loop's automatic boluses)",
    "part": "which part of a dual bolus: normal, square or extended",
    "completion_status": "whether the bolus completed, as written (Completed, Terminated, ...)",
    "delivery_method": "how the bolus was given, as written (Standard, Extended, ...)",
    # bolus calculator
    "bg_input": "the glucose entered into the calculator, mg/dL (empty: none entered)",
    "carb_ratio": "the carbohydrate ratio in force, g of carbohydrate per U",
    "insulin_sensitivity": "the insulin sensitivity in force, mg/dL per U",
    "target_low": "the lower glucose target in force, mg/dL",
    "target_high": "the upper glucose target in force, mg/dL",
    "food_estimate": "insulin for the carbohydrate (carbs_g divided by carb_ratio), U",
    "correction_estimate": "insulin to bring glucose to the target range, U",
    "active_insulin": "insulin still active from earlier boluses (insulin on board), U",
    "unabsorbed_insulin": "unabsorbed insulin the calculator took into account, U",
    "estimate": "the calculator's bolus estimate, U",
    "final_estimate": "the calculator's final estimate, after the user's changes, U",
    "status": "the calculator's status, as written",
    # food and pen insulin
    "marker": "the event marker text the record was read from",
    "servings": "carbohydrate servings as entered (never converted to grams)",
    "meal_units": "the meal part of the dose, U",
    "correction_units": "the correction part of the dose, U",
    "user_change_units": "the user's change to the app's suggested dose, U (may be negative)",
    "dose_from_parts": "true when dose_u is the sum of its parts (the file gave no total)",
    # device events
    "prime_type": "how the pump was primed, as written (Manual, Fixed, ...)",
    "prime_target": "what the prime filled: tubing or cannula (unknown when the file does not say)",
    "reservoir_after_fill": "the estimated reservoir volume after the fill, U",
    "reason": "why the pump suspended, as written",
    "state": "the pump's state when it resumed, as written",
    "from": "the device clock's wall time before the change",
    "to": "the device clock's wall time after the change",
    "event": "which other event: bolusProgrammed (a bolus set but not delivered), "
    "aggregatedAutoInsulin (a daily total) or columns (filled columns without an event of their own)",
    "fields": "the filled source columns without an event of their own, by column name (JSON)",
    "period": "the period the total covers (day)",
    "libreview_record_type": "the LibreView record type of a row without values",
    # settings
    "alerts": "the alert settings by alert (JSON): threshold_mgdl (mg/dL), rate_mgdl_per_min "
    "(mg/dL per minute), duration_ms (milliseconds)",
    "active_schedule": "the name of the basal schedule in use",
    "basal_schedules": "the basal schedules by name (JSON): entries of start_min (minute of the day) and "
    "rate_u_h (U/h)",
    "carb_ratios": "carbohydrate ratios by time of day (JSON): start_min and g_per_u (g per U)",
    "sensitivities": "insulin sensitivities by time of day (JSON): start_min and mgdl_per_u (mg/dL per U)",
    "targets": "glucose targets by time of day (JSON): start_min, low_mgdl and high_mgdl (mg/dL)",
    "max_bolus_u": "the maximum bolus, U",
    "max_basal_u_h": "the maximum basal rate, U/h",
    "insulin_duration_h": "the duration of insulin action (active insulin time), hours",
    # notes
    "text": "the text as written",
    "category": "where the text comes from (event marker, health, food, insulin, ...)",
    "insulin": "the insulin the text was entered for: rapid or long",
}
_TYPE_PAYLOAD_MEANINGS: Final[Mapping[tuple[str, str], str]] = {
    (RecordType.DEVICE_EVENT, "subtype"): "the kind of a bolus programmed but not delivered "
    "(normal, extended, dual, automated)",
    (RecordType.DEVICE_EVENT, "text"): "the alarm's or alert's text, as written",
    (RecordType.DEVICE_EVENT, "units"): "automated insulin delivered over the period, U",
    (RecordType.CGM_SETTINGS, "units"): "the unit of the alert thresholds (mg/dL)",
}
_PAYLOAD_FALLBACK: Final = "a further detail kept from the source file"


def fixed_columns(record_type: str) -> tuple[Column, ...]:
    """The columns every file of ``record_type`` starts with: provenance, then its named values."""
    return (*COMMON_COLUMNS, *TYPE_COLUMNS[record_type])


def payload_columns(keys: Iterable[str], reserved: Iterable[str] = ()) -> dict[str, str]:
    """The header of each payload key, in sorted key order.

    A key is its own header, through :func:`safe_cell` like any text cell (``=x`` becomes ``'=x``),
    unless it is empty or that header is ``reserved`` (a fixed column) or already another key's:
    then :data:`PAYLOAD_PREFIX` goes in front, as often as needed. So every key has exactly one
    column and no two columns share a header.
    """
    taken = set(reserved)
    headers: dict[str, str] = {}
    for key in sorted(set(keys)):
        candidate = key
        while not candidate or safe_cell(candidate) in taken:
            candidate = PAYLOAD_PREFIX + candidate
        headers[key] = safe_cell(candidate)
        taken.add(headers[key])
    return headers


def csv_cell(value: object) -> Cell:
    """One CSV cell: numbers stay numbers, text goes through :func:`safe_cell`.

    ``None`` is an empty cell, a boolean ``true``/``false``, and a list or mapping its compact JSON
    text (keys sorted), which starts with ``[`` or ``{`` and so is never taken for a formula.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return safe_cell(value)
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return safe_cell(text)


def payload_cells(payload: Mapping[str, Any] | None, headers: Mapping[str, str]) -> list[Cell]:
    """The cells of ``payload`` under ``headers`` (:func:`payload_columns`), empty where a key is missing."""
    if not payload:
        return [""] * len(headers)
    return [csv_cell(payload.get(key)) for key in headers]


@dataclasses.dataclass(frozen=True, slots=True)
class _Scope:
    """Whose records, of which period, up to which id; and how to open and name what they refer to."""

    patient_id: str
    start_ms: int | None
    end_ms: int | None
    last_id: int
    notes_at: str
    uploads: Mapping[int, str]


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """One file of the archive: its name, type, columns and rows written."""

    name: str
    record_type: str
    fixed: tuple[Column, ...]
    payload: dict[str, str]
    rows: int


def _survey(
    session: Session, patient_id: str, notes_at: str, start_ms: int | None, end_ms: int | None
) -> tuple[dict[str, set[str]], dict[str, int], int]:
    """First pass: the payload keys and record count of each type present, and the highest id."""
    query = (
        records_query(patient_id, start_ms=start_ms, end_ms=end_ms)
        .with_only_columns(Record.id, Record.type, Record.payload)
        .order_by(None)
        .execution_options(yield_per=_YIELD_PER)
    )
    keys: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    last_id = 0
    for record_id, record_type, stored in session.execute(query):
        seen = keys.setdefault(record_type, set())
        counts[record_type] = counts.get(record_type, 0) + 1
        last_id = max(last_id, record_id)
        payload = (
            open_mapping(session, patient_id, stored, notes_at) if record_type == RecordType.NOTE else stored
        )
        if payload:
            seen.update(payload)
    return keys, counts, last_id


def _rows(session: Session, scope: _Scope, record_type: str) -> Generator[dict[str, Any], None, None]:
    """Second pass: the records of one type, in time order, as export rows."""
    query = (
        records_query(scope.patient_id, start_ms=scope.start_ms, end_ms=scope.end_ms)
        .where(Record.type == record_type, Record.id <= scope.last_id)
        .execution_options(yield_per=_YIELD_PER)
    )
    sealed = record_type == RecordType.NOTE
    with session.execute(query) as result:  # closes a server-side cursor when the caller stops early
        for record, device in result:
            payload = (
                open_mapping(session, scope.patient_id, record.payload, scope.notes_at) if sealed else None
            )
            yield record_row(record, device, scope.uploads.get(record.upload_seq), payload)


def _write_rows(
    handle: IO[str], rows: Iterator[Row], fixed: Sequence[Column], headers: Mapping[str, str]
) -> int:
    writer = csv.writer(handle, lineterminator="\r\n")
    writer.writerow([safe_cell(column.name) for column in fixed] + list(headers.values()))
    count = 0
    for row in rows:
        payload: dict[str, Any] | None = row["payload"]
        if payload and not headers.keys() >= payload.keys():
            msg = "the records changed while they were exported; nothing was written, export again"
            raise ExportChangedError(msg)
        writer.writerow([csv_cell(column.value(row)) for column in fixed] + payload_cells(payload, headers))
        count += 1
    return count


def _member(name: str, when: dt.datetime) -> zipfile.ZipInfo:
    """An archive member, deflated and owner-only once unpacked."""
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100600 << 16  # a regular file, rw for its owner only
    return info


def _printable(name: str) -> str:
    return name if name.isprintable() else json.dumps(name)


def _readme(
    layouts: Sequence[_Layout], *, start_ms: int | None, end_ms: int | None, when: dt.datetime
) -> str:
    """README.txt of the archive: the conventions, then every column of every file written."""
    if start_ms is None and end_ms is None:
        period = "all of the patient's records"
    else:
        first = iso_utc(start_ms) if start_ms is not None else "the first record"
        last = iso_utc(end_ms) if end_ms is not None else "the last record"
        period = f"the records from {first} up to (not including) {last}"
    stamp = when.isoformat(timespec="seconds").replace("+00:00", "Z")
    lines = [
        "Glucoshare export: one CSV file per record type",
        "",
        f"Written by glucoshare {__version__} at {stamp}; holds {period}.",
        "",
        "Every file: UTF-8 (with a byte-order mark), comma-separated, the first row names the columns,",
        "one row per stored record in time order. Numbers use a dot as decimal separator; an empty cell",
        "means no value. A text cell that a spreadsheet would run as a formula (one starting with",
        "= + - @, a tab, a line break or NUL) starts with an added apostrophe ('): drop it to get the",
        "text as stored. Numbers are never changed.",
        "",
        f"Units: glucose is stored in mg/dL; mmol/L = mg/dL divided by {MGDL_PER_MMOLL} (1 decimal).",
        "Insulin in U (units), basal rates in U/h, carbohydrate in g, ketones in mmol/L, durations in",
        "minutes. local_time is the wall time the device showed, time_utc the instant in UTC.",
        "",
        "Columns: the provenance columns (local_time ... record_id) come first in every file, then the",
        "type's value columns, then one column per detail (payload) key the type's records have,",
        "sorted by name; a list or a group of values is JSON text. A payload key that is also the name",
        f"of a fixed column is named with {PAYLOAD_PREFIX} in front.",
    ]
    if not layouts:
        lines += ["", "There are no records in this period, so there are no CSV files."]
    for layout in layouts:
        subtypes = sorted(SUBTYPES.get(layout.record_type, frozenset()) - {""})
        lines += [
            "",
            "",
            f"{layout.name}: {TYPE_TITLES.get(layout.record_type, layout.record_type)} ({layout.rows} rows)",
            "-" * len(layout.name),
            "subtype: " + (", ".join(subtypes) if subtypes else "always empty for this type"),
            "",
        ]
        described = [(column.name, column.meaning) for column in layout.fixed]
        for key, header in layout.payload.items():
            meaning = _TYPE_PAYLOAD_MEANINGS.get(
                (layout.record_type, key), _PAYLOAD_MEANINGS.get(key, _PAYLOAD_FALLBACK)
            )
            origin = "detail" if header == key else f"detail {_printable(key)}"
            described.append((header, f"{origin}: {meaning}"))
        width = max(len(_printable(name)) for name, _ in described)
        lines += [f"  {_printable(name).ljust(width)}  {meaning}" for name, meaning in described]
    return "\n".join(lines).replace("\n", "\r\n") + "\r\n"


def export_per_type(
    session: Session,
    *,
    patient: Patient,
    out: Path,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> PerTypeExport:
    """Write the patient's records (those in [``start_ms``, ``end_ms``) when given) to the zip ``out``.

    One CSV per record type present and ``README.txt`` (see the module docstring); all or nothing,
    mode 0600. A folder, or a place the process may not write, is an
    :class:`~glucoshare.export.service.ExportTargetError`. Reads only; the caller audits.
    """
    notes_at = note_place(patient.id)
    keys, counts, last_id = _survey(session, patient.id, notes_at, start_ms, end_ms)
    scope = _Scope(patient.id, start_ms, end_ms, last_id, notes_at, upload_public_ids(session, patient.id))
    when = dt.datetime.now(dt.UTC)
    layouts: list[_Layout] = []
    with (
        export_binary_target(out) as handle,
        zipfile.ZipFile(handle, "w") as archive,
    ):
        for record_type in RECORD_TYPES:
            if record_type not in keys:
                continue
            name = f"{record_type}.csv"
            fixed = fixed_columns(record_type)
            headers = payload_columns(keys[record_type], (column.name for column in fixed))
            entry = archive.open(_member(name, when), "w", force_zip64=counts[record_type] > _ZIP64_ROWS)
            with (
                io.TextIOWrapper(entry, encoding="utf-8-sig", newline="") as text,
                contextlib.closing(_rows(session, scope, record_type)) as records,
            ):
                rows = _write_rows(text, records, fixed, headers)
            layouts.append(_Layout(name, record_type, fixed, headers, rows))
        readme = _readme(layouts, start_ms=start_ms, end_ms=end_ms, when=when)
        archive.writestr(_member(README_NAME, when), readme.encode("utf-8"))
    return PerTypeExport({layout.name: layout.rows for layout in layouts})
