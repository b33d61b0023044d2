"""Tidepool JSON export (research/formats.md §12; the data model in research/tidepool.md §1).

**Layout.** One JSON array of *datum* objects, each with a ``type``. Two shapes are read:

* the **platform** shape, datums as Tidepool's data API returns them (nested objects, pretty-printed
  or on one line): ``time`` (UTC, ISO 8601 with ``Z``), ``timezoneOffset`` (minutes),
  ``deviceTime`` (local), ``deviceId``, ``uploadId``, ``id`` and the type's fields; glucose in
  mmol/L (``units: "mmol/L"``; Tidepool stores mg/dL ÷ 18.01559 rounded to 5 decimals);
* the **web export** shape, what Tidepool's "Export data → JSON" writes (its data-tools
  processor): one line, each datum flattened (``bgTarget.low``, ``recommended.net``), some nested
  fields as JSON text (``annotations``, ``nutrition``, ``duration`` of an activity,
  ``deviceManufacturers``), a synthesised ``localTime``, basal and device-event durations in
  minutes, ``pumpSettings`` split into one row per schedule entry (``pumpSettings.basalSchedules``,
  ``pumpSettings.bgTargets``, ...), and glucose in mmol/L or, when the user chose it, mg/dL
  (the stored mmol/L × 18.01559, unrounded).

Each datum is read on its own (:meth:`json.JSONDecoder.raw_decode` over the text, so the file is
never held twice and a datum's line is the line where it starts); broken JSON refuses the file
naming the line and column. **Recognised by** the first datum of the array: an object whose
``type`` is a Tidepool type and that has a ``time`` and an ``uploadId`` or ``deviceId`` (from the
leading lines; a first datum longer than they are is recognised by those keys).

**Time** is absolute: ``time`` is the instant and ``timezoneOffset`` the offset (the zone given for
the import is only used where a datum has no offset). ``conversionOffset`` and ``clockDriftOffset``
are Tidepool's own corrections, already applied to ``time``.

**Glucose** becomes mg/dL. A mmol/L value that is exactly Tidepool's rounding of a whole mg/dL
number (nearly every device reports whole mg/dL) is read as that whole number, so 5.55074 → 100;
any other value is converted with × 18.01559 and not rounded. A mg/dL value written by the web
export is first taken back to the stored mmol/L and read the same way. The value as written stays in
``orig_value``/``orig_unit``. An unknown glucose unit refuses the file. Out-of-range readings keep
the threshold Tidepool stored as the value, and the ``bg/out-of-range`` annotation becomes
``annotation`` ``low``/``high``.

**Mapping** (Glucoshare's vocabulary is modelled on Tidepool's):

===================  ============================================================================
Tidepool datum       record
===================  ============================================================================
``cbg``              ``cbg`` ``sensor`` (plain readings as :class:`ReadingBlock` runs)
``smbg``             ``smbg``: subType ``manual`` → ``manual``; ``linked``, ``scanned``, none →
                     ``meter``
``deviceEvent``      ``calibration`` → ``smbg`` ``calibration``; ``alarm`` → ``alarm``; ``prime`` →
                     ``prime`` (value = volume, U); ``reservoirChange``; ``status`` suspended/resumed →
                     ``suspend``/``resume``; ``timeChange``; anything else (``pumpSettingsOverride``,
                     ...) → ``other`` with the subType in the payload
``basal``            ``basal``: deliveryType ``scheduled``/``temp``/``suspend``/``automated`` →
                     the same subtype; value = rate (U/h; 0 for a suspension), ``duration_ms``
``bolus``            ``bolus``: subType ``normal`` → ``normal``, ``square`` → ``extended``,
                     ``dual/square`` → ``dual``, ``automated`` (or deliveryContext ``algorithm``)
                     → ``automated``; value = delivered units (normal + extended)
``wizard``           ``wizard``: value = carb input (g); BG input, ratio, sensitivity, targets (mg/dL)
                     and the recommendation in the payload
``food``             ``food``: value = ``nutrition.carbohydrate.net`` (g)
``insulin``          ``insulin``: value = ``dose.total`` (U); ``rapid``/``long`` from the formulation's
                     acting type, else ``unknown``
``bloodKetone``      ``bloodKetone`` (mmol/L)
``physicalActivity`` ``physicalActivity``: reportedIntensity low/medium/high → light/medium/heavy
``pumpSettings``     ``pumpSettings`` with the canonical payload (:mod:`glucoshare.analytics.settings`):
                     basal schedules, and the carb ratios, sensitivities and targets of the active
                     schedule (mg/dL), max bolus, max basal, insulin duration
``cgmSettings``      ``cgmSettings`` with the low and high alert thresholds (mg/dL)
``upload``           not a record: names the devices
other types          not stored (``dosingDecision``, ``water``, ...): counted in the result's notes
===================  ============================================================================

A datum's ``notes`` (free text) become ``note`` records. Food and activity names (free text) are
not stored; only notes are sealed at rest.

**Devices:** one per ``deviceId``, named from the ``upload`` datum of that device (or of the
datum's ``uploadId``): ``deviceManufacturers``, ``deviceModel``, ``deviceSerialNumber``. Upload
datums are found before any record is read, wherever they stand in the file. A device without an
upload datum in the export keeps its ``deviceId`` as the model.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from glucoshare.analytics.settings import InvalidPumpSettingsError, parse_pump_settings, pump_settings_payload
from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    SourceText,
    shown,
    storable_json,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

TIDEPOOL_TYPES: frozenset[str] = frozenset(
    {
        "alert",
        "basal",
        "bloodKetone",
        "bolus",
        "cbg",
        "cgmSettings",
        "controllerSettings",
        "controllerStatus",
        "deviceEvent",
        "dosingDecision",
        "food",
        "insulin",
        "physicalActivity",
        "pumpSettings",
        "pumpSettings.basalSchedules",
        "pumpSettings.bgTarget",
        "pumpSettings.bgTargets",
        "pumpSettings.carbRatio",
        "pumpSettings.carbRatios",
        "pumpSettings.insulinSensitivity",
        "pumpSettings.insulinSensitivities",
        "pumpStatus",
        "reportedState",
        "smbg",
        "upload",
        "water",
        "wizard",
    }
)
"""Datum types of Tidepool's data model (and the split pumpSettings rows of the web export)."""

