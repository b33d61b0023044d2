"""Dexcom Clarity CSV export (research/formats.md §1).

Recognised by its header: first cell ``Index`` and a timestamp column ``Timestamp
(YYYY-MM-DDThh:mm:ss)`` (German ``Zeitstempel (JJJJ-MM-TTThh:mm:ss)``, Spanish ``Marca temporal
(AAAA-...``). Columns are taken by position (14 fixed columns; Spanish translates event types),
with the glucose unit read from the header. English exports use ``,``; German and Spanish ones
``;`` with every field quoted and a decimal comma. Fields may be quoted or not; rows may be
ragged (13 fields). Preamble rows (name, device, alert settings) come first without a timestamp.

Mapping: ``EGV`` → ``cbg`` (``Low``/``High`` → 40/400 mg/dL with an out-of-range annotation),
``Calibration`` → ``smbg`` calibration, ``Insulin`` → ``insulin`` (rapid/long), ``Carbs`` →
``food``, ``Exercise`` → ``physicalActivity``, ``Health`` → ``note``, ``Alert`` rows → one
``cgmSettings`` record at the instant of the file's last timed row (the settings as exported).
Transmitter ids are kept as device identifiers, so a file carrying another patient's transmitter
is refused; transmitter time resolves the repeated hour at a daylight-saving change.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import math
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    SourceText,
    checked_rows,
    shown,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import wall_ms
from glucoshare.ingest.numbers import parse_duration_ms, parse_number
from glucoshare.ingest.timestamps import parse_iso_wall_time
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

_TIMESTAMP_HEADERS = (
    "timestamp (yyyy-mm-ddthh:mm:ss)",
    "zeitstempel (jjjj-mm-ttthh:mm:ss)",
    "marca temporal (aaaa-",
)
_DEVICE_KEY = "cgm"
SENSOR_LOW_MGDL = 40.0
SENSOR_HIGH_MGDL = 400.0

# Column positions of the fixed 14-column layout.
(
    _INDEX,
    _TIMESTAMP,
    _EVENT,
    _SUBTYPE,
    _PATIENT_INFO,
    _DEVICE_INFO,
    _SOURCE_DEVICE,
    _GLUCOSE,
    _INSULIN,
    _CARBS,
    _DURATION,
    _RATE,
    _TX_TIME,
    _TX_ID,
) = range(14)


@functools.lru_cache(maxsize=256)
def _fold(text: str) -> str:
    """Lower-case without accents, for matching translated words (the few distinct ones cached)."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_EVENT_NAMES: dict[str, str] = {
    "egv": "egv",
    "niveles estimados de glucosa": "egv",
    "calibration": "calibration",
    "kalibrierung": "calibration",
    "calibracion": "calibration",
    "insulin": "insulin",
    "insulina": "insulin",
    "carbs": "carbs",
    "kohlenhydrate": "carbs",
    "carbohidratos": "carbs",
    "exercise": "exercise",
    "bewegung": "exercise",
    "ejercicio": "exercise",
    "health": "health",
    "gesundheit": "health",
    "salud": "health",
    "alert": "alert",
    "warnung": "alert",
    "alerta": "alert",
    "device": "device",
    "gerat": "device",
    "dispositivo": "device",
    "sensor": "sensor",
    "firstname": "name",
    "lastname": "name",
    "vorname": "name",
    "nachname": "name",
    "nombre": "name",
    "apellido": "name",
    "dateofbirth": "name",
    "geburtsdatum": "name",
    "fecha de nacimiento": "name",
}

_OUT_OF_RANGE = {
    "low": "low",
    "niedrig": "low",
    "bajo": "low",
    "high": "high",
    "hoch": "high",
    "alto": "high",
}

_INTENSITY = {
    "light": "light",
    "leicht": "light",
    "ligero": "light",
    "medium": "medium",
    "mittel": "medium",
    "medio": "medium",
    "heavy": "heavy",
    "schwer": "heavy",
    "intenso": "heavy",
}


def _sniff_header(line: str) -> tuple[str, list[str]] | None:
    for delimiter in (",", ";"):
        cells = next(csv.reader([line], delimiter=delimiter))
        if (
            len(cells) >= 13  # noqa: PLR2004 - 13 or 14 columns
            and _fold(cells[0]) in {"index", "indice"}
            and any(_fold(cells[1]).startswith(h) for h in _TIMESTAMP_HEADERS)
        ):
            return delimiter, cells
    return None


