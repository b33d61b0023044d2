"""Accu-Chek Smart Pix XML report (research/formats.md §8; docs/formats/accuchek-smartpix.md).

The Smart Pix device reader (and its software) writes one XML report per device read, with an
HTML view beside it. **Parsed with defusedxml**: an entity declaration (the "billion laughs"), a
reference to an external DTD or entity, or any XML error refuses the file with a
:class:`~glucoshare.ingest.errors.MalformedFileError` before anything is read; the internal DTD of
element and attribute declarations that real reports carry is allowed.

**Layout** (from open parsers, not a specification). Root ``IMPORT``; ``ACSPIX`` (the reader:
``Type``, ``SN``, ``Ver``). A meter report has ``DEVICE`` (``Name``, ``SN``, ``Dt``, ``Tm``,
``BGUnit``, optional ``CarbUnit``) and ``BGDATA`` with one ``BG`` per memory entry: ``Val``
(a number in ``BGUnit``, ``---`` for none, ``LO``/``HI`` out of range), ``Dt`` (``YYYY-MM-DD``),
``Tm`` (``HH:MM``), ``Ctrl`` (control-solution test), ``Flg``, ``Carb``, ``Ins1``-``Ins3``,
``Evt``. A pump report has ``IP`` (``Name``, ``SN``, ``Dt``, ``Tm``, ``ActiveProf``) with
``IPPROFILE``/``IPTIMESLOT`` basal profiles, and ``IPDATA`` with ``BOLUS`` (``type`` ``Std``,
``Scr``, ``Ext``, ``Mul``; ``amount``; ``remark``), ``BASAL`` (``cbrf`` the current rate,
``profile``, ``TBRinc``/``TBRdec``, ``remark``) and ``EVENT`` (``shortinfo``, ``description``).

**Recognised** from the head of the file: XML whose root is ``IMPORT`` (``<IMPORT`` or ``<!DOCTYPE
IMPORT``) with a Smart Pix element (``ACSPIX``, ``DEVICE``, ``BGDATA``, ``IP``, ``IPDATA``).

**Mapping.**

=================================  ===============================================================
element                            record
=================================  ===============================================================
``BG`` ``Val``                     ``smbg`` ``meter`` (mg/dL; ``orig_value`` in ``BGUnit``; an
                                   unknown ``BGUnit`` refuses the file). ``LO``/``HI``: the meter's
                                   limit, 20 or 600 mg/dL (1.1 or 33.3 mmol/L), annotation
                                   ``low``/``high``. ``Flg`` and ``Evt`` in the payload
``BG`` with ``Ctrl``               not stored: a control-solution test checks the meter, not the
                                   patient (counted in the notes)
``BG`` ``Carb``                    ``food`` in grams (``CarbUnit`` ``g``; ``BE`` × 12, ``KE`` × 10)
``BG`` ``Ins1``-``Ins3``           ``insulin`` ``unknown`` (the meter's insulin slots; identity
                                   the slot)
``BG`` ``Evt`` without a value     ``deviceEvent`` ``other``
``IPPROFILE``                      one ``pumpSettings`` at the report's time: the basal profiles
``BOLUS`` ``Std``/``Scr``          ``bolus`` ``normal``
``BOLUS`` ``Ext``                  ``bolus`` ``extended`` with the remark's ``h:mm h`` duration
``BOLUS`` ``Mul``                  ``bolus`` ``dual``: the remark's ``n.n / n.n h:mm h`` parts summed
``BOLUS`` daily totals             not stored (sums of the doses stored)
``BASAL`` rate change, ``TBR End``  ``basal`` ``scheduled``, value ``cbrf`` (U/h)
``BASAL`` ``TBRinc``/``TBRdec``    ``basal`` ``temp``, value ``cbrf``, ``percent`` in the payload,
                                   duration from a ``dur h:mm h`` remark
``BASAL`` ``Stop`` / ``Run``       ``deviceEvent`` ``suspend`` and ``basal`` ``suspend`` (0 U/h) /
                                   ``deviceEvent`` ``resume`` and ``basal`` ``scheduled``
``EVENT`` ``W1``... ``E1``...      ``deviceEvent`` ``alarm``; ``prime infusion set`` →
                                   ``prime`` (U); ``cartridge changed`` → ``reservoirChange``;
                                   others ``deviceEvent`` ``other``
=================================  ===============================================================

**Time.** ``Dt``/``Tm`` are the device's local wall time to the minute. Each device is one
local-time stream fed oldest first: entries written newest first (most steps go back in time, as
pump logs are) are read from the end. **Devices:** the meter and the pump by ``Name`` and ``SN``
(the Smart Pix reader itself is not stored as a device).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from xml.etree.ElementTree import ParseError
from xml.parsers import expat

from defusedxml import ElementTree as DefusedElementTree
from defusedxml.common import DefusedXmlException

from glucoshare.analytics.settings import (
    InvalidPumpSettingsError,
    parse_pump_settings,
    pump_settings_payload,
)
from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    RejectedRow,
    RowOrigin,
    SourceText,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import LocalClock, wall_ms
from glucoshare.ingest.numbers import bounded_amount, parse_number
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

MANUFACTURER = "Roche"
METER_KEY = "meter"
PUMP_KEY = "pump"
LO_MGDL = 20.0
"""The value stored for ``LO``: the lower end of current Accu-Chek meters' range."""
HI_MGDL = 600.0
"""The value stored for ``HI``: the upper end of Accu-Chek meters' range."""
LIMITS = {"mg/dL": (LO_MGDL, HI_MGDL), "mmol/L": (1.1, 33.3)}
"""``LO``/``HI`` as written in each unit (``orig_value``)."""

