"""Write a simulated timeline as Glucoshare's generic CSV, version 1 (docs/formats/generic-csv.md).

The file starts with the version line and (by default) comment lines, then the header and one row
per record. Every quirk the format allows is an option of :class:`GlucoshareCsvOptions`: the time
style (offset, UTC, local wall time with or without a ``timezone`` column), the delimiter and
decimal comma, the glucose unit, device columns, comments, row and column order, empty default
subtypes, milliseconds, line ends, encoding, a spreadsheet's padding and an ignored ``x_`` column.
Only the columns some row needs are written (``timezone``, ``annotation``, ``duration_min``,
``text``; device columns with ``devices=True``).

What is written, from the timeline (one device per source, as the rows name them):

* ``cbg`` ``sensor``: every CGM reading (whole mg/dL or mmol/L to one decimal); a reading beyond
  the sensor's range is written as the limit with annotation ``low``/``high``; for a FreeStyle
  Libre, a ``cbg`` ``scan`` at each meal with the latest reading;
* ``smbg``: every ``fingerstick`` (meter range 20 to 600 mg/dL), with its subtype; a
  ``bloodKetone`` two minutes after one above 250 mg/dL;
* ``food`` for ``carbs`` (a meal of 90 g or more carries the text "Pizza", an extra ``note``);
  ``insulin`` ``rapid``/``long`` for pen doses;
* pump: ``basal`` ``scheduled`` (duration to the next scheduled rate, none for the last), ``temp``
  (the scheduled rate times the percent, with its duration) and ``suspend`` (0 U/h for the
  suspension); ``bolus`` ``normal``, every fourth ``extended`` over 90 minutes and every seventh
  ``dual`` over 60; ``deviceEvent`` ``reservoirChange`` (rewind), ``prime`` (U, text tubing or
  cannula), ``suspend`` and ``resume``;
* ``deviceEvent`` ``sensorStart`` an hour before each sensor session's first reading and ``alarm``
  "Low glucose" where the trace falls below 70 mg/dL; ``physicalActivity`` for each exercise
  (every other one with the text "Exercise", an extra ``note``); a ``note`` at 20:00 each day.

Bolus calculator (``wizard``) events are not written: version 1 has no such records.

In the local time styles, a row whose wall time falls in the hour repeated by a fall-back change
is written with its offset (what the specification asks of a careful writer), so every expected
record is the true instant of its row. :func:`write_rows` writes any list of :class:`CsvRow`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import zoneinfo
from collections.abc import Iterable
from typing import Literal

import numpy as np

from glucoshare.ingest.glucoshare_csv import COLUMNS, RULES, version_line
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator.timeline import CGM_RANGE_MGDL, Event, Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

TimeStyle = Literal["offset", "offset_zoned", "utc", "local", "zoned"]
Device = tuple[str, str, str]
"""Manufacturer, model and serial (empty: none) of a row's device."""

NO_DEVICE: Device = ("", "", "")
CGM_DEVICES: dict[str, tuple[str, str]] = {
    "dexcom_g6": ("Dexcom", "G6"),
    "dexcom_g7": ("Dexcom", "G7"),
    "libre2": ("Abbott", "FreeStyle Libre 2"),
    "libre3": ("Abbott", "FreeStyle Libre 3"),
    "guardian4": ("Medtronic", "Guardian 4"),
}
METER = ("Roche", "Accu-Chek Guide")
PUMP = ("Tandem Diabetes Care", "t:slim X2")
PEN = ("Novo Nordisk", "NovoPen 6")

METER_RANGE_MGDL = (20.0, 600.0)
KETONE_AFTER_MGDL = 250.0
LOW_ALARM_MGDL = 70.0
SCAN_LOOKBACK_MS = 15 * 60_000
WARMUP_MS = 60 * 60_000
MINUTE_MS = 60_000
EXTENDED_EVERY, EXTENDED_MIN = 4, 90
DUAL_EVERY, DUAL_MIN = 7, 60
NOTE_MINUTE = 20 * 60
BIG_MEAL_G = 90.0
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_COMMENTS = (
    "# Written by the Glucoshare simulator (docs/formats/generic-csv.md).",
    "# Times: ISO 8601. Values in the unit of their row.",
)


