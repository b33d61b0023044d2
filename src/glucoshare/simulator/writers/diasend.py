"""Write a simulated timeline as a legacy diasend export: an Excel 97 workbook (research/formats.md §6).

:func:`write_diasend` writes the ``.xls`` with xlwt, one sheet per kind of data, in diasend's order
(:class:`DiasendOptions` lists the variants). Times are the patient's wall times to the minute,
written as real Excel date cells (number format ``DD/MM/YYYY HH:MM``) or, as some exports hold them,
as text ``DD/MM/YYYY HH:MM``. What is written, from the timeline:

* ``Name and glucose``: the patient's name on row 1, the date range (``DD/MM/YYYY to DD/MM/YYYY``) on
  row 4, the header ``Time`` + unit on row 5, then every ``fingerstick`` (mmol/L to one decimal or
  whole mg/dL);
* ``CGM``: the name on row 1, the header on row 2, then every CGM reading clipped to the sensor's
  range; expected ``low``/``high`` where the written value is at or beyond 40/500 mg/dL (2.2/27.8
  mmol/L), or, with :attr:`DiasendOptions.limit_words`, readings at the sensor's range written as
  ``LO``/``HI`` (expected as 40/500 mg/dL);
* ``Insulin use and carbs`` (pump therapy; a header-only sheet otherwise): a row at every change of
  the delivered basal rate (scheduled segments, temporary basals as percent of the scheduled rate,
  suspensions at 0 U/h), every ``bolus`` (every ninth a dual bolus with 60 % immediate over 120 min,
  another ninth an extended bolus over 90 min), every meal's carbohydrates, a note after each
  exercise and at each new sensor; with :attr:`DiasendOptions.daily_totals` a ``Total daily dose``
  row per day (nothing expected);
* ``Insulin pump settings`` (pump therapy): the pump's serial, active program 1, the BG unit, the
  maxima, program 1 = the timeline's basal schedule, program 2 = the same +10 %, programs 3 and 4
  unused (one 0 U/h entry), two carb ratios, one sensitivity and one target ``± x``; expected as one
  ``pumpSettings`` (:func:`pump_settings` gives its payload) at 23:59 of the date range's last day, or
  at the latest record when ``Name and glucose`` is not written;
* ``Alarms and events`` (pump therapy): a ``Low cartridge`` alarm an hour before each cartridge change.

Each sheet is one clock stream for a reader; a row that a reader's clock would put into the wrong
pass through the hour repeated at a fall-back change is left out, so the expected records are the
true instants of the rows written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import zoneinfo
from collections.abc import Sequence
from typing import Any, Final, Literal

import numpy as np
import xlwt  # type: ignore[import-untyped]  # xlwt ships no type information

from glucoshare.analytics.settings import parse_pump_settings, pump_settings_payload
from glucoshare.ingest.diasend import (
    CGM_LIMITS_MGDL,
    CGM_WRITTEN_LIMITS,
    SERIAL_KEY,
    SHEET_NAMES,
    newest_first,
)
from glucoshare.ingest.localtime import LocalClock, wall_ms
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator.timeline import CGM_RANGE_MGDL, Event, Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

SheetKind = Literal["glucose", "cgm", "insulin", "settings", "alarms"]
ALL_SHEETS: Final[tuple[SheetKind, ...]] = ("glucose", "cgm", "insulin", "settings", "alarms")
INSULIN_HEADER: Final = (
    "Time",
    "Basal Amount (U/h)",
    "Bolus Type",
    "Bolus Volume (U)",
    "Immediate Volume (U)",
    "Extended Volume (U)",
    "Duration (min)",
    "Carbs(g)",
    "Notes",
    "Total daily dose",
)
ALARMS_HEADER: Final = ("Time", "Alarm/Event")
MAX_ROWS: Final = 65_536
"""Rows of an Excel 97 sheet."""

MINUTE_MS = 60_000
_HOUR_MS = 60 * MINUTE_MS
_DUAL_MINUTES = 120
_EXTENDED_MINUTES = 90
_ALARM_BEFORE_MS = _HOUR_MS
_TOTALS_MINUTE = 23 * 60 + 59
_TARGET_MGDL = 110.0
_TARGET_SPREAD_MGDL = 10.0
_SECOND_RATIO_MIN = 11 * 60
_MAX_BOLUS_U = 10.0
_MAX_BASAL_U_H = 3.0
_INSULIN_DURATION_H = 4.0
_DATE_STYLE = "DD/MM/YYYY HH:MM"


@dataclasses.dataclass(frozen=True, slots=True)
class DiasendOptions:
    """Variants of the diasend workbook."""

    units: Literal["mg/dL", "mmol/L"] = "mmol/L"
    text_dates: bool = False
    """Times as text ``DD/MM/YYYY HH:MM`` instead of Excel date cells."""
    month_first: bool = False
    """Text dates and the date range as ``MM/DD/YYYY`` (a US locale; only with :attr:`text_dates`)."""
    sheets: tuple[SheetKind, ...] = ALL_SHEETS
    """Which sheets are written (in diasend's order whatever the order here)."""
    newest_first: bool = False
    """Rows of every sheet newest first."""
    bolus_type_column: bool = False
    """A ``Bolus Type`` column (``Normal`` / ``Combination``) after the basal rate."""
    daily_totals: bool = False
    """A ``Total daily dose`` column with one row per day (not stored by an importer)."""
    limit_words: bool = False
    """CGM readings at the sensor's range written as ``LO``/``HI``."""
    lower_case_units: bool = False
    """Unit headers as ``mmol/l`` / ``mg/dl``."""
    range_mark: Literal["±", "+/-"] = "±"
    """How the target's range is written in the pump settings."""


@dataclasses.dataclass(slots=True)
class _Row:
    """One data row: its (minute) instant and wall time, cells after the time, records, order."""

    utc_ms: int
    wall_ms: int
    order: int
    cells: dict[str, object]
    expected: tuple[ExpectedRecord, ...]


class _Builder:
    """Makes each sheet's rows from a timeline."""

    def __init__(self, timeline: Timeline, options: DiasendOptions) -> None:
        self.timeline = timeline
        self.options = options
        self.mmol = options.units == "mmol/L"
        self.factor = MGDL_PER_MMOLL if self.mmol else 1.0
        self.pump = timeline.profile.therapy == "pump"
        self.order = 0

    def row(self, rows: list[_Row], utc_ms: int, cells: dict[str, object], *expected: ExpectedRecord) -> None:
        at = utc_ms // MINUTE_MS * MINUTE_MS
        self.order += 1
        rows.append(_Row(at, wall_ms(self.timeline.local(at)), self.order, cells, expected))

    def glucose(self, mgdl: float) -> float:
        """A glucose value as written: mmol/L to one decimal or whole mg/dL."""
        return round(mgdl / MGDL_PER_MMOLL, 1) if self.mmol else float(round(mgdl))

    def unit_label(self) -> str:
        label = self.options.units
        return label.lower() if self.options.lower_case_units else label

    # -- the sheets -----------------------------------------------------------------------------------

    def meter(self) -> list[_Row]:
        rows: list[_Row] = []
        for event in self.timeline.of_kind("fingerstick"):
            if event.value is None:
                continue
            written = self.glucose(event.value)
            at = event.utc_ms // MINUTE_MS * MINUTE_MS
            self.row(rows, at, {"value": written}, ExpectedRecord("smbg", "meter", at, written * self.factor))
        return rows

    def cgm(self) -> list[_Row]:
        tl = self.timeline
        low, high = CGM_RANGE_MGDL[tl.profile.cgm]
        floor, ceiling = CGM_WRITTEN_LIMITS[self.options.units]
        rows: list[_Row] = []
        for utc_ms, mgdl in zip(tl.cgm_ms.tolist(), np.clip(tl.cgm_mgdl, low, high).tolist(), strict=True):
            at = utc_ms // MINUTE_MS * MINUTE_MS
            if self.options.limit_words and (mgdl <= low or mgdl >= high):
                word, annotation = ("LO", "low") if mgdl <= low else ("HI", "high")
                value = CGM_LIMITS_MGDL[0] if annotation == "low" else CGM_LIMITS_MGDL[1]
                self.row(rows, at, {"value": word}, ExpectedRecord("cbg", "sensor", at, value, annotation))
                continue
            written = self.glucose(mgdl)
            mark = "low" if written <= floor else "high" if written >= ceiling else None
            expected = ExpectedRecord("cbg", "sensor", at, written * self.factor, mark)
            self.row(rows, at, {"value": written}, expected)
        return rows

    def insulin(self) -> tuple[list[_Row], list[_Row]]:
        """``(rows with records, daily total rows)`` of ``Insulin use and carbs``."""
        if not self.pump:
            return [], []
        rows = self.basal() + self.boluses() + self.carbs() + self.notes()
        totals: list[_Row] = []
        if self.options.daily_totals:
            per_day: dict[dt.date, float] = {}
            for event in self.timeline.of_kind("bolus"):
                day = self.timeline.local(event.utc_ms).date()
                per_day[day] = per_day.get(day, 0.0) + (event.value or 0.0)
            for day in _local_days(self.timeline):
                at = _instant(self.timeline.tz, day, _TOTALS_MINUTE)
                if self.timeline.start_ms <= at < self.timeline.end_ms:
                    self.row(totals, at, {"totals": round(per_day.get(day, 0.0) + 20.0, 2)})
        return rows, totals

    def basal(self) -> list[_Row]:
        """A row at every change of the delivered rate (module notes)."""
        events = sorted(
            (e for e in self.timeline.events if e.kind in ("basal", "suspend", "resume")),
            key=lambda e: (e.utc_ms, e.kind),
        )
        actions: dict[int, list[Event]] = {}
        ends: set[int] = set()
        for event in events:
            at = event.utc_ms // MINUTE_MS * MINUTE_MS
            actions.setdefault(at, []).append(event)
            if event.subtype == "temp" and event.duration_s:
                ends.add(at + event.duration_s * 1000)
        scheduled: float | None = None
        temp: tuple[float, int] | None = None  # (percent, end)
        suspended = False
        last: float | None = None
        rows: list[_Row] = []
        for at in sorted(set(actions) | ends):
            for event in actions.get(at, []):
                if event.kind == "suspend":
                    suspended = True
                elif event.kind == "resume":
                    suspended = False
                elif event.subtype == "temp" and event.percent is not None and event.duration_s:
                    temp = (event.percent, at + event.duration_s * 1000)
                elif event.subtype == "scheduled" and event.value is not None:
                    scheduled = event.value
            if scheduled is None or not self.timeline.start_ms <= at < self.timeline.end_ms:
                continue
            rate = scheduled
            if temp is not None and at < temp[1]:
                rate = scheduled * temp[0] / 100.0
            rate = 0.0 if suspended else round(rate, 2)
            if rate != last:
                self.row(rows, at, {"basal": rate}, ExpectedRecord("basal", "scheduled", at, rate))
                last = rate
        return rows

    def boluses(self) -> list[_Row]:
        rows: list[_Row] = []
        for number, event in enumerate(self.timeline.of_kind("bolus")):
            total = round(event.value or 0.0, 2)
            if total <= 0:
                continue
            cells: dict[str, object] = {"bolus": total, "bolus_type": "Normal"}
            subtype = "normal"
            immediate = round(total * 0.6, 2)
            if number % 9 == 4 and 0 < immediate < total:
                subtype = "dual"
                cells |= {"immediate": immediate, "extended": round(total - immediate, 2)}
                cells |= {"duration": _DUAL_MINUTES, "bolus_type": "Combination"}
            elif number % 9 == 7:
                subtype = "extended"
                cells |= {"immediate": 0.0, "extended": total, "duration": _EXTENDED_MINUTES}
                cells["bolus_type"] = "Combination"
            at = event.utc_ms // MINUTE_MS * MINUTE_MS
            self.row(rows, at, cells, ExpectedRecord("bolus", subtype, at, total))
        return rows

    def carbs(self) -> list[_Row]:
        rows: list[_Row] = []
        for event in self.timeline.of_kind("carbs"):
            grams = float(round(event.value or 0.0))
            if grams > 0:
                at = event.utc_ms // MINUTE_MS * MINUTE_MS
                self.row(rows, at, {"carbs": grams}, ExpectedRecord("food", "", at, grams))
        return rows

    def notes(self) -> list[_Row]:
        tl = self.timeline
        rows: list[_Row] = []
        for event in tl.of_kind("exercise"):
            text = f"Exercise ({event.subtype}), {(event.duration_s or 0) // 60} min"
            at = event.utc_ms // MINUTE_MS * MINUTE_MS
            self.row(rows, at, {"notes": text}, ExpectedRecord("note", "", at, None))
        sessions = tl.cgm_session
        if sessions.size:
            firsts = np.flatnonzero(np.concatenate([[True], sessions[1:] != sessions[:-1]]))
            for index in firsts.tolist():
                at = int(tl.cgm_ms[index]) // MINUTE_MS * MINUTE_MS
                self.row(rows, at, {"notes": "New sensor"}, ExpectedRecord("note", "", at, None))
        return rows

    def alarms(self) -> list[_Row]:
        rows: list[_Row] = []
        if not self.pump:
            return rows
        for event in self.timeline.of_kind("rewind"):
            at = (event.utc_ms - _ALARM_BEFORE_MS) // MINUTE_MS * MINUTE_MS
            if at >= self.timeline.start_ms:
                self.row(
                    rows, at, {"alarm": "Low cartridge"}, ExpectedRecord("deviceEvent", "alarm", at, None)
                )
        return rows


@dataclasses.dataclass(frozen=True, slots=True)
class _PumpSettingsTable:
    """The settings the sheet shows, in the workbook's BG unit."""

    programs: dict[int, list[tuple[int, float]]]
    carb_ratios: list[tuple[int, float]]
    sensitivity: float
    target: float
    spread: float


def _settings_table(timeline: Timeline, units: str) -> _PumpSettingsTable:
    wizard = next((e for e in timeline.of_kind("wizard") if e.ratio and e.isf), None)
    ratio = round(wizard.ratio, 1) if wizard is not None and wizard.ratio else 10.0
    isf_mgdl = wizard.isf if wizard is not None and wizard.isf else 50.0
    target = wizard.target if wizard is not None and wizard.target else _TARGET_MGDL
    mmol = units == "mmol/L"

    def written(mgdl: float) -> float:
        return round(mgdl / MGDL_PER_MMOLL, 1) if mmol else float(round(mgdl))

    schedule = [(start, round(rate, 2)) for start, rate in timeline.basal_schedule]
    return _PumpSettingsTable(
        programs={
            1: schedule,
            2: [(start, round(rate * 1.1, 2)) for start, rate in schedule],
            3: [(0, 0.0)],
            4: [(0, 0.0)],
        },
        carb_ratios=[(0, ratio), (_SECOND_RATIO_MIN, round(ratio * 1.2, 1))],
        sensitivity=written(isf_mgdl),
        target=written(target),
        spread=written(_TARGET_SPREAD_MGDL),
    )


def pump_settings(timeline: Timeline, units: Literal["mg/dL", "mmol/L"] = "mmol/L") -> dict[str, Any]:
    """The canonical ``pumpSettings`` payload an importer reads from the written settings sheet."""
    table = _settings_table(timeline, units)
    factor = MGDL_PER_MMOLL if units == "mmol/L" else 1.0
    payload = {
        "active_schedule": "Program 1",
        "basal_schedules": {
            f"Program {number}": [{"start_min": start, "rate_u_h": rate} for start, rate in entries]
            for number, entries in table.programs.items()
            if entries != [(0, 0.0)]
        },
        "carb_ratios": [{"start_min": start, "g_per_u": value} for start, value in table.carb_ratios],
        "sensitivities": [{"start_min": 0, "mgdl_per_u": table.sensitivity * factor}],
        "targets": [
            {
                "start_min": 0,
                "low_mgdl": (table.target - table.spread) * factor,
                "high_mgdl": (table.target + table.spread) * factor,
            }
        ],
        "max_bolus_u": _MAX_BOLUS_U,
        "max_basal_u_h": _MAX_BASAL_U_H,
        "insulin_duration_h": _INSULIN_DURATION_H,
    }
    return pump_settings_payload(parse_pump_settings(payload, 0))


def _settings_rows(timeline: Timeline, options: DiasendOptions) -> list[list[object]]:
    """The key/value layout of ``Insulin pump settings``."""
    table = _settings_table(timeline, options.units)
    unit = "mmol/l" if options.units == "mmol/L" else "mg/dl"
    label = options.units.lower() if options.lower_case_units else options.units
    rows: list[list[object]] = [
        [SERIAL_KEY, timeline.device_serials["pump"]],
        [],
        ["General"],
        ["Active basal program", 1],
        ["BG unit", unit],
        ["Time format", "24h"],
        [],
        ["Bolus"],
        ["Max Bolus", f"{_MAX_BOLUS_U:.1f} U"],
        ["Insulin-On-Board Duration", f"{_INSULIN_DURATION_H:.1f} h"],
        [],
        ["Basal"],
        ["Max Basal", f"{_MAX_BASAL_U_H:.1f} U/h"],
        [],
        ["Basal profiles"],
    ]
    for number, entries in table.programs.items():
        rows.append([f"Program: {number}"])
        rows.append(["Number", "Start time", "U/h"])
        rows.extend([index, _clock(start), rate] for index, (start, rate) in enumerate(entries, 1))
        total = sum(
            rate * ((entries[i + 1][0] if i + 1 < len(entries) else 1440) - start) / 60
            for i, (start, rate) in enumerate(entries)
        )
        rows.extend([["Sum", "", round(total, 2)], []])
    rows.extend([["I:C ratio settings"], ["Number", "Start time", "g/U"]])
    rows.extend([index, _clock(start), value] for index, (start, value) in enumerate(table.carb_ratios, 1))
    rows.extend(
        [[], ["ISF programs"], ["Number", "Start time", f"{label}/U"], [1, _clock(0), table.sensitivity]]
    )
    mark = options.range_mark
    rows.extend(
        [
            [],
            ["BG target range settings"],
            ["Number", "Start time", label, "Range"],
            [1, _clock(0), table.target, f"{mark} {table.spread:g}"],
        ]
    )
    return rows


def _file_order(rows: list[_Row], *, newest: bool) -> list[_Row]:
    """Rows by time (then by when they were made), newest first when asked."""
    out = sorted(rows, key=lambda row: (row.utc_ms, row.order))
    return out[::-1] if newest else out


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}:00"