_ROOT = re.compile(r"<(?:!DOCTYPE\s+)?IMPORT[\s>\[/]")
_MARKS = ("ACSPIX", "<DEVICE", "<BGDATA", "<IPDATA", "<IP ", "<IP>")
_UNITS = {"mg/dl": "mg/dL", "mmol/l": "mmol/L"}
_CARB_FACTORS = {"g": 1.0, "be": 12.0, "ke": 10.0}
_FACTORS = {"mg/dL": 1.0, "mmol/L": MGDL_PER_MMOLL}
_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_HOURS = re.compile(r"(\d+):(\d{2})\s*h")
_DUAL = re.compile(r"(\d+(?:[.,]\d+)?)\s*/\s*(\d+(?:[.,]\d+)?)\s+(\d+):(\d{2})\s*h")
_PERCENT = re.compile(r"(\d+(?:[.,]\d+)?)\s*%")
_PRIME = re.compile(r"(\d+(?:[.,]\d+)?)\s*IU", re.IGNORECASE)
_ALARM = re.compile(r"[WE]\d{1,2}")
_ALARMS = {
    "W1": "low cartridge",
    "W2": "low battery",
    "W3": "check time",
    "W6": "temporary basal cancelled",
    "W7": "temporary basal ended",
    "W8": "bolus cancelled",
    "E1": "cartridge empty",
    "E2": "battery empty",
    "E3": "automatic off",
    "E4": "occlusion",
    "E6": "mechanical error",
    "E7": "electronic error",
    "E8": "power interrupted",
}
_INSULIN_SLOTS = ("Ins1", "Ins2", "Ins3")
_MAX_MGDL = 5000.0
_MAX_UNITS = 1000.0
_MAX_RATE = 50.0
_MAX_CARBS_G = 10_000.0
_MAX_PERCENT = 1000.0
_SLOTS_PER_DAY = 24


@dataclasses.dataclass(slots=True)
class _Element:
    """One element of the report: its tag, attributes, parent (index) and line."""

    tag: str
    attrib: dict[str, str]
    parent: int
    line: int

    def get(self, name: str) -> str:
        """An attribute's value without surrounding blanks; ``""`` when absent."""
        return self.attrib.get(name, "")