@dataclasses.dataclass(frozen=True, slots=True)
class GlucoshareCsvOptions:
    """Variants of the generic CSV."""

    time_style: TimeStyle = "offset"
    """``offset``: ``2026-01-15T07:00:00+01:00``; ``offset_zoned``: the same plus the ``timezone``
    column; ``utc``: ``2026-01-15T06:00:00Z`` (the local offset is the time zone's); ``local``: the
    wall time alone (the import's time zone); ``zoned``: the wall time and the ``timezone`` column."""
    delimiter: Literal[",", ";", "\t"] = ","
    decimal_comma: bool = False
    """Decimals written with ``,`` (a ``,``-delimited file then quotes them)."""
    units: Literal["mg/dL", "mmol/L"] = "mg/dL"
    devices: bool = True
    """Device columns naming each row's device; without them every row is the default device's."""
    comments: bool = True
    order: Literal["time", "type", "newest_first"] = "time"
    column_order: Literal["standard", "reversed"] = "standard"
    default_subtypes: bool = False
    """Leave ``subtype`` empty where the type's default applies."""
    milliseconds: bool = False
    """Every time with milliseconds (otherwise only times that have them)."""
    crlf: bool = False
    encoding: Literal["utf-8", "utf-8-sig", "utf-16"] = "utf-8"
    spreadsheet: bool = False
    """As a spreadsheet saves it: the version and comment lines padded with delimiters, the
    header's names capitalised."""
    extra_column: bool = False
    """An ``x_row`` column (row numbers) that the importer ignores."""


@dataclasses.dataclass(frozen=True, slots=True)
class CsvRow:
    """One row to write: a record's instant, its cells and the decimals of its value."""

    utc_ms: int
    type: str
    subtype: str = ""
    value: float | None = None
    """In ``unit``; written with ``decimals`` decimals (trailing zeros dropped)."""
    unit: str = ""
    decimals: int = 2
    annotation: str = ""
    duration_ms: int | None = None
    text: str = ""
    """Written as it is (a reader drops leading and trailing spaces)."""
    device: Device = NO_DEVICE
    timezone: str | None = None
    """The row's own time zone (``None``: the file's)."""


def _number(value: float, decimals: int, *, comma: bool) -> str:
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text.replace(".", ",") if comma else text


def _offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def _wall_text(moment: dt.datetime, *, milliseconds: bool) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if milliseconds or moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text