def _local_days(timeline: Timeline) -> list[dt.date]:
    first = timeline.local(timeline.start_ms).date()
    last = timeline.local(timeline.end_ms - 1).date()
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _instant(tz: zoneinfo.ZoneInfo, day: dt.date, minute: int) -> int:
    """The instant of a local wall time (first pass if repeated)."""
    wall = dt.datetime.combine(day, dt.time(minute // 60, minute % 60))
    return int(wall.replace(tzinfo=tz).timestamp() * 1000)


def _placeable(rows: list[_Row], tz: zoneinfo.ZoneInfo) -> list[_Row]:
    """The rows of one sheet (file order) that a reader's clock places at their true instants.

    The sheet is read as the importer reads it (from its end when newest first) through a fresh
    clock; rows placed elsewhere (the wrong pass through a repeated hour) are left out until every
    row left is read right.
    """
    current = rows
    while current:
        walls = np.array([row.wall_ms for row in current], np.int64)
        backwards = newest_first(walls)
        read = current[::-1] if backwards else current
        instants, _ = LocalClock(tz).resolve_many(np.ascontiguousarray(walls[::-1]) if backwards else walls)
        wrong = instants != np.array([row.utc_ms for row in read], np.int64)
        if not wrong.any():
            break
        dropped = {id(read[at]) for at in np.flatnonzero(wrong).tolist()}
        current = [row for row in current if id(row) not in dropped]
    return current


class _Sheets:
    """Writes the sheets into an xlwt workbook."""

    def __init__(self, timeline: Timeline, options: DiasendOptions) -> None:
        self.timeline = timeline
        self.options = options
        self.book = xlwt.Workbook()
        self.date_style = xlwt.easyxf(num_format_str=_DATE_STYLE)

    def date_text(self, day: dt.date) -> str:
        if self.options.month_first:
            return f"{day.month:02d}/{day.day:02d}/{day.year}"
        return f"{day.day:02d}/{day.month:02d}/{day.year}"

    def time_cell(self, sheet: xlwt.Worksheet, row: int, wall: int) -> None:
        local = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=wall)  # noqa: DTZ001 - wall time
        if self.options.text_dates:
            sheet.write(row, 0, f"{self.date_text(local.date())} {local:%H:%M}")
        else:
            sheet.write(row, 0, local, self.date_style)

    def sheet(
        self, name: str, top: Sequence[Sequence[object]], columns: Sequence[str], rows: list[_Row]
    ) -> None:
        """A sheet: the rows above the data (the last of them is the header), then the data rows."""
        if len(top) + len(rows) > MAX_ROWS:
            msg = f"sheet {name!r} would hold more than {MAX_ROWS} rows (an Excel 97 sheet's limit)"
            raise ValueError(msg)
        sheet = self.book.add_sheet(name)
        for index, cells in enumerate(top):
            for column, cell in enumerate(cells):
                sheet.write(index, column, cell)
        for index, row in enumerate(rows, len(top)):
            self.time_cell(sheet, index, row.wall_ms)
            for column, field in enumerate(columns[1:], 1):
                if field in row.cells:
                    sheet.write(index, column, row.cells[field])

    def save(self) -> bytes:
        buffer = io.BytesIO()
        self.book.save(buffer)
        return buffer.getvalue()


def write_diasend(timeline: Timeline, options: DiasendOptions | None = None) -> WrittenExport:
    """Write ``timeline`` as a diasend workbook; returns the ``.xls`` bytes and the records it holds."""
    opts = options or DiasendOptions()
    if opts.month_first and not opts.text_dates:
        msg = "month_first needs text_dates: Excel date cells have no day/month order"
        raise ValueError(msg)
    builder = _Builder(timeline, opts)
    tz = timeline.tz
    name = timeline.profile.name
    days = _local_days(timeline)
    unit = builder.unit_label()
    writer = _Sheets(timeline, opts)
    expected: list[ExpectedRecord] = []

    def ordered(rows: list[_Row], extra: list[_Row] | None = None) -> list[_Row]:
        """The rows in file order, those a reader would misplace left out; their records expected."""
        kept = _placeable(_file_order(rows, newest=opts.newest_first), tz)
        expected.extend(record for row in kept for record in row.expected)
        return _file_order(kept + (extra or []), newest=opts.newest_first)

    wanted = set(opts.sheets)
    if "glucose" in wanted:
        top: list[list[object]] = [
            ["Name:", name],
            [],
            [],
            ["Date range:", f"{writer.date_text(days[0])} to {writer.date_text(days[-1])}"],
            ["Time", unit],
        ]
        writer.sheet(SHEET_NAMES["glucose"], top, ("time", "value"), ordered(builder.meter()))
    if "cgm" in wanted:
        top = [["Name:", name], ["Time", unit]]
        writer.sheet(SHEET_NAMES["cgm"], top, ("time", "value"), ordered(builder.cgm()))
    if "insulin" in wanted:
        fields = ["time", "basal", "bolus_type", "bolus", "immediate", "extended", "duration", "carbs"]
        header = list(INSULIN_HEADER[:-1])
        fields.append("notes")
        if not opts.bolus_type_column:
            header.remove("Bolus Type")
            fields.remove("bolus_type")
        if opts.daily_totals:
            header.append(INSULIN_HEADER[-1])
            fields.append("totals")
        rows, totals = builder.insulin()
        writer.sheet(SHEET_NAMES["insulin"], [header], fields, ordered(rows, totals))
    pump = timeline.profile.therapy == "pump"
    alarms = ordered(builder.alarms()) if "alarms" in wanted else []
    if "settings" in wanted and pump:
        if "glucose" in wanted:
            time_ms, _ = LocalClock(tz).resolve_ms(wall_ms(dt.datetime.combine(days[-1], dt.time(23, 59))))
            expected.append(ExpectedRecord("pumpSettings", "", time_ms, None))
        elif expected:
            expected.append(ExpectedRecord("pumpSettings", "", max(e.utc_ms for e in expected), None))
        writer.sheet(SHEET_NAMES["settings"], _settings_rows(timeline, opts), (), [])
    if "alarms" in wanted:
        writer.sheet(SHEET_NAMES["alarms"], [list(ALARMS_HEADER)], ("time", "alarm"), alarms)
    file_name = f"{name.replace(' ', '')}_diasend_{days[-1]:%Y%m%d}.xls"
    return WrittenExport(file_name, writer.save(), expected)


__all__ = ["ALL_SHEETS", "DiasendOptions", "SheetKind", "pump_settings", "write_diasend"]
