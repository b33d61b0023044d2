"""Write a simulated timeline as a mySugr app CSV export (research/formats.md §8).

One header row, then one row per logbook entry, newest first by default. The English layout has
the 28 columns of the current app; the German one the 17 German columns known (no temporary basal
and no ``Timezone`` column). :class:`MySugrOptions` lists the variants. What is written, from the
timeline:

* every ``fingerstick`` as a blood sugar entry, with a ketone value in the same entry above
  250 mg/dL and a note on every fifth one;
* ``pen_rapid`` (pen column) or a pump ``bolus`` (pump column), with the bolus calculator's meal and
  correction parts in their columns; every ``parts_only_every``-th dose only as its parts;
* ``pen_long`` as a basal injection (with a body weight on every third);
* pump temporary basal rates as percent and minutes (English layout only);
* ``carbs`` in grams or bread units (German default), a meal description on every third meal and a
  tag by the time of day;
* ``exercise`` as activity minutes and intensity 1/2/3, with a description on every other one;
* steps, location, latitude and longitude, blood pressure and HbA1c on some rows (not stored by
  the importer).

Times are written to the second. The expected records are what an importer reads back from the
written text, given the upload's time zone is the profile's. Rows whose wall time a reader would
place in the wrong pass through the repeated hour of a fall-back change (those read through a
time zone rather than a fixed offset) are left out, as a reader that feeds each zone's rows oldest
first would misplace them.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime as dt
import io
from typing import Literal

from glucoshare.ingest.localtime import LocalClock, wall_ms
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

HEADER_EN = [
    "Date",
    "Time",
    "Tags",
    "Blood Sugar Measurement ({unit})",
    "Insulin Injection Units (Pen)",
    "Basal Injection Units",
    "Insulin Injection Units (pump)",
    "Insulin (Meal)",
    "Insulin (Correction)",
    "Temporary Basal Percentage",
    "Temporary Basal Duration (Minutes)",
    "Meal Carbohydrates ({carbs})",
    "Meal Descriptions",
    "Activity Duration (Minutes)",
    "Activity Intensity (1: Cosy, 2: Ordinary, 3: Demanding)",
    "Activity Description",
    "Steps",
    "Note",
    "Location",
    "Blood pressure",
    "Body weight ({weight})",
    "HbA1c (Percent)",
    "Ketones",
    "Food type",
    "Medication",
    "Timezone",
    "Latitude",
    "Longitude",
]
HEADER_DE = [
    "Datum",
    "Zeit",
    "Tags",
    "Blutzuckermessung ({unit})",
    "Bolusinjektionseinheiten (Pen)",
    "Basalinjektionseinheiten",
    "Bolusinjektionseinheiten (Pump)",
    "Bolus (Mahlzeit)",
    "Bolus (Korrektur)",
    "Mahlzeitkohlenhydrate ({carbs})",
    "Mahlzeitbeschreibung",
    "Aktivitätsdauer (Minuten)",
    "Aktivitätsintensität (1: Bequem, 2: Normal, 3: Anstrengend)",
    "Ketone",
    "Blutdruck",
    "Art der Nahrung",
    "Notiz",
]
CARB_COLUMNS = {
    ("en", "g"): "Grams, Factor 1",
    ("en", "BE"): "Bread Units, Factor 12",
    ("de", "g"): "Gramm, Faktor 1",
    ("de", "BE"): "Broteinheiten, Faktor 12",
}
CARB_FACTOR = {"g": 1.0, "BE": 12.0}
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
INTENSITY = {"light": "1", "medium": "2", "heavy": "3"}
TEXTS = {
    "en": {"meal": "Pasta", "note": "felt shaky", "activity": "Cycling", "breakfast": "Breakfast"},
    "de": {"meal": "Nudeln", "note": "zittrig", "activity": "Radfahren", "breakfast": "Frühstück"},
}
TAGS = {
    "en": ((11, "Breakfast"), (16, "Lunch"), (24, "Dinner")),
    "de": ((11, "Frühstück"), (16, "Mittagessen"), (24, "Abendessen")),
}
INVALID_ZONE = "Mars/Olympus"
KETONE_AFTER_MGDL = 250.0
PUMP_STEP_U = 0.05
PEN_STEP_U = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class MySugrOptions:
    """Variants of the mySugr layout."""

    language: Literal["en", "de"] = "en"
    units: Literal["mg/dL", "mmol/L"] = "mg/dL"
    carb_unit: Literal["g", "BE"] | None = None
    """``None``: grams in English, bread units (factor 12) in German."""
    timezone_column: Literal["iana", "offset", "none", "invalid"] = "iana"
    """English layout: the ``Timezone`` cell holds the profile's zone name, the row's UTC offset
    (``+01:00``), nothing (the column is missing, as in older exports), or a name no zone has."""
    newest_first: bool = True
    old_header: bool = False
    """``Blood Glucose Measurement`` and ``Body weight (lbs)``, as older exports name them."""
    bolus_parts: bool = True
    """Write the bolus calculator's meal and correction parts next to each dose."""
    parts_only_every: int = 4
    """Every n-th dose is written only as its meal and correction parts (0: never)."""
    decimal_comma: bool = False
    delimiter: Literal[",", ";"] = ","
    quote_all: bool = False
    iso_dates: bool = False
    """Dates as ``2024-01-05`` and 24-hour times, as Excel re-saves them."""
    crlf: bool = False
    bom: bool = False
    extras: bool = True
    """Steps, location, blood pressure, body weight and HbA1c on some rows (never stored)."""