def _time_cells(row: CsvRow, zone_name: str, opts: GlucoshareCsvOptions) -> tuple[str, str]:
    """The ``time`` and ``timezone`` cells of a row in the chosen style."""
    name = row.timezone or zone_name
    zone = zoneinfo.ZoneInfo(name)
    instant = _EPOCH + dt.timedelta(milliseconds=row.utc_ms)
    aware = instant.astimezone(zone)
    delta = aware.utcoffset()
    offset = 0 if delta is None else int(delta.total_seconds() // 60)
    wall = aware.replace(tzinfo=None)
    own = row.timezone or ""
    style = opts.time_style
    if style in ("offset", "offset_zoned"):
        text = _wall_text(wall, milliseconds=opts.milliseconds) + _offset_text(offset)
        return text, name if style == "offset_zoned" else own
    if style == "utc":
        return _wall_text(instant.replace(tzinfo=None), milliseconds=opts.milliseconds) + "Z", own
    text = _wall_text(wall, milliseconds=opts.milliseconds)
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    if first != second:  # a repeated hour: only the offset tells the two instants apart
        text += _offset_text(offset)
    return text, name if style == "zoned" else own


def _factor(row: CsvRow) -> float:
    return MGDL_PER_MMOLL if row.unit == "mmol/L" and row.type in ("cbg", "smbg") else 1.0


def write_rows(
    rows: Iterable[CsvRow],
    timezone: str,
    options: GlucoshareCsvOptions | None = None,
    *,
    file_name: str = "glucoshare.csv",
) -> WrittenExport:
    """Write ``rows`` (times in ``timezone`` unless a row names its own) and the records they hold."""
    opts = options or GlucoshareCsvOptions()
    comma = opts.decimal_comma
    prepared: list[tuple[CsvRow, dict[str, str], list[ExpectedRecord]]] = []
    for row in rows:
        time_text, zone_cell = _time_cells(row, timezone, opts)
        cells = {"time": time_text, "timezone": zone_cell, "type": row.type}
        rule = RULES[row.type]
        default = rule.subtypes[0] if not rule.subtype_required else None
        cells["subtype"] = "" if opts.default_subtypes and row.subtype == default else row.subtype
        value: float | None = None
        if row.value is not None:
            written = _number(row.value, row.decimals, comma=comma)
            cells["value"] = written
            cells["unit"] = row.unit
            value = float(written.replace(",", ".")) * _factor(row)
        if row.annotation:
            cells["annotation"] = row.annotation
        if row.duration_ms is not None:
            cells["duration_min"] = _number(row.duration_ms / MINUTE_MS, 6, comma=comma)
        if row.text:
            cells["text"] = row.text
        if opts.devices:
            cells["device_manufacturer"], cells["device_model"], cells["device_serial"] = row.device
        expected = [ExpectedRecord(row.type, row.subtype, row.utc_ms, value, row.annotation or None)]
        if row.text and row.type not in ("note", "deviceEvent"):
            expected.append(ExpectedRecord("note", "", row.utc_ms, None))
        prepared.append((row, cells, expected))
    if opts.order == "type":
        prepared.sort(key=lambda item: (item[0].type, item[0].utc_ms))
    else:
        prepared.sort(key=lambda item: item[0].utc_ms, reverse=opts.order == "newest_first")
    used = {name for _, cells, _ in prepared for name, text in cells.items() if text}
    header = [
        name
        for name in COLUMNS
        if name in ("time", "type", "subtype", "value", "unit")
        or name in used
        or (opts.devices and name.startswith("device_"))
    ]
    if opts.extra_column:
        header.append("x_row")
    if opts.column_order == "reversed":
        header.reverse()
    out = io.StringIO()
    terminator = "\r\n" if opts.crlf else "\n"
    pad = opts.delimiter * (len(header) - 1) if opts.spreadsheet else ""
    out.write(version_line() + pad + terminator)
    if opts.comments:
        for comment in _COMMENTS:
            out.write(comment + pad + terminator)
    writer = csv.writer(out, delimiter=opts.delimiter, lineterminator=terminator)
    writer.writerow([name.capitalize() if opts.spreadsheet else name for name in header])
    expected_all: list[ExpectedRecord] = []
    for number, (_, cells, expected) in enumerate(prepared, start=1):
        cells["x_row"] = str(number)
        writer.writerow([cells.get(name, "") for name in header])
        expected_all.extend(expected)
    text = out.getvalue()
    data = text.encode(opts.encoding)
    return WrittenExport(file_name, data, expected_all)


class _Rows:
    """The rows of a timeline (module notes)."""

    def __init__(self, timeline: Timeline, opts: GlucoshareCsvOptions) -> None:
        self.timeline = timeline
        self.opts = opts
        serials = timeline.device_serials
        cgm = CGM_DEVICES[timeline.profile.cgm]
        self.cgm: Device = (*cgm, serials["reader"])
        self.meter: Device = (*METER, serials["meter"])
        self.pump: Device = (*PUMP, serials["pump"])
        self.pen: Device = (*PEN, "")
        self.rows: list[CsvRow] = []
        self.mmol = opts.units == "mmol/L"
        self.boluses = 0
        self.activities = 0

    def glucose(self, at: int, kind: str, subtype: str, mgdl: float, limits: tuple[float, float]) -> CsvRow:
        """A glucose row, clipped to ``limits`` with the annotation LO/HI gets."""
        low, high = limits
        annotation = "low" if mgdl < low else "high" if mgdl > high else ""
        clipped = min(max(mgdl, low), high)
        value = clipped / MGDL_PER_MMOLL if self.mmol else clipped
        device = self.cgm if kind == "cbg" else self.meter
        return CsvRow(
            at, kind, subtype, value, self.opts.units, 1 if self.mmol else 0, annotation, device=device
        )

    def build(self) -> list[CsvRow]:
        """Every row, in no particular order."""
        timeline, rows = self.timeline, self.rows
        limits = CGM_RANGE_MGDL[timeline.profile.cgm]
        for at, mgdl in zip(timeline.cgm_ms.tolist(), timeline.cgm_mgdl.tolist(), strict=True):
            rows.append(self.glucose(at, "cbg", "sensor", mgdl, limits))
        self.sensor_events()
        self.scans(limits)
        for event in timeline.events:
            self.event(event)
        self.basal()
        self.notes()
        return rows

    def sensor_events(self) -> None:
        """Sensor starts and low alarms of the CGM trace."""
        timeline = self.timeline
        sessions, times, trace = timeline.cgm_session, timeline.cgm_ms, timeline.cgm_mgdl
        if not sessions.size:
            return
        starts = np.flatnonzero(np.concatenate([[True], sessions[1:] != sessions[:-1]]))
        for index in starts.tolist():
            at = int(times[index]) - WARMUP_MS
            if at >= timeline.start_ms:
                self.rows.append(CsvRow(at, "deviceEvent", "sensorStart", device=self.cgm))
        below = trace < LOW_ALARM_MGDL
        falls = np.flatnonzero(below[1:] & ~below[:-1]) + 1
        for index in falls.tolist():
            self.rows.append(
                CsvRow(int(times[index]), "deviceEvent", "alarm", text="Low glucose", device=self.cgm)
            )

    def scans(self, limits: tuple[float, float]) -> None:
        """A FreeStyle Libre scan at each meal, with the latest reading."""
        timeline = self.timeline
        if not timeline.profile.cgm.startswith("libre"):
            return
        for event in timeline.of_kind("carbs"):
            index = int(np.searchsorted(timeline.cgm_ms, event.utc_ms, side="right")) - 1
            if index < 0 or event.utc_ms - int(timeline.cgm_ms[index]) > SCAN_LOOKBACK_MS:
                continue
            self.rows.append(
                self.glucose(event.utc_ms, "cbg", "scan", float(timeline.cgm_mgdl[index]), limits)
            )

    def event(self, event: Event) -> None:
        """The rows of one timeline event (basal rates apart: :meth:`basal`)."""
        rows, at, kind = self.rows, event.utc_ms, event.kind
        if kind == "fingerstick" and event.value is not None:
            rows.append(self.glucose(at, "smbg", event.subtype or "meter", event.value, METER_RANGE_MGDL))
            if event.value > KETONE_AFTER_MGDL:
                ketone = 0.1 + (event.value - KETONE_AFTER_MGDL) / 400.0
                rows.append(
                    CsvRow(at + 2 * MINUTE_MS, "bloodKetone", "", ketone, "mmol/L", 1, device=self.meter)
                )
        elif kind == "carbs" and event.value is not None:
            text = "Pizza" if event.value >= BIG_MEAL_G else ""
            rows.append(CsvRow(at, "food", "", event.value, "g", 0, text=text))
        elif kind in ("pen_rapid", "pen_long") and event.value is not None:
            subtype = "rapid" if kind == "pen_rapid" else "long"
            rows.append(CsvRow(at, "insulin", subtype, event.value, "U", 1, device=self.pen))
        elif kind == "bolus" and event.value is not None:
            self.boluses += 1
            subtype, duration = "normal", None
            if self.boluses % DUAL_EVERY == 0:
                subtype, duration = "dual", DUAL_MIN * MINUTE_MS
            elif self.boluses % EXTENDED_EVERY == 0:
                subtype, duration = "extended", EXTENDED_MIN * MINUTE_MS
            rows.append(
                CsvRow(at, "bolus", subtype, event.value, "U", 2, duration_ms=duration, device=self.pump)
            )
        elif kind == "rewind":
            rows.append(CsvRow(at, "deviceEvent", "reservoirChange", device=self.pump))
        elif kind == "prime":
            rows.append(
                CsvRow(at, "deviceEvent", "prime", event.value, "U", 1, text=event.subtype, device=self.pump)
            )
        elif kind == "suspend":
            rows.append(CsvRow(at, "deviceEvent", "suspend", device=self.pump))
            duration = (event.duration_s or 0) * 1000 or None
            rows.append(CsvRow(at, "basal", "suspend", 0.0, "U/h", 0, duration_ms=duration, device=self.pump))
        elif kind == "resume":
            rows.append(CsvRow(at, "deviceEvent", "resume", device=self.pump))
        elif kind == "exercise":
            self.activities += 1
            rows.append(
                CsvRow(
                    at,
                    "physicalActivity",
                    event.subtype or "unknown",
                    duration_ms=(event.duration_s or 0) * 1000 or None,
                    text="Exercise" if self.activities % 2 else "",
                )
            )

    def basal(self) -> None:
        """Scheduled rates (each lasting to the next), temporary rates as a percent of them."""
        timeline = self.timeline
        scheduled = [e for e in timeline.of_kind("basal") if e.subtype == "scheduled" and e.value is not None]
        for at, event in enumerate(scheduled):
            duration = scheduled[at + 1].utc_ms - event.utc_ms if at + 1 < len(scheduled) else None
            assert event.value is not None  # noqa: S101 - filtered above
            self.rows.append(
                CsvRow(
                    event.utc_ms,
                    "basal",
                    "scheduled",
                    event.value,
                    "U/h",
                    3,
                    duration_ms=duration,
                    device=self.pump,
                )
            )
        for event in timeline.of_kind("basal"):
            if event.subtype != "temp" or event.percent is None:
                continue
            minute = timeline.local(event.utc_ms)
            minute_of_day = minute.hour * 60 + minute.minute
            rate = next(r for start, r in reversed(timeline.basal_schedule) if start <= minute_of_day)
            self.rows.append(
                CsvRow(
                    event.utc_ms,
                    "basal",
                    "temp",
                    rate * event.percent / 100.0,
                    "U/h",
                    3,
                    duration_ms=(event.duration_s or 0) * 1000 or None,
                    device=self.pump,
                )
            )

    def notes(self) -> None:
        """A note at 20:00 on each local day of the timeline."""
        timeline = self.timeline
        first = timeline.local(timeline.start_ms).date()
        last = timeline.local(timeline.end_ms).date()
        day = first
        while day <= last:
            wall = dt.datetime.combine(day, dt.time(NOTE_MINUTE // 60, NOTE_MINUTE % 60))
            at = int(wall.replace(tzinfo=timeline.tz).timestamp() * 1000)
            if timeline.start_ms <= at < timeline.end_ms:
                self.rows.append(CsvRow(at, "note", "", text=f"Evening check, day {(day - first).days + 1}"))
            day += dt.timedelta(days=1)


def timeline_rows(timeline: Timeline, options: GlucoshareCsvOptions | None = None) -> list[CsvRow]:
    """The rows :func:`write_glucoshare_csv` writes for ``timeline`` (module notes), unordered."""
    return _Rows(timeline, options or GlucoshareCsvOptions()).build()


def write_glucoshare_csv(timeline: Timeline, options: GlucoshareCsvOptions | None = None) -> WrittenExport:
    """Write ``timeline`` as a generic CSV; returns the bytes and the records they hold."""
    opts = options or GlucoshareCsvOptions()
    rows = timeline_rows(timeline, opts)
    end = timeline.local(timeline.end_ms)
    name = f"{timeline.profile.name.replace(' ', '_')}_{end:%Y-%m-%d}_glucoshare.csv"
    return write_rows(rows, timeline.profile.timezone, opts, file_name=name)
