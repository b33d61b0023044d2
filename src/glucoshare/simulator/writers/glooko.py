"""Write a simulated timeline as a Glooko export: a zip of CSV files (research/formats.md §5).

:func:`write_glooko` returns the zip; :func:`glooko_members` the same member files one by one
(``file_name`` = the path inside the zip), each with the records an importer reads back from it.
Every member has the metadata line (``Name:...,Date Range:...``, German ``Datumsbereich:``, padded
with commas to the column count unless :attr:`GlookoOptions.pad_metadata` is off), the header of
its kind in English or German, and rows newest first, CRLF, no line break after the last row
(:class:`GlookoOptions` lists the variants). Times are the patient's wall times, to the minute. What
is written, from the timeline:

* ``cgm_data``: every CGM reading (to the minute), clipped to the sensor's range and written as
  mg/dL with one decimal (``215.0``) or mmol/L to one decimal; expected at the limits of the device
  the Serial Number names (:func:`~glucoshare.ingest.glooko.cgm_limits_mgdl`) with ``low``/``high``;
* ``bg_data``: every ``fingerstick``; every other one flagged ``M`` in Manual Reading (``manual``);
* ``Insulin data/bolus_data``: every pump ``bolus`` with its bolus-calculator inputs (carbs, BG,
  carb ratio) on the same row; every ninth written as an extended bolus with an initial and an
  extended part (``dual``), another ninth with only an extended part (``extended``); a ``wizard``
  is expected where the carbs or the BG input are above 0;
* ``Insulin data/basal_data``: scheduled basal segments (duration to the next segment), temp basals
  (rate = the scheduled rate in force × percent) and suspensions (rate 0);
* ``Insulin data/insulin_data``: one row of daily totals per local day (nothing expected);
* ``alarms_data``: low and high glucose alarms (with re-arming) on the CGM's serial and a "Pod
  expires soon" alarm an hour before each pod change on the pump's;
* ``cgm_carbs_data``: every third meal; ``Manual data/food_data``: another third, with a name;
* ``Manual data/manual_insulin_data``: every pen dose (rapid or long acting);
* ``Manual data/exercise_data``: every exercise; ``Manual data/notes_data``: a note at each new sensor
  (with a comma) and after each exercise (with quotes and a line break);
* ``Manual data/medication_data``: one tablet a day (nothing expected).

A kind without rows is written as the two header lines (unless :attr:`GlookoOptions.empty_files`
is off). A member is one stream per serial for a reader, fed oldest first
(:func:`~glucoshare.ingest.glooko.reads_newest_first`); a row that a reader's clock would put into the
wrong pass through the hour repeated at a fall-back change (a gap over the change, a member that
starts inside the hour) is left out, so the expected records are the true instants of every row
written.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime as dt
import io
import zipfile
import zoneinfo
from collections.abc import Callable
from typing import Literal

import numpy as np

from glucoshare.ingest.glooko import cgm_limits_mgdl, reads_newest_first, written_limits
from glucoshare.ingest.localtime import LocalClock
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator.timeline import CGM_RANGE_MGDL, Event, Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

Kind = Literal[
    "cgm",
    "bg",
    "cgm_carbs",
    "alarms",
    "basal",
    "bolus",
    "insulin",
    "exercise",
    "food",
    "manual_insulin",
    "medication",
    "notes",
]

HEADERS: dict[str, dict[str, list[str]]] = {
    "en": {
        "cgm": ["Timestamp", "CGM Glucose Value ({unit})", "Serial Number"],
        "bg": ["Timestamp", "Glucose Value ({unit})", "Manual Reading", "Serial Number"],
        "cgm_carbs": ["Timestamp", "Carbs (g)"],
        "alarms": ["Timestamp", "Alarm/Event", "Serial Number"],
        "basal": [
            "Timestamp",
            "Insulin Type",
            "Duration (minutes)",
            "Percentage (%)",
            "Rate",
            "Insulin Delivered (U)",
            "Serial Number",
        ],
        "bolus": [
            "Timestamp",
            "Insulin Type",
            "Blood Glucose Input ({unit})",
            "Carbs Input (g)",
            "Carbs Ratio",
            "Insulin Delivered (U)",
            "Initial Delivery (U)",
            "Extended Delivery (U)",
            "Serial Number",
        ],
        "insulin": ["Timestamp", "Total Bolus (U)", "Total Insulin (U)", "Total Basal (U)", "Serial Number"],
        "exercise": ["Timestamp", "Name", "Intensity", "Duration (minutes)", "Calories Burned"],
        "food": [
            "Timestamp",
            "Name",
            "Carbs (g)",
            "Fat (g)",
            "Protein (g)",
            "Calories",
            "Serving",
            "Number of Servings",
        ],
        "manual_insulin": ["Timestamp", "Name", "Value", "Insulin Type"],
        "medication": ["Timestamp", "Name", "Value", "Medication Type"],
        "notes": ["Timestamp", "Value"],
    },
    "de": {
        "cgm": ["Zeitstempel", "CGM-Glukosewert ({unit})", "Seriennummer"],
        "bg": ["Zeitstempel", "Glukosewert ({unit})", "Manuelles Lesen", "Seriennummer"],
        "cgm_carbs": ["Zeitstempel", "KH (g)"],
        "alarms": ["Zeitstempel", "Alarm/Ereignis", "Seriennummer"],
        "basal": [
            "Zeitstempel",
            "Insulin-Typ",
            "Dauer (Minuten)",
            "Prozentsatz (%)",
            "Rate",
            "Abgegebenes Insulin (E)",
            "Seriennummer",
        ],
        "bolus": [
            "Zeitstempel",
            "Insulin-Typ",
            "Blutzuckereingabe ({unit})",
            "Kohlenhydrataufnahme (g)",
            "Kohlenhydratverhältnis",
            "Abgegebenes Insulin (E)",
            "Anfängliche Abgabe (E)",
            "Verzögerte Abgabe (E)",
            "Seriennummer",
        ],
        "insulin": [
            "Zeitstempel",
            "Bolus gesamt (U)",
            "Insulin gesamt (U)",
            "Basal gesamt (U)",
            "Seriennummer",
        ],
        "exercise": ["Zeitstempel", "Name", "Intensität", "Dauer (Minuten)", "Verbrannte Kalorien"],
        "food": [
            "Zeitstempel",
            "Name",
            "KH (g)",
            "Fett",
            "Eiweiß",
            "Kalorien",
            "Portionen",
            "Anzahl der Portionen",
        ],
        "manual_insulin": ["Zeitstempel", "Name", "Wert", "Insulin-Typ"],
        "medication": ["Zeitstempel", "Name", "Wert", "Medikamententyp"],
        "notes": ["Zeitstempel", "Wert"],
    },
}
"""The header of each kind, by language; ``{unit}`` is ``mg/dl`` or ``mmol/l``."""

PATHS: dict[str, str] = {
    "cgm": "cgm_data_{n}.csv",
    "bg": "bg_data_{n}.csv",
    "cgm_carbs": "cgm_carbs_data_{n}.csv",
    "alarms": "alarms_data_{n}.csv",
    "basal": "Insulin data/basal_data_{n}.csv",
    "bolus": "Insulin data/bolus_data_{n}.csv",
    "insulin": "Insulin data/insulin_data_{n}.csv",
    "exercise": "Manual data/exercise_data_{n}.csv",
    "food": "Manual data/food_data_{n}.csv",
    "manual_insulin": "Manual data/manual_insulin_data_{n}.csv",
    "medication": "Manual data/medication_data_{n}.csv",
    "notes": "Manual data/notes_data_{n}.csv",
}
"""Where each kind's members sit in the zip (``{n}``: 1, 2, ... for a split range)."""