class _Collector:
    """The parser's target: keeps every element with its parent and line (text is not needed).

    :meth:`start` and :meth:`end` are set as expat's own element handlers, past ElementTree's
    per-element bookkeeping (three times faster); the defused parser's handlers that refuse
    entities and external references stay in place.
    """

    def __init__(self) -> None:
        self.elements: list[_Element] = []
        self.stack: list[int] = []
        self.line: Callable[[], int] = lambda: 0

    def start(self, tag: str, attributes: list[str]) -> None:
        """An element's start; ``attributes`` alternate names and values (expat's ordered form)."""
        parent = self.stack[-1] if self.stack else -1
        self.stack.append(len(self.elements))
        values = dict(zip(attributes[::2], (value.strip() for value in attributes[1::2]), strict=True))
        self.elements.append(_Element(tag, values, parent, self.line()))

    def end(self, _tag: str) -> None:
        self.stack.pop()

    def data(self, _text: str) -> None:
        """Element text is not part of the report's data."""

    def close(self) -> None:
        """Nothing to finish."""


class _ExternalReferenceError(Exception):
    """The document names an external DTD."""


def _refuse_external_dtd(_name: str, sysid: str | None, pubid: str | None, _internal: int) -> None:
    if sysid or pubid:
        raise _ExternalReferenceError


def read_elements(source: SourceText) -> list[_Element]:
    """Every element of the XML document, parsed safely; :class:`MalformedFileError` otherwise.

    Entity declarations, external DTDs and external entities are refused; so is a document that
    is not well formed (a truncated file ends in the middle of an element).
    """
    collector = _Collector()
    parser: Any = DefusedElementTree.XMLParser(target=collector)
    engine: Any = parser.parser
    collector.line = lambda: int(engine.CurrentLineNumber)
    engine.StartDoctypeDeclHandler = _refuse_external_dtd
    engine.ordered_attributes = True
    engine.StartElementHandler = collector.start
    engine.EndElementHandler = collector.end
    engine.CharacterDataHandler = None
    name = source.name
    try:
        parser.feed(source.text)
        parser.close()
    except ParseError as exc:
        line = exc.position[0] if exc.position else engine.CurrentLineNumber
        what = expat.ErrorString(exc.code) if isinstance(exc.code, int) else "not well formed"
        msg = f"{name}: line {line}: the XML is broken ({what}); was the file cut short?"
        raise MalformedFileError(msg) from None
    except _ExternalReferenceError:
        msg = (
            f"{name}: line {engine.CurrentLineNumber}: the XML refers to an external DTD; Glucoshare "
            "refuses external references (a Smart Pix report has none)"
        )
        raise MalformedFileError(msg) from None
    except DefusedXmlException as exc:
        what = "declares XML entities" if "Entit" in type(exc).__name__ else "refers to an external resource"
        msg = (
            f"{name}: line {engine.CurrentLineNumber}: the XML {what}; Glucoshare refuses entity "
            "declarations and external references (a Smart Pix report has none)"
        )
        raise MalformedFileError(msg) from None
    except (ValueError, RecursionError):  # pragma: no cover - expat reports its errors as ParseError
        msg = f"{name}: the XML cannot be read"
        raise MalformedFileError(msg) from None
    return collector.elements


def _day_ms(text: str) -> int | None:
    """Wall milliseconds of the midnight starting a ``Dt`` (``YYYY-MM-DD``), or ``None``."""
    date = _DATE.fullmatch(text)
    if date is None:
        return None
    try:
        day = dt.date(int(date[1]), int(date[2]), int(date[3]))
    except ValueError:
        return None
    return wall_ms(dt.datetime.combine(day, dt.time()))


def _time_ms(text: str) -> int | None:
    """Milliseconds into the day of a ``Tm`` (``HH:MM``, seconds allowed), or ``None``."""
    time = _TIME.fullmatch(text)
    if time is None:
        return None
    hour, minute, second = int(time[1]), int(time[2]), int(time[3] or 0)
    if hour > 23 or minute > 59 or second > 59:  # noqa: PLR2004
        return None
    return ((hour * 60 + minute) * 60 + second) * 1000