PRECISION = 100_000.0
"""Tidepool rounds mmol/L to 5 decimals (``MmolLToMgdLPrecisionFactor``)."""
FALLBACK_MANUFACTURER = "Unknown (Tidepool export)"
ACCOUNT_DEVICE = "tidepool"

_MMOL = frozenset({"mmol/L", "mmol/l"})
_MGDL = frozenset({"mg/dL", "mg/dl"})
_SPLIT_SETTINGS = {
    "pumpSettings.basalSchedules": ("basalSchedules", "basalSchedule"),
    "pumpSettings.bgTarget": ("bgTarget", "bgTarget"),
    "pumpSettings.bgTargets": ("bgTargets", "bgTarget"),
    "pumpSettings.carbRatio": ("carbRatio", "carbRatio"),
    "pumpSettings.carbRatios": ("carbRatios", "carbRatio"),
    "pumpSettings.insulinSensitivity": ("insulinSensitivity", "insulinSensitivity"),
    "pumpSettings.insulinSensitivities": ("insulinSensitivities", "insulinSensitivity"),
}
_SMBG_SUBTYPES = {"manual": "manual", "linked": "meter", "scanned": "meter"}
_BOLUS_SUBTYPES = {"normal": "normal", "square": "extended", "dual/square": "dual", "automated": "automated"}
_BASAL_TYPES = frozenset({"scheduled", "temp", "suspend", "automated"})
_INTENSITY = {"low": "light", "medium": "medium", "high": "heavy"}
_ACTING = {"rapid": "rapid", "short": "rapid", "intermediate": "long", "long": "long"}
_DURATION_MS = {"hours": 3_600_000, "minutes": 60_000, "seconds": 1000, "milliseconds": 1}
_HOURS = {"hours": 1.0, "minutes": 1 / 60, "seconds": 1 / 3600}
_MAX_UNITS = 250.0
_MAX_CARBS = 1000.0
_MAX_RATE = 100.0
_MAX_OFFSET_MIN = 7 * 24 * 60
_MAX_DURATION_MIN = 7 * 24 * 60
_RUN = 4096
"""Plain CGM readings of one device and unit handed over together (one :class:`ReadingBlock`)."""
_HEAD_CHARS = 1 << 16
_DAY_MS = 86_400_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_BLANKS = frozenset(" \t\n\r")


_UPLOAD_TYPE = re.compile(r'"type"\s*:\s*"upload"')
_KEY_TYPE = re.compile(r'"type"\s*:\s*"([A-Za-z.]+)"')
_KEY_TIME = re.compile(r'"time"\s*:\s*"\d{4}-')
_KEY_DEVICE = re.compile(r'"(?:uploadId|deviceId)"\s*:')
_UPLOAD_TRIES = 64
_DECODER = json.JSONDecoder()

_Glucose = Callable[[object, str], float]
"""Reads one glucose field (value, field name) of a datum in mg/dL."""


def _skip(text: str, position: int) -> int:
    """The position of the first character at or after ``position`` that is not JSON whitespace."""
    match = _WHITESPACE.match(text, position)
    return position if match is None else match.end()


class _DatumError(ValueError):
    """One datum cannot be read; the message names the field, never its value."""


_NO_GLUCOSE_MGDL = 1e9
"""Far beyond any glucose: the whole mg/dL a stored value came from is not looked for (overflow)."""


def stored_mmol(mgdl: float) -> float:
    """Tidepool's stored mmol/L of a mg/dL value: ÷ 18.01559, rounded half up to 5 decimals."""
    return int(mgdl / MGDL_PER_MMOLL * PRECISION + 0.5) / PRECISION


def mgdl_from_mmol(mmol: float) -> float:
    """mg/dL of a mmol/L value Tidepool stored: the whole mg/dL number it was rounded from, if any.

    Otherwise the value × 18.01559, not rounded (module notes).
    """
    mgdl = mmol * MGDL_PER_MMOLL
    if not 0 < mgdl < _NO_GLUCOSE_MGDL:  # NaN, infinity or no glucose at all: the import's bounds refuse it
        return mgdl
    whole = round(mgdl)
    if whole > 0 and stored_mmol(whole) == mmol:
        return float(whole)
    return mmol * MGDL_PER_MMOLL


def mgdl_from_export(mgdl: float) -> float:
    """mg/dL of a value the web export converted from the stored mmol/L (× 18.01559, unrounded)."""
    if mgdl == int(mgdl):
        return mgdl
    mmol = round(mgdl / MGDL_PER_MMOLL, 5)
    if mmol * MGDL_PER_MMOLL == mgdl:
        return mgdl_from_mmol(mmol)
    return mgdl


def _loaded(value: object) -> object:
    """A nested field that the web export wrote as JSON text, decoded (other values as they are)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply for the decoder
            return value
    return value


def _sub(datum: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """A nested object of a datum, whichever way it was written (object, JSON text, dotted keys)."""
    value = _loaded(datum.get(name))
    if isinstance(value, dict):
        return value
    prefix = name + "."
    flat = {key[len(prefix) :]: item for key, item in datum.items() if key.startswith(prefix)}
    return flat or None


def _path(datum: Mapping[str, Any] | None, *names: str) -> object:
    """The value at a path of nested names (``None`` when any part is missing)."""
    current: Mapping[str, Any] | None = datum
    for name in names[:-1]:
        if current is None:
            return None
        current = _sub(current, name)
    return None if current is None else _loaded(current.get(names[-1]))


def _number(value: object, field: str, *, low: float = 0.0, high: float = math.inf) -> float:
    """A finite number within ``[low, high]``; :class:`_DatumError` naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{field} is not a number"
        raise _DatumError(msg)
    number = float(value)
    if not math.isfinite(number):
        msg = f"{field} is not a finite number"
        raise _DatumError(msg)
    if not low <= number <= high:
        if high < math.inf:
            msg = f"{field} is outside {low:g} to {high:g}"
        else:
            msg = f"{field} is negative" if low == 0 else f"{field} is below {low:g}"
        raise _DatumError(msg)
    return number


def _optional(value: object, field: str, *, high: float = math.inf) -> float | None:
    return None if value is None or value == "" else _number(value, field, high=high)