@dataclasses.dataclass(slots=True)
class _Row:
    """A row to write: its instant (s), its cells by column name and the records it holds."""

    utc_ms: int
    cells: dict[str, str]
    expected: list[ExpectedRecord]
    parts_only: bool = False  # a dose written only as its parts: its type is decided at the end


class _Writer:
    def __init__(self, timeline: Timeline, opts: MySugrOptions) -> None:
        self.timeline = timeline
        self.opts = opts
        self.german = opts.language == "de"
        self.carb_unit = opts.carb_unit or ("BE" if self.german else "g")
        self.mmol = opts.units == "mmol/L"
        self.pump = timeline.profile.therapy == "pump"
        self.texts = TEXTS[opts.language]
        self.rows: list[_Row] = []
        self.count = 0

    # -- cell texts ---------------------------------------------------------------------------------

    def number(self, value: float, decimals: int) -> str:
        text = f"{value:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text.replace(".", ",") if self.opts.decimal_comma else text

    @staticmethod
    def read(text: str) -> float:
        return float(text.replace(",", "."))

    def glucose(self, mgdl: float) -> tuple[str, float]:
        if self.mmol:
            text = self.number(mgdl / MGDL_PER_MMOLL, 1)
            return text, self.read(text) * MGDL_PER_MMOLL
        text = str(round(mgdl))
        return text, float(text)

    # -- rows ---------------------------------------------------------------------------------------

    def add(self, utc_ms: int, cells: dict[str, str], expected: list[ExpectedRecord]) -> _Row:
        at = utc_ms // 1000 * 1000
        row = _Row(at, cells, [dataclasses.replace(e, utc_ms=at) for e in expected])
        self.rows.append(row)
        self.count += 1
        if self.opts.extras:
            self.extras(row)
        return row

    def extras(self, row: _Row) -> None:
        number = self.count
        if number % 4 == 0:
            row.cells["Steps"] = str(1000 + 37 * number)
        if number % 6 == 0:
            row.cells["Location"] = "Home"
            row.cells["Latitude"] = "48.2082"
            row.cells["Longitude"] = "16.3738"
        if number % 9 == 0:
            row.cells["Blood pressure"] = "120/80"
        if number == 5:
            row.cells["HbA1c (Percent)"] = self.number(6.8, 1)

    def fingersticks(self) -> None:
        for number, event in enumerate(self.timeline.of_kind("fingerstick")):
            if event.value is None:
                continue
            text, mgdl = self.glucose(event.value)
            cells = {"glucose": text}
            expected = [ExpectedRecord("smbg", "meter", 0, mgdl)]
            if event.value > KETONE_AFTER_MGDL:
                ketones = self.number(0.1 + (event.value - KETONE_AFTER_MGDL) / 400.0, 1)
                cells["ketones"] = ketones
                expected.append(ExpectedRecord("bloodKetone", "", 0, self.read(ketones)))
            if number % 5 == 4:
                cells["note"] = self.texts["note"]
                expected.append(ExpectedRecord("note", "", 0, None))
            self.add(event.utc_ms, cells, expected)

    def doses(self) -> None:
        kind = "bolus" if self.pump else "pen_rapid"
        step = PUMP_STEP_U if self.pump else PEN_STEP_U
        decimals = 2 if self.pump else 1
        for number, event in enumerate(self.timeline.of_kind(kind)):
            if event.value is None or event.value <= 0:
                continue
            total = self.number(event.value, decimals)
            cells: dict[str, str] = {}
            meal = round(self.read(total) * 0.75 / step) * step
            correction = max(self.read(total) - meal, 0.0)
            every = self.opts.parts_only_every
            parts_only = every > 0 and number % every == every - 1
            if self.opts.bolus_parts or parts_only:
                cells["meal"] = self.number(meal, decimals)
                if correction > 0:
                    cells["correction"] = self.number(correction, decimals)
            if parts_only:
                value = sum(self.read(cells[k]) for k in ("meal", "correction") if k in cells)
                if value <= 0:
                    continue
                row = self.add(event.utc_ms, cells, [ExpectedRecord("insulin", "rapid", 0, value)])
                row.parts_only = True
                continue
            cells["pump" if self.pump else "pen"] = total
            rtype, subtype = ("bolus", "normal") if self.pump else ("insulin", "rapid")
            self.add(event.utc_ms, cells, [ExpectedRecord(rtype, subtype, 0, self.read(total))])

    def long_acting(self) -> None:
        for number, event in enumerate(self.timeline.of_kind("pen_long")):
            if event.value is None:
                continue
            text = self.number(event.value, 1)
            row = self.add(
                event.utc_ms, {"basal": text}, [ExpectedRecord("insulin", "long", 0, self.read(text))]
            )
            if self.opts.extras and number % 3 == 0:
                row.cells["weight"] = self.number(72.5, 1)

    def temp_basals(self) -> None:
        if self.german:
            return
        for event in self.timeline.of_kind("basal"):
            if event.subtype != "temp" or event.percent is None:
                continue
            cells = {"Temporary Basal Percentage": str(round(event.percent))}
            if event.duration_s is not None:
                cells["Temporary Basal Duration (Minutes)"] = str(event.duration_s // 60)
            self.add(event.utc_ms, cells, [ExpectedRecord("basal", "temp", 0, None)])

    def meals(self) -> None:
        factor = CARB_FACTOR[self.carb_unit]
        for number, event in enumerate(self.timeline.of_kind("carbs")):
            if event.value is None or event.value <= 0:
                continue
            grams = event.value
            text = str(round(grams)) if factor == 1 else self.number(grams / factor, 1)
            if self.read(text) <= 0:
                continue
            cells = {"carbs": text}
            expected = [ExpectedRecord("food", "", 0, self.read(text) * factor)]
            if number % 3 == 0:
                cells["meal_text"] = self.texts["meal"]
                expected.append(ExpectedRecord("note", "", 0, None))
            hour = self.timeline.local(event.utc_ms).hour
            cells["Tags"] = next(tag for end, tag in TAGS[self.opts.language] if hour < end)
            expected.append(ExpectedRecord("note", "", 0, None))
            self.add(event.utc_ms, cells, expected)

    def exercise(self) -> None:
        for number, event in enumerate(self.timeline.of_kind("exercise")):
            cells = {"activity_intensity": INTENSITY.get(event.subtype, "")}
            if event.duration_s is not None:
                cells["activity_minutes"] = str(event.duration_s // 60)
            subtype = event.subtype if event.subtype in INTENSITY else "unknown"
            expected = [ExpectedRecord("physicalActivity", subtype, 0, None)]
            if number % 2 == 0 and not self.german:
                cells["Activity Description"] = self.texts["activity"]
                expected.append(ExpectedRecord("note", "", 0, None))
            self.add(event.utc_ms, cells, expected)

    # -- the file -----------------------------------------------------------------------------------

    def header(self) -> tuple[list[str], dict[str, str]]:
        """The header and where each logical cell goes (logical name → column name)."""
        unit = self.opts.units
        carbs = CARB_COLUMNS[self.opts.language, self.carb_unit]
        if self.german:
            names = [name.format(unit=unit, carbs=carbs) for name in HEADER_DE]
            glucose, pen, basal, pump, meal, correction = names[3:9]
            logical = {
                "glucose": glucose,
                "pen": pen,
                "basal": basal,
                "pump": pump,
                "meal": meal,
                "correction": correction,
                "carbs": names[9],
                "meal_text": names[10],
                "activity_minutes": names[11],
                "activity_intensity": names[12],
                "ketones": names[13],
                "note": names[16],
                "Tags": "Tags",
                "Blood pressure": names[14],
                "weight": "",
            }
            return names, logical
        weight = "lbs" if self.opts.old_header else "kg"
        names = [name.format(unit=unit, carbs=carbs, weight=weight) for name in HEADER_EN]
        if self.opts.old_header:
            names[3] = f"Blood Glucose Measurement ({unit})"
        if self.opts.timezone_column == "none":
            names.remove("Timezone")
        logical = {
            "glucose": names[3],
            "pen": names[4],
            "basal": names[5],
            "pump": names[6],
            "meal": names[7],
            "correction": names[8],
            "carbs": names[11],
            "meal_text": names[12],
            "activity_minutes": names[13],
            "activity_intensity": names[14],
            "ketones": "Ketones",
            "note": "Note",
            "weight": names[20],
        }
        return names, logical

    def stamp(self, utc_ms: int) -> tuple[str, str]:
        local = self.timeline.local(utc_ms)
        if self.opts.iso_dates:
            return local.date().isoformat(), local.strftime("%H:%M:%S")
        if self.german:
            return local.strftime("%d.%m.%Y"), local.strftime("%H:%M:%S")
        hour = (local.hour + 11) % 12 + 1
        meridiem = "PM" if local.hour >= 12 else "AM"
        date = f"{MONTHS_EN[local.month - 1]} {local.day}, {local.year}"
        return date, f"{hour}:{local.minute:02d}:{local.second:02d} {meridiem}"

    def zone_cell(self, utc_ms: int) -> str:
        mode = self.opts.timezone_column
        if mode == "iana":
            return self.timeline.profile.timezone
        if mode == "invalid":
            return INVALID_ZONE
        offset = dt.datetime.fromtimestamp(utc_ms / 1000, tz=self.timeline.tz).utcoffset()
        minutes = 0 if offset is None else int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    def placeable(self, rows: list[_Row]) -> list[_Row]:
        """The rows (oldest first) a reader places at their true instants (module notes)."""
        if not self.german and self.opts.timezone_column == "offset":
            return rows
        clock = LocalClock(self.timeline.tz)
        kept: list[_Row] = []
        for row in rows:
            trial = copy.copy(clock)
            wall = wall_ms(self.timeline.local(row.utc_ms))
            if trial.resolve_ms(wall)[0] == row.utc_ms:
                clock = trial
                kept.append(row)
        return kept


def write_mysugr(timeline: Timeline, options: MySugrOptions | None = None) -> WrittenExport:
    """Write ``timeline`` as a mySugr CSV export; returns the bytes and the records they hold."""
    opts = options or MySugrOptions()
    writer = _Writer(timeline, opts)
    writer.fingersticks()
    writer.doses()
    writer.long_acting()
    writer.temp_basals()
    writer.meals()
    writer.exercise()
    rows = sorted(writer.rows, key=lambda row: row.utc_ms)
    rows = writer.placeable(rows)
    names, logical = writer.header()
    pump_file = any("pump" in row.cells or "Temporary Basal Percentage" in row.cells for row in rows)
    expected: list[ExpectedRecord] = []
    lines: list[list[str]] = []
    for row in rows:
        if row.parts_only and pump_file:
            row.expected[0] = dataclasses.replace(row.expected[0], type="bolus", subtype="normal")
        expected.extend(row.expected)
        cells = dict.fromkeys(names, "")
        date, time = writer.stamp(row.utc_ms)
        cells[names[0]], cells[names[1]] = date, time
        if "Timezone" in cells:
            cells["Timezone"] = writer.zone_cell(row.utc_ms)
        for name, text in row.cells.items():
            column = logical.get(name, name)
            if column in cells:
                cells[column] = text
        lines.append([cells[name] for name in names])
    if opts.newest_first:
        lines.reverse()
    out = io.StringIO()
    terminator = "\r\n" if opts.crlf else "\n"
    if opts.quote_all:
        csv_writer = csv.writer(
            out, delimiter=opts.delimiter, quoting=csv.QUOTE_ALL, lineterminator=terminator
        )
    else:
        csv_writer = csv.writer(out, delimiter=opts.delimiter, lineterminator=terminator)
    csv_writer.writerow(names)
    csv_writer.writerows(lines)
    data = out.getvalue().encode("utf-8")
    if opts.bom:
        data = b"\xef\xbb\xbf" + data
    end = timeline.local(timeline.end_ms)
    return WrittenExport(f"mySugr_Export_{end:%Y-%m-%d}.csv", data, expected)
