"""Tandem t:connect "therapy timeline" CSV, the legacy web app's export (research/formats.md §4.2).

**Best effort.** t:connect was retired in 2024 and no raw file was available: the layout below comes
from third-party parsers and their test fixtures [P]; columns are found by name, so reordered or
extra columns read the same.

**Layout.** An optional preamble (``Tandem Diabetes Care Inc.``, ``t:connect Therapy Timeline Data
Export``, ``Patient Name, …``, ``Patient DOB, …``, ``Report Generated On, …``), then tables in any
order, separated by blank lines, each with its own header row (CamelCase names, cells usually
quoted):

=========  =====================================================================================
table      header
=========  =====================================================================================
readings   ``DeviceType,SerialNumber,Description,EventDateTime,Readings (CGM / BGM)`` (data rows end
           with an extra comma); an older variant names the value column ``BG`` and adds ``Note``
IOB        ``Type,EventID,EventDateTime,IOB``
basal      ``Type,EventDateTime,BasalRate`` (only without Control-IQ; names partly unverified)
bolus      ``Type,Description,BG,IOB,BolusRequestID,BolusCompletionID,CompletionDateTime,
           InsulinDelivered,FoodDelivered,CorrectionDelivered,…,IsQuickBolus,
           EventHistoryReportEventDesc,EventHistoryReportDetails,NoteID,IndexID,Note`` (41 names)
=========  =====================================================================================

The file is recognised by the readings header (``EventDateTime`` with ``Readings (CGM / BGM)``), the
preamble's title line, or another table's header. ``EventDateTime`` is local wall time
(``2021-04-01T00:01:33``). The readings column names no unit; the pump records mg/dL, so values are
read as mg/dL, and a readings table whose values all look like mmol/L refuses the file.

**Mapping.** Readings ``EGV`` → ``cbg`` ``sensor`` and ``BG`` → ``smbg`` ``meter``, as in Tandem
Source (:func:`~glucoshare.ingest.tandem_source.reading_items`: readings at or beyond 40/400 mg/dL
are annotated ``low``/``high``). Bolus rows → ``bolus`` and ``wizard`` records exactly as Tandem
Source's Bolus file (:func:`~glucoshare.ingest.tandem_source.bolus_records`): at
``CompletionDateTime`` (so both exports of the same bolus meet in one record), ``Description`` as the
delivery method (``Standard``, ``Extended``, ``Automatic …``), ``BolusType`` as the bolus type,
``ActualTotalBolusRequested`` as ``programmed``, ``FoodBolusSize``/``CorrectionBolusSize`` as the
calculator's estimates. The bolus data rows carry one unnamed column after ``IsQuickBolus``, which
shifts the last five names: no column after ``IsQuickBolus`` is read. Basal rows → ``basal`` at
``BasalRate`` U/h lasting until the next basal row (``Type`` naming a temporary rate → ``temp``, a
suspension → ``suspend``, the algorithm → ``automated``, else ``scheduled``; a gap of more than a
day leaves the duration open). The IOB table (insulin on board, computed by the pump from the
boluses) is not stored, and :attr:`ParseResult.notes` says so; so is any table with unknown columns.

**Devices.** One device per ``SerialNumber`` of the readings (model from ``DeviceType`` through
:func:`~glucoshare.ingest.tandem_source.pump_model`, so ``t:slim X2 Insulin Pump`` is the same
``t:slim X2`` device Tandem Source names). The bolus and basal tables name no pump: a row goes to the
pump whose readings began last before it (the first pump for earlier rows), or to an unnamed
``t:slim`` pump when the file has no readings. Each (table, pump) is one local-time stream, fed in
the device's order (as Tandem Source, :func:`~glucoshare.ingest.tandem_source.device_order`).
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import functools
from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    RejectedRow,
    SourceText,
    checked_rows,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.numbers import parse_number
from glucoshare.ingest.tandem_source import (
    MANUFACTURER,
    BolusFormat,
    ReadingFormat,
    ReadingRows,
    bolus_records,
    device_order,
    numbers,
    parse_wall,
    pump_model,
    reading_items,
)

TITLE = "t:connect therapy timeline data export"
UNNAMED_PUMP = "t:slim insulin pump"
"""The model of the pump of a file without a readings table (no serial number known)."""
MAX_BASAL_SEGMENT_MS = 86_400_000
_MMOL_LOOKING_MAX = 35.0

_READINGS_VALUE = ("readings(cgm/bgm)", "bg")
_BOLUS_FIELDS: dict[str, str] = {
    "description": "method",
    "bolustype": "bolus_type",
    "bg": "bg",
    "completiondatetime": "completion",
    "requestdatetime": "request",
    "eventdatetime": "stamp",
    "insulindelivered": "insulin",
    "fooddelivered": "food",
    "correctiondelivered": "correction",
    "completionstatusdesc": "status",
    "bolexstartdatetime": "bolex_start",
    "bolexcompletiondatetime": "bolex_end",
    "bolexinsulindelivered": "bolex_insulin",
    "bolexcompletionstatusdesc": "bolex_status",
    "duration": "duration",
    "carbsize": "carbs",
    "targetbg": "target",
    "correctionfactor": "isf",
    "foodbolussize": "food_estimate",
    "correctionbolussize": "correction_estimate",
    "actualtotalbolusrequested": "programmed",
}
_BOLUS_NAMES = {
    "insulin": "InsulinDelivered",
    "bolex_insulin": "BolexInsulinDelivered",
    "food": "FoodDelivered",
    "correction": "CorrectionDelivered",
    "carbs": "CarbSize",
    "bg": "BG",
    "duration": "Duration",
    "bolex_start": "BolexStartDateTime",
    "bolex_end": "BolexCompletionDateTime",
    "isf": "CorrectionFactor",
    "target": "TargetBG",
    "food_estimate": "FoodBolusSize",
    "correction_estimate": "CorrectionBolusSize",
    "programmed": "ActualTotalBolusRequested",
}
_LAST_READ_COLUMN = "isquickbolus"


def _key(name: str) -> str:
    """A t:connect column name folded for matching: lower case, no spaces, BOM or quotes."""
    return "".join(name.replace("\ufeff", "").strip().strip('"').lower().split())


def _table_kind(cells: list[str]) -> str | None:
    """``readings``, ``iob``, ``basal`` or ``bolus`` for a t:connect table header, else ``None``."""
    names = {_key(cell) for cell in cells}
    if "eventdatetime" not in names and "completiondatetime" not in names:
        return None
    readings = ("eventdatetime", "description", "serialnumber")
    if all(name in names for name in readings) and any(v in names for v in _READINGS_VALUE):
        return "readings"
    if "insulindelivered" in names and ("bolusrequestid" in names or "completiondatetime" in names):
        return "bolus"
    if "basalrate" in names:
        return "basal"
    if "iob" in names and "eventid" in names:
        return "iob"
    return None


def _is_title(line: str) -> bool:
    return line.lstrip("\ufeff").strip().strip('"').strip().lower() == TITLE


@dataclasses.dataclass(slots=True)
class _Table:
    """One table of the file: its kind, header line and columns, and its rows."""

    kind: str
    line: int
    columns: dict[str, int]
    width: int
    rows: list[tuple[int, list[str]]] = dataclasses.field(default_factory=list)

    def cell(self, cells: list[str], name: str) -> str:
        """A cell by folded column name, stripped ("" when the table has no such column)."""
        index = self.columns.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""


class TConnectImporter:
    """Reads the legacy Tandem t:connect therapy-timeline CSV (best effort; see the module notes)."""

    format: ClassVar[str] = "tandem_tconnect"
    label: ClassVar[str] = "Tandem t:connect therapy timeline CSV (legacy)"

    def detect(self, head: list[str]) -> bool:
        """True when the head has the t:connect title line or a t:connect table header."""
        for line in head:
            if _is_title(line):
                return True
            if "eventdatetime" in line.lower():
                try:
                    cells = next(csv.reader([line.lstrip("\ufeff")]), [])
                except csv.Error:  # a stray carriage return or quote: not a header
                    continue
                if _table_kind(cells) is not None:
                    return True
        return False

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Split the file into its tables (eagerly) and read their records (lazily).

        Raises :class:`MalformedFileError` when no table of the file has a known header.
        """
        tables = self._tables(source)
        result = ParseResult(records=iter(()))
        known = [table for table in tables if table.kind != "unknown"]
        if not known:
            msg = f"{source.name}: no t:connect table (a header with EventDateTime and known columns)"
            raise MalformedFileError(msg)
        for table in tables:
            if table.kind == "unknown":
                result.notes.append(
                    f"the table at line {table.line} has columns Glucoshare does not know; its "
                    f"{len(table.rows)} rows were not read"
                )
        result.records = _Reader(source, ctx, result, known).records()
        return result

    @staticmethod
    def _tables(source: SourceText) -> list[_Table]:
        """The tables of the file in file order (the preamble and blank lines left out)."""
        reader = csv.reader(source.lines())
        tables: list[_Table] = []
        current: _Table | None = None
        started = False  # a header of the section being read was seen
        for cells in checked_rows(reader, source.name):  # a stray line break or quote refuses the file
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                current, started = None, False
                continue
            if current is None and not started:
                started = True
                kind = _table_kind(cells)
                if kind is None and not tables and _looks_like_preamble(cells):
                    continue
                columns: dict[str, int] = {}
                for index, cell in enumerate(cells):
                    columns.setdefault(_key(cell), index)
                current = _Table(kind or "unknown", line, columns, len(cells))
                tables.append(current)
                continue
            if current is not None:
                current.rows.append((line, cells))
        return tables