def _insulin_kind(subtype: str) -> str:
    folded = _fold(subtype)
    if any(word in folded for word in ("fast", "schnell", "rapid", "rapida")):
        return "rapid"
    if any(word in folded for word in ("long", "lang", "prolongada", "basal")):
        return "long"
    return "unknown"


def _amount(text: str, what: str, *, decimal_comma: bool) -> float:
    """A number that must not be negative; ``ValueError`` naming ``what`` (never the text)."""
    try:
        number = parse_number(text, decimal_comma=decimal_comma)
    except ValueError:
        msg = f"{what} is not a number"
        raise ValueError(msg) from None
    if number < 0:
        msg = f"{what} is negative"
        raise ValueError(msg)
    return number


def _model_from(text: str) -> str | None:
    upper = text.upper()
    for model in ("G7", "G6", "G5", "G4", "ONE+", "ONE"):
        if model in upper:
            return "ONE" if model.startswith("ONE") else model
    return None


_BAD_TIMESTAMP = "timestamp is not YYYY-MM-DDThh:mm:ss"
_RUN_ROWS = 4096
"""CGM rows converted together (one :class:`ReadingBlock`); bounds the memory of a run."""
_ISO_WIDTH = 19  # YYYY-MM-DDThh:mm:ss
_EARLIEST_WALL_MS = wall_ms(dt.datetime(1, 1, 1))  # noqa: DTZ001 - wall time

_UNSEEN = "?"  # an event text not looked up yet (the lookup gives a name or None)
_Timed = tuple[int, int, int]
"""A record's line, UTC instant (ms) and UTC offset (minutes)."""


def _later(first: _Timed | None, second: _Timed | None) -> _Timed | None:
    """Of two timed rows, the one further down the file."""
    if first is None or (second is not None and second[0] > first[0]):
        return second
    return first


def _wall_times(stamps: list[str]) -> tuple[npt.NDArray[np.int64], list[int]]:
    """Wall times (ms since the naive epoch) of timestamps, and the indexes of unreadable ones.

    A column of 19-character stamps (``YYYY-MM-DDThh:mm:ss``, what Clarity writes) is parsed by
    NumPy at once; NumPy's warning about a zone designator counts as a failure, since a wall time
    must not carry one. Any other column goes stamp by stamp through :func:`parse_iso_wall_time`,
    which also takes Excel's re-saved variants. The returned array leaves unreadable stamps out.
    """
    if set(map(len, stamps)) == {_ISO_WIDTH}:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                walls = np.array(stamps, dtype="datetime64[ms]").astype(np.int64)
        except (ValueError, UserWarning):  # a bad or zoned stamp: found below, stamp by stamp
            pass
        else:
            if (walls >= _EARLIEST_WALL_MS).all():
                return walls, []
    readable: list[int] = []
    unreadable: list[int] = []
    for at, stamp in enumerate(stamps):
        try:
            readable.append(wall_ms(parse_iso_wall_time(stamp)))
        except ValueError:
            unreadable.append(at)
    return np.array(readable, np.int64), unreadable


def _glucose_numbers(texts: list[str], *, decimal_comma: bool) -> npt.NDArray[np.float64]:
    """The numbers of glucose cells, NaN where a cell is not a finite number (:func:`parse_number`).

    A column of numbers is read by Python's ``float`` rules (inf and nan stay: refused by the
    caller), each distinct text once (a sensor repeats a few hundred values). Where some cell is
    not such a number, the cells that do not start with a digit (``Low``, ``High``, empty or odd
    cells) are read by :func:`parse_number`; and where one that starts with a digit is no number,
    or a cell holds ``_`` (which ``float`` would skip) or a point beside a decimal comma, every
    cell is.
    """
    joined = "".join(texts)
    if "_" not in joined and not (decimal_comma and "." in joined):
        numbers: dict[str, float] = {}
        odd: list[str] = []
        for text in dict.fromkeys(texts):
            cell = text.replace(",", ".") if decimal_comma else text
            try:
                numbers[text] = float(cell)
            except ValueError:
                if cell[:1].isdigit():
                    break
                odd.append(text)
        else:
            if odd:
                odd += [text for text in numbers if not text[:1].isdigit()]
                numbers.update((text, _number_or_nan(text, decimal_comma=decimal_comma)) for text in odd)
            return np.fromiter(map(numbers.__getitem__, texts), np.float64, len(texts))
    return np.array([_number_or_nan(text, decimal_comma=decimal_comma) for text in texts], np.float64)