class _Walls:
    """Wall times of elements' ``Dt`` and ``Tm``, with the parts cached."""

    def __init__(self) -> None:
        self.days: dict[str, int | None] = {}
        self.times: dict[str, int | None] = {}

    def __call__(self, element: _Element) -> int | None:
        """Wall milliseconds of an element's ``Dt`` and ``Tm``, or ``None`` when unreadable."""
        date, time = element.get("Dt"), element.get("Tm")
        if date not in self.days:
            self.days[date] = _day_ms(date)
        if time not in self.times:
            self.times[time] = _time_ms(time)
        day, delta = self.days[date], self.times[time]
        return None if day is None or delta is None else day + delta


def _number(text: str) -> float:
    return parse_number(text, decimal_comma="," in text)


def _maker(line: int, instant: tuple[int, int]) -> Callable[..., ParsedRecord]:
    """Makes the pump's records of one log entry: ``(type, subtype, value, **fields)``."""
    return RowOrigin(instant[0], instant[1], line, PUMP_KEY).record


class _RowError(ValueError):
    """An element cannot be read (the message names the attribute, never its value)."""


def _amount(element: _Element, name: str, what: str, upper: float) -> float | None:
    """A non-negative number of an attribute (``None`` when absent or empty)."""
    text = element.get(name)
    if not text:
        return None
    try:
        return bounded_amount(text, what, upper)
    except ValueError as exc:
        raise _RowError(str(exc)) from None


def _minutes_ms(match: re.Match[str], hours: int, minutes: int) -> int:
    return (int(match[hours]) * 60 + int(match[minutes])) * 60_000


def _schedule(slots: list[_Element]) -> list[dict[str, Any]] | None:
    """A basal profile's hourly slots (``Number`` 1-24, ``IU`` U/h) as schedule entries.

    Slots of equal rate are merged; ``None`` when a slot cannot be read.
    """
    numbered: list[tuple[int, float]] = []
    for slot in slots:
        number = slot.get("Number")
        try:
            rate = _amount(slot, "IU", "basal rate", _MAX_RATE)
        except _RowError:
            return None
        if (
            not (number.isascii() and number.isdigit())
            or not 1 <= int(number) <= _SLOTS_PER_DAY
            or rate is None
        ):
            return None
        numbered.append((int(number), rate))
    entries: list[dict[str, Any]] = []
    for hour, rate in sorted(numbered):
        if not entries or entries[-1]["rate_u_h"] != rate:
            entries.append({"start_min": (hour - 1) * 60, "rate_u_h": rate})
    return entries


def _chronological(rows: list[tuple[_Element, int]]) -> list[tuple[_Element, int]]:
    """Rows oldest first: a log whose wall times mostly step back is read from its end."""
    ups = downs = 0
    for (_, earlier), (_, later) in itertools.pairwise(rows):
        if later > earlier:
            ups += 1
        elif later < earlier:
            downs += 1
    return rows[::-1] if downs > ups else rows


@dataclasses.dataclass(slots=True)
class _Report:
    """The parts of a report the records come from."""

    root: _Element
    meter: _Element | None = None
    pump: _Element | None = None
    readings: list[_Element] = dataclasses.field(default_factory=list)
    log: list[_Element] = dataclasses.field(default_factory=list)
    profiles: list[tuple[_Element, list[_Element]]] = dataclasses.field(default_factory=list)
    other_devices: int = 0


