"""Write a simulated pump timeline as a Tandem Source export or a legacy t:connect CSV (formats.md §4).

**Tandem Source** (:func:`write_tandem_source`): five CSV files, as Tandem Source exports them (one
per data type, named ``<LAST>_<serial>_<DDMonYYYY>_<hhmm>-<Kind>.csv``): CGM readings (``EGV``, whole
mg/dL; a reading at or beyond 40 or 400 mg/dL written as the limit or, with ``out_of_range="word"``,
as ``Low``/``High``), BG meter readings (every third with a ``Note``, one of them with a comma),
boluses (most standard; every 7th with an extended Bolex part, every 11th only extended, every 13th
an automatic correction; one stopped early per bolus the simulator interrupted; bolus calculator
inputs with the settings written as 0 except on every 4th row, as in the real export), basal doses
every 5 minutes (the simulator's basal rate, scheduled, temporary or suspended, modulated by the CGM
trace as a closed loop would, and written in units per 5-minute cycle: ``0.057``, ``0``) and their
hourly totals (one row per pump and local day, ``3/5/26``).

**t:connect** (:func:`write_tconnect`): one file with the preamble, then the readings (``EGV`` and
``BG``, every row ending with an extra comma), IOB, basal (rate changes: ``Basal``, ``TempRate``,
``Suspension``) and bolus tables, blank-line separated, every non-empty cell quoted; the bolus header has 41
names and its data rows 43 fields (an unnamed column after ``IsQuickBolus`` and a final comma), as in
the fixtures of third-party parsers. No raw t:connect file was available: this layout is the one
research/formats.md §4.2 describes.

**Quirks** (options): CRLF or LF, a BOM, a missing final line break, rows in descending or shuffled
order, a pump replaced in the middle of the period (a second serial, of the other pump family),
zero and blank cells (0 U doses where the loop stops; 0 for the calculator settings; an hourly
total left blank instead of 0; with ``blank_cells``, a few CGM readings and basal doses left blank,
which a reader must reject: their lines are listed in ``rejected``). The t:connect writer also puts
its tables in another order, and can leave out the basal table (a Control-IQ pump's file).

**Expected records.** Each file's ``expected`` holds what a reader gets from it imported together
with the other files of the export (the Hourly file then stores only what the doses do not
cover, which is nothing); :attr:`TandemSourceExport.hourly_alone` holds what the Hourly file gives
on its own. Rows are written at the patient's wall time (to the second); in the hour a fall-back
change repeats, a row that a reader cannot place (by the order of its stream, or, in a shuffled file,
at all when it is in the second pass) is left out of the file.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime as dt
import io
import zipfile
import zoneinfo
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from glucoshare.ingest.localtime import FOLD_STEP_BACK
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

Order = Literal["ascending", "descending", "shuffled"]

CGM_HEADER = ["Device Type", "Serial Number", "Description", "Event Date Time", "Readings (mg/dL)"]
BG_HEADER = ["Device Type", "Serial Number", "Description", "Event Date Time", "BG (mg/dL)", "Note"]
BOLUS_HEADER = [
    "Type",
    "Bolus Type",
    "Bolus Delivery Method",
    "BG (mg/dL)",
    "Serial Number",
    "Completion Date Time",
    "Insulin Delivered",
    "Food Delivered",
    "Correction Delivered",
    "Completion Status Desc",
    "Bolex Start Date Time",
    "Bolex Completion Date Time",
    "Bolex Insulin Delivered",
    "Bolex Completion Status Desc",
    "Standard Percent",
    "Duration (mins)",
    "Carb Size",
    "Target BG (mg/dL)",
    "Correction Factor",
    "Carb Ratio",
]
DOSES_HEADER = ["Device Type", "Serial Number", "Event Date Time", "Commanded Basal Dose (units of insulin)"]
HOURLY_HEADER = [
    "Serial Number",
    "Event Date",
    *(f"{(hour % 12) or 12}:00 {'AM' if hour < 12 else 'PM'}" for hour in range(24)),
]
DEVICE_TYPES = {"mobi": "Tandem Mobi™ System", "tslim": "t:slim X2™ Insulin Pump"}
MODELS = {"mobi": "Tandem Mobi", "tslim": "t:slim X2"}
"""The model a reader names each pump family (the ``Device Type`` without its trade-mark sign)."""

TCONNECT_READINGS = ["DeviceType", "SerialNumber", "Description", "EventDateTime", "Readings (CGM / BGM)"]
TCONNECT_IOB = ["Type", "EventID", "EventDateTime", "IOB"]
TCONNECT_BASAL = ["Type", "EventDateTime", "BasalRate"]
TCONNECT_BOLUS = [
    "Type",
    "Description",
    "BG",
    "IOB",
    "BolusRequestID",
    "BolusCompletionID",
    "CompletionDateTime",
    "InsulinDelivered",
    "FoodDelivered",
    "CorrectionDelivered",
    "CompletionStatusID",
    "CompletionStatusDesc",
    "BolusIsComplete",
    "BolexCompletionID",
    "BolexSize",
    "BolexStartDateTime",
    "BolexCompletionDateTime",
    "BolexInsulinDelivered",
    "BolexIOB",
    "BolexCompletionStatusID",
    "BolexCompletionStatusDesc",
    "ExtendedBolusIsComplete",
    "EventDateTime",
    "RequestDateTime",
    "BolusType",
    "BolusRequestOptions",
    "StandardPercent",
    "Duration",
    "CarbSize",
    "UserOverride",
    "TargetBG",
    "CorrectionFactor",
    "FoodBolusSize",
    "CorrectionBolusSize",
    "ActualTotalBolusRequested",
    "IsQuickBolus",
    "EventHistoryReportEventDesc",
    "EventHistoryReportDetails",
    "NoteID",
    "IndexID",
    "Note",
]
TCONNECT_DEVICE_TYPE = "t:slim X2 Insulin Pump"

SENSOR_LOW_MGDL = 40.0
SENSOR_HIGH_MGDL = 400.0
DOSE_INTERVAL_MS = 300_000
MAX_DOSE_SEGMENT_MS = 600_000
HOUR_MS = 3_600_000
_NOTES = ("before lunch", "after a run, felt shaky", "sensor check")


@dataclasses.dataclass(frozen=True, slots=True)
class TandemSourceOptions:
    """Variants of a Tandem Source export."""

    pump: Literal["mobi", "tslim"] = "mobi"
    crlf: bool = False
    bom: bool = False
    final_newline: bool = True
    order: Order = "ascending"
    """Row order inside each serial's rows: ``ascending`` (as exported), ``descending``, ``shuffled``."""
    out_of_range: Literal["limit", "word"] = "limit"
    empty_hours: Literal["zero", "blank"] = "zero"
    """How the Hourly file writes an hour without doses."""
    pump_replaced: bool = False
    """A second pump (other serial, the other family) from the middle of the period on."""
    blank_cells: bool = False
    """Leave every 97th CGM reading and every 113th basal dose blank (rows a reader rejects)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TandemSourceExport:
    """The five files of a Tandem Source export and what a reader gets from them."""

    files: tuple[WrittenExport, ...]
    """CGM, BG, Bolus, Basal-doses and Hourly-basal-delivery, in this order; each ``expected``
    as read together with the others."""
    hourly_alone: tuple[ExpectedRecord, ...]
    """What the Hourly-basal-delivery file gives when it is imported without its doses file."""
    rejected: dict[str, tuple[int, ...]]
    """Per file name, the lines a reader must reject (blank cells)."""
    models: dict[str, str]
    """The pump model a reader names for each serial."""

    def file(self, kind: str) -> WrittenExport:
        """The file of one kind (``CGM``, ``BG``, ``Bolus``, ``Basal-doses``, ``Hourly-basal-delivery``)."""
        return next(f for f in self.files if f.file_name.endswith(f"-{kind}.csv"))

    def zipped(self) -> WrittenExport:
        """The five files in one zip archive, as Tandem Source downloads them."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for export in self.files:
                archive.writestr(export.file_name, export.data)
        name = self.files[0].file_name.removesuffix("-CGM.csv") + ".zip"
        return WrittenExport(name, buffer.getvalue(), [e for f in self.files for e in f.expected])