_WORDS = {
    "en": {
        "range": "Date Range",
        "normal": "Normal",
        "extended": "Extended",
        "scheduled": "Scheduled",
        "temp": "Temp Basal",
        "suspend": "Suspended",
        "low_alarm": "Low glucose",
        "high_alarm": "High glucose",
        "pod_alarm": "Pod expires soon",
        "rapid": "Rapid-Acting",
        "long": "Long-Acting",
        "rapid_name": "Humalog",
        "long_name": "Tresiba",
        "light": "Low",
        "medium": "Medium",
        "heavy": "High",
        "serving": "Serving",
        "new_sensor": "New sensor, left arm",
        "after_exercise": 'after "workout"\nfelt fine',
        "tablet": "Tablet",
    },
    "de": {
        "range": "Datumsbereich",
        "normal": "Normal",
        "extended": "Verzögert",
        "scheduled": "Eingeplant",
        "temp": "Temporär",
        "suspend": "Unterbrochen",
        "low_alarm": "Niedriger Glukosewert",
        "high_alarm": "Hoher Glukosewert",
        "pod_alarm": "Pod läuft bald ab",
        "rapid": "Schnell wirkend",
        "long": "Lang wirkend",
        "rapid_name": "Humalog",
        "long_name": "Tresiba",
        "light": "Niedrig",
        "medium": "Mittel",
        "heavy": "Hoch",
        "serving": "Portion",
        "new_sensor": "Neuer Sensor, linker Arm",
        "after_exercise": 'nach dem "Training"\nalles gut',
        "tablet": "Tablette",
    },
}
_EXERCISES = {"en": ("Walking", "Cycling", "Running"), "de": ("Spaziergang", "Radfahren", "Laufen")}
_FOODS = {"en": ("Oatmeal", "Pasta", "Apple"), "de": ("Haferflocken", "Nudeln", "Apfel")}

