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
import unicodedata
from collections.abc import Iterator
from typing import ClassVar

from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedRecord,
    ParseResult,
    RejectedRow,
    SourceText,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import LocalClock
from glucoshare.ingest.numbers import parse_duration_ms, parse_number
from glucoshare.ingest.timestamps import parse_iso_wall_time
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

_TIMESTAMP_HEADERS = (
    "timestamp (yyyy-mm-ddthh:mm:ss)",
    "zeitstempel (jjjj-mm-ttthh:mm:ss)",
    "marca temporal (aaaa-",
)
_DEVICE_KEY = "cgm"
_EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 - naive on purpose: wall-clock arithmetic
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


def _fold(text: str) -> str:
    """Lower-case without accents, for matching translated words."""
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
            msg = f"{source.name}: line 1: unknown glucose unit in column {header[_GLUCOSE]!r}"
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
    ) -> Iterator[ParsedRecord]:
        decimal_comma = delimiter == ";"
        device = result.devices[_DEVICE_KEY]
        reject = result.rejected.append
        alerts: dict[str, dict[str, float | str]] = {}
        last_ms: int | None = None  # instant and offset of the file's last timed row
        last_offset = 0
        events: dict[str, str | None] = {}  # raw event text -> canonical event name
        clocks: dict[tuple[str, str], LocalClock] = {}
        transmitters = device.identifiers
        seen_transmitter = ""
        fromisoformat = dt.datetime.fromisoformat
        reader = csv.reader(source.lines(), delimiter=delimiter)
        next(reader)  # header
        for row in reader:
            if len(row) < 14:  # noqa: PLR2004 - blank lines and ragged rows
                if not any(cell.strip() for cell in row):
                    continue
                row = row + [""] * (14 - len(row))  # noqa: PLW2901
            line = reader.line_num
            event_text = row[_EVENT]
            if event_text in events:
                event = events[event_text]
            else:
                event = events[event_text] = _EVENT_NAMES.get(_fold(event_text))
            stamp = row[_TIMESTAMP]
            if event == "egv" and stamp:
                # Fast path: nine rows in ten are CGM readings.
                try:
                    local = fromisoformat(stamp)
                except ValueError:
                    try:
                        local = parse_iso_wall_time(stamp)
                    except ValueError:
                        reject(RejectedRow(line, "timestamp is not YYYY-MM-DDThh:mm:ss"))
                        continue
                transmitter = row[_TX_ID]
                clock_key = (row[_SOURCE_DEVICE], transmitter)
                clock = clocks.get(clock_key)
                if clock is None:
                    clock = clocks[clock_key] = ctx.clock(f"egv|{clock_key[0].strip()}|{transmitter.strip()}")
                tx_time = row[_TX_TIME]
                delta = local - _EPOCH
                wall = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
                time_ms, offset = clock.resolve_ms(wall, float(tx_time) if tx_time.isdigit() else None)
                text = row[_GLUCOSE]
                try:
                    original = float(text) if not decimal_comma else parse_number(text, decimal_comma=True)
                except ValueError:
                    word = _OUT_OF_RANGE.get(_fold(text))
                    if word is None:
                        reject(
                            RejectedRow(
                                line,
                                "EGV row without a glucose value"
                                if not text.strip()
                                else "glucose value is not a number",
                            )
                        )
                        continue
                    value = SENSOR_LOW_MGDL if word == "low" else SENSOR_HIGH_MGDL
                    record = ParsedRecord(
                        "cbg",
                        "sensor",
                        time_ms,
                        offset,
                        line,
                        _DEVICE_KEY,
                        value,
                        None,
                        unit,
                        annotation=word,
                    )
                else:
                    if not original > 0:
                        reject(RejectedRow(line, "glucose value is not positive"))
                        continue
                    record = ParsedRecord(
                        "cbg", "sensor", time_ms, offset, line, _DEVICE_KEY, original * factor, original, unit
                    )
                if transmitter != seen_transmitter:
                    seen_transmitter = transmitter
                    if transmitter.strip():
                        transmitters.add(("dexcom_transmitter", transmitter.strip().upper()))
                    if device.model == "CGM":
                        device.model = _model_from(row[_SOURCE_DEVICE]) or device.model
                last_ms, last_offset = time_ms, offset
                yield record
                continue
            stamp = stamp.strip()
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
                reject(RejectedRow(line, "timestamp is not YYYY-MM-DDThh:mm:ss"))
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
            last_ms, last_offset = maybe.time_ms, maybe.utc_offset_min
            yield maybe
        if alerts and last_ms is not None:
            yield ParsedRecord(
                type="cgmSettings",
                subtype="",
                time_ms=last_ms,
                utc_offset_min=last_offset,
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