def _looks_like_preamble(cells: list[str]) -> bool:
    """A line of the preamble (title, patient name, DOB, report date) rather than a table header."""
    first = _key(cells[0]) if cells else ""
    return _is_title(cells[0] if cells else "") or first.startswith(
        ("tandemdiabetes", "patient", "report", "t:connect")
    )


class _Reader:
    """Reads the tables of one file: readings first (they name the pumps), then the others."""

    def __init__(
        self, source: SourceText, ctx: ParseContext, result: ParseResult, tables: list[_Table]
    ) -> None:
        self.source = source
        self.ctx = ctx
        self.result = result
        self.tables = tables
        self.reject = result.rejected.append
        self.starts: list[tuple[int, str]] = []  # (first reading's wall ms, device key), ascending

    def records(self) -> Iterator[ParsedItem]:
        """Every record of the file: readings, basal, boluses; IOB rows are counted in a note."""
        by_kind = {"readings": 0, "basal": 1, "bolus": 2, "iob": 3}
        for table in sorted(self.tables, key=lambda t: by_kind[t.kind]):
            if table.kind == "readings":
                yield from self.readings(table)
            elif table.kind == "basal":
                yield from self.basal(table)
            elif table.kind == "bolus":
                yield from self.boluses(table)
            elif table.rows:
                self.result.notes.append(
                    f"{len(table.rows)} insulin-on-board rows (IOB table) were not stored: the pump "
                    "computes them from the boluses, which are stored"
                )

    def device(self, serial: str, device_type: str) -> str:
        """The key of a pump's device, registered on first sight."""
        devices = self.result.devices
        if serial not in devices:
            model = pump_model(device_type) if device_type.strip() else UNNAMED_PUMP
            devices[serial] = DeviceInfo(MANUFACTURER, model, serial or None)
        return serial

    def pump_at(self, wall: int) -> str:
        """The device of a row of a table without serial numbers (module notes)."""
        if not self.starts:
            return self.device("", "")
        at = bisect.bisect_right(self.starts, (wall, "\uffff")) - 1
        return self.starts[max(at, 0)][1]

    # -- readings --------------------------------------------------------------------------------

    def readings(self, table: _Table) -> list[ParsedItem]:
        cols = table.columns
        value_at = next(cols[name] for name in _READINGS_VALUE if name in cols)
        serial_at, stamp_at = cols["serialnumber"], cols["eventdatetime"]
        device_at, description_at = cols.get("devicetype", -1), cols["description"]
        note_at = cols.get("note", -1)
        streams: dict[str, ReadingRows] = {}
        for line, raw in table.rows:
            cells = raw + [""] * (table.width - len(raw)) if len(raw) < table.width else raw
            serial = cells[serial_at].strip()
            if not serial:
                self.reject(RejectedRow(line, "no SerialNumber"))
                continue
            rows = streams.get(serial)
            if rows is None:
                rows = streams[serial] = ReadingRows(model=cells[device_at] if device_at >= 0 else "")
            rows.lines.append(line)
            rows.stamps.append(cells[stamp_at])
            rows.values.append(cells[value_at])
            rows.descriptions.append(cells[description_at])
            if note_at >= 0:
                rows.notes.append(cells[note_at])
        self._refuse_mmol(table, streams)
        style = ReadingFormat("mg/dL", decimal_comma=False, default_description="egv")
        items: list[ParsedItem] = []
        firsts: list[tuple[int, str]] = []
        for serial, rows in streams.items():
            device = self.device(serial, rows.model)
            walls = [wall for wall in map(parse_wall, rows.stamps) if wall is not None]
            if walls:
                firsts.append((min(walls), device))
            clock = self.ctx.clock(f"tandem_tconnect|readings|{serial}")
            items.extend(reading_items(rows, device=device, clock=clock, style=style, reject=self.reject))
        self.starts = sorted(firsts)
        return items

    def _refuse_mmol(self, table: _Table, streams: dict[str, ReadingRows]) -> None:
        """Refuse readings that all look like mmol/L (the column names no unit; t:connect wrote mg/dL)."""
        values = np.concatenate(
            [numbers(rows.values, decimal_comma=False) for rows in streams.values()] or [np.empty(0)]
        )
        values = values[np.isfinite(values) & (values > 0)]
        texts = [text for rows in streams.values() for text in rows.values]
        if values.size and float(values.max()) < _MMOL_LOOKING_MAX and any("." in text for text in texts):
            msg = (
                f"{self.source.name}: line {table.line}: the readings look like mmol/L, but t:connect's "
                "readings column names no unit and Glucoshare reads it as mg/dL; the unit cannot be told"
            )
            raise MalformedFileError(msg)

    # -- basal -----------------------------------------------------------------------------------

    def basal(self, table: _Table) -> list[ParsedRecord]:
        rows: list[tuple[int, int, float, str]] = []  # line, wall, rate, subtype
        for line, cells in table.rows:
            stamp = table.cell(cells, "eventdatetime")
            wall = parse_wall(stamp) if stamp else None
            text = table.cell(cells, "basalrate")
            if wall is None:
                self.reject(RejectedRow(line, "unreadable EventDateTime" if stamp else "no EventDateTime"))
                continue
            try:
                rate = parse_number(text)
            except ValueError:
                self.reject(RejectedRow(line, "BasalRate is not a number" if text else "no BasalRate"))
                continue
            if rate < 0:
                self.reject(RejectedRow(line, "BasalRate is negative"))
                continue
            rows.append((line, wall, rate, _basal_subtype(table.cell(cells, "type"))))
        streams: dict[str, list[tuple[int, int, float, str]]] = {}
        for row in rows:
            streams.setdefault(self.pump_at(row[1]), []).append(row)
        out: list[ParsedRecord] = []
        for device, stream in streams.items():
            clock = self.ctx.clock(f"tandem_tconnect|basal|{device}")
            walls = np.array([row[1] for row in stream], np.int64)
            order = device_order(walls, clock.tz)
            ordered = stream if order is None else [stream[at] for at in order.tolist()]
            records = [
                ParsedRecord("basal", subtype, *clock.resolve_ms(wall), line, device, rate)
                for line, wall, rate, subtype in ordered
            ]
            starts = sorted({record.time_ms for record in records})
            for record in records:
                following = bisect.bisect_right(starts, record.time_ms)
                if following < len(starts) and starts[following] - record.time_ms <= MAX_BASAL_SEGMENT_MS:
                    record.duration_ms = starts[following] - record.time_ms
            out.extend(records)
        return out

    # -- boluses ---------------------------------------------------------------------------------

    def boluses(self, table: _Table) -> Iterator[ParsedRecord]:
        last = table.columns.get(_LAST_READ_COLUMN, table.width)
        fields = {
            field: index
            for name, field in _BOLUS_FIELDS.items()
            if (index := table.columns.get(name)) is not None and index <= last
        }
        view = _Table(table.kind, table.line, fields, table.width)
        timed: dict[str, list[tuple[int, list[str], int]]] = {}
        for line, cells in table.rows:
            stamp = view.cell(cells, "completion") or view.cell(cells, "bolex_start")
            stamp = stamp or view.cell(cells, "request") or view.cell(cells, "stamp")
            wall = parse_wall(stamp) if stamp else None
            if wall is None:
                self.reject(RejectedRow(line, "no readable CompletionDateTime"))
                continue
            timed.setdefault(self.pump_at(wall), []).append((line, cells, wall))
        style = BolusFormat(decimal_comma=False, bg_unit="mg/dL", target_unit="mg/dL", names=_BOLUS_NAMES)
        for device, rows in timed.items():
            clock = self.ctx.clock(f"tandem_tconnect|bolus|{device}")
            ends = self.ctx.clock(f"tandem_tconnect|bolus-end|{device}")
            order = device_order(np.array([row[2] for row in rows], np.int64), clock.tz)
            for line, cells, wall in rows if order is None else [rows[at] for at in order.tolist()]:
                try:
                    yield from bolus_records(
                        functools.partial(view.cell, cells),
                        line=line,
                        device=device,
                        wall=wall,
                        clocks=(clock, ends),
                        style=style,
                    )
                except ValueError as exc:
                    self.reject(RejectedRow(line, str(exc)))


def _basal_subtype(kind: str) -> str:
    """The basal subtype a basal row's ``Type`` names (``scheduled`` when it names none)."""
    folded = kind.lower()
    if "temp" in folded:
        return "temp"
    if "suspen" in folded:
        return "suspend"
    if "algorithm" in folded or "auto" in folded:
        return "automated"
    return "scheduled"