MINUTE_MS = 60_000
_HOUR_MS = 60 * MINUTE_MS
_LOW_ALARM_MGDL, _LOW_REARM_MGDL = 70.0, 80.0
_HIGH_ALARM_MGDL, _HIGH_REARM_MGDL = 250.0, 230.0
_POD_ALARM_BEFORE_MS = _HOUR_MS
_NOTE_AFTER_EXERCISE_MS = 5 * MINUTE_MS
_MEDICATION_MINUTE = 8 * 60
_TOTALS_MINUTE = 23 * 60 + 55
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class GlookoOptions:
    """Variants of the Glooko layout."""

    language: Literal["en", "de"] = "en"
    units: Literal["mg/dL", "mmol/L"] = "mg/dL"
    date_style: Literal["iso", "us", "de"] | None = None
    """``iso``: ``2024-01-15 08:30``; ``us``: ``01/15/2024 08:30``; ``de``: ``15.01.2024 08:30``.
    ``None``: ``de`` for German, ``iso`` for English."""
    decimal_comma: bool | None = None
    """Decimals with a comma (the field is then quoted: ``"215,0"``); ``None``: for German."""
    newest_first: bool = True
    """Rows newest first, as Glooko writes them (oldest first otherwise)."""
    crlf: bool = True
    final_newline: bool = False
    """A line break after the last row (Glooko writes none)."""
    pad_metadata: bool = True
    """Line 1 padded with commas to the column count."""
    split_rows: int | None = None
    """At most this many rows per member: a kind with more is split into ``_1``, ``_2``, ...
    (``_1`` holds the newest rows)."""
    empty_files: bool = True
    """Write the kinds without rows as header-only members."""
    serial: str | None = None
    """The Serial Number of every row; ``None``: a PDM-style serial made from the timeline."""
    cgm_serial: str | None = None
    """The Serial Number of the CGM's rows (readings and glucose alarms); ``None``: :attr:`serial`."""
    cgm_folder: bool = False
    """CGM members under ``CGM data/`` (newer exports)."""


@dataclasses.dataclass(slots=True)
class _Row:
    """One row: its (minute) instant and wall time, cells after the timestamp, records, stream."""

    utc_ms: int
    wall_ms: int
    order: int
    cells: list[str]
    expected: tuple[ExpectedRecord, ...]
    stream: str