def _number_or_nan(text: str, *, decimal_comma: bool) -> float:
    try:
        return parse_number(text, decimal_comma=decimal_comma)
    except ValueError:
        return math.nan


class _ReadingRun:
    """Consecutive CGM (EGV) rows of one receiver and transmitter, converted together.

    Timestamps and glucose values are parsed as columns and resolved to UTC by
    :meth:`LocalClock.resolve_many`; the readings come out as one :class:`ReadingBlock`, rows with
    ``Low``/``High`` as single records with their annotation.
    """

    __slots__ = ("clock", "decimal_comma", "key", "last", "lines", "rows")

    def __init__(self, key: tuple[str, str], ctx: ParseContext, decimal_comma: bool) -> None:
        self.key = key
        self.clock = ctx.clock(f"egv|{key[0].strip()}|{key[1].strip()}")
        self.decimal_comma = decimal_comma
        self.rows: list[list[str]] = []
        self.lines: list[int] = []
        self.last: _Timed | None = None

    def _device_clock(self, rows: list[list[str]]) -> Callable[[int], float | None]:
        def seconds(at: int) -> float | None:
            text = rows[at][_TX_TIME]
            return float(text) if text.isascii() and text.isdigit() else None  # "\u00b2".isdigit() too

        return seconds

    def items(
        self, device: DeviceInfo, *, factor: float, unit: str, reject: Callable[[RejectedRow], None]
    ) -> list[ParsedItem]:
        """Convert the run; report its bad rows to ``reject``; note the run's last timed row."""
        rows, lines = self.rows, self.lines
        if not rows:
            return []
        walls, unreadable = _wall_times([row[_TIMESTAMP] for row in rows])
        if unreadable:
            for at in unreadable:
                reject(RejectedRow(lines[at], _BAD_TIMESTAMP))
            skip = set(unreadable)
            rows = [row for at, row in enumerate(rows) if at not in skip]
            lines = [line for at, line in enumerate(lines) if at not in skip]
            if not rows:
                return []
        instants, offsets = self.clock.resolve_many(walls, self._device_clock(rows))
        texts = [row[_GLUCOSE] for row in rows]
        numbers = _glucose_numbers(texts, decimal_comma=self.decimal_comma)
        line_numbers = np.array(lines, np.int64)
        readable = numbers > 0  # False for NaN
        readable &= np.isfinite(numbers)
        items: list[ParsedItem] = []
        last_at = -1
        if not readable.all():
            for at in np.flatnonzero(~readable).tolist():
                word = _OUT_OF_RANGE.get(_fold(texts[at]))
                if word is None:
                    reject(RejectedRow(lines[at], _unreadable_glucose(texts[at], float(numbers[at]))))
                    continue
                value = SENSOR_LOW_MGDL if word == "low" else SENSOR_HIGH_MGDL
                time_ms, offset = int(instants[at]), int(offsets[at])
                items.append(
                    ParsedRecord(
                        "cbg",
                        "sensor",
                        time_ms,
                        offset,
                        lines[at],
                        _DEVICE_KEY,
                        value,
                        None,
                        unit,
                        annotation=word,
                    )
                )
                last_at = at
        if readable.any():
            originals = numbers[readable]
            items.append(
                ReadingBlock(
                    "cbg",
                    "sensor",
                    _DEVICE_KEY,
                    unit,
                    instants[readable],
                    offsets[readable],
                    originals * factor,
                    originals,
                    line_numbers[readable],
                )
            )
        if items:
            transmitter = self.key[1].strip()
            if transmitter:
                device.identifiers.add(("dexcom_transmitter", transmitter.upper()))
            if device.model == "CGM":
                device.model = _model_from(self.key[0]) or device.model
            if readable.any():
                last_at = max(last_at, int(np.flatnonzero(readable)[-1]))
            self.last = (lines[last_at], int(instants[last_at]), int(offsets[last_at]))
        return items