def _report(name: str, elements: list[_Element]) -> _Report:
    """Find the meter, the pump and their data; :class:`MalformedFileError` for a wrong layout."""
    if not elements:  # pragma: no cover - a well-formed document has a root
        msg = f"{name}: line 1: the XML has no elements"
        raise MalformedFileError(msg)
    root = elements[0]
    if root.tag != "IMPORT":
        msg = f"{name}: line {root.line}: the root element is {root.tag[:40]!r}, not a Smart Pix IMPORT"
        raise MalformedFileError(msg)
    report = _Report(root)
    tags = [element.tag for element in elements]
    profiles: dict[int, tuple[_Element, list[_Element]]] = {}
    for index, element in enumerate(elements):
        parent = tags[element.parent] if element.parent >= 0 else ""
        if parent == "IMPORT" and element.tag == "DEVICE":
            if report.meter is None:
                report.meter = element
            else:
                report.other_devices += 1
        elif parent == "IMPORT" and element.tag == "IP":
            if report.pump is None:
                report.pump = element
            else:
                report.other_devices += 1
        elif parent == "BGDATA" and element.tag == "BG":
            report.readings.append(element)
        elif parent == "IPDATA":
            report.log.append(element)
        elif parent == "IP" and element.tag == "IPPROFILE":
            profiles[index] = (element, [])
        elif parent == "IPPROFILE" and element.tag == "IPTIMESLOT" and element.parent in profiles:
            profiles[element.parent][1].append(element)
    report.profiles = list(profiles.values())
    if report.meter is None and report.pump is None:
        msg = f"{name}: line {root.line}: neither a meter (DEVICE) nor a pump (IP) report"
        raise MalformedFileError(msg)
    if report.readings and report.meter is None:
        msg = f"{name}: line {report.readings[0].line}: BG entries without the meter's DEVICE element"
        raise MalformedFileError(msg)
    if report.log and report.pump is None:
        msg = f"{name}: line {report.log[0].line}: pump entries without the pump's IP element"
        raise MalformedFileError(msg)
    return report