def _instant(datum: Mapping[str, Any]) -> int:
    """The datum's ``time`` as epoch milliseconds."""
    text = datum.get("time")
    if not isinstance(text, str) or not text:
        msg = "time is missing"
        raise _DatumError(msg)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        msg = "time is not an ISO 8601 date and time"
        raise _DatumError(msg) from None
    if moment.tzinfo is None:
        msg = "time has no zone (Tidepool writes UTC with Z)"
        raise _DatumError(msg)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _annotation(datum: Mapping[str, Any]) -> str | None:
    """``low``/``high`` of a ``bg/out-of-range`` annotation, if the datum has one."""
    notes = _loaded(datum.get("annotations"))
    if not isinstance(notes, list):
        return None
    for note in notes:
        if isinstance(note, dict) and note.get("code") == "bg/out-of-range":
            value = note.get("value")
            if value in ("low", "high"):
                return str(value)
    return None


def _duration_ms(value: object, field: str, *, minutes: bool) -> int | None:
    """A duration field in milliseconds (the web export writes basal and event durations in minutes)."""
    if value is None or value == "":
        return None
    if minutes:
        return round(_number(value, field, high=_MAX_DURATION_MIN) * 60_000)
    return round(_number(value, field, high=_MAX_DURATION_MIN * 60_000))


def _schedule(value: object, name: str) -> list[Any]:
    """One schedule of a pumpSettings field that may be a list or a map of named lists."""
    value = _loaded(value)
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and value:
        key = name if name in value else min(value)
        chosen = value[key]
        return chosen if isinstance(chosen, list) else []
    return []