def _unreadable_glucose(text: str, number: float) -> str:
    """Why a glucose cell that is neither a positive number nor Low/High is refused."""
    if not text.strip():
        return "EGV row without a glucose value"
    if math.isnan(number) or math.isinf(number):
        return "glucose value is not a number"
    return "glucose value is not positive"


class DexcomClarityImporter:
    """Reads Dexcom Clarity CSV exports."""

    format: ClassVar[str] = "dexcom_clarity"
    label: ClassVar[str] = "Dexcom Clarity CSV export"
    final_newline: ClassVar[bool] = True

    def detect(self, head: list[str]) -> bool:
        """True when the first line is a Clarity header."""
        return bool(head) and _sniff_header(head[0]) is not None

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Parse a Clarity export; raises :class:`MalformedFileError` when the header is unusable."""
        sniffed = _sniff_header(source.head(1)[0])
        if sniffed is None:  # pragma: no cover - detect() ran first
            msg = f"{source.name}: line 1: not a Dexcom Clarity header"
            raise MalformedFileError(msg)
        delimiter, header = sniffed
        unit_header = header[_GLUCOSE].lower()
        if "mmol" in unit_header:
            factor, unit = MGDL_PER_MMOLL, "mmol/L"
        elif "mg/dl" in unit_header:
            factor, unit = 1.0, "mg/dL"
        else:
            msg = f"{source.name}: line 1: unknown glucose unit in column {shown(header[_GLUCOSE])}"
            raise MalformedFileError(msg)
        device = DeviceInfo(manufacturer="Dexcom", model="CGM", serial=None)
        result = ParseResult(records=iter(()), devices={_DEVICE_KEY: device}, primary_device=_DEVICE_KEY)
        result.records = self._records(
            source, ctx=ctx, result=result, delimiter=delimiter, factor=factor, unit=unit
        )
        return result

    def _records(
        self,
        source: SourceText,
        *,
        ctx: ParseContext,
        result: ParseResult,
        delimiter: str,
        factor: float,
        unit: str,
    ) -> Iterator[ParsedItem]:
        decimal_comma = delimiter == ";"
        device = result.devices[_DEVICE_KEY]
        reject = result.rejected.append
        alerts: dict[str, dict[str, float | str]] = {}
        last: _Timed | None = None  # line, instant and offset of the file's last timed row
        events: dict[str, str | None] = {}  # raw event text -> canonical event name
        transmitters = device.identifiers
        run = _ReadingRun(("", ""), ctx, decimal_comma)
        run_source, run_transmitter = run.key
        add_row, add_line, room = run.rows.append, run.lines.append, _RUN_ROWS
        egv_text: str | None = None
        reader = csv.reader(source.lines(), delimiter=delimiter)
        rows = checked_rows(reader, source.name)
        next(rows, None)  # header
        for row in rows:
            if len(row) < 14:  # noqa: PLR2004 - blank lines and ragged rows
                if not any(cell.strip() for cell in row):
                    continue
                row = row + [""] * (14 - len(row))  # noqa: PLW2901
            event_text = row[_EVENT]
            event: str | None
            if event_text == egv_text:
                event = "egv"
            else:
                event = events.get(event_text, _UNSEEN)
                if event is _UNSEEN:
                    event = events[event_text] = _EVENT_NAMES.get(_fold(event_text))
                if event == "egv":
                    egv_text = event_text  # the file's word for CGM rows: checked first from now on
            if event == "egv" and row[_TIMESTAMP]:
                # Nine rows in ten are CGM readings: collected into runs and converted together.
                if row[_SOURCE_DEVICE] != run_source or row[_TX_ID] != run_transmitter or not room:
                    yield from run.items(device, factor=factor, unit=unit, reject=reject)
                    last = _later(last, run.last)
                    run = _ReadingRun((row[_SOURCE_DEVICE], row[_TX_ID]), ctx, decimal_comma)
                    run_source, run_transmitter = run.key
                    add_row, add_line, room = run.rows.append, run.lines.append, _RUN_ROWS
                add_row(row)
                add_line(reader.line_num)
                room -= 1
                continue
            line = reader.line_num
            stamp = row[_TIMESTAMP].strip()
            if not stamp:
                if event in ("device", "sensor"):
                    model = _model_from(row[_DEVICE_INFO]) or _model_from(row[_SOURCE_DEVICE])
                    if model is not None and (event == "sensor" or device.model == "CGM"):
                        device.model = model
                elif event == "alert":
                    alerts[row[_SUBTYPE].strip() or "alert"] = self._alert(row, factor, decimal_comma)
                elif event is None:
                    reject(RejectedRow(line, "row without a timestamp and of an unknown event type"))
                elif event != "name":
                    reject(RejectedRow(line, "row without a timestamp"))
                continue
            try:
                local = parse_iso_wall_time(stamp)
            except ValueError:
                reject(RejectedRow(line, _BAD_TIMESTAMP))
                continue
            if event is None:
                reject(RejectedRow(line, "unknown event type"))
                continue
            source_device = row[_SOURCE_DEVICE].strip()
            try:
                maybe = self._event_record(
                    event,
                    row,
                    local=local,
                    line=line,
                    ctx=ctx,
                    source_device=source_device,
                    factor=factor,
                    unit=unit,
                    decimal_comma=decimal_comma,
                )
            except ValueError as exc:
                reject(RejectedRow(line, str(exc)))
                continue
            if maybe is None:
                continue
            if event == "calibration":
                transmitter = row[_TX_ID].strip()
                if transmitter:
                    transmitters.add(("dexcom_transmitter", transmitter.upper()))
            last = _later(last, (line, maybe.time_ms, maybe.utc_offset_min))
            yield maybe
        yield from run.items(device, factor=factor, unit=unit, reject=reject)
        last = _later(last, run.last)
        if alerts and last is not None:
            yield ParsedRecord(
                type="cgmSettings",
                subtype="",
                time_ms=last[1],
                utc_offset_min=last[2],
                line=1,
                device=_DEVICE_KEY,
                payload={"alerts": alerts, "units": "mg/dL"},
                identity=repr(sorted(alerts.items())),
            )

    @staticmethod
    def _alert(row: list[str], factor: float, decimal_comma: bool) -> dict[str, float | str]:
        alert: dict[str, float | str] = {}
        try:
            if row[_GLUCOSE].strip():
                alert["threshold_mgdl"] = parse_number(row[_GLUCOSE], decimal_comma=decimal_comma) * factor
            if row[_RATE].strip():
                alert["rate_mgdl_per_min"] = parse_number(row[_RATE], decimal_comma=decimal_comma) * factor
            if row[_DURATION].strip():
                alert["duration_ms"] = parse_duration_ms(row[_DURATION])
        except ValueError:
            alert["unreadable"] = "yes"
        return alert

    @staticmethod
    def _event_record(
        event: str,
        row: list[str],
        *,
        local: dt.datetime,
        line: int,
        ctx: ParseContext,
        source_device: str,
        factor: float,
        unit: str,
        decimal_comma: bool,
    ) -> ParsedRecord | None:
        """A record of a timed row other than a CGM reading (``None`` for rows without data)."""
        time_ms, offset = ctx.clock(f"events|{source_device}").resolve(local)
        if event == "calibration":
            original = _amount(row[_GLUCOSE], "calibration glucose value", decimal_comma=decimal_comma)
            return ParsedRecord(
                "smbg", "calibration", time_ms, offset, line, _DEVICE_KEY, original * factor, original, unit
            )
        if event == "insulin":
            units = _amount(row[_INSULIN], "insulin value", decimal_comma=decimal_comma)
            return ParsedRecord(
                "insulin", _insulin_kind(row[_SUBTYPE]), time_ms, offset, line, _DEVICE_KEY, units
            )
        if event == "carbs":
            grams = _amount(row[_CARBS], "carb value", decimal_comma=decimal_comma)
            return ParsedRecord("food", "", time_ms, offset, line, _DEVICE_KEY, grams)
        if event == "exercise":
            duration = parse_duration_ms(row[_DURATION]) if row[_DURATION].strip() else None
            intensity = _INTENSITY.get(_fold(row[_SUBTYPE]), "unknown")
            return ParsedRecord(
                "physicalActivity", intensity, time_ms, offset, line, _DEVICE_KEY, duration_ms=duration
            )
        if event == "health":
            text = row[_SUBTYPE].strip() or "Health"
            return ParsedRecord(
                "note",
                "",
                time_ms,
                offset,
                line,
                _DEVICE_KEY,
                payload={"text": text, "category": "health"},
                identity=text,
            )
        # Timed preamble-kind rows (device, sensor, alert, name) carry no data of their own.
        return None