class SmartPixImporter:
    """Reads Accu-Chek Smart Pix XML reports of meters and pumps."""

    format: ClassVar[str] = "accuchek_smartpix"
    label: ClassVar[str] = "Accu-Chek Smart Pix XML report"

    def detect(self, head: list[str]) -> bool:
        """True for XML whose root is ``IMPORT`` with a Smart Pix element in the head."""
        text = "\n".join(head).lstrip("\ufeff \t\r\n")
        if not text.startswith("<"):
            return False
        return _ROOT.search(text) is not None and any(mark in text for mark in _MARKS)

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Parse a report; :class:`MalformedFileError` for unsafe or broken XML or a wrong layout."""
        report = _report(source.name, read_elements(source))
        result = ParseResult(records=iter(()))
        reader = _Reader(source.name, ctx, result, report)
        result.records = reader.records()
        return result


class _Reader:
    """The state of reading one report."""

    def __init__(self, name: str, ctx: ParseContext, result: ParseResult, report: _Report) -> None:
        self.name = name
        self.ctx = ctx
        self.result = result
        self.report = report
        self.skipped: collections.Counter[str] = collections.Counter()
        self.wall = _Walls()
        self.unit = "mg/dL"
        self.carb_factor = 1.0
        self.carb_unit = "g"
        if report.meter is not None:
            self.meter_header(report.meter)
        if report.pump is not None:
            self.register(PUMP_KEY, report.pump, "pump")

    def register(self, key: str, element: _Element, what: str) -> None:
        model = element.get("Name")
        serial = element.get("SN") or None
        self.result.devices[key] = DeviceInfo(
            manufacturer=MANUFACTURER,
            model=f"Accu-Chek {model}" if model else f"Accu-Chek {what}",
            serial=serial,
        )

    def meter_header(self, meter: _Element) -> None:
        """The meter's device, glucose unit and carbohydrate unit (refused when unknown)."""
        unit = _UNITS.get(meter.get("BGUnit").lower())
        if unit is None:
            if self.report.readings:
                msg = f"{self.name}: line {meter.line}: unknown blood glucose unit in BGUnit"
                raise MalformedFileError(msg)
            unit = "mg/dL"
        self.unit = unit
        carb = meter.get("CarbUnit")
        factor = _CARB_FACTORS.get(carb.lower()) if carb else 1.0
        if factor is None:
            if any(element.get("Carb") for element in self.report.readings):
                msg = f"{self.name}: line {meter.line}: unknown carbohydrate unit in CarbUnit"
                raise MalformedFileError(msg)
            factor = 1.0
        self.carb_factor = factor
        self.carb_unit = {"be": "BE", "ke": "KE"}.get(carb.lower(), "g")
        self.register(METER_KEY, meter, "meter")

    def reject(self, line: int, reason: str) -> None:
        self.result.rejected.append(RejectedRow(line, reason))

    def timed(self, elements: list[_Element]) -> list[tuple[_Element, int]]:
        """The elements with readable times, oldest first; the others are rejected."""
        rows: list[tuple[_Element, int]] = []
        for element in elements:
            wall = self.wall(element)
            if wall is None:
                empty = not element.get("Dt") or not element.get("Tm")
                self.reject(element.line, "no date or time" if empty else "unreadable date or time")
                continue
            rows.append((element, wall))
        return _chronological(rows)

    def records(self) -> Iterator[ParsedItem]:
        """Every record of the report: the meter's, then the pump's settings and log."""
        report = self.report
        if report.meter is not None:
            yield from self.meter_records(report.meter)
        if report.pump is not None:
            yield from self.settings(report.pump)
            yield from self.pump_records(report.pump)
        self.finish_notes()

    def finish_notes(self) -> None:
        """Say what was deliberately not stored."""
        words = {
            "control": "control-solution tests (they check the meter, not the patient)",
            "total": "daily insulin totals (sums of the doses stored)",
            "zero": "boluses of 0 U",
            "power": "pump power-on and power-off entries",
            "unknown": "pump log entries of a kind Glucoshare does not know",
        }
        for key, text in words.items():
            if self.skipped[key]:
                self.result.notes.append(f"not stored: {self.skipped[key]} {text}")
        if self.report.other_devices:
            self.result.notes.append(
                f"not read: {self.report.other_devices} further DEVICE or IP elements (only the first "
                "of each is read)"
            )

    # -- meter --------------------------------------------------------------------------------------

    def meter_records(self, meter: _Element) -> Iterator[ParsedRecord]:
        readings = []
        for element in self.report.readings:
            if element.get("Ctrl") not in ("", "0"):
                self.skipped["control"] += 1
                continue
            readings.append(element)
        clock = self.ctx.clock(f"smartpix|meter|{meter.get('SN')}")
        for element, wall in self.timed(readings):
            instant = clock.resolve_ms(wall)
            try:
                yield from self.reading(element, instant)
            except _RowError as exc:
                self.reject(element.line, str(exc))

    def reading(self, element: _Element, instant: tuple[int, int]) -> list[ParsedRecord]:
        """The records of one ``BG`` entry."""
        time_ms, offset = instant
        line = element.line
        out: list[ParsedRecord] = []
        text = element.get("Val")
        extra: dict[str, Any] = {}
        for attribute, key in (("Flg", "flags"), ("Evt", "event")):
            if element.get(attribute):
                extra[key] = element.get(attribute)
        factor = _FACTORS[self.unit]
        word = text.upper()
        if word in ("LO", "HI"):
            low, high = LIMITS[self.unit]
            written, mgdl, annotation = (low, LO_MGDL, "low") if word == "LO" else (high, HI_MGDL, "high")
            out.append(
                ParsedRecord(
                    "smbg",
                    "meter",
                    time_ms,
                    offset,
                    line,
                    METER_KEY,
                    mgdl,
                    written,
                    self.unit,
                    annotation=annotation,
                    payload=extra or None,
                )
            )
        elif text.strip("-"):
            value = _amount(element, "Val", "glucose value", _MAX_MGDL / factor)
            if value is None or value <= 0:
                msg = "glucose value is not positive"
                raise _RowError(msg)
            out.append(
                ParsedRecord(
                    "smbg",
                    "meter",
                    time_ms,
                    offset,
                    line,
                    METER_KEY,
                    value * factor,
                    value,
                    self.unit,
                    payload=extra or None,
                )
            )
        elif "event" in extra:
            event = extra["event"]
            out.append(
                ParsedRecord(
                    "deviceEvent",
                    "other",
                    time_ms,
                    offset,
                    line,
                    METER_KEY,
                    payload={"smartpix_event": event},
                    identity=event,
                )
            )
        carbs = _amount(element, "Carb", "carbohydrates", _MAX_CARBS_G / self.carb_factor)
        if carbs:
            grams = carbs * self.carb_factor
            out.append(
                ParsedRecord("food", "", time_ms, offset, line, METER_KEY, grams, carbs, self.carb_unit)
            )
        for slot in _INSULIN_SLOTS:
            units = _amount(element, slot, f"insulin {slot}", _MAX_UNITS)
            if units:
                out.append(
                    ParsedRecord("insulin", "unknown", time_ms, offset, line, METER_KEY, units, identity=slot)
                )
        return out

    # -- pump ---------------------------------------------------------------------------------------

    def settings(self, pump: _Element) -> Iterator[ParsedRecord]:
        """One ``pumpSettings`` with the basal profiles, at the report's time."""
        schedules: dict[str, list[dict[str, Any]]] = {}
        active = None
        for profile, slots in self.report.profiles:
            name = profile.get("Name")
            entries = _schedule(slots)
            if entries is None:
                self.reject(profile.line, "unreadable basal profile")
                return
            if not name or not entries:
                continue
            schedules[name] = entries
            if profile.get("Active").lower() in ("1", "yes", "true"):
                active = name
        if not schedules:
            return
        chosen = pump.get("ActiveProf")
        payload = {"active_schedule": chosen if chosen in schedules else active, "basal_schedules": schedules}
        wall = self.wall(pump)
        if wall is None:
            self.reject(pump.line, "unreadable date or time of the pump report")
            return
        try:
            settings = parse_pump_settings(payload, wall)
        except InvalidPumpSettingsError as exc:
            self.reject(pump.line, f"unreadable basal profile ({exc.field})")
            return
        time_ms, offset = self.ctx.clock(f"smartpix|settings|{pump.get('SN')}").resolve_ms(wall)
        yield ParsedRecord(
            "pumpSettings", "", time_ms, offset, pump.line, PUMP_KEY, payload=pump_settings_payload(settings)
        )

    def pump_records(self, pump: _Element) -> Iterator[ParsedRecord]:
        log = []
        for element in self.report.log:
            if element.tag == "BOLUS" and not element.get("Tm") and "total" in element.get("remark").lower():
                self.skipped["total"] += 1
            elif element.tag == "BASAL" and element.get("remark").lower().startswith("power"):
                self.skipped["power"] += 1
            elif element.tag not in ("BOLUS", "BASAL", "EVENT"):
                self.skipped["unknown"] += 1
            else:
                log.append(element)
        clock: LocalClock = self.ctx.clock(f"smartpix|pump|{pump.get('SN')}")
        for element, wall in self.timed(log):
            record = _maker(element.line, clock.resolve_ms(wall))
            try:
                if element.tag == "BOLUS":
                    yield from self.bolus(element, record)
                elif element.tag == "BASAL":
                    yield from self.basal(element, record)
                else:
                    yield from self.event(element, record)
            except _RowError as exc:
                self.reject(element.line, str(exc))

    def bolus(self, element: _Element, record: Callable[..., ParsedRecord]) -> list[ParsedRecord]:
        kind = element.get("type")
        remark = element.get("remark")
        payload: dict[str, Any] = {"bolus_type": kind}
        if kind == "Mul":
            match = _DUAL.search(remark)
            if match is None:
                msg = "dual bolus without its parts and duration"
                raise _RowError(msg)
            normal, extended = _number(match[1]), _number(match[2])
            if normal + extended <= 0:
                self.skipped["zero"] += 1
                return []
            payload |= {"normal_u": normal, "extended_u": extended}
            return [
                record(
                    "bolus", "dual", normal + extended, duration_ms=_minutes_ms(match, 3, 4), payload=payload
                )
            ]
        if kind not in ("Std", "Scr", "Ext"):
            msg = "unknown bolus type"
            raise _RowError(msg)
        amount = _amount(element, "amount", "bolus amount", _MAX_UNITS)
        if amount is None:
            msg = "bolus without an amount"
            raise _RowError(msg)
        if amount <= 0:
            self.skipped["zero"] += 1
            return []
        if kind == "Ext":
            match = _HOURS.search(remark)
            if match is None:
                msg = "extended bolus without a duration"
                raise _RowError(msg)
            return [
                record("bolus", "extended", amount, duration_ms=_minutes_ms(match, 1, 2), payload=payload)
            ]
        return [record("bolus", "normal", amount, payload=payload)]

    def basal(self, element: _Element, record: Callable[..., ParsedRecord]) -> list[ParsedRecord]:
        remark = element.get("remark")
        tbr = element.get("TBRinc") or element.get("TBRdec")
        profile = element.get("profile")

        def rate() -> float:
            value = _amount(element, "cbrf", "basal rate", _MAX_RATE)
            if value is None:
                msg = "basal entry without a rate"
                raise _RowError(msg)
            return value

        scheduled_payload = {"schedule": profile} if profile else None
        if remark.lower() == "stop":
            return [record("deviceEvent", "suspend"), record("basal", "suspend", 0.0)]
        if remark.lower() == "run":
            out = [record("deviceEvent", "resume")]
            if element.get("cbrf"):
                out.append(record("basal", "scheduled", rate(), payload=scheduled_payload))
            return out
        if remark.lower().startswith("tbr end"):
            return [
                record("basal", "scheduled", rate(), payload={"remark": remark, **(scheduled_payload or {})})
            ]
        if tbr:
            match = _PERCENT.fullmatch(tbr)
            if match is None:
                msg = "temporary basal without a percentage"
                raise _RowError(msg)
            percent = _number(match[1])
            if percent > _MAX_PERCENT:
                msg = "temporary basal percentage is out of range"
                raise _RowError(msg)
            duration = None
            if remark:
                hours = _HOURS.search(remark)
                if not remark.lower().startswith("dur") or hours is None:
                    msg = "unknown basal remark"
                    raise _RowError(msg)
                duration = _minutes_ms(hours, 1, 2)
            payload = {"percent": percent, "change": "increase" if element.get("TBRinc") else "decrease"}
            return [
                record(
                    "basal", "temp", rate(), duration_ms=duration, payload=payload, identity=f"{percent:g}%"
                )
            ]
        if remark:
            msg = "unknown basal remark"
            raise _RowError(msg)
        return [record("basal", "scheduled", rate(), payload=scheduled_payload)]

    @staticmethod
    def event(element: _Element, record: Callable[..., ParsedRecord]) -> list[ParsedRecord]:
        code = element.get("shortinfo")
        text = element.get("description")
        folded = text.lower()
        if _ALARM.fullmatch(code):
            payload = {"code": code, "alarm": _ALARMS.get(code), "text": text or None}
            return [record("deviceEvent", "alarm", payload=payload, identity=code)]
        prime = _PRIME.fullmatch(code)
        if prime is not None and "prime" in folded:
            volume = _number(prime[1])
            if volume > _MAX_UNITS:
                msg = "prime volume is out of range"
                raise _RowError(msg)
            return [record("deviceEvent", "prime", volume, payload={"target": "tubing"})]
        if "cartridge" in folded:
            return [record("deviceEvent", "reservoirChange")]
        if code or text:
            return [
                record(
                    "deviceEvent",
                    "other",
                    payload={"code": code or None, "text": text or None},
                    identity=code or text,
                )
            ]
        return []