class _Offsets:
    """The zone's UTC offsets (ms) over the timeline, from its transitions found once."""

    def __init__(self, tz: zoneinfo.ZoneInfo, start_ms: int, end_ms: int) -> None:
        self.tz = tz
        at = start_ms - 2 * 24 * _HOUR_MS
        self.starts = [at]
        self.values = [self._exact(at)]
        stop = end_ms + 2 * 24 * _HOUR_MS
        while at < stop:
            probe = at + _HOUR_MS
            offset = self._exact(probe)
            if offset != self.values[-1]:
                low, high = at, probe
                while high - low > 1:
                    middle = (low + high) // 2
                    if self._exact(middle) == offset:
                        high = middle
                    else:
                        low = middle
                self.starts.append(high)
                self.values.append(offset)
            at = probe

    def _exact(self, utc_ms: int) -> int:
        offset = dt.datetime.fromtimestamp(utc_ms / 1000, tz=self.tz).utcoffset()
        return 0 if offset is None else int(offset.total_seconds()) * 1000

    def wall(self, utc_ms: int) -> int:
        """The wall time (ms since the naive epoch) of an instant."""
        return utc_ms + self.values[bisect.bisect_right(self.starts, utc_ms) - 1]


class _Format:
    """Numbers, glucose and timestamps as the chosen variant writes them."""

    def __init__(self, options: GlookoOptions) -> None:
        self.options = options
        self.comma = options.language == "de" if options.decimal_comma is None else options.decimal_comma
        self.style = options.date_style or ("de" if options.language == "de" else "iso")
        self.mmol = options.units == "mmol/L"
        self._dates: dict[int, str] = {}
        self._times: dict[int, str] = {}

    def num(self, value: float, decimals: int = 2) -> str:
        """A decimal with at least one and at most ``decimals`` places (``2.0``, ``1.25``)."""
        text = f"{value:.{decimals}f}".rstrip("0")
        if text.endswith("."):
            text += "0"
        return text.replace(".", ",") if self.comma else text

    @staticmethod
    def read(text: str) -> float:
        """A written number read back."""
        return float(text.replace(",", "."))

    def glucose(self, mgdl: float) -> tuple[str, float]:
        """Text of a glucose value in the export's unit and its number as written."""
        text = self.num(mgdl / MGDL_PER_MMOLL, 1) if self.mmol else self.num(float(round(mgdl)), 1)
        return text, self.read(text)

    def factor(self) -> float:
        """mg/dL per written glucose unit."""
        return MGDL_PER_MMOLL if self.mmol else 1.0

    def date(self, day: dt.date) -> str:
        """A date in the variant's style."""
        if self.style == "de":
            return f"{day.day:02d}.{day.month:02d}.{day.year}"
        if self.style == "us":
            return f"{day.month:02d}/{day.day:02d}/{day.year}"
        return day.isoformat()

    def stamp(self, wall_ms: int) -> str:
        """The Timestamp of a wall time (ms since the naive epoch)."""
        day, minute = divmod(wall_ms // MINUTE_MS, 1440)
        date = self._dates.get(day)
        if date is None:
            date = self._dates[day] = self.date(dt.date(1970, 1, 1) + dt.timedelta(days=day))
        time = self._times.get(minute)
        if time is None:
            time = self._times[minute] = f"{minute // 60:02d}:{minute % 60:02d}"
        return f"{date} {time}"


def _pdm_serial(timeline: Timeline) -> str:
    """A serial shaped like the PDM serials Glooko shows (``00000000-000000000``)."""
    seed = int(timeline.device_serials.get("meter", "0"), 16) + timeline.profile.seed
    return f"{seed * 7_919 % 10**8:08d}-{seed * 104_729 % 10**9:09d}"


class _Builder:
    """Makes the rows of each kind from a timeline."""

    def __init__(self, timeline: Timeline, options: GlookoOptions) -> None:
        self.timeline = timeline
        self.options = options
        self.fmt = _Format(options)
        self.words = _WORDS[options.language]
        self.offsets = _Offsets(timeline.tz, timeline.start_ms, timeline.end_ms)
        self.serial = options.serial if options.serial is not None else _pdm_serial(timeline)
        self.cgm_serial = options.cgm_serial if options.cgm_serial is not None else self.serial
        self.order = 0

    def row(
        self,
        rows: list[_Row],
        utc_ms: int,
        cells: list[str],
        expected: tuple[ExpectedRecord, ...],
        stream: str,
    ) -> None:
        """Add a row at the minute of ``utc_ms`` (its records are given at that minute)."""
        self.order += 1
        rows.append(_Row(utc_ms, self.offsets.wall(utc_ms), self.order, cells, expected, stream))

    def local_day(self, utc_ms: int) -> dt.date:
        """The patient's local date at an instant."""
        return self.timeline.local(utc_ms).date()

    def at_local(self, day: dt.date, minute: int) -> int:
        """The instant of a local wall time (first pass if repeated)."""
        wall = dt.datetime.combine(day, dt.time(minute // 60, minute % 60))
        return int(wall.replace(tzinfo=self.timeline.tz).timestamp() * 1000)

    # -- the kinds -----------------------------------------------------------------------------

    def cgm(self) -> list[_Row]:
        tl, fmt = self.timeline, self.fmt
        low, high = CGM_RANGE_MGDL[tl.profile.cgm]
        floor_mgdl, ceiling_mgdl = cgm_limits_mgdl(self.cgm_serial)
        unit = "mmol/L" if fmt.mmol else "mg/dL"
        floor, ceiling = written_limits(unit, (floor_mgdl, ceiling_mgdl))
        cache: dict[float, tuple[str, ExpectedRecord]] = {}
        rows: list[_Row] = []
        serial = self.cgm_serial
        for utc_ms, mgdl in zip(
            (tl.cgm_ms // MINUTE_MS * MINUTE_MS).tolist(),
            np.clip(tl.cgm_mgdl, low, high).tolist(),
            strict=True,
        ):
            found = cache.get(mgdl)
            if found is None:
                text, written = fmt.glucose(mgdl)
                annotation = "low" if written <= floor else "high" if written >= ceiling else None
                found = cache[mgdl] = (
                    text,
                    ExpectedRecord("cbg", "sensor", 0, written * fmt.factor(), annotation),
                )
            text, template = found
            self.row(rows, utc_ms, [text, serial], (dataclasses.replace(template, utc_ms=utc_ms),), serial)
        return rows

    def bg(self) -> list[_Row]:
        rows: list[_Row] = []
        for number, event in enumerate(self.timeline.of_kind("fingerstick")):
            if event.value is None:
                continue
            at = _minute(event.utc_ms)
            text, written = self.fmt.glucose(event.value)
            manual = number % 2 == 1
            expected = ExpectedRecord(
                "smbg", "manual" if manual else "meter", at, written * self.fmt.factor()
            )
            self.row(rows, at, [text, "M" if manual else "", self.serial], (expected,), self.serial)
        return rows

    def bolus(self) -> list[_Row]:
        fmt, words = self.fmt, self.words
        wizards: dict[int, list[Event]] = {}
        for event in self.timeline.of_kind("wizard"):
            wizards.setdefault(event.utc_ms, []).append(event)
        rows: list[_Row] = []
        for number, event in enumerate(self.timeline.of_kind("bolus")):
            delivered = event.value or 0.0
            at = _minute(event.utc_ms)
            waiting = wizards.get(event.utc_ms)
            wizard = waiting.pop(0) if waiting else None
            kind, initial, extended = words["normal"], "", ""
            total = fmt.num(delivered)
            subtype = "normal"
            first = round(delivered * 0.6, 2)
            if number % 9 == 4 and first > 0 and delivered - first > 0.001:
                kind, subtype = words["extended"], "dual"
                initial, extended = fmt.num(first), fmt.num(delivered - first)
            elif number % 9 == 7 and fmt.read(total) > 0:
                kind, subtype = words["extended"], "extended"
                initial, extended = fmt.num(0.0), total
            bg_text = carbs_text = ratio_text = ""
            expected = [ExpectedRecord("bolus", subtype, at, fmt.read(total))]
            if wizard is not None:
                bg_text = fmt.glucose(wizard.bg)[0] if wizard.bg is not None else fmt.num(0.0, 1)
                carbs_text = fmt.num(wizard.value or 0.0, 1)
                ratio_text = fmt.num(wizard.ratio or 10.0, 1)
                if fmt.read(carbs_text) > 0 or fmt.read(bg_text) > 0:
                    expected.append(ExpectedRecord("wizard", "", at, fmt.read(carbs_text)))
            cells = [kind, bg_text, carbs_text, ratio_text, total, initial, extended, self.serial]
            self.row(rows, at, cells, tuple(expected), self.serial)
        return rows

    def basal(self) -> list[_Row]:
        fmt, words, tl = self.fmt, self.words, self.timeline
        events = sorted(
            (e for e in tl.events if e.kind in ("basal", "suspend")), key=lambda e: (e.utc_ms, e.kind)
        )
        starts = [_minute(e.utc_ms) for e in events]
        rows: list[_Row] = []
        scheduled: float | None = None
        for index, event in enumerate(events):
            at = starts[index]
            following = starts[index + 1] if index + 1 < len(starts) else _minute(tl.end_ms)
            percent = ""
            if event.kind == "suspend":
                kind, rate, minutes = words["suspend"], 0.0, (event.duration_s or 0) // 60
                subtype = "suspend"
            elif event.subtype == "temp":
                if scheduled is None or event.percent is None:
                    continue
                kind, subtype = words["temp"], "temp"
                rate = scheduled * event.percent / 100.0
                minutes = (event.duration_s or 0) // 60
                percent = str(round(event.percent))
            else:
                kind, subtype = words["scheduled"], "scheduled"
                rate = scheduled = event.value or 0.0
                minutes = max(0, (following - at) // MINUTE_MS)
            text = fmt.num(rate)
            cells = [kind, str(minutes), percent, text, "", self.serial]
            self.row(rows, at, cells, (ExpectedRecord("basal", subtype, at, fmt.read(text)),), self.serial)
        return rows

    def insulin_totals(self) -> list[_Row]:
        tl, fmt = self.timeline, self.fmt
        if tl.profile.therapy != "pump":
            return []
        schedule = tl.basal_schedule
        basal = sum(
            rate * ((schedule[i + 1][0] if i + 1 < len(schedule) else 1440) - start) / 60.0
            for i, (start, rate) in enumerate(schedule)
        )
        bolus_by_day: dict[dt.date, float] = {}
        for event in tl.of_kind("bolus"):
            day = self.local_day(event.utc_ms)
            bolus_by_day[day] = bolus_by_day.get(day, 0.0) + (event.value or 0.0)
        rows: list[_Row] = []
        for day in _local_days(tl):
            at = self.at_local(day, _TOTALS_MINUTE)
            if not tl.start_ms <= at < tl.end_ms:
                continue
            bolus = bolus_by_day.get(day, 0.0)
            cells = [fmt.num(bolus), fmt.num(bolus + basal), fmt.num(basal), self.serial]
            self.row(rows, at, cells, (), self.serial)
        return rows

    def alarms(self) -> list[_Row]:
        tl, words = self.timeline, self.words
        rows: list[_Row] = []
        low_armed = high_armed = True
        for utc_ms, mgdl in zip(tl.cgm_ms.tolist(), tl.cgm_mgdl.tolist(), strict=True):
            text = ""
            if low_armed and mgdl < _LOW_ALARM_MGDL:
                text, low_armed = words["low_alarm"], False
            elif high_armed and mgdl > _HIGH_ALARM_MGDL:
                text, high_armed = words["high_alarm"], False
            low_armed = low_armed or mgdl > _LOW_REARM_MGDL
            high_armed = high_armed or mgdl < _HIGH_REARM_MGDL
            if text:
                at = _minute(utc_ms)
                expected = (ExpectedRecord("deviceEvent", "alarm", at, None),)
                self.row(rows, at, [text, self.cgm_serial], expected, self.cgm_serial)
        for event in tl.of_kind("rewind"):
            at = _minute(event.utc_ms - _POD_ALARM_BEFORE_MS)
            if at >= tl.start_ms:
                expected = (ExpectedRecord("deviceEvent", "alarm", at, None),)
                self.row(rows, at, [words["pod_alarm"], self.serial], expected, self.serial)
        return rows

    def carbs(self) -> tuple[list[_Row], list[_Row]]:
        """``(cgm_carbs rows, food rows)``: every third meal each."""
        fmt, names = self.fmt, _FOODS[self.options.language]
        cgm_carbs: list[_Row] = []
        food: list[_Row] = []
        for number, event in enumerate(self.timeline.of_kind("carbs")):
            carbs = event.value or 0.0
            at = _minute(event.utc_ms)
            text = fmt.num(carbs, 1)
            expected = (ExpectedRecord("food", "", at, fmt.read(text)),)
            if number % 3 == 1:
                self.row(cgm_carbs, at, [text], expected, "")
            elif number % 3 == 0:
                cells = [
                    names[number // 3 % len(names)],
                    text,
                    fmt.num(carbs * 0.3, 1),
                    fmt.num(carbs * 0.2, 1),
                    str(round(carbs * 4 + carbs * 0.3 * 9 + carbs * 0.2 * 4)),
                    self.words["serving"],
                    "1",
                ]
                self.row(food, at, cells, expected, "")
        return cgm_carbs, food

    def manual_insulin(self) -> list[_Row]:
        fmt, words = self.fmt, self.words
        rows: list[_Row] = []
        for event in self.timeline.of_kind("pen_rapid", "pen_long"):
            rapid = event.kind == "pen_rapid"
            at = _minute(event.utc_ms)
            text = fmt.num(event.value or 0.0, 1)
            name = words["rapid_name" if rapid else "long_name"]
            cells = [name, text, words["rapid" if rapid else "long"]]
            expected = (ExpectedRecord("insulin", "rapid" if rapid else "long", at, fmt.read(text)),)
            self.row(rows, at, cells, expected, "")
        return rows

    def exercise(self) -> list[_Row]:
        names = _EXERCISES[self.options.language]
        rows: list[_Row] = []
        for number, event in enumerate(self.timeline.of_kind("exercise")):
            at = _minute(event.utc_ms)
            minutes = (event.duration_s or 0) // 60
            intensity = event.subtype if event.subtype in ("light", "medium", "heavy") else "medium"
            cells = [names[number % len(names)], self.words[intensity], str(minutes), str(minutes * 5)]
            expected = (ExpectedRecord("physicalActivity", intensity, at, None),)
            self.row(rows, at, cells, expected, "")
        return rows

    def notes(self) -> list[_Row]:
        tl = self.timeline
        rows: list[_Row] = []
        sessions = tl.cgm_session
        if sessions.size:
            firsts = np.flatnonzero(np.concatenate([[True], sessions[1:] != sessions[:-1]]))
            for index in firsts.tolist():
                at = _minute(int(tl.cgm_ms[index]))
                expected = (ExpectedRecord("note", "", at, None),)
                self.row(rows, at, [self.words["new_sensor"]], expected, "")
        for event in tl.of_kind("exercise"):
            at = _minute(event.utc_ms + _NOTE_AFTER_EXERCISE_MS)
            if at < tl.end_ms:
                expected = (ExpectedRecord("note", "", at, None),)
                self.row(rows, at, [self.words["after_exercise"]], expected, "")
        return rows

    def medication(self) -> list[_Row]:
        tl = self.timeline
        rows: list[_Row] = []
        for day in _local_days(tl):
            at = self.at_local(day, _MEDICATION_MINUTE)
            if tl.start_ms <= at < tl.end_ms:
                self.row(rows, at, ["Metformin", "500", self.words["tablet"]], (), "")
        return rows


def _minute(utc_ms: int) -> int:
    return utc_ms // MINUTE_MS * MINUTE_MS


def _local_days(timeline: Timeline) -> list[dt.date]:
    first = timeline.local(timeline.start_ms).date()
    last = timeline.local(timeline.end_ms - 1).date()
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _placeable(rows: list[_Row], tz: zoneinfo.ZoneInfo) -> list[_Row]:
    """The rows of one member (file order) that a reader places at their true instants.

    Each stream (serial) is read as the importer reads it: reversed unless it runs forward in time,
    through a fresh clock; rows the clock puts elsewhere (the wrong pass through a repeated hour)
    are left out, until every row left is read right.
    """
    kept: set[int] = set()
    streams: dict[str, list[_Row]] = {}
    for row in rows:
        streams.setdefault(row.stream, []).append(row)
    for stream in streams.values():
        current = stream
        while current:
            walls = np.array([row.wall_ms for row in current], np.int64)
            backwards = reads_newest_first(walls)
            read = current[::-1] if backwards else current
            instants, _ = LocalClock(tz).resolve_many(walls[::-1] if backwards else walls)
            truth = np.array([row.utc_ms for row in read], np.int64)
            wrong = instants != truth
            if not wrong.any():
                break
            dropped = {id(read[at]) for at in np.flatnonzero(wrong).tolist()}
            current = [row for row in current if id(row) not in dropped]
        kept.update(id(row) for row in current)
    return [row for row in rows if id(row) in kept]


def _member_text(header: list[str], rows: list[_Row], metadata: list[str], fmt: _Format) -> str:
    options = fmt.options
    newline = "\r\n" if options.crlf else "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    padded = metadata + [""] * (len(header) - len(metadata)) if options.pad_metadata else metadata
    writer.writerow(padded)
    writer.writerow(header)
    stamp = fmt.stamp
    writer.writerows([stamp(row.wall_ms), *row.cells] for row in rows)
    text = out.getvalue()
    return text if options.final_newline else text.removesuffix(newline)


def glooko_members(timeline: Timeline, options: GlookoOptions | None = None) -> list[WrittenExport]:
    """The member files of a Glooko export of ``timeline``, each with the records it holds.

    ``file_name`` is the member's path inside the zip (``Insulin data/bolus_data_1.csv``).
    """
    opts = options or GlookoOptions()
    builder = _Builder(timeline, opts)
    fmt = builder.fmt
    cgm_carbs, food = builder.carbs()
    makers: dict[str, Callable[[], list[_Row]]] = {
        "cgm": builder.cgm,
        "bg": builder.bg,
        "cgm_carbs": lambda: cgm_carbs,
        "alarms": builder.alarms,
        "basal": builder.basal,
        "bolus": builder.bolus,
        "insulin": builder.insulin_totals,
        "exercise": builder.exercise,
        "food": lambda: food,
        "manual_insulin": builder.manual_insulin,
        "medication": builder.medication,
        "notes": builder.notes,
    }
    unit = "mmol/l" if fmt.mmol else "mg/dl"
    first, last = _local_days(timeline)[0], _local_days(timeline)[-1]
    metadata = [
        f"Name:{timeline.profile.name}",
        f"{builder.words['range']}:{fmt.date(first)} - {fmt.date(last)}",
    ]
    members: list[WrittenExport] = []
    for kind, make in makers.items():
        header = [name.format(unit=unit) for name in HEADERS[opts.language][kind]]
        rows = sorted(make(), key=lambda row: (row.utc_ms, row.order))
        if opts.newest_first:
            rows.reverse()
        size = opts.split_rows or max(len(rows), 1)
        chunks = [rows[start : start + size] for start in range(0, len(rows), size)]
        if not chunks and opts.empty_files:
            chunks = [[]]
        path = PATHS[kind]
        if kind == "cgm" and opts.cgm_folder:
            path = "CGM data/" + path
        for number, chunk in enumerate(chunks, 1):
            kept = _placeable(chunk, timeline.tz) if kind not in ("insulin", "medication") else chunk
            text = _member_text(header, kept, metadata, fmt)
            expected = [record for row in kept for record in row.expected]
            members.append(WrittenExport(path.format(n=number), text.encode("utf-8"), expected))
    return members


def write_glooko(timeline: Timeline, options: GlookoOptions | None = None) -> WrittenExport:
    """Write ``timeline`` as a Glooko export zip; returns its bytes and every member's records."""
    members = glooko_members(timeline, options)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            info = zipfile.ZipInfo(member.file_name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.data)
    end = timeline.local(timeline.end_ms - 1).date()
    name = f"{timeline.profile.name.replace(' ', '_')}_glooko_export_{end.isoformat()}.zip"
    return WrittenExport(name, out.getvalue(), [record for member in members for record in member.expected])