@dataclasses.dataclass(frozen=True, slots=True)
class TConnectOptions:
    """Variants of a t:connect therapy-timeline CSV."""

    crlf: bool = True
    bom: bool = False
    order: Order = "ascending"
    """Row order of the readings table."""
    shuffle_tables: bool = False
    """Tables in another order (readings last), as third-party parsers allow."""
    basal_table: bool = True
    pump_replaced: bool = False
    blank_cells: bool = False
    """Leave every 97th reading blank (rows a reader rejects)."""


# --- shared -------------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Row:
    """A row to write: its serial, instant (whole seconds), cells and the records it holds."""

    serial: str
    utc_ms: int
    cells: list[str]
    expected: list[ExpectedRecord]
    order: int = 0
    rejected: bool = False


_HALF_HOUR_MS = 1_800_000


class _LocalTime:
    """The patient's wall time of many instants at once (zones change offset on UTC half hours).

    ``spans`` are the UTC ranges whose wall time falls in a repeated (fall-back) hour, each with the
    instant of its change: an instant at or after it is the hour's second pass.
    """

    def __init__(self, tz: zoneinfo.ZoneInfo, start_ms: int, end_ms: int) -> None:
        self.tz = tz
        self.base = (start_ms - 86_400_000) // _HALF_HOUR_MS * _HALF_HOUR_MS
        count = (end_ms + 86_400_000 - self.base) // _HALF_HOUR_MS + 1
        offsets: list[int] = []
        for step in range(count):
            aware = dt.datetime.fromtimestamp((self.base + step * _HALF_HOUR_MS) / 1000, tz=tz)
            offset = aware.utcoffset()
            offsets.append(int(offset.total_seconds() * 1000) if offset is not None else 0)
        self.grid = np.array(offsets, np.int64)
        self.spans: list[tuple[int, int, int]] = []
        for step in np.flatnonzero(self.grid[1:] < self.grid[:-1]).tolist():
            change = self.base + (step + 1) * _HALF_HOUR_MS
            delta = int(self.grid[step] - self.grid[step + 1])
            self.spans.append((change - delta, change + delta, change))

    def offsets(self, utc_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """UTC offsets (ms) of instants inside the grid."""
        offsets: npt.NDArray[np.int64] = self.grid[(utc_ms - self.base) // _HALF_HOUR_MS]
        return offsets

    def walls(self, utc_ms: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Wall times (ms since the naive epoch) of instants."""
        utc = np.asarray(utc_ms, np.int64)
        walls: npt.NDArray[np.int64] = utc + self.offsets(utc)
        return walls

    def stamps(self, utc_ms: Sequence[int] | npt.NDArray[np.int64]) -> list[str]:
        """``YYYY-MM-DDThh:mm:ss`` wall times of instants."""
        walls = self.walls(utc_ms).astype("datetime64[ms]")
        return [str(text) for text in np.datetime_as_string(walls, unit="s").tolist()]

    def fold(self, utc_ms: int) -> int | None:
        """``None`` when the instant's wall time is not in a repeated hour, else its pass (0 or 1)."""
        for low, high, change in self.spans:
            if low <= utc_ms < high:
                return int(utc_ms >= change)
        return None


class _Plan:
    """What the simulated pump did, per serial, before any layout writes it."""

    def __init__(self, timeline: Timeline, *, pump: str, pump_replaced: bool) -> None:
        self.timeline = timeline
        self.tz = timeline.tz
        digits = "".join(ch for ch in timeline.device_serials["pump"] if ch.isdigit()) or "1234567"
        first = digits[-7:].rjust(7, "1")
        second = str((int(first) + 104_729) % 9_000_000 + 1_000_000)
        self.serials = [first] if not pump_replaced else [first, second]
        other = "tslim" if pump == "mobi" else "mobi"
        self.families = {first: pump, second: other}
        self.switch_ms = (timeline.start_ms + timeline.end_ms) // 2 // 1000 * 1000
        self.pump_replaced = pump_replaced
        self.clock = _LocalTime(self.tz, timeline.start_ms, timeline.end_ms + 3 * HOUR_MS)

    def serial_at(self, utc_ms: int) -> str:
        """The serial of the pump in use at an instant."""
        return self.serials[1] if self.pump_replaced and utc_ms >= self.switch_ms else self.serials[0]

    def stamp(self, utc_ms: int) -> str:
        """The wall time of one instant as Tandem writes it."""
        return self.clock.stamps([utc_ms])[0]


def _seconds(utc_ms: int) -> int:
    return utc_ms // 1000 * 1000


def _amount(value: float, decimals: int = 3) -> str:
    """A number as Tandem writes it: no trailing zeros (``0.057``, ``0.04``, ``0``)."""
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _placed(rows: list[_Row], clock: _LocalTime, order: Order) -> list[_Row]:
    """The rows of one stream a reader can place in a repeated hour (module notes), in device order.

    In a file in (reversed) device order a reader takes the second pass of a repeated hour from the
    row where the wall time steps back by more than :data:`FOLD_STEP_BACK`; in a shuffled one it
    sorts the rows by wall time and so reads every repeated hour as its first pass.
    """
    ordered = sorted(rows, key=lambda r: (r.utc_ms, r.order))
    if not clock.spans:
        return ordered
    step = FOLD_STEP_BACK // dt.timedelta(milliseconds=1)
    walls = clock.walls([row.utc_ms for row in ordered]).tolist()
    kept: list[_Row] = []
    previous: int | None = None
    current = 0  # the pass a reader is in
    for row, wall in zip(ordered, walls, strict=True):
        fold = clock.fold(row.utc_ms)
        if fold is None:
            current = 0
        elif order == "shuffled":
            if fold:
                continue
        else:
            wanted = 1 if previous is not None and previous - wall > step else current
            if wanted != fold:
                continue
            current = wanted
        previous = wall
        kept.append(row)
    return kept


def _arrange(rows: list[_Row], order: Order, rng: np.random.Generator) -> list[_Row]:
    """Rows grouped by serial (ascending, as Tandem sorts them), each group in the chosen order."""
    out: list[_Row] = []
    for serial in sorted({row.serial for row in rows}):
        group = sorted((row for row in rows if row.serial == serial), key=lambda r: (r.utc_ms, r.order))
        if order == "descending":
            group.reverse()
        elif order == "shuffled":
            group = [group[at] for at in rng.permutation(len(group)).tolist()]
        out.extend(group)
    return out


def _render(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, crlf: bool, bom: bool, final_newline: bool
) -> bytes:
    newline = "\r\n" if crlf else "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue()
    if not final_newline:
        text = text.removesuffix(newline)
    return (("\ufeff" if bom else "") + text).encode("utf-8")


def _expected_segments(rows: list[tuple[int, float]]) -> list[ExpectedRecord]:
    """Basal records of one serial's doses ``(instant, dose)``: each lasts until the next later row."""
    instants = sorted({at for at, _ in rows})
    out: list[ExpectedRecord] = []
    for at, dose in rows:
        following = bisect.bisect_right(instants, at)
        segment = DOSE_INTERVAL_MS
        if following < len(instants) and instants[following] - at <= MAX_DOSE_SEGMENT_MS:
            segment = instants[following] - at
        out.append(ExpectedRecord("basal", "automated", at, dose * HOUR_MS / segment))
    return out


# --- what the pump did --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Bolus:
    """One simulated bolus as the pump logs it."""

    utc_ms: int
    kind: Literal["normal", "dual", "extended", "automated"]
    now: float
    later: float
    minutes: int
    carbs: float
    bg: float | None
    ratio: float | None
    isf: float | None
    target: float | None
    completed: bool
    programmed: float
    number: int


def _boluses(timeline: Timeline) -> list[_Bolus]:
    wizards = {e.utc_ms: e for e in timeline.events if e.kind == "wizard"}
    out: list[_Bolus] = []
    number = 0
    for event in timeline.events:
        if event.kind != "bolus" or event.value is None:
            continue
        number += 1
        at = _seconds(event.utc_ms)
        delivered = round(event.value, 2)
        programmed = round(event.programmed if event.programmed is not None else delivered, 2)
        wizard = wizards.get(event.utc_ms)
        kind: Literal["normal", "dual", "extended", "automated"] = "normal"
        now, later, minutes = delivered, 0.0, 0
        if number % 13 == 6:
            kind = "automated"
        elif number % 11 == 5 and delivered > 0:
            kind, now, later, minutes = "extended", 0.0, delivered, 60
        elif number % 7 == 3 and delivered >= 0.1:
            now = round(delivered * 0.6, 2)
            kind, later, minutes = "dual", round(delivered - now, 2), 120
        out.append(
            _Bolus(
                at,
                kind,
                now,
                later,
                minutes,
                float(round(wizard.value or 0.0)) if wizard is not None else 0.0,
                float(round(wizard.bg)) if wizard is not None and wizard.bg is not None else None,
                wizard.ratio if wizard is not None else None,
                wizard.isf if wizard is not None else None,
                wizard.target if wizard is not None else None,
                delivered >= programmed,
                programmed,
                number,
            )
        )
    return out


def _basal_rates(plan: _Plan, utc_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """The pump's programmed basal rate (U/h) at instants: schedule, temporary percents, suspensions."""
    timeline = plan.timeline
    schedule = timeline.basal_schedule
    if not schedule:
        return np.zeros(utc_ms.size)
    minutes = plan.clock.walls(utc_ms) // 60_000 % 1440
    starts = np.array([start for start, _ in schedule], np.int64)
    rates = np.array([rate for _, rate in schedule], np.float64)
    rate = rates[np.searchsorted(starts, minutes, side="right") - 1]
    suspended = np.zeros(utc_ms.size, np.bool_)
    for event in timeline.events:
        if event.kind not in ("suspend", "basal") or not event.duration_s:
            continue
        active = (utc_ms >= event.utc_ms) & (utc_ms < event.utc_ms + event.duration_s * 1000)
        if event.kind == "suspend":
            suspended |= active
        elif event.kind == "basal" and event.subtype == "temp" and event.percent is not None:
            rate = np.where(active, rate * event.percent / 100.0, rate)
    return np.where(suspended, 0.0, rate)


def _doses(plan: _Plan) -> list[tuple[int, float]]:
    """Basal doses every 5 minutes ``(instant, units)``: the programmed rate, looped on the CGM trace."""
    timeline = plan.timeline
    if not timeline.basal_schedule:
        return []
    rng = np.random.default_rng(timeline.profile.seed + 17)
    first = timeline.start_ms + 4 * 60_000
    count = max(0, (timeline.end_ms - first + DOSE_INTERVAL_MS - 1) // DOSE_INTERVAL_MS)
    at = first + np.arange(count, dtype=np.int64) * DOSE_INTERVAL_MS
    at = (at + rng.integers(-1, 2, count) * 1000) // 1000 * 1000
    factor = np.ones(count)
    cgm_ms, cgm = timeline.cgm_ms, timeline.cgm_mgdl
    if cgm_ms.size:
        near = np.minimum(np.searchsorted(cgm_ms, at), cgm_ms.size - 1)
        glucose = cgm[near]
        looped = np.where(glucose < 80, 0.0, np.clip(1.0 + (glucose - 120.0) / 80.0, 0.2, 2.5))
        factor = np.where(np.abs(cgm_ms[near] - at) <= 15 * 60_000, looped, 1.0)
    doses = _basal_rates(plan, at) * factor * DOSE_INTERVAL_MS / HOUR_MS
    return [(stamp, float(_amount(dose))) for stamp, dose in zip(at.tolist(), doses.tolist(), strict=True)]


# --- Tandem Source ------------------------------------------------------------------------------------


def write_tandem_source(timeline: Timeline, options: TandemSourceOptions | None = None) -> TandemSourceExport:
    """Write ``timeline`` (a pump therapy) as the five CSV files of a Tandem Source export."""
    opts = options or TandemSourceOptions()
    plan = _Plan(timeline, pump=opts.pump, pump_replaced=opts.pump_replaced)
    rng = np.random.default_rng(timeline.profile.seed + 3)
    device_type = {serial: DEVICE_TYPES[plan.families[serial]] for serial in plan.serials}
    models = {serial: MODELS[plan.families[serial]] for serial in plan.serials}
    end = timeline.local(timeline.end_ms)
    last = (timeline.profile.name.rpartition(" ")[2] or "PATIENT").upper()
    prefix = f"{last}_{plan.serials[0]}_{end:%d%b%Y}_{end:%H%M}"

    streams = {
        "CGM": _source_cgm(plan, opts, device_type),
        "BG": _source_bg(plan, device_type),
        "Bolus": _source_boluses(plan),
        "Basal-doses": _source_doses(plan, opts, device_type),
    }
    headers = {"CGM": CGM_HEADER, "BG": BG_HEADER, "Bolus": BOLUS_HEADER, "Basal-doses": DOSES_HEADER}
    files: list[WrittenExport] = []
    rejected: dict[str, tuple[int, ...]] = {}
    written_doses: list[_Row] = []
    for kind, rows in streams.items():
        kept = [
            row
            for serial in plan.serials
            for row in _placed([r for r in rows if r.serial == serial], plan.clock, opts.order)
        ]
        arranged = _arrange(kept, opts.order, rng)
        name = f"{prefix}-{kind}.csv"
        if kind == "Basal-doses":
            written_doses = arranged
            expected = _dose_expectations(arranged)
        else:
            expected = [e for row in arranged for e in row.expected]
        rejected[name] = tuple(sorted(at + 2 for at, row in enumerate(arranged) if row.rejected))
        data = _render(
            headers[kind],
            [row.cells for row in arranged],
            crlf=opts.crlf,
            bom=opts.bom,
            final_newline=opts.final_newline,
        )
        files.append(WrittenExport(name, data, expected))
    hourly_rows, together, alone = _source_hourly(plan, opts, written_doses)
    name = f"{prefix}-Hourly-basal-delivery.csv"
    data = _render(HOURLY_HEADER, hourly_rows, crlf=opts.crlf, bom=opts.bom, final_newline=opts.final_newline)
    files.append(WrittenExport(name, data, together))
    rejected[name] = ()
    return TandemSourceExport(tuple(files), tuple(alone), rejected, models)


def _cgm_text(mgdl: float, *, word: bool) -> tuple[str, float, str | None]:
    """The written reading, and the value and annotation a reader gets from it."""
    value = round(mgdl)
    if value <= SENSOR_LOW_MGDL:
        return ("Low" if word else "40"), SENSOR_LOW_MGDL, "low"
    if value >= SENSOR_HIGH_MGDL:
        return ("High" if word else "400"), SENSOR_HIGH_MGDL, "high"
    return str(value), float(value), None


def _source_cgm(plan: _Plan, opts: TandemSourceOptions, device_type: dict[str, str]) -> list[_Row]:
    timeline = plan.timeline
    rows: list[_Row] = []
    instants = (timeline.cgm_ms // 1000 * 1000).tolist()
    stamps = plan.clock.stamps(instants)
    for index, (at, mgdl) in enumerate(zip(instants, timeline.cgm_mgdl.tolist(), strict=True)):
        serial = plan.serial_at(at)
        text, value, annotation = _cgm_text(float(mgdl), word=opts.out_of_range == "word")
        blank = opts.blank_cells and index % 97 == 50
        cells = [device_type[serial], serial, "EGV", stamps[index], "" if blank else text]
        expected = [] if blank else [ExpectedRecord("cbg", "sensor", at, value, annotation)]
        rows.append(_Row(serial, at, cells, expected, index, blank))
    return rows


def _source_bg(plan: _Plan, device_type: dict[str, str]) -> list[_Row]:
    rows: list[_Row] = []
    count = 0
    for event in plan.timeline.events:
        if event.kind != "fingerstick" or event.value is None:
            continue
        at = _seconds(event.utc_ms)
        serial = plan.serial_at(at)
        text = str(round(event.value))
        note = _NOTES[count // 3 % len(_NOTES)] if count % 3 == 1 else ""
        expected = [ExpectedRecord("smbg", "meter", at, float(text))]
        if note:
            expected.append(ExpectedRecord("note", "", at, None))
        rows.append(
            _Row(serial, at, [device_type[serial], serial, "BG", plan.stamp(at), text, note], expected, count)
        )
        count += 1
    return rows


def _bolus_expected(bolus: _Bolus, at: int) -> list[ExpectedRecord]:
    """The records a reader makes of one bolus (both layouts start the extended part at ``at`` too)."""
    start = at
    now, later = float(_amount(bolus.now, 2)), float(_amount(bolus.later, 2))
    if bolus.kind == "automated":
        return [ExpectedRecord("bolus", "automated", at, now)]
    out: list[ExpectedRecord] = []
    if bolus.kind == "normal":
        out.append(ExpectedRecord("bolus", "normal", at, now))
    elif bolus.kind == "dual":
        out += [ExpectedRecord("bolus", "dual", at, now), ExpectedRecord("bolus", "dual", start, later)]
    else:
        out.append(ExpectedRecord("bolus", "extended", start, later))
    if bolus.carbs > 0 or (bolus.bg or 0) > 0:
        out.append(ExpectedRecord("wizard", "", at, bolus.carbs))
    return out


def _source_boluses(plan: _Plan) -> list[_Row]:
    rows: list[_Row] = []
    for bolus in _boluses(plan.timeline):
        at = bolus.utc_ms
        serial = plan.serial_at(at)
        automated = bolus.kind == "automated"
        if automated:
            kind = "Automatic Correction"
        elif bolus.carbs > 0:
            kind = "Food / Correction" if bolus.bg is not None else "Food"
        else:
            kind = "Correction"
        extended = bolus.kind in ("dual", "extended")
        status = "Completed" if bolus.completed else "Terminated by user"
        settings = bolus.number % 4 == 0 and not automated
        food = round(min(bolus.now + bolus.later, bolus.now * 0.8 + bolus.later), 2)
        cells = [
            "Bolus",
            kind,
            "Extended" if extended else "Standard",
            "" if automated or bolus.bg is None else str(round(bolus.bg)),
            serial,
            plan.stamp(at),
            _amount(bolus.now, 2),
            _amount(food, 2),
            _amount(max(0.0, bolus.now + bolus.later - food), 2),
            status,
            plan.stamp(at) if extended else "",
            plan.stamp(at + bolus.minutes * 60_000) if extended else "",
            _amount(bolus.later, 2) if extended else "",
            status if extended else "",
            "0" if bolus.kind == "extended" else "60" if extended else "100",
            str(bolus.minutes),
            "0" if automated else _amount(bolus.carbs, 0),
            _amount(bolus.target or 0.0, 0) if settings else "0",
            _amount(bolus.isf or 0.0, 0) if settings else "0",
            _amount(bolus.ratio or 0.0, 1) if settings else "0",
        ]
        rows.append(_Row(serial, at, cells, _bolus_expected(bolus, at), bolus.number))
    return rows


def _source_doses(plan: _Plan, opts: TandemSourceOptions, device_type: dict[str, str]) -> list[_Row]:
    rows: list[_Row] = []
    doses = _doses(plan)
    stamps = plan.clock.stamps([at for at, _ in doses])
    for index, (at, dose) in enumerate(doses):
        serial = plan.serial_at(at)
        blank = opts.blank_cells and index % 113 == 60
        cells = [device_type[serial], serial, stamps[index], "" if blank else _amount(dose)]
        rows.append(_Row(serial, at, cells, [], index, blank))
    return rows


def _dose_expectations(rows: list[_Row]) -> list[ExpectedRecord]:
    out: list[ExpectedRecord] = []
    for serial in sorted({row.serial for row in rows}):
        doses = [
            (row.utc_ms, float(row.cells[3])) for row in rows if row.serial == serial and not row.rejected
        ]
        out.extend(_expected_segments(doses))
    return out


def _source_hourly(
    plan: _Plan, opts: TandemSourceOptions, doses: list[_Row]
) -> tuple[list[list[str]], list[ExpectedRecord], list[ExpectedRecord]]:
    """The Hourly rows, and what a reader gets from them with and without the doses file."""
    tz = plan.tz
    totals: dict[tuple[str, dt.date], dict[int, float]] = {}
    covered: set[tuple[str, dt.date, int]] = set()
    epoch = dt.date(1970, 1, 1)
    for row, wall in zip(doses, plan.clock.walls([row.utc_ms for row in doses]).tolist(), strict=True):
        date, hour = epoch + dt.timedelta(days=wall // 86_400_000), wall % 86_400_000 // HOUR_MS
        covered.add((row.serial, date, hour))
        day = totals.setdefault((row.serial, date), {})
        if not row.rejected:
            day[hour] = day.get(hour, 0.0) + float(row.cells[3])
    keys = sorted(totals)
    if opts.order == "descending":
        keys.reverse()
    elif opts.order == "shuffled":
        rng = np.random.default_rng(plan.timeline.profile.seed + 5)
        keys = [keys[at] for at in rng.permutation(len(keys)).tolist()]
    rows: list[list[str]] = []
    together: list[ExpectedRecord] = []
    alone: list[ExpectedRecord] = []
    for serial, date in keys:
        hours = totals[serial, date]
        cells = [serial, f"{date.month}/{date.day}/{date:%y}"]
        bounds = _hour_bounds(date, tz)
        for hour in range(24):
            empty = "0" if opts.empty_hours == "zero" else ""
            text = _amount(hours[hour]) if hour in hours else empty
            cells.append(text)
            if not text or bounds[hour] is None:
                continue
            start = bounds[hour]
            end = next((b for b in bounds[hour + 1 :] if b is not None), None)
            assert start is not None  # noqa: S101 - checked above
            stop = end if end is not None else start + HOUR_MS
            total = float(text)
            record = ExpectedRecord("basal", "automated", start, total * HOUR_MS / (stop - start))
            alone.append(record)
            if total > 0 and (serial, date, hour) not in covered:
                together.append(record)
        rows.append(cells)
    return rows, together, alone


def _hour_bounds(date: dt.date, tz: zoneinfo.ZoneInfo) -> list[int | None]:
    """UTC ms of the start of each wall-clock hour 0 to 24 of a day; ``None`` for a skipped one."""
    out: list[int | None] = []
    for hour in range(25):
        local = dt.datetime.combine(date, dt.time(0)) + dt.timedelta(hours=hour)
        aware = local.replace(tzinfo=tz, fold=0)
        back = aware.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None)
        out.append(None if back != local else int(aware.timestamp() * 1000))
    return out


# --- t:connect ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TConnectExport:
    """A t:connect therapy-timeline file, and the lines a reader must reject (blank cells)."""

    file: WrittenExport
    rejected: tuple[int, ...]


def _quoted(cells: Sequence[str]) -> str:
    """A row as t:connect writes it: every non-empty cell quoted, empty cells left empty."""
    return ",".join(f'"{cell}"' if cell else "" for cell in cells)


def write_tconnect(timeline: Timeline, options: TConnectOptions | None = None) -> TConnectExport:
    """Write ``timeline`` (a pump therapy) as a legacy t:connect therapy-timeline CSV."""
    opts = options or TConnectOptions()
    plan = _Plan(timeline, pump="tslim", pump_replaced=opts.pump_replaced)
    rng = np.random.default_rng(timeline.profile.seed + 11)
    newline = "\r\n" if opts.crlf else "\n"

    everything = _tconnect_readings(plan, opts)
    readings = [
        row
        for serial in plan.serials
        for row in _placed([r for r in everything if r.serial == serial], plan.clock, opts.order)
    ]
    basal = _placed(_tconnect_basal(plan), plan.clock, "ascending") if opts.basal_table else []
    boluses = _placed(_tconnect_boluses(plan), plan.clock, "ascending")
    iob = [
        _Row(
            row.serial,
            row.utc_ms,
            ["IOB", str(80 + n % 3), plan.stamp(row.utc_ms + 60_000), _amount(1 + n % 7 * 0.45, 2)],
            [],
        )
        for n, row in enumerate(boluses)
    ]
    sections: list[tuple[list[str], list[_Row], bool]] = [
        (TCONNECT_READINGS, _arrange(readings, opts.order, rng), True),
        (TCONNECT_IOB, iob, False),
    ]
    if opts.basal_table:
        sections.append((TCONNECT_BASAL, basal, False))
    sections.append((TCONNECT_BOLUS, boluses, True))
    if opts.shuffle_tables:
        sections = sections[1:] + sections[:1]

    generated = timeline.local(timeline.end_ms)
    birth = timeline.profile.birthdate
    lines = [
        "Tandem Diabetes Care Inc.",
        "t:connect Therapy Timeline Data Export",
        f"Patient Name, {timeline.profile.name}",
        f"Patient DOB, {birth.month}/{birth.day}/{birth.year}",
        (
            f"Report Generated On, {generated.month}/{generated.day}/{generated.year} "
            f"{(generated.hour % 12) or 12}:{generated:%M:%S} {'AM' if generated.hour < 12 else 'PM'}"
        ),
    ]
    rejected: list[int] = []
    expected: list[ExpectedRecord] = []
    for header, rows, trailing in sections:
        lines += ["", ",".join(header)]
        for row in rows:
            lines.append(_quoted(row.cells) + ("," if trailing else ""))
            if row.rejected:
                rejected.append(len(lines))
            expected.extend(row.expected)
    text = newline.join(lines) + newline
    data = (("\ufeff" if opts.bom else "") + text).encode("utf-8")
    name = f"tconnect_therapy_timeline_{generated:%Y%m%d}.csv"
    return TConnectExport(WrittenExport(name, data, expected), tuple(rejected))


def _tconnect_readings(plan: _Plan, opts: TConnectOptions) -> list[_Row]:
    timeline = plan.timeline
    rows: list[_Row] = []
    instants = (timeline.cgm_ms // 1000 * 1000).tolist()
    stamps = plan.clock.stamps(instants)
    for index, (at, mgdl) in enumerate(zip(instants, timeline.cgm_mgdl.tolist(), strict=True)):
        serial = plan.serial_at(at)
        text, value, annotation = _cgm_text(float(mgdl), word=False)
        blank = opts.blank_cells and index % 97 == 50
        cells = [TCONNECT_DEVICE_TYPE, serial, "EGV", stamps[index], "" if blank else text]
        expected = [] if blank else [ExpectedRecord("cbg", "sensor", at, value, annotation)]
        rows.append(_Row(serial, at, cells, expected, index, blank))
    for index, event in enumerate(
        e for e in timeline.events if e.kind == "fingerstick" and e.value is not None
    ):
        at = _seconds(event.utc_ms)
        serial = plan.serial_at(at)
        text = str(round(event.value or 0.0))
        cells = [TCONNECT_DEVICE_TYPE, serial, "BG", plan.stamp(at), text]
        rows.append(
            _Row(serial, at, cells, [ExpectedRecord("smbg", "meter", at, float(text))], 1_000_000 + index)
        )
    return rows


def _tconnect_basal(plan: _Plan) -> list[_Row]:
    """Rate changes: schedule starts, temporary rates and suspensions, and the rate after each."""
    timeline = plan.timeline
    changes: list[tuple[int, str]] = []
    for event in timeline.events:
        if event.kind == "basal" and event.subtype == "scheduled":
            changes.append((_seconds(event.utc_ms), "Basal"))
        elif event.kind == "basal" and event.subtype == "temp" and event.percent is not None:
            changes.append((_seconds(event.utc_ms), "TempRate"))
            changes.append((_seconds(event.utc_ms + (event.duration_s or 0) * 1000), "Basal"))
        elif event.kind == "suspend":
            changes.append((_seconds(event.utc_ms), "Suspension"))
        elif event.kind == "resume":
            changes.append((_seconds(event.utc_ms), "Basal"))
    rows: list[_Row] = []
    seen: set[int] = set()
    changes = sorted(changes)
    rates = _basal_rates(plan, np.array([at for at, _ in changes], np.int64)).tolist()
    for index, ((at, kind), programmed) in enumerate(zip(changes, rates, strict=True)):
        if at in seen or not timeline.start_ms <= at < timeline.end_ms:
            continue
        seen.add(at)
        rate = round(programmed, 3)
        subtype = {"Basal": "scheduled", "TempRate": "temp", "Suspension": "suspend"}[kind]
        if kind == "Basal" and rate == 0:
            continue
        text = _amount(rate)
        cells = [kind, plan.stamp(at), text]
        rows.append(
            _Row(plan.serial_at(at), at, cells, [ExpectedRecord("basal", subtype, at, float(text))], index)
        )
    return rows


def _tconnect_boluses(plan: _Plan) -> list[_Row]:
    rows: list[_Row] = []
    for bolus in _boluses(plan.timeline):
        at = bolus.utc_ms
        automated = bolus.kind == "automated"
        extended = bolus.kind in ("dual", "extended")
        if automated:
            description, kind = "Automatic Bolus/Correction", "Automatic Bolus"
        else:
            description = ("Extended" if extended else "Standard") + (
                "/Correction" if bolus.bg is not None else ""
            )
            kind = "Carb" if bolus.carbs > 0 else "Insulin"
        status = "Completed" if bolus.completed else "Terminated"
        request = plan.stamp(at - 60_000)
        food = round(min(bolus.now + bolus.later, bolus.now * 0.8 + bolus.later), 2)
        named = [
            "Bolus",
            description,
            "" if automated or bolus.bg is None else str(round(bolus.bg)),
            _amount(0.4 * (bolus.number % 5), 2),
            f"{7000 + bolus.number}.000",
            f"{7000 + bolus.number}.000",
            plan.stamp(at),
            f"{bolus.now:.2f}",
            f"{food:.2f}",
            f"{max(0.0, bolus.now + bolus.later - food):.2f}",
            "3" if bolus.completed else "2",
            status,
            "1" if bolus.completed else "0",
            f"{8000 + bolus.number}.000" if extended else "",
            f"{bolus.later:.2f}" if extended else "",
            plan.stamp(at) if extended else "",
            plan.stamp(at + bolus.minutes * 60_000) if extended else "",
            f"{bolus.later:.2f}" if extended else "",
            "" if not extended else "0.00",
            "3" if extended else "",
            "Completed" if extended else "",
            "1" if extended else "",
            request,
            request,
            kind,
            description,
            "0.00" if bolus.kind == "extended" else "60.00" if extended else "100.00",
            str(bolus.minutes),
            "0" if automated else _amount(bolus.carbs, 0),
            "0",
            _amount(bolus.target or 110.0, 0),
            f"{bolus.isf or 30.0:.2f}",
            f"{food:.2f}",
            f"{max(0.0, bolus.now + bolus.later - food):.2f}",
            f"{bolus.programmed:.2f}",
            "0",
        ]
        details = f"CF 1:{round(bolus.isf or 30)} - Carb Ratio 1:{round(bolus.ratio or 10)}"
        # An unnamed column follows IsQuickBolus: the last five names are one column off (module notes).
        cells = [*named, "0", "Correction & Food Bolus", details, "0", str(1_180_000 + bolus.number), ""]
        rows.append(_Row(plan.serial_at(at), at, cells, _bolus_expected(bolus, at), bolus.number))
    return rows