def _start_min(entry: Mapping[str, Any], field: str) -> int:
    start = _number(entry.get("start"), f"{field}.start", high=_DAY_MS)
    return int(start // 60_000)


def _target(entry: Mapping[str, Any], glucose: _Glucose, field: str) -> tuple[float, float]:
    """(low, high) mg/dL of a Tidepool target: low/high, target ± range, target/high or target."""
    low, high = entry.get("low"), entry.get("high")
    target, spread = entry.get("target"), entry.get("range")
    if low is not None and high is not None:
        return glucose(low, f"{field}.low"), glucose(high, f"{field}.high")
    if target is not None and spread is not None:
        center = glucose(target, f"{field}.target")
        width = glucose(spread, f"{field}.range") if spread else 0.0
        return center - width, center + width
    if target is not None and high is not None:
        return glucose(target, f"{field}.target"), glucose(high, f"{field}.high")
    if target is not None:
        center = glucose(target, f"{field}.target")
        return center, center
    msg = f"{field} has no low/high or target"
    raise _DatumError(msg)


def _target_entry(entry: Mapping[str, Any], glucose: _Glucose) -> dict[str, Any]:
    """One entry of the canonical target schedule."""
    low, high = _target(entry, glucose, "bgTarget")
    return {"start_min": _start_min(entry, "bgTarget"), "low_mgdl": low, "high_mgdl": high}


def _prefix(head: list[str]) -> str:
    """At most :data:`_HEAD_CHARS` characters of the leading lines (a one-line export is one line)."""
    parts: list[str] = []
    size = 0
    for line in head:
        part = line[: _HEAD_CHARS - size]
        parts.append(part)
        size += len(part) + 1
        if size >= _HEAD_CHARS:
            break
    return "\n".join(parts)


def _looks_like_datum(value: object) -> bool:
    return (
        isinstance(value, dict)
        and _unit(value.get("type")) in TIDEPOOL_TYPES
        and isinstance(value.get("time"), str)
        and ("uploadId" in value or "deviceId" in value)
    )


def _first_datum_matches(body: str) -> bool:
    """Whether the text after ``[`` starts with a Tidepool datum (keys alone when it is cut off)."""
    try:
        first, _ = _DECODER.raw_decode(body)
    except ValueError:
        match = _KEY_TYPE.search(body)
        return (
            match is not None
            and match.group(1) in TIDEPOOL_TYPES
            and _KEY_TIME.search(body) is not None
            and _KEY_DEVICE.search(body) is not None
        )
    return _looks_like_datum(first)


def _upload_datums(text: str) -> Iterator[dict[str, Any]]:
    """The ``upload`` datums of the file, found before the records are read.

    Each ``"type": "upload"`` key is traced back to the nearest object around it that decodes to
    a datum of type ``upload``.
    """
    for match in _UPLOAD_TYPE.finditer(text):
        at = match.start()
        start = text.rfind("{", 0, at)
        for _ in range(_UPLOAD_TRIES):
            if start < 0:
                break
            try:
                found, end = _DECODER.raw_decode(text, start)
            except (ValueError, RecursionError):
                found, end = None, -1
            if isinstance(found, dict) and end > at and found.get("type") == "upload":
                yield found
                break
            start = text.rfind("{", 0, start)


def _unit(value: object) -> str:
    """A text field for a membership test (``""`` for anything that is not text)."""
    return value if isinstance(value, str) else ""


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _device_info(upload: Mapping[str, Any], device_id: str | None) -> DeviceInfo:
    """A device as an upload datum names it."""
    makers = _loaded(upload.get("deviceManufacturers"))
    names = (
        [m.strip() for m in makers if isinstance(m, str) and m.strip()] if isinstance(makers, list) else []
    )
    if not names and isinstance(makers, str) and makers.strip():
        names = [makers.strip()]
    model = _text(upload.get("deviceModel")) or device_id or _text(upload.get("deviceId")) or "device"
    return DeviceInfo(
        manufacturer=" / ".join(names) or FALLBACK_MANUFACTURER,
        model=model,
        serial=_text(upload.get("deviceSerialNumber")),
    )


class _Block:
    """Plain CGM readings of one device and unit, collected as columns."""

    __slots__ = ("device", "lines", "offsets", "originals", "times", "unit", "values")

    def __init__(self, device: str, unit: str) -> None:
        self.device = device
        self.unit = unit
        self.times: list[int] = []
        self.offsets: list[int] = []
        self.values: list[float] = []
        self.originals: list[float] = []
        self.lines: list[int] = []

    def take(self) -> ReadingBlock:
        """The readings collected so far as a :class:`ReadingBlock`; the columns start empty again."""
        block = ReadingBlock(
            "cbg",
            "sensor",
            self.device,
            self.unit,
            np.array(self.times, np.int64),
            np.array(self.offsets, np.int64),
            np.array(self.values, np.float64),
            np.array(self.originals, np.float64),
            np.array(self.lines, np.int64),
        )
        self.times, self.offsets, self.values, self.originals, self.lines = [], [], [], [], []
        return block


class _Settings:
    """The rows of one pumpSettings datum that the web export split, gathered back into one datum."""

    def __init__(self, key: str, datum: dict[str, Any], line: int, index: int) -> None:
        self.key = key
        self.line = line
        self.index = index
        self.datum: dict[str, Any] = {
            name: value
            for name, value in datum.items()
            if not name.startswith(("basalSchedule", "scheduleName"))
        }
        self.datum["type"] = "pumpSettings"
        self.lists: dict[str, dict[str, list[Any]] | list[Any]] = {}

    def add(self, datum: dict[str, Any]) -> None:
        """Add one split row's schedule entry."""
        field, entry_name = _SPLIT_SETTINGS[str(datum["type"])]
        entry = _sub(datum, entry_name)
        if entry is None:
            return
        units = _sub(datum, "units")
        if units is not None and (
            field.startswith(("bgTarget", "insulinSensitivit")) or "units" not in self.datum
        ):
            self.datum["units"] = units  # the unit of the glucose entries wins
        if field in ("bgTarget", "carbRatio", "insulinSensitivity"):
            plain = self.lists.setdefault(field, [])
            if isinstance(plain, list):
                plain.append(entry)
            return
        named = self.lists.setdefault(field, {})
        if isinstance(named, dict):
            named.setdefault(str(datum.get("scheduleName") or "Default"), []).append(entry)

    def assembled(self) -> dict[str, Any]:
        """The pumpSettings datum the rows came from."""
        datum = dict(self.datum)
        for name in (
            "bgTarget",
            "carbRatio",
            "insulinSensitivity",
            "bgTarget.start",
            "bgTarget.low",
            "bgTarget.high",
            "bgTarget.target",
            "bgTarget.range",
            "carbRatio.start",
            "carbRatio.amount",
            "insulinSensitivity.start",
            "insulinSensitivity.amount",
        ):
            datum.pop(name, None)
        datum.update(self.lists)
        return datum


class _Reader:
    """The state of reading one export: devices, CGM columns, pending split settings, counts."""

    def __init__(self, source: SourceText, ctx: ParseContext, result: ParseResult) -> None:
        self.source = source
        self.ctx = ctx
        self.result = result
        self.uploads_by_device: dict[str, dict[str, Any]] = {}
        self.uploads_by_id: dict[str, dict[str, Any]] = {}
        for upload in _upload_datums(source.text):
            device_id, upload_id = _text(upload.get("deviceId")), _text(upload.get("uploadId"))
            if device_id is not None:
                self.uploads_by_device.setdefault(device_id, upload)
            if upload_id is not None:
                self.uploads_by_id.setdefault(upload_id, upload)
        self.blocks: dict[tuple[str, str], _Block] = {}
        self.settings: _Settings | None = None
        self.unknown: collections.Counter[str] = collections.Counter()
        self.skipped: collections.Counter[str] = collections.Counter()
        self.incomplete = False
        self.line = 1
        self.index = 0

    # -- the array ----------------------------------------------------------------------------------

    def _fail(self, position: int, problem: str) -> MalformedFileError:
        text = self.source.text
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        return MalformedFileError(f"{self.source.name}: line {line}, column {column}: {problem}")

    def records(self) -> Iterator[ParsedItem]:
        """Every record of the file, datum by datum.

        This is the hot loop: a plain CGM reading in mmol/L of a known device (nine datums in ten)
        goes straight into its device's columns; every other datum through :meth:`datum`.
        """
        text = self.source.text
        size = len(text)
        skip = _skip
        decode = _DECODER.raw_decode
        parse_time = dt.datetime.fromisoformat
        devices = self.result.devices
        blocks = self.blocks
        mgdl_of: dict[float, float] = {}
        position = skip(text, 0)
        if text[position : position + 1] != "[":
            raise self._fail(position, "a Tidepool export is a JSON array ([ ... ])")
        position = skip(text, position + 1)
        counted = 0
        mark = text[position : position + 1]
        if mark == "]":
            position += 1
        while mark != "]":
            if position >= size:
                raise self._fail(position, "the JSON array is not closed (truncated file?)")
            self.line += text.count("\n", counted, position)
            counted = position
            try:
                datum, end = decode(text, position)
            except json.JSONDecodeError as exc:
                if exc.pos >= size or exc.msg.startswith("Unterminated string"):
                    raise self._fail(size, "the file ends inside a datum (truncated file?)") from None
                raise self._fail(exc.pos, f"invalid JSON ({exc.msg})") from None
            except RecursionError:  # the decoder's answer to nesting deeper than the interpreter's stack
                raise self._fail(position, "a datum is nested too deeply to be a Tidepool export") from None
            self.index += 1
            mark = text[end : end + 1]
            if mark not in (",", "]"):
                end = skip(text, end)
                mark = text[end : end + 1]
                if not mark:
                    raise self._fail(end, "the JSON array is not closed (truncated file?)")
                if mark not in (",", "]"):
                    raise self._fail(end, "invalid JSON (expecting ',' or ']' after a datum)")
            position = end + 1
            if mark == ",":
                if text[position : position + 1] in _BLANKS:
                    position = skip(text, position)
                mark = text[position : position + 1]
                if mark == "]":
                    raise self._fail(position, "invalid JSON (a ',' before the closing ']')")
                mark = ","
            if (
                type(datum) is dict
                and datum.get("type") == "cbg"
                and self.settings is None
                and datum.get("units") == "mmol/L"
                and "annotations" not in datum
                and "notes" not in datum
            ):
                value, stamp, offset = datum.get("value"), datum.get("time"), datum.get("timezoneOffset")
                device = datum.get("deviceId")
                if (
                    type(value) is float
                    and value > 0
                    and type(stamp) is str
                    and type(offset) is int
                    and -_MAX_OFFSET_MIN <= offset <= _MAX_OFFSET_MIN
                    and type(device) is str
                    and device in devices
                ):
                    try:
                        moment = parse_time(stamp)
                    except ValueError:
                        moment = None
                    if moment is not None and moment.tzinfo is not None:
                        mgdl = mgdl_of.get(value)
                        if mgdl is None:
                            mgdl = mgdl_of[value] = mgdl_from_mmol(value)
                        delta = moment - _EPOCH
                        block = blocks.get((device, "mmol/L"))
                        if block is None:
                            block = blocks[device, "mmol/L"] = _Block(device, "mmol/L")
                        block.times.append(
                            (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
                        )
                        block.offsets.append(offset)
                        block.values.append(mgdl)
                        block.originals.append(value)
                        block.lines.append(self.line)
                        if len(block.times) >= _RUN:
                            yield block.take()
                        continue
            yield from self.datum(datum)
        position = skip(text, position)
        if position < size:
            raise self._fail(position, "invalid JSON (more text after the array)")
        yield from self.finish()

    def finish(self) -> Iterator[ParsedItem]:
        """The records held back (CGM columns, split settings) and the notes on what was not stored."""
        yield from self.flush_settings()
        for block in self.blocks.values():
            if block.times:
                yield block.take()
        notes = self.result.notes
        if self.unknown:
            listed = ", ".join(f"{name} ({count})" for name, count in sorted(self.unknown.items()))
            total = sum(self.unknown.values())
            notes.append(
                f"{total} datums of types Glucoshare has no record type for were not stored: {listed}"
            )
        for what, count in sorted(self.skipped.items()):
            notes.append(f"{count} {what} were not stored")
        if self.incomplete:
            notes.append(
                "Tidepool marked this export as incomplete (the export was cut short); "
                "export a shorter date range to get all the data"
            )

    # -- one datum ----------------------------------------------------------------------------------

    def datum(self, datum: object) -> Iterator[ParsedItem]:
        """The records of one datum; an unreadable datum is rejected with its line."""
        if not isinstance(datum, dict):
            self.reject("the datum is not a JSON object")
            return
        kind = datum.get("type")
        if not isinstance(kind, str):
            kind = ""
        if self.settings is not None and (
            kind not in _SPLIT_SETTINGS or self.settings.key != _settings_key(datum)
        ):
            yield from self.flush_settings()
        if not kind:
            if "exportError" in datum:
                self.incomplete = True
            else:
                self.reject("the datum has no type")
            return
        try:
            if kind == "cbg":
                yield from self.cbg(datum)
            elif kind in _SPLIT_SETTINGS:
                self.split_settings(datum)
            elif kind == "upload":
                pass  # names devices (read before the records); not a record
            elif kind in _HANDLERS:
                records = _HANDLERS[kind](self, datum)
                yield from records
                yield from self.notes(datum, records)
            else:
                self.unknown[kind] += 1
        except _DatumError as exc:
            self.reject(str(exc))

    def reject(self, reason: str) -> None:
        """Reject the current datum."""
        self.result.rejected.append(RejectedRow(self.line, f"datum {self.index}: {reason}"))

    def device(self, datum: Mapping[str, Any]) -> str:
        """The key of the datum's device, registered on first sight."""
        device_id = _text(datum.get("deviceId"))
        upload_id = _text(datum.get("uploadId"))
        key = device_id or (f"upload:{upload_id}" if upload_id else ACCOUNT_DEVICE)
        devices = self.result.devices
        if key not in devices:
            upload = (self.uploads_by_device.get(device_id) if device_id else None) or (
                self.uploads_by_id.get(upload_id) if upload_id else None
            )
            if upload is not None:
                devices[key] = _device_info(upload, device_id)
            elif device_id is not None:
                devices[key] = DeviceInfo(FALLBACK_MANUFACTURER, device_id, None)
            else:
                devices[key] = DeviceInfo("Tidepool", "Tidepool account", None)
        return key

    def when(self, datum: Mapping[str, Any]) -> tuple[int, int]:
        """``(UTC ms, offset in minutes)`` of a datum."""
        time_ms = _instant(datum)
        offset = datum.get("timezoneOffset")
        if isinstance(offset, int | float) and not isinstance(offset, bool) and math.isfinite(offset):
            minutes = round(offset)
            if abs(minutes) > _MAX_OFFSET_MIN:
                msg = "timezoneOffset is outside ±7 days"
                raise _DatumError(msg)
            return time_ms, minutes
        if offset is not None:
            msg = "timezoneOffset is not a number"
            raise _DatumError(msg)
        moment = dt.datetime.fromtimestamp(time_ms / 1000, tz=self.ctx.tz)
        utc_offset = moment.utcoffset()
        return time_ms, 0 if utc_offset is None else int(utc_offset.total_seconds()) // 60

    def glucose(
        self, datum: Mapping[str, Any], value: object, field: str, units: object
    ) -> tuple[float, float, str]:
        """``(mg/dL, value as written, unit as written)`` of a glucose field (above 0)."""
        written = _number(value, field, low=-math.inf)
        if written <= 0:
            msg = f"{field} is not positive"
            raise _DatumError(msg)
        if _unit(units) in _MMOL:
            return mgdl_from_mmol(written), written, "mmol/L"
        if _unit(units) in _MGDL:
            return (mgdl_from_export(written) if "localTime" in datum else written), written, "mg/dL"
        if units is None or units == "":
            msg = f"{field} has no units"
            raise _DatumError(msg)
        unit = str(units)[:20]
        msg = (
            f"{self.source.name}: line {self.line}: unknown glucose unit {shown(unit)} "
            "(Tidepool writes mmol/L or mg/dL)"
        )
        raise MalformedFileError(msg)

    def record(
        self,
        datum: Mapping[str, Any],
        kind: str,
        subtype: str,
        value: float | None = None,
        **fields: Any,  # noqa: ANN401 - the optional fields of ParsedRecord
    ) -> ParsedRecord:
        """A record of the datum, at its time, for its device."""
        time_ms, offset = self.when(datum)
        return ParsedRecord(kind, subtype, time_ms, offset, self.line, self.device(datum), value, **fields)

    def notes(self, datum: Mapping[str, Any], records: list[ParsedRecord]) -> list[ParsedRecord]:
        """A ``note`` record for each text in the datum's ``notes``."""
        texts = _loaded(datum.get("notes"))
        if not isinstance(texts, list) or not records:
            return []
        first = records[0]
        return [
            ParsedRecord(
                "note",
                "",
                first.time_ms,
                first.utc_offset_min,
                self.line,
                first.device,
                payload={"text": text.strip()},
                identity=text.strip(),
            )
            for text in texts
            if isinstance(text, str) and text.strip()
        ]

    # -- types --------------------------------------------------------------------------------------

    def cbg(self, datum: dict[str, Any]) -> Iterator[ParsedItem]:
        """A CGM reading: plain ones into the device's columns, annotated ones as records."""
        units = datum.get("units")
        value, written, unit = self.glucose(datum, datum.get("value"), "value", units)
        annotation = _annotation(datum) if "annotations" in datum else None
        time_ms, offset = self.when(datum)
        device = self.device(datum)
        if annotation is not None or "notes" in datum:
            record = ParsedRecord(
                "cbg",
                "sensor",
                time_ms,
                offset,
                self.line,
                device,
                value,
                written,
                unit,
                annotation=annotation,
            )
            yield record
            yield from self.notes(datum, [record])
            return
        block = self.blocks.get((device, unit))
        if block is None:
            block = self.blocks[device, unit] = _Block(device, unit)
        block.times.append(time_ms)
        block.offsets.append(offset)
        block.values.append(value)
        block.originals.append(written)
        block.lines.append(self.line)
        if len(block.times) >= _RUN:
            yield block.take()

    def smbg(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """A meter reading."""
        value, written, unit = self.glucose(datum, datum.get("value"), "value", datum.get("units"))
        subtype = _SMBG_SUBTYPES.get(str(datum.get("subType") or ""), "meter")
        annotation = _annotation(datum)
        return [
            self.record(
                datum, "smbg", subtype, value, orig_value=written, orig_unit=unit, annotation=annotation
            )
        ]

    def ketone(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """A blood ketone reading (mmol/L)."""
        units = datum.get("units")
        if _unit(units) not in _MMOL:
            msg = "bloodKetone units are not mmol/L"
            raise _DatumError(msg)
        value = _number(datum.get("value"), "value", high=20.0)
        return [self.record(datum, "bloodKetone", "", value, orig_value=value, orig_unit="mmol/L")]

    def basal(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """A basal segment; rate in U/h (0 while suspended)."""
        delivery = datum.get("deliveryType")
        if _unit(delivery) not in _BASAL_TYPES:
            msg = "deliveryType is not scheduled, temp, suspend or automated"
            raise _DatumError(msg)
        minutes = "localTime" in datum
        rate = _optional(datum.get("rate"), "rate", high=_MAX_RATE)
        percent = _optional(datum.get("percent"), "percent", high=10.0)
        suppressed = _sub(datum, "suppressed")
        suppressed_rate = (
            _optional(suppressed.get("rate"), "suppressed.rate", high=_MAX_RATE) if suppressed else None
        )
        if rate is None and delivery == "temp" and percent is not None and suppressed_rate is not None:
            rate = suppressed_rate * percent
        if rate is None and delivery == "suspend":
            rate = 0.0
        payload: dict[str, Any] = {}
        if percent is not None:
            payload["percent"] = round(percent * 100, 6)
        if suppressed_rate is not None:
            payload["scheduled_rate"] = suppressed_rate
        schedule = _text(datum.get("scheduleName"))
        if schedule is not None:
            payload["schedule_name"] = schedule
        expected = _duration_ms(datum.get("expectedDuration"), "expectedDuration", minutes=minutes)
        if expected is not None:
            payload["expected_duration_ms"] = expected
        duration = _duration_ms(datum.get("duration"), "duration", minutes=minutes)
        return [
            self.record(datum, "basal", str(delivery), rate, duration_ms=duration, payload=payload or None)
        ]

    def bolus(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """A pump bolus; value = delivered units (normal + extended)."""
        subtype = _BOLUS_SUBTYPES.get(str(datum.get("subType")))
        if subtype is None:
            msg = "subType is not normal, square, dual/square or automated"
            raise _DatumError(msg)
        if datum.get("deliveryContext") == "algorithm":
            subtype = "automated"
        normal = _optional(datum.get("normal"), "normal", high=_MAX_UNITS)
        extended = _optional(datum.get("extended"), "extended", high=_MAX_UNITS)
        if normal is None and extended is None:
            msg = "the bolus has neither normal nor extended units"
            raise _DatumError(msg)
        expected_normal = _optional(datum.get("expectedNormal"), "expectedNormal", high=_MAX_UNITS)
        expected_extended = _optional(datum.get("expectedExtended"), "expectedExtended", high=_MAX_UNITS)
        delivered = (normal or 0.0) + (extended or 0.0)
        programmed = (expected_normal if expected_normal is not None else normal or 0.0) + (
            expected_extended if expected_extended is not None else extended or 0.0
        )
        payload: dict[str, Any] = {"programmed": programmed, "bolus_type": datum.get("subType")}
        if normal is not None:
            payload["normal"] = normal
        if extended is not None:
            payload["extended"] = extended
        context = _text(datum.get("deliveryContext"))
        if context is not None:
            payload["delivery_context"] = context
        duration = _duration_ms(datum.get("duration"), "duration", minutes=False)
        return [self.record(datum, "bolus", subtype, delivered, duration_ms=duration, payload=payload)]

    def wizard(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """A bolus calculator use; value = carb input (g)."""
        units = datum.get("units")

        def mgdl(value: object, field: str) -> float:
            return self.glucose(datum, value, field, units)[0]

        payload: dict[str, Any] = {}
        carbs = _optional(datum.get("carbInput"), "carbInput", high=_MAX_CARBS)
        if datum.get("carbUnits") == "exchanges" and carbs is not None:
            payload["carb_exchanges"] = carbs
            carbs = None
        bg = datum.get("bgInput")
        payload["bg_input"] = mgdl(bg, "bgInput") if bg not in (None, "", 0) else None
        ratio = _optional(datum.get("insulinCarbRatio"), "insulinCarbRatio", high=250.0)
        if ratio is not None:
            payload["carb_ratio"] = ratio
        sensitivity = datum.get("insulinSensitivity")
        if sensitivity not in (None, ""):
            payload["insulin_sensitivity"] = mgdl(sensitivity, "insulinSensitivity")
        target = _sub(datum, "bgTarget")
        if target:
            payload["target_low"], payload["target_high"] = _target(target, mgdl, "bgTarget")
        iob = _optional(datum.get("insulinOnBoard"), "insulinOnBoard", high=_MAX_UNITS)
        if iob is not None:
            payload["active_insulin"] = iob
        recommended = _sub(datum, "recommended") or {}
        for key, name in (
            ("carb", "food_estimate"),
            ("correction", "correction_estimate"),
            ("net", "estimate"),
        ):
            value = recommended.get(key)
            if value not in (None, ""):
                payload[name] = _number(value, f"recommended.{key}", low=-_MAX_UNITS, high=_MAX_UNITS)
        identity = f"{payload.get('estimate')}|{payload['bg_input']}"
        return [self.record(datum, "wizard", "", carbs, payload=payload, identity=identity)]

    def food(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """Food; value = net carbohydrate (g)."""
        carbs = _path(datum, "nutrition", "carbohydrate", "net")
        if carbs is None:
            carbs = _path(datum, "nutrition", "carbohydrate", "total")
        if carbs is None or carbs == "":
            self.skipped["food entries without a carbohydrate amount"] += 1
            return []
        units = _path(datum, "nutrition", "carbohydrate", "units")
        if units not in (None, "grams"):
            msg = "nutrition.carbohydrate.units is not grams"
            raise _DatumError(msg)
        grams = _number(carbs, "nutrition.carbohydrate.net", high=_MAX_CARBS)
        meal = datum.get("meal")
        payload = {"meal": meal} if meal in ("breakfast", "lunch", "dinner", "snack", "other") else None
        return [self.record(datum, "food", "", grams, payload=payload)]

    def insulin(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """An insulin dose given outside a pump (pen, syringe, inhaled); U."""
        total = _path(datum, "dose", "total")
        units = _path(datum, "dose", "units")
        if units not in (None, "Units"):
            msg = "dose.units is not Units"
            raise _DatumError(msg)
        value = _number(total, "dose.total", high=_MAX_UNITS)
        acting = _path(datum, "formulation", "simple", "actingType")
        subtype = _ACTING.get(str(acting), "unknown")
        return [self.record(datum, "insulin", subtype, value)]

    def activity(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """Physical activity with its duration."""
        duration = _sub(datum, "duration")
        duration_ms = None
        if duration is not None and duration.get("value") not in (None, ""):
            factor = _DURATION_MS.get(str(duration.get("units")))
            if factor is None:
                msg = "duration.units is not hours, minutes, seconds or milliseconds"
                raise _DatumError(msg)
            duration_ms = round(_number(duration.get("value"), "duration.value", high=7 * _DAY_MS) * factor)
        subtype = _INTENSITY.get(str(datum.get("reportedIntensity")), "unknown")
        activity_type = _text(datum.get("activityType"))
        payload = {"activity_type": activity_type} if activity_type else None
        return [self.record(datum, "physicalActivity", subtype, duration_ms=duration_ms, payload=payload)]

    def device_event(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """A device event (a calibration becomes a meter reading)."""
        subtype = str(datum.get("subType") or "")
        if subtype == "calibration":
            value, written, unit = self.glucose(datum, datum.get("value"), "value", datum.get("units"))
            return [self.record(datum, "smbg", "calibration", value, orig_value=written, orig_unit=unit)]
        if subtype == "status":
            return [self.status(datum)]
        record: ParsedRecord
        if subtype == "alarm":
            alarm = _text(datum.get("alarmType")) or "other"
            record = self.record(datum, "deviceEvent", "alarm", payload={"text": alarm}, identity=alarm)
        elif subtype == "prime":
            target = _text(datum.get("primeTarget")) or ""
            volume = _optional(datum.get("volume"), "volume", high=_MAX_UNITS)
            payload = {"prime_target": target} if target else None
            record = self.record(datum, "deviceEvent", "prime", volume, payload=payload, identity=target)
        elif subtype == "reservoirChange":
            record = self.record(datum, "deviceEvent", "reservoirChange")
        elif subtype == "timeChange":
            change = _sub(datum, "change") or {}
            before = (_sub(datum, "from") or {}).get("time", change.get("from"))
            after = (_sub(datum, "to") or {}).get("time", change.get("to"))
            record = self.record(
                datum,
                "deviceEvent",
                "timeChange",
                payload={"from": before, "to": after},
                identity=f"{before}|{after}",
            )
        else:
            event = subtype or "unknown"
            other: dict[str, Any] = {"event": event}
            override = _text(datum.get("overrideType"))
            if override is not None:
                other["override_type"] = override
            duration = _duration_ms(datum.get("duration"), "duration", minutes="localTime" in datum)
            record = self.record(
                datum, "deviceEvent", "other", duration_ms=duration, payload=other, identity=event
            )
        return [record]

    def status(self, datum: dict[str, Any]) -> ParsedRecord:
        """A pump suspension (with its duration) or resumption."""
        reason = _loaded(datum.get("reason"))
        payload: dict[str, Any] | None = (
            {"reason": reason} if isinstance(reason, dict | str) and reason else None
        )
        status = datum.get("status")
        if status == "suspended":
            duration = _duration_ms(datum.get("duration"), "duration", minutes="localTime" in datum)
            return self.record(datum, "deviceEvent", "suspend", duration_ms=duration, payload=payload)
        if status == "resumed":
            return self.record(datum, "deviceEvent", "resume", payload=payload)
        msg = "status is not suspended or resumed"
        raise _DatumError(msg)

    def cgm_settings(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """CGM alert settings: low and high thresholds in mg/dL."""
        units = datum.get("units")
        alerts: dict[str, dict[str, Any]] = {}
        for field, name in (("lowAlerts", "low"), ("highAlerts", "high")):
            alert = _sub(datum, field)
            if not alert:
                continue
            entry: dict[str, Any] = {}
            if isinstance(alert.get("enabled"), bool):
                entry["enabled"] = alert["enabled"]
            if alert.get("level") not in (None, ""):
                entry["threshold_mgdl"] = self.glucose(datum, alert.get("level"), f"{field}.level", units)[0]
            alerts[name] = entry
        payload: dict[str, Any] = {"alerts": alerts, "units": "mg/dL"}
        transmitter = _text(datum.get("transmitterId"))
        if transmitter is not None:
            payload["transmitter_id"] = transmitter
        return [self.record(datum, "cgmSettings", "", payload=payload, identity=repr(sorted(alerts.items())))]

    def pump_settings(self, datum: dict[str, Any]) -> list[ParsedRecord]:
        """Pump settings as the canonical payload (schedules of the active profile, mg/dL)."""
        units = _sub(datum, "units") or {}
        bg_units = units.get("bg")
        active = _text(datum.get("activeSchedule"))
        name = active or ""

        def mgdl(value: object, field: str) -> float:
            return self.glucose(datum, value, field, bg_units)[0]

        basal: dict[str, list[dict[str, Any]]] = {}
        schedules = _loaded(datum.get("basalSchedules"))
        if isinstance(schedules, dict):
            for schedule_name, entries in schedules.items():
                if isinstance(entries, list) and entries:
                    basal[str(schedule_name)] = [
                        {
                            "start_min": _start_min(e, "basalSchedules"),
                            "rate_u_h": _number(e.get("rate"), "basalSchedules.rate", high=_MAX_RATE),
                        }
                        for e in entries
                        if isinstance(e, dict)
                    ]
        single = _loaded(datum.get("basalSchedule"))
        if not basal and isinstance(single, list) and single:
            basal[active or "Standard"] = [
                {
                    "start_min": _start_min(e, "basalSchedule"),
                    "rate_u_h": _number(e.get("rate"), "basalSchedule.rate", high=_MAX_RATE),
                }
                for e in single
                if isinstance(e, dict)
            ]
        ratios = _schedule(datum.get("carbRatios") or datum.get("carbRatio"), name)
        if ratios and units.get("carb") not in (None, "grams"):
            self.skipped["carb ratio schedules in exchanges"] += 1
            ratios = []
        sensitivities = _schedule(datum.get("insulinSensitivities") or datum.get("insulinSensitivity"), name)
        targets = _schedule(datum.get("bgTargets") or datum.get("bgTarget"), name)
        payload: dict[str, Any] = {
            "active_schedule": active if active in basal else None,
            "basal_schedules": basal,
            "carb_ratios": [
                {
                    "start_min": _start_min(e, "carbRatio"),
                    "g_per_u": _number(e.get("amount"), "carbRatio.amount"),
                }
                for e in ratios
                if isinstance(e, dict)
            ],
            "sensitivities": [
                {
                    "start_min": _start_min(e, "insulinSensitivity"),
                    "mgdl_per_u": mgdl(e.get("amount"), "insulinSensitivity.amount"),
                }
                for e in sensitivities
                if isinstance(e, dict)
            ],
            "targets": [_target_entry(e, mgdl) for e in targets if isinstance(e, dict)],
            "max_bolus_u": _optional(
                _path(datum, "bolus", "amountMaximum", "value"), "bolus.amountMaximum", high=_MAX_UNITS
            ),
            "max_basal_u_h": _optional(
                _path(datum, "basal", "rateMaximum", "value"), "basal.rateMaximum", high=_MAX_RATE
            ),
            "insulin_duration_h": self.insulin_duration(datum),
        }
        record = self.record(datum, "pumpSettings", "")
        try:
            checked = parse_pump_settings(payload, record.time_ms)
        except InvalidPumpSettingsError as exc:
            raise _DatumError(str(exc)) from None
        record.payload = pump_settings_payload(checked)
        return [record]

    @staticmethod
    def insulin_duration(datum: Mapping[str, Any]) -> float | None:
        """The bolus calculator's insulin duration in hours (``bolus.calculator.insulin``)."""
        insulin = _path(datum, "bolus", "calculator", "insulin")
        if not isinstance(insulin, dict) or insulin.get("duration") in (None, ""):
            return None
        factor = _HOURS.get(str(insulin.get("units")))
        if factor is None:
            msg = "bolus.calculator.insulin.units is not hours, minutes or seconds"
            raise _DatumError(msg)
        return _number(insulin.get("duration"), "bolus.calculator.insulin.duration") * factor

    def split_settings(self, datum: dict[str, Any]) -> None:
        """One row of a pumpSettings datum the web export split; gathered until the datum ends."""
        if self.settings is None:
            self.settings = _Settings(_settings_key(datum), datum, self.line, self.index)
        self.settings.add(datum)

    def flush_settings(self) -> Iterator[ParsedRecord]:
        """The pumpSettings record of the split rows gathered so far."""
        settings, self.settings = self.settings, None
        if settings is None:
            return
        line, index = self.line, self.index
        self.line, self.index = settings.line, settings.index
        try:
            yield from self.pump_settings(settings.assembled())
        except _DatumError as exc:
            self.reject(str(exc))
        finally:
            self.line, self.index = line, index


def _settings_key(datum: Mapping[str, Any]) -> str:
    """What the rows of one split pumpSettings datum share: its id (or device and time)."""
    ident = datum.get("id")
    if isinstance(ident, str) and ident:
        return ident
    return f"{datum.get('deviceId')}|{datum.get('time')}"


_HANDLERS = {
    "smbg": _Reader.smbg,
    "bloodKetone": _Reader.ketone,
    "basal": _Reader.basal,
    "bolus": _Reader.bolus,
    "wizard": _Reader.wizard,
    "food": _Reader.food,
    "insulin": _Reader.insulin,
    "physicalActivity": _Reader.activity,
    "deviceEvent": _Reader.device_event,
    "cgmSettings": _Reader.cgm_settings,
    "pumpSettings": _Reader.pump_settings,
}


class TidepoolImporter:
    """Reads Tidepool JSON exports (module notes)."""

    format: ClassVar[str] = "tidepool"
    label: ClassVar[str] = "Tidepool JSON export"
    checks_truncation: ClassVar[bool] = True
    """A cut-off file is refused here: its JSON array never closes."""

    def detect(self, head: list[str]) -> bool:
        """True when the file is a JSON array whose first element is a Tidepool datum."""
        body = _prefix(head).lstrip("\ufeff \t\r\n")
        if not body.startswith("["):
            return False
        body = body[1:].lstrip(" \t\r\n")
        return body.startswith("{") and _first_datum_matches(body)

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Parse an export lazily; :class:`MalformedFileError` (raised while reading) for broken JSON."""
        result = ParseResult(records=iter(()))
        result.records = _Reader(storable_json(source), ctx, result).records()
        return result
