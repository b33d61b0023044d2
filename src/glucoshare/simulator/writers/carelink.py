"""Write a simulated timeline as a Medtronic CareLink CSV export (research/formats.md §3).

The file has the CareLink preamble, then a Pump section, for a 780G (54 columns) with a pump an
``Aggregated Auto Insulin Data`` section, then a Sensor section. Each section repeats the header
of its generation (47, 49 or 54 columns); rows are newest first inside each section, written in
the device's order reversed, and ``Index`` runs on across sections.

A pump timeline (``therapy="pump"``) gives: scheduled basal rows, temp basals (alternately as a
percent of the scheduled rate and as a rate), bolus-wizard rows (with and without a BG input)
followed by their bolus (most ``Normal``, some written as ``Square`` or as the two parts of a
``Dual`` bolus, interrupted ones with less delivered than selected), meter readings with their
linked meter (every other one also sent to the sensor as a calibration at the same second),
rewind and fill (prime) rows, suspend and resume rows, exercise markers and a ``New Device Time``
row. Carbohydrates reach a pump file only through the bolus wizard, as on the device. The wizard
rows carry the bolus calculator settings in force at their local time of day
(:func:`calculator_schedule`: carb ratios, sensitivities and target ranges by time of day, with the
lunch carb ratio weakened by 1 g/U from the local midnight in the middle of the timeline), and their
estimates follow from those settings (food = carbs ÷ ratio; correction = (BG − high target) ÷
sensitivity above the range, (BG − low target) ÷ sensitivity below it). A CGM-only
timeline (a Guardian app) gives meter readings, ``Meal`` and ``Insulin`` event markers and a
second, empty Pump section for another app installation (49 columns). Both get alarms on low and
high crossings of the sensor trace and sensor connections, and the Sensor section's readings as
integers (mg/dL) or one decimal (mmol/L); a reading outside 40 to 400 mg/dL is written as its
number (or, with ``out_of_range="word"``, as ``Low``/``High``) and expected at the range limit
with the ``low``/``high`` annotation.

Wall times: every row is written at the patient's wall time of its instant (to the second). In
the hour repeated by a fall-back change a wall time names two instants, and a reader can only
place a row by the order of its section (the stream steps back in wall time when the second pass
starts). A row of the second pass that no earlier row of its section puts there (a sensor gap
over the change, a lone pump event) is left out of the file, so that the expected records are the
true instants of every row written.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from typing import Literal

from glucoshare.ingest.localtime import FOLD_STEP_BACK
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator.timeline import Event, Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

Generation = Literal[47, 49, 54]

HEADER_47 = [
    "Index",
    "Date",
    "Time",
    "New Device Time",
    "BG Reading (mg/dL)",
    "Linked BG Meter ID",
    "Basal Rate (U/h)",
    "Temp Basal Amount",
    "Temp Basal Type",
    "Temp Basal Duration (h:mm:ss)",
    "Bolus Type",
    "Bolus Volume Selected (U)",
    "Bolus Volume Delivered (U)",
    "Bolus Duration (h:mm:ss)",
    "Prime Type",
    "Prime Volume Delivered (U)",
    "Alarm",
    "Suspend",
    "Rewind",
    "BWZ Estimate (U)",
    "BWZ Target High BG (mg/dL)",
    "BWZ Target Low BG (mg/dL)",
    "BWZ Carb Ratio (g/U)",
    "BWZ Insulin Sensitivity (mg/dL/U)",
    "BWZ Carb Input (grams)",
    "BWZ BG Input (mg/dL)",
    "BWZ Correction Estimate (U)",
    "BWZ Food Estimate (U)",
    "BWZ Active Insulin (U)",
    "Sensor Calibration BG (mg/dL)",
    "Sensor Glucose (mg/dL)",
    "ISIG Value",
    "Event Marker",
    "Bolus Number",
    "Bolus Cancellation Reason",
    "BWZ Unabsorbed Insulin Total (U)",
    "Final Bolus Estimate",
    "Scroll Step Size",
    "Insulin Action Curve Time",
    "Sensor Calibration Rejected Reason",
    "Preset Bolus",
    "Bolus Source",
    "Network Device Associated Reason",
    "Network Device Disassociated Reason",
    "Network Device Disconnected Reason",
    "Sensor Exception",
    "Preset Temp Basal Name",
]


def _header_49() -> list[str]:
    header = list(HEADER_47)
    header.insert(header.index("BWZ Active Insulin (U)") + 1, "BWZ Status")
    header.insert(header.index("Bolus Source") + 1, "Device Update Event")
    return header


HEADER_49 = _header_49()

HEADER_54 = [
    "Index",
    "Date",
    "Time",
    "New Device Time",
    "BG Source",
    "BG Reading (mg/dL)",
    "Linked BG Meter ID",
    "Basal Rate (U/h)",
    "Temp Basal Amount",
    "Temp Basal Type",
    "Temp Basal Duration (h:mm:ss)",
    "Bolus Type",
    "Bolus Volume Selected (U)",
    "Bolus Volume Delivered (U)",
    "Bolus Duration (h:mm:ss)",
    "Prime Type",
    "Prime Volume Delivered (U)",
    "Estimated Reservoir Volume after Fill (U)",
    "Alert",
    "User Cleared Alerts",
    "Suspend",
    "Rewind",
    "BWZ Estimate (U)",
    "BWZ Target High BG (mg/dL)",
    "BWZ Target Low BG (mg/dL)",
    "BWZ Carb Ratio (g/U)",
    "BWZ Insulin Sensitivity (mg/dL/U)",
    "BWZ Carb Input (grams)",
    "BWZ BG/SG Input (mg/dL)",
    "BWZ Correction Estimate (U)",
    "BWZ Food Estimate (U)",
    "BWZ Active Insulin (U)",
    "BWZ Status",
    "Sensor Calibration BG (mg/dL)",
    "Sensor Glucose (mg/dL)",
    "ISIG Value",
    "Event Marker",
    "Bolus Number",
    "Bolus Cancellation Reason",
    "BWZ Unabsorbed Insulin Total (U)",
    "Final Bolus Estimate",
    "Scroll Step Size",
    "Insulin Action Curve Time",
    "Sensor Calibration Rejected Reason",
    "Preset Bolus",
    "Bolus Source",
    "BLE Network Device",
    "Device Update Event",
    "Network Device Associated Reason",
    "Network Device Disassociated Reason",
    "Network Device Disconnected Reason",
    "Sensor Exception",
    "Preset Temp Basal Name",
    "Sensor State",
]

HEADERS: dict[int, list[str]] = {47: HEADER_47, 49: HEADER_49, 54: HEADER_54}
"""The column names of each generation, in mg/dL (mmol/L exports rename every ``(mg/dL``)."""

_BASE_NAMES = {"Alert": "Alarm", "BWZ BG/SG Input (mg/dL)": "BWZ BG Input (mg/dL)"}
"""54-column names of columns that rows keep under their 47-column name."""
PUMP_NAMES: dict[int, str] = {
    47: "Paradigm Revel - 723",
    49: "MiniMed 770G MMT-1880",
    54: "MiniMed 780G MMT-1886",
}
SENSOR_APP_NAMES: dict[int, str] = {
    47: "Guardian Connect",
    49: "Guardian™ 4 system",
    54: "Guardian™ 4 system",
}
SENSOR_LOW_MGDL = 40.0
SENSOR_HIGH_MGDL = 400.0
_LOW_ALARM_MGDL, _LOW_REARM_MGDL = 70.0, 80.0
_HIGH_ALARM_MGDL, _HIGH_REARM_MGDL = 250.0, 230.0
_AUTO_SOURCE = "CLOSED_LOOP_AUTO_INSULIN"
_MEAL_SOURCE = "CLOSED_LOOP_BG_CORRECTION_AND_FOOD_BOLUS"


@dataclasses.dataclass(frozen=True, slots=True)
class CareLinkOptions:
    """Variants of the CareLink layout."""

    generation: Generation = 54
    """47 (2018 Paradigm), 49 (2024 Guardian 4 app / 770G) or 54 columns (780G)."""
    locale: Literal["us", "eu"] = "us"
    """``us``: ``,`` and a decimal point; ``eu``: ``;``, a decimal comma and the EU preamble."""
    units: Literal["mg/dL", "mmol/L"] = "mg/dL"
    bom: bool = True
    crlf: bool = True
    out_of_range: Literal["number", "word"] = "number"
    """How a sensor reading outside 40 to 400 mg/dL is written: its number, or ``Low``/``High``."""


@dataclasses.dataclass(frozen=True, slots=True)
class CalculatorSettings:
    """Bolus calculator settings by local time of day; starts in minutes after local midnight.

    ``carb_ratios`` in g/U, ``sensitivities`` in mg/dL per U, ``targets`` as (start, low, high) in
    mg/dL; each schedule starts at minute 0.
    """

    carb_ratios: tuple[tuple[int, float], ...]
    sensitivities: tuple[tuple[int, float], ...]
    targets: tuple[tuple[int, float, float], ...]

    def carb_ratio_at(self, minute: int) -> float:
        """The carb ratio (g/U) in force at ``minute`` of the local day."""
        return next(value for start, value in reversed(self.carb_ratios) if start <= minute)

    def sensitivity_at(self, minute: int) -> float:
        """The sensitivity (mg/dL per U) in force at ``minute`` of the local day."""
        return next(value for start, value in reversed(self.sensitivities) if start <= minute)

    def target_at(self, minute: int) -> tuple[float, float]:
        """The target range (low, high mg/dL) in force at ``minute`` of the local day."""
        return next((low, high) for start, low, high in reversed(self.targets) if start <= minute)


@dataclasses.dataclass(frozen=True, slots=True)
class CalculatorSchedule:
    """The settings a simulated pump's bolus calculator uses, with one change.

    ``before`` until ``change_ms`` (UTC ms, a local midnight), ``after`` from then on (only the
    11:00 carb ratio differs).
    """

    before: CalculatorSettings
    after: CalculatorSettings
    change_ms: int

    def at(self, utc_ms: int) -> CalculatorSettings:
        """The settings in force at an instant."""
        return self.before if utc_ms < self.change_ms else self.after


def _half(value: float) -> float:
    """Rounded to 0.5 (the step pumps offer for carb ratios)."""
    return round(value * 2.0) / 2.0


def _fives(value: float) -> float:
    """Rounded to a multiple of 5 (mg/dL per U)."""
    return float(5 * round(value / 5.0))


def calculator_schedule(timeline: Timeline) -> CalculatorSchedule:
    """The bolus calculator settings the simulated pump of ``timeline`` uses.

    Built from the patient's carb ratio and sensitivity (those of the timeline's wizard events;
    10 g/U and 50 mg/dL/U without any): carb ratios 00:00 × 0.75 (breakfast needs more insulin),
    11:00 × 1 and 17:00 × 0.85 (to 0.5 g/U); sensitivities 00:00 × 0.85 and 11:00 × 1 (to 5 mg/dL/U);
    targets 00:00 110–130, 06:00 100–120 and 21:00 110–130 mg/dL. From the local midnight starting
    the middle day of the timeline (``days // 2``) the 11:00 carb ratio is 1 g/U higher.
    """
    wizard = next((e for e in timeline.events if e.kind == "wizard" and e.ratio and e.isf), None)
    ratio = wizard.ratio if wizard is not None and wizard.ratio else 10.0
    isf = wizard.isf if wizard is not None and wizard.isf else 50.0
    lunch = _half(ratio)
    before = CalculatorSettings(
        carb_ratios=((0, _half(ratio * 0.75)), (11 * 60, lunch), (17 * 60, _half(ratio * 0.85))),
        sensitivities=((0, _fives(isf * 0.85)), (11 * 60, _fives(isf))),
        targets=((0, 110.0, 130.0), (6 * 60, 100.0, 120.0), (21 * 60, 110.0, 130.0)),
    )
    after = dataclasses.replace(
        before, carb_ratios=tuple((s, v + 1.0 if s == 11 * 60 else v) for s, v in before.carb_ratios)
    )
    first = timeline.local(timeline.start_ms).date()
    days = (timeline.local(timeline.end_ms - 1).date() - first).days + 1
    middle = dt.datetime.combine(first + dt.timedelta(days=days // 2), dt.time(0)).replace(tzinfo=timeline.tz)
    return CalculatorSchedule(before, after, int(middle.timestamp() * 1000))


@dataclasses.dataclass(slots=True)
class _Row:
    """One row to write: its instant, its tie-break order, its cells by (mg/dL) column name."""

    utc_ms: int
    order: int
    cells: dict[str, str]
    expected: list[ExpectedRecord]
    percent: float | None = None
    """For a percent temp basal: its percent (the expected rate depends on the rows kept before it)."""


class _Format:
    """Number and glucose formatting of one export."""

    def __init__(self, options: CareLinkOptions) -> None:
        self.comma = options.locale == "eu"
        self.mmol = options.units == "mmol/L"
        self.insulin_decimals = 3 if options.generation == 54 else 2

    def num(self, value: float, decimals: int) -> str:
        text = f"{value:.{decimals}f}"
        return text.replace(".", ",") if self.comma else text

    def insulin(self, value: float) -> str:
        return self.num(value, self.insulin_decimals)

    def read(self, text: str) -> float:
        return float(text.replace(",", "."))

    def glucose(self, mgdl: float, *, sensor: bool = False) -> tuple[str, float]:
        """Text of a glucose value in the export's unit, and the mg/dL a reader gets from it."""
        if self.mmol:
            text = self.num(mgdl / MGDL_PER_MMOLL, 1)
            return text, self.read(text) * MGDL_PER_MMOLL
        text = str(round(mgdl)) if sensor else self.num(round(mgdl), 2)
        return text, self.read(text)


class _Placer:
    """Keeps the rows of one section that a reader can place in the repeated hour by their order."""

    def __init__(self, timeline: Timeline) -> None:
        self.tz = timeline.tz
        self.prev: dt.datetime | None = None
        self.fold = 0

    def _ambiguous(self, local: dt.datetime) -> bool:
        first = local.replace(tzinfo=self.tz, fold=0).utcoffset()
        second = local.replace(tzinfo=self.tz, fold=1).utcoffset()
        return first != second

    def keep(self, local: dt.datetime) -> bool:
        """True when a reader fed this section in order resolves ``local`` to its own instant."""
        if self._ambiguous(local):
            fold = 1 if self.prev is not None and self.prev - local > FOLD_STEP_BACK else self.fold
            if fold != local.fold:
                return False
            self.fold = fold
        else:
            self.fold = 0
        self.prev = local
        return True


def _seconds(utc_ms: int) -> int:
    return utc_ms // 1000 * 1000


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Writer:
    """Builds the sections of one export."""

    def __init__(self, timeline: Timeline, options: CareLinkOptions) -> None:
        self.timeline = timeline
        self.options = options
        self.fmt = _Format(options)
        self.pump = timeline.profile.therapy == "pump"
        self.gen = options.generation
        self.order = 0
        self.calculator = calculator_schedule(timeline)

    def row(self, rows: list[_Row], utc_ms: int, cells: dict[str, str], *expected: ExpectedRecord) -> None:
        self.order += 1
        rows.append(_Row(utc_ms, self.order, cells, list(expected)))

    # -- pump section ------------------------------------------------------------------------------

    def pump_rows(self) -> list[_Row]:
        rows: list[_Row] = []
        tl, fmt = self.timeline, self.fmt
        if self.pump:
            at = _seconds(tl.start_ms + 3 * 60_000)
            wall = tl.local(at).strftime("%Y/%m/%d %H:%M:%S")
            self.row(
                rows, at, {"New Device Time": wall}, ExpectedRecord("deviceEvent", "timeChange", at, None)
            )
        last_rate: float | None = None
        temps = boluses = meters = 0
        for event in sorted(tl.events, key=lambda e: (e.utc_ms, _PRIORITY.get(e.kind, 9))):
            at = _seconds(event.utc_ms)
            kind = event.kind
            if kind == "basal" and event.subtype == "scheduled" and event.value is not None:
                text = fmt.num(event.value, 3 if self.gen == 54 else 2)
                last_rate = fmt.read(text)
                self.row(
                    rows, at, {"Basal Rate (U/h)": text}, ExpectedRecord("basal", "scheduled", at, last_rate)
                )
            elif kind == "basal" and event.subtype == "temp" and event.percent is not None:
                temps += 1
                self.temp_basal(rows, at, event, last_rate, as_rate=temps % 2 == 0)
            elif kind == "wizard" and self.pump:
                self.wizard(rows, at, event)
            elif kind == "bolus" and self.pump and event.value is not None:
                boluses += 1
                self.bolus(rows, at, event, boluses)
            elif kind == "fingerstick" and event.value is not None:
                meters += 1
                self.fingerstick(rows, at, event, calibrate=self.pump and meters % 2 == 1)
            elif kind == "prime" and event.value is not None:
                self.prime(rows, at, event)
            elif kind == "rewind":
                if self.gen == 54:
                    before = at - 19_000
                    self.row(
                        rows,
                        before,
                        {"Suspend": "NOTSEATED_SUSPEND"},
                        ExpectedRecord("deviceEvent", "suspend", before, None),
                    )
                self.row(
                    rows, at, {"Rewind": "Rewind"}, ExpectedRecord("deviceEvent", "reservoirChange", at, None)
                )
            elif kind == "suspend":
                self.row(
                    rows, at, {"Suspend": "USER_SUSPEND"}, ExpectedRecord("deviceEvent", "suspend", at, None)
                )
            elif kind == "resume":
                self.row(
                    rows, at, {"Suspend": "NORMAL_PUMPING"}, ExpectedRecord("deviceEvent", "resume", at, None)
                )
            elif kind == "exercise" and event.duration_s is not None:
                text = f"Exercise: {event.duration_s // 60} minutes"
                self.row(rows, at, {"Event Marker": text}, ExpectedRecord("note", "", at, None))
            elif kind == "carbs" and not self.pump and event.value is not None:
                text = fmt.num(event.value, 2)
                self.row(
                    rows,
                    at,
                    {"Event Marker": f"Meal: {text}grams"},
                    ExpectedRecord("food", "", at, fmt.read(text)),
                )
            elif kind == "alarm" and event.text:
                self.row(rows, at, {"Alarm": event.text}, ExpectedRecord("deviceEvent", "alarm", at, None))
            elif kind in ("pen_rapid", "pen_long") and event.value is not None:
                text = fmt.num(event.value, 2)
                self.row(
                    rows,
                    at,
                    {"Event Marker": f"Insulin: {text}"},
                    ExpectedRecord("insulin", "unknown", at, fmt.read(text)),
                )
        rows.extend(self.alarms())
        return rows

    def temp_basal(
        self, rows: list[_Row], at: int, event: Event, last_rate: float | None, *, as_rate: bool
    ) -> None:
        percent = event.percent or 0.0
        duration = _hms(event.duration_s or 0)
        if as_rate and last_rate is not None:
            text = self.fmt.num(round(last_rate * percent / 100.0, 3), 3)
            cells = {
                "Temp Basal Amount": text,
                "Temp Basal Type": "Rate",
                "Temp Basal Duration (h:mm:ss)": duration,
            }
            self.row(rows, at, cells, ExpectedRecord("basal", "temp", at, self.fmt.read(text)))
            return
        cells = {
            "Temp Basal Amount": str(round(percent)),
            "Temp Basal Type": "Percent",
            "Temp Basal Duration (h:mm:ss)": duration,
        }
        self.row(rows, at, cells, ExpectedRecord("basal", "temp", at, None))
        rows[-1].percent = float(round(percent))

    def percent_temps(self, rows: list[_Row]) -> list[_Row]:
        """Set the expected rate of percent temp basals from the scheduled rate in force (rows in order)."""
        rate: float | None = None
        for row in rows:
            text = row.cells.get("Basal Rate (U/h)")
            if text:
                rate = self.fmt.read(text)
            if row.percent is not None:
                value = rate * row.percent / 100.0 if rate is not None else None
                row.expected = [ExpectedRecord("basal", "temp", row.utc_ms, value)]
        return rows

    def wizard(self, rows: list[_Row], at: int, event: Event) -> None:
        fmt = self.fmt
        carbs = event.value or 0.0
        local = self.timeline.local(at)
        settings = self.calculator.at(at)
        minute = local.hour * 60 + local.minute
        ratio = settings.carb_ratio_at(minute)
        isf = settings.sensitivity_at(minute)
        low, high = settings.target_at(minute)
        bg = event.bg
        correction = 0.0
        if bg is not None and bg > high:
            correction = (bg - high) / isf
        elif bg is not None and bg < low:
            correction = (bg - low) / isf
        food = carbs / ratio
        isf_text = fmt.num(isf / MGDL_PER_MMOLL, 1) if fmt.mmol else fmt.num(isf, 2)
        cells = {
            "BWZ Estimate (U)": fmt.insulin(max(0.0, food + correction)),
            "BWZ Target High BG (mg/dL)": fmt.glucose(high)[0],
            "BWZ Target Low BG (mg/dL)": fmt.glucose(low)[0],
            "BWZ Carb Ratio (g/U)": fmt.num(ratio, 2),
            "BWZ Insulin Sensitivity (mg/dL/U)": isf_text,
            "BWZ Carb Input (grams)": fmt.num(carbs, 2),
            "BWZ BG Input (mg/dL)": fmt.glucose(bg)[0] if bg is not None else fmt.num(0, 2),
            "BWZ Correction Estimate (U)": fmt.insulin(correction),
            "BWZ Food Estimate (U)": fmt.insulin(food),
            "BWZ Active Insulin (U)": fmt.insulin(0.0),
        }
        if self.gen != 47:
            cells["BWZ Status"] = "Delivered"
        self.row(rows, at, cells, ExpectedRecord("wizard", "", at, fmt.read(fmt.num(carbs, 2))))

    def bolus(self, rows: list[_Row], at: int, event: Event, number: int) -> None:
        fmt = self.fmt
        delivered = event.value or 0.0
        programmed = event.programmed if event.programmed is not None else delivered
        extra: dict[str, str] = {}
        if self.gen == 54:
            extra = {"Bolus Number": str(number), "Bolus Source": _MEAL_SOURCE}
        normal_part, normal_selected = round(delivered * 0.6, 2), round(programmed * 0.6, 2)
        square_part, square_selected = (
            round(delivered - normal_part, 2),
            round(programmed - normal_selected, 2),
        )
        if number % 9 == 4 and normal_part > 0 and square_part > 0 and square_selected > 0:
            for kind, selected, part, duration in (
                ("Dual (normal part)", normal_selected, normal_part, ""),
                ("Dual (square part)", square_selected, square_part, "02:00:00"),
            ):
                text = fmt.insulin(part)
                cells = {
                    "Bolus Type": kind,
                    "Bolus Volume Selected (U)": fmt.insulin(selected),
                    "Bolus Volume Delivered (U)": text,
                    "Bolus Duration (h:mm:ss)": duration,
                    **extra,
                }
                self.row(rows, at, cells, ExpectedRecord("bolus", "dual", at, fmt.read(text)))
            return
        square = number % 9 == 7
        text = fmt.insulin(delivered)
        cells = {
            "Bolus Type": "Square" if square else "Normal",
            "Bolus Volume Selected (U)": fmt.insulin(programmed),
            "Bolus Volume Delivered (U)": text,
            "Bolus Duration (h:mm:ss)": "01:30:00" if square else "",
            **extra,
        }
        subtype = "extended" if square else "normal"
        self.row(rows, at, cells, ExpectedRecord("bolus", subtype, at, fmt.read(text)))

    def fingerstick(self, rows: list[_Row], at: int, event: Event, *, calibrate: bool) -> None:
        text, mgdl = self.fmt.glucose(event.value or 0.0)
        meter = self.timeline.device_serials.get("meter", "") if self.pump else ""
        subtype = "calibration" if event.subtype == "calibration" else "meter"
        if subtype == "meter":
            cells = {"BG Reading (mg/dL)": text, "Linked BG Meter ID": meter}
            self.row(rows, at, cells, ExpectedRecord("smbg", "meter", at, mgdl))
        if subtype == "calibration" or calibrate:
            cells = {"Sensor Calibration BG (mg/dL)": text}
            self.row(rows, at, cells, ExpectedRecord("smbg", "calibration", at, mgdl))

    def prime(self, rows: list[_Row], at: int, event: Event) -> None:
        fmt = self.fmt
        cannula = event.subtype == "cannula"
        if self.gen == 54:
            kind = "Cannula Fill" if cannula else "Tubing Fill"
        else:
            kind = "Fixed" if cannula else "Manual"
        text = fmt.num(event.value or 0.0, 2)
        cells = {"Prime Type": kind, "Prime Volume Delivered (U)": text}
        if self.gen == 54:
            cells["Estimated Reservoir Volume after Fill (U)"] = fmt.num(260.0, 2)
        self.row(rows, at, cells, ExpectedRecord("deviceEvent", "prime", at, fmt.read(text)))
        if cannula and self.gen == 54:
            after = at + 14_000
            self.row(
                rows,
                after,
                {"Suspend": "NORMAL_PUMPING"},
                ExpectedRecord("deviceEvent", "resume", after, None),
            )

    def alarms(self) -> list[_Row]:
        """Alarms on low and high crossings (with re-arming) and on each new sensor session."""
        rows: list[_Row] = []
        tl = self.timeline
        low_text, high_text = ("ALERT ON LOW", "ALERT ON HIGH") if self.gen == 54 else ("LOW SG", "HIGH SG")
        low_armed = high_armed = True
        session = -1
        for i in range(tl.cgm_ms.size):
            at = _seconds(int(tl.cgm_ms[i]))
            mgdl = float(tl.cgm_mgdl[i])
            text = ""
            if int(tl.cgm_session[i]) != session:
                session = int(tl.cgm_session[i])
                text = "SENSOR CONNECTED"
            elif low_armed and mgdl < _LOW_ALARM_MGDL:
                text, low_armed = low_text, False
            elif high_armed and mgdl > _HIGH_ALARM_MGDL:
                text, high_armed = high_text, False
            low_armed = low_armed or mgdl > _LOW_REARM_MGDL
            high_armed = high_armed or mgdl < _HIGH_REARM_MGDL
            if text:
                self.row(rows, at, {"Alarm": text}, ExpectedRecord("deviceEvent", "alarm", at, None))
        return rows

    # -- other sections ----------------------------------------------------------------------------

    def aggregated_rows(self) -> list[_Row]:
        """One row per local day: the day's auto insulin (here the scheduled basal's daily dose)."""
        tl = self.timeline
        schedule = tl.basal_schedule
        daily = sum(
            rate * ((schedule[i + 1][0] if i + 1 < len(schedule) else 1440) - start) / 60.0
            for i, (start, rate) in enumerate(schedule)
        )
        rows: list[_Row] = []
        day = tl.local(tl.start_ms).date()
        last = tl.local(tl.end_ms - 1).date()
        while day <= last:
            at = int(dt.datetime.combine(day, dt.time(0)).replace(tzinfo=tl.tz).timestamp() * 1000)
            text = self.fmt.num(round(daily, 3), 3)
            cells = {
                "Bolus Type": "Normal",
                "Bolus Volume Selected (U)": text,
                "Bolus Volume Delivered (U)": text,
                "Bolus Source": _AUTO_SOURCE,
            }
            self.row(rows, at, cells, ExpectedRecord("deviceEvent", "other", at, None))
            day += dt.timedelta(days=1)
        return rows

    def sensor_rows(self) -> list[_Row]:
        rows: list[_Row] = []
        tl, fmt = self.timeline, self.fmt
        if self.gen == 54:
            day = tl.local(tl.start_ms).date() + dt.timedelta(days=1)
            while True:
                at = int(dt.datetime.combine(day, dt.time(0)).replace(tzinfo=tl.tz).timestamp() * 1000)
                if at >= tl.end_ms:
                    break
                for text in ("Start of the day", "End of the day"):
                    self.row(rows, at, {"Event Marker": text}, ExpectedRecord("note", "", at, None))
                day += dt.timedelta(days=1)
        isig = self.pump
        for i in range(tl.cgm_ms.size):
            at = _seconds(int(tl.cgm_ms[i]))
            mgdl = float(tl.cgm_mgdl[i])
            if self.options.out_of_range == "word" and round(mgdl) < SENSOR_LOW_MGDL:
                text = "Low"
            elif self.options.out_of_range == "word" and round(mgdl) > SENSOR_HIGH_MGDL:
                text = "High"
            else:
                text = fmt.glucose(mgdl, sensor=True)[0]
            cells = {"Sensor Glucose (mg/dL)": text}
            if isig:
                cells["ISIG Value"] = fmt.num(max(mgdl, 20.0) / 6.5, 2)
            self.row(rows, at, cells, self.expected_sensor(at, text))
        return rows

    def expected_sensor(self, at: int, text: str) -> ExpectedRecord:
        """What a reader makes of a written sensor value (range limits in the written unit)."""
        if text in ("Low", "High"):
            word = text.lower()
            return ExpectedRecord(
                "cbg", "sensor", at, SENSOR_LOW_MGDL if word == "low" else SENSOR_HIGH_MGDL, word
            )
        number = self.fmt.read(text)
        low, high = (2.2, 22.2) if self.fmt.mmol else (SENSOR_LOW_MGDL, SENSOR_HIGH_MGDL)
        if number < low:
            return ExpectedRecord("cbg", "sensor", at, SENSOR_LOW_MGDL, "low")
        if number > high:
            return ExpectedRecord("cbg", "sensor", at, SENSOR_HIGH_MGDL, "high")
        return ExpectedRecord("cbg", "sensor", at, number * MGDL_PER_MMOLL if self.fmt.mmol else number)


_PRIORITY = {"wizard": 0, "bolus": 1, "rewind": 2, "prime": 3}
"""Order of events of the same second: the wizard precedes its bolus, the rewind its fill."""


def _placed(timeline: Timeline, rows: list[_Row]) -> list[_Row]:
    """The rows in device order (oldest first), without those a reader cannot place (see module)."""
    placer = _Placer(timeline)
    ordered = sorted(rows, key=lambda r: (r.utc_ms, r.order))
    return [row for row in ordered if placer.keep(timeline.local(row.utc_ms))]


def write_carelink(timeline: Timeline, options: CareLinkOptions | None = None) -> WrittenExport:
    """Write ``timeline`` as a CareLink export; returns the bytes and the records they hold."""
    opts = options or CareLinkOptions()
    writer = _Writer(timeline, opts)
    delimiter = ";" if opts.locale == "eu" else ","
    header = [_column_name(name, opts) for name in HEADERS[opts.generation]]
    base_names = [_BASE_NAMES.get(name, name) for name in HEADERS[opts.generation]]
    pump = timeline.profile.therapy == "pump"
    device = PUMP_NAMES[opts.generation] if pump else SENSOR_APP_NAMES[opts.generation]
    serial = timeline.device_serials["pump"] if pump else timeline.device_serials["app"]
    sections: list[tuple[str, str, str, list[_Row]]] = [
        ("Pump", serial, "------- ", writer.percent_temps(_placed(timeline, writer.pump_rows())))
    ]
    if pump and opts.generation == 54:
        sections.append(
            ("Pump", serial, "Aggregated Auto Insulin Data ", _placed(timeline, writer.aggregated_rows()))
        )
    sections.append(("Sensor", serial, "------- ", _placed(timeline, writer.sensor_rows())))
    if not pump and opts.generation == 49:
        sections.append(("Pump", timeline.device_serials["reader"], "------- ", []))
    out = io.StringIO()
    newline = "\r\n" if opts.crlf else "\n"
    out.write(newline.join(_preamble(timeline, opts, device, serial, delimiter)) + newline)
    rows_writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    expected: list[ExpectedRecord] = []
    index = 0
    for kind, section_serial, label, rows in sections:
        out.write(delimiter.join(["-------", device, kind, section_serial, label]) + newline)
        rows_writer.writerow(header)
        for row in reversed(rows):
            index_text = f"{index}.00000".replace(".", "," if opts.locale == "eu" else ".")
            local = timeline.local(row.utc_ms)
            cells = [index_text, local.strftime("%Y/%m/%d"), local.strftime("%H:%M:%S")]
            cells.extend(row.cells.get(name, "") for name in base_names[3:])
            rows_writer.writerow(cells)
            expected.extend(row.expected)
            index += 1
        out.write(newline)
    data = out.getvalue().encode("utf-8")
    if opts.bom:
        data = "\ufeff".encode() + data
    stamp = dt.datetime.fromtimestamp(timeline.end_ms / 1000, tz=dt.UTC).strftime("%Y%m%d")
    last_name = timeline.profile.name.rpartition(" ")[2] or "Patient"
    return WrittenExport(f"CareLink-Export-{last_name}-{stamp}.csv", data, expected)


def _column_name(name: str, options: CareLinkOptions) -> str:
    return name.replace("(mg/dL", "(mmol/L") if options.units == "mmol/L" else name


def _preamble(
    timeline: Timeline, options: CareLinkOptions, device: str, serial: str, delimiter: str
) -> list[str]:
    first, _, last = timeline.profile.name.partition(" ")
    start = timeline.local(timeline.start_ms)
    end = timeline.local(timeline.end_ms - 1000)
    if options.locale == "eu":
        start_text, end_text = start.strftime("%d.%m.%Y %H:%M:%S"), end.strftime("%d.%m.%Y %H:%M:%S")
    else:
        start_text = f"{start.month}/{start.day}/{start:%y} {start:%I:%M:%S %p}"
        end_text = f"{end.month}/{end.day}/{end:%y} {end:%I:%M:%S %p}"
    d = delimiter
    names = f'"{last or "Patient"}"{d}"{first}"{d}""'
    if options.generation == 47:
        return [
            d.join(["Last Name", "First Name", "Patient ID", "Start Date", "End Date", "Device", device]),
            d.join([names, f'"{start_text}"', f'"{end_text}"', '"Serial Number"', serial]),
            "",
            "Device data shown may exceed selected date range.",
            "",
        ]
    if options.generation == 49:
        return [
            d.join(
                [
                    "Last Name",
                    "First Name",
                    "Patient ID",
                    "System ID",
                    "Start Date",
                    "End Date",
                    "Device",
                    device,
                ]
            ),
            d.join([names, '""', f'"{start_text}"', f'"{end_text}"', '"Serial Number"', serial]),
            "",
            "Device data shown may exceed selected date range.",
            "",
        ]
    return [
        d.join(
            [
                "Last Name",
                "First Name",
                "Patient ID",
                "System ID",
                "Start Date",
                "End Date",
                "Device",
                device,
                "Hardware Version",
                "A2.01",
                "Firmware Version",
                "8.13.2",
            ]
        ),
        d.join(
            [
                names,
                '""',
                f'"{start_text}"',
                f'"{end_text}"',
                '"Serial Number"',
                serial,
                "Software Version",
                "",
            ]
        ),
        d.join(["Patient DOB", "", "", "", "", "", "CGM", "Guardian™ 4 Sensor"]),
        "",
        "",
    ]
