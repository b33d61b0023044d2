"""Nightscout documents ↔ canonical records (research/formats.md §11, research/nightscout.md §1).

Pure functions, shared by the Nightscout JSON importer (:mod:`glucoshare.ingest.nightscout`) and
a Nightscout-compatible API: a document of the ``entries``, ``treatments``, ``profile`` or
``devicestatus`` collection becomes a :class:`MappedDocument` (its :class:`MappedRecord` objects
plus what of it was deliberately not stored), and a :class:`MappedRecord` becomes a Nightscout
document again (:func:`nightscout_document`). Nothing here knows files, lines or the database.

Time
----
An instant comes from the document's epoch milliseconds or ISO text: entries ``date`` (then
``dateString``, ``sysTime``, ``mills``), treatments ``eventTime`` (which the Nightscout server puts
in place of ``created_at``), ``created_at``, ``timestamp``, ``date``, ``mills``; profiles
``startDate``, ``created_at``, ``mills``, ``date``. ISO text may end in ``Z``, ``+01:00``,
``+0100`` or ``+01``, use a space for ``T``, and carry any number of decimals; text **without an
offset is UTC**, as the Nightscout server itself reads it (``moment.parseZone``). The UTC offset
kept with the record is the document's ``utcOffset`` (minutes), else the offset written in its
ISO text, else the offset of the given time zone at that instant. An offset of 0 counts as not
given: Nightscout rewrites every ISO time to UTC (``Z``) and Loop uploads ``utcOffset: 0``
whatever the phone's zone (LoopKit/Loop#2308), so a 0 says nothing; where the zone is UTC+0 the
zone gives 0 anyway.

Entries
-------
``sgv`` (always mg/dL) → ``cbg`` ``sensor``; 39 is Dexcom's ``LOW`` and becomes 40 mg/dL with
annotation ``low`` (the written 39 kept as ``orig_value``); 0 to 38 are CGM error codes, not
readings, and are not stored. Nightscout has no ``HIGH`` code, so no reading is annotated
``high``. ``mbg`` → ``smbg`` ``meter``. ``cal`` (slope, intercept, scale of a sensor calibration)
is not stored. ``direction``, ``delta``, ``noise``, ``filtered``/``unfiltered`` and ``rssi`` are not
kept.

Treatments
----------
=========================================  =====================================================
``eventType``                              records
=========================================  =====================================================
``Meal Bolus``, ``Snack Bolus``,            ``insulin`` → ``bolus`` (``normal``; ``automated``
``Correction Bolus``, ``Bolus``,            when ``automatic``/``isSMB`` is true or ``type`` is
``Carb Correction``, ``<none>`` or none     ``SMB``; Loop's ``type`` ``square``/``dual`` →
                                            ``extended``/``dual`` with ``duration``; AAPS's
                                            ``type`` ``PRIMING`` → ``deviceEvent`` ``prime``);
                                            xDrip+'s ``insulinInjections`` → one ``insulin`` per
                                            pen injection instead (``rapid``/``long`` by the
                                            insulin's name, else ``unknown``);
                                            ``carbs`` → ``food``; a ``glucose`` of type
                                            ``Finger``/``Manual`` → ``smbg`` ``meter``/``manual``
``Combo Bolus``                             ``bolus`` ``dual`` (``extended`` when nothing is
                                            given now, ``normal`` when nothing is extended):
                                            value = ``enteredinsulin`` (the whole bolus), parts
                                            and ``duration`` kept
``Temp Basal``, ``Temp Basal Start``        ``basal`` ``temp`` (``automated`` when
                                            ``automatic``): value = ``absolute`` (else ``rate``)
                                            U/h, ``duration`` min; ``percent`` (a change: -30 is
                                            70 %) is kept as the percent of the scheduled rate,
                                            with no value when no rate is given
``BG Check``                                ``smbg``: ``Finger`` (or no type) → ``meter``,
                                            ``Manual`` → ``manual``; ``Sensor`` (a copy of a
                                            sensor reading) is not stored
``Calibration``                             ``smbg`` ``calibration``
``Site Change``                             ``deviceEvent`` ``siteChange``
``Insulin Change``                          ``deviceEvent`` ``reservoirChange``
``Sensor Start``, ``Sensor Change``         ``deviceEvent`` ``sensorStart``
``Sensor Stop``, ``Pump Battery Change``    ``deviceEvent`` ``other`` (``event`` in the payload)
``Suspend Pump`` / ``Resume Pump``          ``deviceEvent`` ``suspend`` / ``resume``
``Exercise``                                ``physicalActivity`` (``unknown``, or the
                                            ``intensity`` light/medium/heavy) with ``duration``
``Note``, ``Announcement``, ``Question``,   ``note`` (text = ``notes``)
``D.A.D. Alert``
``Bolus Wizard`` (AndroidAPS)               ``wizard``: value = carbs; ``insulin`` as the estimate
                                            and the glucose (with its ``units``) as BG input
=========================================  =====================================================

The ``notes`` text of any other treatment becomes a ``note`` of its own (free text is sealed
only in notes). Temporary targets and overrides, profile switches and other loop states are not
stored (:data:`EVENTS_NOT_STORED`), nor are event types not listed here, temporary basal ends,
documents marked deleted (``isValid: false``) and treatments with nothing to store. Glucose in a
treatment needs its ``units`` (``mg/dl`` or ``mmol``); it is never guessed: a BG Check without them
is refused, the BG field beside a bolus, carbs or another event is left out (tconnectsync sends
boluses with a fingerstick and no units), and so is the bolus calculator's BG input. Glucose in
a bolus or carbs treatment of type ``Sensor`` (or of no type) is a copy of a sensor reading and is
not stored.

Profiles and device status
--------------------------
A ``profile`` document (``store`` of named profiles, each with ``basal``, ``carbratio``,
``sens``, ``target_low``, ``target_high`` as ``{time: "HH:MM", timeAsSeconds, value}`` lists in
the profile's ``units``, and ``dia``) → one ``pumpSettings`` record at its ``startDate``: every
named profile's basal schedule, ``defaultProfile`` as the active one, and the default profile's
carb ratios, sensitivities (mg/dL per U), targets (mg/dL; ``target_low`` and ``target_high`` merged
by time) and insulin duration; Loop's ``loopSettings`` maximum bolus and basal rate. The payload is
checked by :func:`glucoshare.analytics.settings.parse_pump_settings`. ``devicestatus`` documents
(loop, pump and phone state) are not stored: the temporary basals and boluses they report come as
treatments, and the rest has no canonical record.

Identity
--------
Nightscout treats documents with the same ``_id`` (or ``identifier``), or the same ``created_at``
and ``eventType``, as one treatment, and entries with the same time and ``type`` as one entry.
Records here carry no Nightscout id: type, subtype, instant, value and device already make the
natural key of a record, so a document uploaded twice, saved twice (in any layout) or posted
again by its uploader maps to the same records and is stored once; the same event uploaded by two
apps belongs to two devices and is kept twice (Nightscout keeps one only when both wrote the same
``created_at`` and ``eventType``). ``identity`` completes the key only where those do not tell two
records apart: a note's text (with its category), the event of a
``deviceEvent`` ``other``, an injected insulin's name, a temporary basal's percent when it has no
rate.

Devices
-------
:attr:`MappedRecord.device` is the uploader's string: the entry's ``device``; for treatments and
profiles the ``device`` field, else ``enteredBy`` or ``app`` when it names a known app
(``enteredBy`` is often a person's nickname typed into the careportal, which is not kept), else
empty. :func:`device_info` turns it into a :class:`~glucoshare.ingest.base.DeviceInfo` (module
docs of :mod:`glucoshare.ingest.nightscout` and ``docs/formats/nightscout.md`` list the rules).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any, Final

from glucoshare.analytics.settings import InvalidPumpSettingsError, parse_pump_settings
from glucoshare.ingest.base import DeviceInfo
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

Document = dict[str, Any]
"""A Nightscout document as JSON decodes it."""

SENSOR_LOW_CODE: Final = 39
"""The ``sgv`` of Dexcom's ``LOW`` (below 40 mg/dL); smaller values are CGM error codes."""
SENSOR_LOW_MGDL: Final = 40.0
MAX_GLUCOSE_MGDL: Final = 1000.0
"""Glucose above this is no reading (the document is refused)."""
MAX_UTC_OFFSET_MIN: Final = 18 * 60
MODEL_SOURCE_CHARS: Final = 60
"""How much of an uploader's string goes into a device's model."""

COLLECTIONS: Final = ("entries", "treatments", "profile", "devicestatus")
"""The Nightscout collections a document may belong to."""

EVENTS_NOT_STORED: Final[Mapping[str, str]] = {
    "Temporary Target": "a temporary glucose target of the loop",
    "Temporary Target Cancel": "the end of a temporary target",
    "Temporary Override": "a Loop override of targets and insulin needs",
    "Temporary Override Cancel": "the end of an override",
    "Profile Switch": "a switch between stored profiles; the profile documents hold the settings",
    "OpenAPS Offline": "a pause of the loop",
}
"""Treatment event types that are known and deliberately not stored, with the reason."""

IGNORED_REASONS: Final[Mapping[str, str]] = {
    "cal": "calibration entries not stored (type cal: the sensor's calibration parameters, not "
    "readings): {n}",
    "sgv_code": "sgv entries not stored because they hold a CGM error code (below 39 mg/dL) instead of "
    "a reading: {n}",
    "entry_type": "entries of another type than sgv, mbg or cal not stored: {n}",
    "devicestatus": "devicestatus documents not stored (loop, pump and phone state; the temporary "
    "basals and boluses they report come as treatments): {n}",
    "deleted": "documents marked deleted (isValid false) not stored: {n}",
    "bg_sensor": "BG Check treatments of glucose type Sensor not stored (a copy of a sensor reading): {n}",
    "temp_basal_end": "temporary basal ends not stored (Temp Basal End, or Temp Basal lasting 0 "
    "minutes; the temporary basal before each keeps its planned duration): {n}",
    "empty": "treatments without insulin, carbohydrate, glucose or text not stored: {n}",
    "glucose_units": "glucose readings beside a bolus or carbs without units (mg/dl or mmol) not stored: {n}",
    "event_other": "treatments of an event type Glucoshare does not know not stored: {n}",
    "profile_other": "profile documents with further named profiles, of which only the basal schedules "
    "were kept (a pumpSettings record holds one set of ratios, sensitivities and targets: the default "
    "profile's): {n}",
    "unknown": "documents of no known Nightscout collection not stored: {n}",
    "unknown_key": "top-level parts other than entries, treatments, devicestatus and profile not read: {n}",
}
"""What :attr:`MappedDocument.ignored` keys mean; ``event:<eventType>`` keys use
:data:`EVENTS_NOT_STORED`."""

_QUARTER_MS: Final = 900_000
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS: Final = dt.timedelta(milliseconds=1)
LAST_MS: Final = 4_102_444_800_000  # 2100-01-01T00:00Z
"""Instants from here on (UTC ms) are not a date a Nightscout client writes."""
_DIGITS = re.compile(r"^\s*-?\d+(?:\.\d*)?\s*$")
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")

_BOLUS_EVENTS: Final = frozenset(
    {"meal bolus", "snack bolus", "correction bolus", "bolus", "carb correction", "<none>", "", "smb"}
)
_TEMP_BASAL_EVENTS: Final = frozenset({"temp basal", "temp basal start"})
_NOTE_CATEGORIES: Final[Mapping[str, str | None]] = {
    "note": None,
    "announcement": "announcement",
    "question": "question",
    "d.a.d. alert": "D.A.D. Alert",
}
_NOTE_EVENTS: Final[Mapping[str | None, str]] = {
    None: "Note",
    "announcement": "Announcement",
    "question": "Question",
    "D.A.D. Alert": "D.A.D. Alert",
}
_DEVICE_EVENTS: Final[Mapping[str, tuple[str, str | None]]] = {
    "site change": ("siteChange", None),
    "insulin change": ("reservoirChange", None),
    "sensor start": ("sensorStart", None),
    "sensor change": ("sensorStart", None),
    "sensor stop": ("other", "sensorStop"),
    "pump battery change": ("other", "pumpBatteryChange"),
    "suspend pump": ("suspend", None),
    "resume pump": ("resume", None),
}
_DEVICE_EVENT_NAMES: Final[Mapping[tuple[str, str | None], str]] = {
    ("siteChange", None): "Site Change",
    ("reservoirChange", None): "Insulin Change",
    ("sensorStart", None): "Sensor Start",
    ("other", "sensorStop"): "Sensor Stop",
    ("other", "pumpBatteryChange"): "Pump Battery Change",
    ("suspend", None): "Suspend Pump",
    ("resume", None): "Resume Pump",
}
_INTENSITIES: Final = frozenset({"light", "medium", "heavy"})
_RAPID_INSULINS: Final = (
    "novorapid", "novolog", "humalog", "fiasp", "apidra", "lyumjev", "admelog", "actrapid",
    "trurapi", "afrezza", "lispro", "aspart", "glulisine", "regular",
)  # fmt: skip
_LONG_INSULINS: Final = (
    "lantus", "levemir", "tresiba", "toujeo", "basaglar", "abasaglar", "semglee", "glargine",
    "detemir", "degludec", "insulatard", "nph",
)  # fmt: skip
_DEVICESTATUS_KEYS: Final = frozenset(
    {"openaps", "loop", "pump", "uploader", "uploaderBattery", "xdripjs", "override", "configuration"}
)
_PROFILE_UNITS: Final[Mapping[str, str]] = {
    "mg/dl": "mg/dL",
    "mgdl": "mg/dL",
    "mg": "mg/dL",
    "mmol": "mmol/L",
    "mmol/l": "mmol/L",
    "mmoll": "mmol/L",
}


class NightscoutDocumentError(ValueError):
    """A document cannot be read; the message names the field at fault, never its content."""


@dataclasses.dataclass(frozen=True, slots=True)
class MappedRecord:
    """One canonical record mapped from (or to be written as) a Nightscout document.

    The fields mean what they mean in :class:`~glucoshare.ingest.base.ParsedRecord` (``value`` in
    the canonical unit of ``type``, ``time_ms`` UTC epoch milliseconds, ``utc_offset_min`` the
    local offset); ``device`` is the uploader's string the record came from (empty: none named;
    :func:`device_info` gives its device).
    """

    type: str
    subtype: str
    time_ms: int
    utc_offset_min: int
    device: str = ""
    value: float | None = None
    orig_value: float | None = None
    orig_unit: str | None = None
    duration_ms: int | None = None
    annotation: str | None = None
    payload: dict[str, Any] | None = None
    identity: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class MappedDocument:
    """What one Nightscout document holds: its records and what of it was not stored.

    ``ignored`` holds keys of :data:`IGNORED_REASONS` (or ``event:<eventType>`` for
    :data:`EVENTS_NOT_STORED`), one per part of the document that was deliberately not stored.
    """

    records: tuple[MappedRecord, ...] = ()
    ignored: tuple[str, ...] = ()


def describe_ignored(counts: Mapping[str, int]) -> list[str]:
    """Sentences for the parts not stored, from counts of :attr:`MappedDocument.ignored` keys."""
    out: list[str] = []
    events = {k.removeprefix("event:"): n for k, n in counts.items() if k.startswith("event:") and n}
    for key, n in counts.items():
        if n and not key.startswith("event:"):
            out.append(IGNORED_REASONS[key].format(n=n))
    if events:
        parts = ", ".join(f"{n} {name} ({EVENTS_NOT_STORED[name]})" for name, n in sorted(events.items()))
        out.append(f"treatments of loop states not stored: {sum(events.values())} ({parts})")
    return out


# -- numbers, texts and times ---------------------------------------------------------------------


def _number(doc: Mapping[str, Any], key: str) -> float | None:
    """A number field (numbers or numeric text, as clients send both); ``None`` when absent."""
    value = doc.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        msg = f"{key} is not a number"
        raise NightscoutDocumentError(msg)
    if isinstance(value, int | float) or (isinstance(value, str) and _DIGITS.match(value)):
        number = float(value)
    else:
        msg = f"{key} is not a number"
        raise NightscoutDocumentError(msg)
    if not math.isfinite(number):
        msg = f"{key} is not a finite number"
        raise NightscoutDocumentError(msg)
    return number


def _amount(doc: Mapping[str, Any], key: str) -> float | None:
    """A non-negative amount; 0 counts as absent (the Nightscout server drops empty amounts too)."""
    number = _number(doc, key)
    if number is not None and number < 0:
        msg = f"{key} is negative"
        raise NightscoutDocumentError(msg)
    return number or None


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _offset_of(moment: dt.datetime) -> int | None:
    offset = moment.utcoffset()
    return None if offset is None else int(offset.total_seconds() // 60)


def parse_instant(value: object, field: str = "date") -> tuple[int, int | None]:
    """``(UTC epoch ms, offset written in minutes or None)`` of a Nightscout time value.

    Epoch milliseconds (a number or digits) or ISO 8601 text (``Z``, ``±hh:mm``, ``±hhmm``, ``±hh``;
    ``T`` or a space; any decimals); ISO text without an offset is UTC. Raises
    :class:`NightscoutDocumentError` naming ``field``, also for an instant before 1970 or in
    2100 or later.
    """
    time_ms, written = _instant(value, field)
    if not 0 <= time_ms < LAST_MS:
        msg = f"{field} is outside the years 1970 to 2099"
        raise NightscoutDocumentError(msg)
    return time_ms, written


def _instant(value: object, field: str) -> tuple[int, int | None]:
    if isinstance(value, bool):
        msg = f"{field} is not a date"
        raise NightscoutDocumentError(msg)
    if isinstance(value, int):
        return value, None
    if isinstance(value, float):
        if not math.isfinite(value):
            msg = f"{field} is not a date"
            raise NightscoutDocumentError(msg)
        return round(value), None
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.match(text):
            number = float(text)
            if not math.isfinite(number):  # more digits than a float holds
                msg = f"{field} is not a date"
                raise NightscoutDocumentError(msg)
            return round(number), None
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            msg = f"{field} is not an ISO 8601 date and time"
            raise NightscoutDocumentError(msg) from None
        written = _offset_of(moment)
        if written is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return (moment - _EPOCH) // _MS, written
    msg = f"{field} is not a date"
    raise NightscoutDocumentError(msg)


def _exact_offset(zone: zoneinfo.ZoneInfo, time_ms: int) -> int:
    offset = dt.datetime.fromtimestamp(time_ms / 1000, tz=zone).utcoffset()
    return 0 if offset is None else int(offset.total_seconds() // 60)


@functools.lru_cache(maxsize=8192)
def _quarter_offset(zone: zoneinfo.ZoneInfo, quarter: int) -> int | None:
    """The offset of a quarter hour, or ``None`` when it changes inside it."""
    start = _exact_offset(zone, quarter * _QUARTER_MS)
    end = _exact_offset(zone, quarter * _QUARTER_MS + _QUARTER_MS - 1)
    return start if start == end else None


def zone_offset_min(zone: zoneinfo.ZoneInfo, time_ms: int) -> int:
    """The UTC offset (minutes) of ``zone`` at an instant (cached by quarter hour)."""
    offset = _quarter_offset(zone, time_ms // _QUARTER_MS)
    return _exact_offset(zone, time_ms) if offset is None else offset


def _utc_offset_field(doc: Mapping[str, Any]) -> int | None:
    """The document's ``utcOffset`` in minutes when it is a usable, non-zero offset."""
    value = doc.get("utcOffset")
    if type(value) is int:
        minutes = value
    else:
        try:
            number = _number(doc, "utcOffset")
        except NightscoutDocumentError:
            return None
        if number is None or not number.is_integer():
            return None
        minutes = int(number)
    return minutes if minutes and abs(minutes) <= MAX_UTC_OFFSET_MIN else None


def _offset(doc: Mapping[str, Any], time_ms: int, written: int | None, zone: zoneinfo.ZoneInfo) -> int:
    """The record's UTC offset: ``utcOffset``, else the ISO text's, else the zone's (module notes)."""
    field = _utc_offset_field(doc)
    if field is not None:
        return field
    if written and abs(written) <= MAX_UTC_OFFSET_MIN:
        return written
    return zone_offset_min(zone, time_ms)


def entry_offset(doc: Mapping[str, Any], time_ms: int, zone: zoneinfo.ZoneInfo) -> int:
    """The UTC offset (minutes) of a document timed by epoch milliseconds.

    Its ``utcOffset``, else the offset its ``dateString`` is written with, else the zone's at
    ``time_ms`` (an offset of 0 counts as not given; module notes).
    """
    written = None
    text = doc.get("dateString")
    if isinstance(text, str) and _utc_offset_field(doc) is None:
        try:
            written = parse_instant(text, "dateString")[1]
        except NightscoutDocumentError:
            written = None
    return _offset(doc, time_ms, written, zone)


def _document_time(
    doc: Mapping[str, Any], fields: tuple[str, ...], zone: zoneinfo.ZoneInfo
) -> tuple[int, int]:
    """``(UTC ms, offset)`` from the first present of ``fields``."""
    for field in fields:
        value = doc.get(field)
        if value is None or value == "":
            continue
        time_ms, written = parse_instant(value, field)
        if written is None:
            return time_ms, entry_offset(doc, time_ms, zone)
        return time_ms, _offset(doc, time_ms, written, zone)
    msg = f"no date ({', '.join(fields)})"
    raise NightscoutDocumentError(msg)


_ENTRY_TIME = ("date", "dateString", "sysTime", "mills")
_TREATMENT_TIME = ("eventTime", "created_at", "timestamp", "date", "mills")
_PROFILE_TIME = ("startDate", "created_at", "mills", "date")


def _glucose_unit(doc: Mapping[str, Any]) -> str:
    """``mg/dL`` or ``mmol/L`` from a treatment's ``units``; refuses to guess."""
    units = doc.get("units")
    if units is None or units == "":
        msg = "glucose without units (mg/dl or mmol)"
        raise NightscoutDocumentError(msg)
    unit = _PROFILE_UNITS.get(str(units).strip().lower()) if isinstance(units, str) else None
    if unit is None:
        msg = "units is not mg/dl or mmol"
        raise NightscoutDocumentError(msg)
    return unit


def _glucose(doc: Mapping[str, Any], key: str = "glucose") -> tuple[float, float, str] | None:
    """``(mg/dL, value as written, unit)`` of a treatment's glucose; ``None`` when there is none."""
    written = _number(doc, key)
    if not written:
        return None
    unit = _glucose_unit(doc)
    mgdl = written * MGDL_PER_MMOLL if unit == "mmol/L" else written
    if mgdl <= 0 or mgdl > MAX_GLUCOSE_MGDL:
        msg = f"{key} is outside 0 to {MAX_GLUCOSE_MGDL:g} mg/dL"
        raise NightscoutDocumentError(msg)
    return mgdl, written, unit


def _is_deleted(doc: Mapping[str, Any]) -> bool:
    return doc.get("isValid") is False


# -- devices --------------------------------------------------------------------------------------

_CGM_RULES: Final[tuple[tuple[re.Pattern[str], str, str], ...]] = (
    (re.compile(r"share2|dexcomshare|dexcom.?share"), "Dexcom", "Share"),
    (re.compile(r"dexcom|wixel|g4share"), "Dexcom", ""),
    (re.compile(r"libre|limitter|blucon|abbott"), "Abbott", "FreeStyle Libre"),
    (re.compile(r"medtronic|minimed|carelink|clfollower|guardian|6[47]0g|780g"), "Medtronic", ""),
    (re.compile(r"eversense|senseonics"), "Senseonics", "Eversense"),
    (re.compile(r"medtrum"), "Medtrum", "CGM"),
    (re.compile(r"tconnect|tandem"), "Tandem", "t:slim"),
    (re.compile(r"omnipod"), "Insulet", "Omnipod"),
)
_APP_RULES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"androidaps|^aaps\b|openaps://androidaps"), "AndroidAPS"),
    (re.compile(r"^openaps|oref0"), "OpenAPS"),
    (re.compile(r"^loop\b|^loop://|loopkit"), "Loop"),
    (re.compile(r"^trio\b|freeaps|^iaps\b"), "Trio"),
    (re.compile(r"xdrip"), "xDrip+"),
    (re.compile(r"^spike\b"), "Spike"),
    (re.compile(r"nightscout"), "Nightscout"),
)
_DEXCOM_MODELS = re.compile(r"g\s?([4-7])|dexcom\s?one")
_LIBRE_VERSION = re.compile(r"libre\s?-?([23])")
_MEDTRONIC_MODELS: Final[Mapping[str, str]] = {
    "640g": "MiniMed 640G",
    "670g": "MiniMed 670G",
    "780g": "MiniMed 780G",
    "guardian": "Guardian",
}


def _cgm(source: str) -> tuple[str, str] | None:
    """``(manufacturer, model)`` of a CGM or pump system an uploader's string names."""
    folded = source.lower()
    for pattern, manufacturer, product in _CGM_RULES:
        if not pattern.search(folded):
            continue
        model = product
        if manufacturer == "Dexcom" and not product:
            found = _DEXCOM_MODELS.search(folded)
            model = "CGM" if found is None else (f"G{found[1]}" if found[1] else "ONE")
        elif manufacturer == "Abbott":
            found = _LIBRE_VERSION.search(folded)
            model = product if found is None else f"{product} {found[1]}"
        elif manufacturer == "Medtronic":
            model = next((m for key, m in _MEDTRONIC_MODELS.items() if key in folded), "CareLink")
        return manufacturer, model
    return None


def _app(source: str) -> str | None:
    folded = source.lower()
    return next((name for pattern, name in _APP_RULES if pattern.search(folded)), None)


def device_info(source: str) -> DeviceInfo:
    """The device of an uploader's string (``device``, ``enteredBy`` or ``app``).

    A CGM or pump the string names gives manufacturer and model (``xDrip-DexcomG6`` → Dexcom,
    ``G6``; ``nightscout-librelink-up`` → Abbott, ``FreeStyle Libre``; ``share2`` → Dexcom,
    ``Share``); else a known app is the manufacturer (``loop://iPhone`` → Loop,
    ``openaps://...`` → OpenAPS or AndroidAPS, ``Trio``, ``xDrip+``); else ``Nightscout``. The
    string itself completes the model, ``G6 (xDrip-DexcomG6)``, so each uploader stays a device of
    its own; no serial (the string is not unique to one patient). An empty string is the one
    ``Nightscout`` device of everything entered without a device.
    """
    source = source.strip()
    if not source:
        return DeviceInfo(manufacturer="Nightscout", model="Nightscout", serial=None)
    shown = source[:MODEL_SOURCE_CHARS]
    cgm = _cgm(source)
    if cgm is not None:
        return DeviceInfo(manufacturer=cgm[0], model=f"{cgm[1]} ({shown})", serial=None)
    app = _app(source)
    if app is not None:
        return DeviceInfo(manufacturer=app, model=f"{app} ({shown})", serial=None)
    return DeviceInfo(manufacturer="Nightscout", model=shown, serial=None)


def known_source(text: str) -> bool:
    """True when an ``enteredBy``/``app`` text names a known uploader app or device (not a person)."""
    return bool(text) and (_cgm(text) is not None or _app(text) is not None)


def treatment_source(doc: Mapping[str, Any]) -> str:
    """The uploader string of a treatment or profile: ``device``, else a known ``enteredBy`` or ``app``."""
    device = _text(doc.get("device"))
    if device:
        return device
    for key in ("enteredBy", "app"):
        text = _text(doc.get(key))
        if known_source(text):
            return text
    return ""


# -- collections ----------------------------------------------------------------------------------


def document_collection(doc: Mapping[str, Any]) -> str | None:
    """The collection a document belongs to, from its fields; ``None`` when none fits."""
    if "eventType" in doc:
        return "treatments"
    kind = doc.get("type")
    if "sgv" in doc or "mbg" in doc or kind in ("sgv", "mbg", "cal"):
        return "entries"
    if isinstance(doc.get("store"), dict):
        return "profile"
    if _DEVICESTATUS_KEYS.intersection(doc):
        return "devicestatus"
    if "created_at" in doc and ("insulin" in doc or "carbs" in doc):
        return "treatments"
    return None


def map_document(collection: str | None, doc: Mapping[str, Any], zone: zoneinfo.ZoneInfo) -> MappedDocument:
    """Map a document of ``collection`` (``None``: decided from its fields, :func:`document_collection`)."""
    kind = collection or document_collection(doc)
    if kind == "entries":
        return entry_records(doc, zone)
    if kind == "treatments":
        return treatment_records(doc, zone)
    if kind == "profile":
        return profile_records(doc, zone)
    if kind == "devicestatus":
        return devicestatus_records(doc, zone)
    return MappedDocument(ignored=("unknown",))


# -- entries --------------------------------------------------------------------------------------


def sgv_reading(value: float) -> tuple[float, str | None] | None:
    """``(mg/dL, annotation)`` of an ``sgv``; ``None`` for a CGM error code (0 to 38).

    39 is Dexcom's ``LOW``: 40 mg/dL annotated ``low``. Raises for a negative value or one above
    :data:`MAX_GLUCOSE_MGDL`.
    """
    if value < 0:
        msg = "sgv is negative"
        raise NightscoutDocumentError(msg)
    if value > MAX_GLUCOSE_MGDL:
        msg = f"sgv is above {MAX_GLUCOSE_MGDL:g} mg/dL"
        raise NightscoutDocumentError(msg)
    if value < SENSOR_LOW_CODE:
        return None
    if value < SENSOR_LOW_MGDL:
        return SENSOR_LOW_MGDL, "low"
    return value, None


def entry_records(doc: Mapping[str, Any], zone: zoneinfo.ZoneInfo) -> MappedDocument:
    """An ``entries`` document: ``sgv`` → ``cbg``, ``mbg`` → ``smbg`` ``meter``; ``cal`` not stored.

    ``zone`` gives the offset where the document gives none. Raises
    :class:`NightscoutDocumentError` for an unreadable document.
    """
    if _is_deleted(doc):
        return MappedDocument(ignored=("deleted",))
    kind = doc.get("type")
    if kind is None:
        kind = "sgv" if "sgv" in doc else "mbg" if "mbg" in doc else ""
    kind = kind.lower() if isinstance(kind, str) else ""
    if kind == "cal":
        return MappedDocument(ignored=("cal",))
    if kind not in ("sgv", "mbg"):
        return MappedDocument(ignored=("entry_type",))
    time_ms, offset = _document_time(doc, _ENTRY_TIME, zone)
    device = _text(doc.get("device"))
    written = _number(doc, kind)
    if written is None:
        msg = f"{kind} is missing"
        raise NightscoutDocumentError(msg)
    if kind == "sgv":
        reading = sgv_reading(written)
        if reading is None:
            return MappedDocument(ignored=("sgv_code",))
        value, annotation = reading
        record = MappedRecord(
            "cbg", "sensor", time_ms, offset, device, value, written, "mg/dL", annotation=annotation
        )
        return MappedDocument((record,))
    if written <= 0 or written > MAX_GLUCOSE_MGDL:
        msg = f"mbg is outside 0 to {MAX_GLUCOSE_MGDL:g} mg/dL"
        raise NightscoutDocumentError(msg)
    return MappedDocument(
        (MappedRecord("smbg", "meter", time_ms, offset, device, written, written, "mg/dL"),)
    )


# -- treatments -----------------------------------------------------------------------------------


def _duration_ms(doc: Mapping[str, Any]) -> int | None:
    minutes = _number(doc, "duration")
    if minutes is None:
        return None
    if minutes < 0:
        msg = "duration is negative"
        raise NightscoutDocumentError(msg)
    return round(minutes * 60_000)


def _insulin_kind(name: str) -> str:
    folded = name.lower()
    if any(word in folded for word in _RAPID_INSULINS):
        return "rapid"
    if any(word in folded for word in _LONG_INSULINS):
        return "long"
    return "unknown"


def _injections(value: object) -> list[tuple[str, float]]:
    """xDrip+'s ``insulinInjections`` (JSON text or a list of ``{insulin, units}``)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply for the decoder
            msg = "insulinInjections is not JSON"
            raise NightscoutDocumentError(msg) from None
    if not isinstance(value, list):
        msg = "insulinInjections is not a list"
        raise NightscoutDocumentError(msg)
    out: list[tuple[str, float]] = []
    for item in value:
        if not isinstance(item, dict):
            msg = "insulinInjections holds an entry that is not an object"
            raise NightscoutDocumentError(msg)
        units = _amount(item, "units")
        if units:
            out.append((_text(item.get("insulin")), units))
    return out


class _Builder:
    """Collects the records of one treatment (same instant and device)."""

    def __init__(self, doc: Mapping[str, Any], zone: zoneinfo.ZoneInfo) -> None:
        self.doc = doc
        self.time_ms, self.offset = _document_time(doc, _TREATMENT_TIME, zone)
        self.device = treatment_source(doc)
        self.records: list[MappedRecord] = []
        self.ignored: list[str] = []

    def add(self, type_: str, subtype: str, value: float | None = None, **fields: Any) -> None:  # noqa: ANN401
        self.records.append(
            MappedRecord(type_, subtype, self.time_ms, self.offset, self.device, value, **fields)
        )

    def glucose(self, subtype: str, key: str = "glucose") -> None:
        glucose = _glucose(self.doc, key)
        if glucose is not None:
            mgdl, written, unit = glucose
            self.add("smbg", subtype, mgdl, orig_value=written, orig_unit=unit)

    def note(self, text: str, category: str | None = None) -> None:
        payload: dict[str, Any] = {"text": text}
        if category is not None:
            payload["category"] = category
        self.add("note", "", payload=payload, identity=text if category is None else f"{category}: {text}")

    def notes(self) -> None:
        text = _text(self.doc.get("notes"))
        if text:
            self.note(text)

    def done(self) -> MappedDocument:
        if not self.records and not self.ignored:
            self.ignored.append("empty")
        return MappedDocument(tuple(self.records), tuple(self.ignored))


def _bolus(b: _Builder, event: str) -> None:
    """Insulin, carbs and a fingerstick of the bolus and carbs family of event types."""
    doc = b.doc
    injections = doc.get("insulinInjections")
    if injections not in (None, "", []):
        for name, units in _injections(injections):
            named = {"insulin_name": name} if name else None
            b.add("insulin", _insulin_kind(name), units, payload=named, identity=name)
    else:
        insulin = _amount(doc, "insulin")
        if insulin is not None:
            kind = _text(doc.get("type")).lower()
            if kind == "priming":
                b.add("deviceEvent", "prime", insulin, payload={"prime_type": "PRIMING"})
            else:
                automated = doc.get("automatic") is True or doc.get("isSMB") is True or kind == "smb"
                subtype = {"square": "extended", "dual": "dual"}.get(kind, "normal")
                bolus: dict[str, Any] = {"event_type": event}
                programmed = _amount(doc, "programmed")
                if programmed is not None and programmed != insulin:
                    bolus["programmed"] = programmed
                duration = _duration_ms(doc) if subtype != "normal" else None
                b.add(
                    "bolus",
                    "automated" if automated else subtype,
                    insulin,
                    duration_ms=duration,
                    payload=bolus,
                )
    carbs = _amount(doc, "carbs")
    if carbs is not None:
        food: dict[str, Any] = {"event_type": event}
        for key, name in (("absorptionTime", "absorption_min"), ("protein", "protein_g"), ("fat", "fat_g")):
            amount = _amount(doc, key)
            if amount is not None:
                food[name] = amount
        b.add("food", "", carbs, payload=food)
    _fingerstick(b)


def _combo_bolus(b: _Builder) -> None:
    """Nightscout's careportal Combo Bolus: ``insulin`` now plus ``relative`` U/h over ``duration``."""
    doc = b.doc
    now = _number(doc, "insulin") or 0.0
    duration = _duration_ms(doc)
    total = _amount(doc, "enteredinsulin")
    if total is None:
        relative = _amount(doc, "relative") or 0.0
        total = now + relative * (duration or 0) / 3_600_000
    if now < 0 or now > total + 1e-9:
        msg = "insulin of a Combo Bolus is not part of enteredinsulin"
        raise NightscoutDocumentError(msg)
    if total:
        extended = total - now if total - now > 1e-9 else 0.0  # noqa: PLR2004 - float noise
        subtype = "dual" if now and extended else ("normal" if now else "extended")
        payload = {"event_type": "Combo Bolus", "normal_u": now, "extended_u": extended}
        b.add("bolus", subtype, total, duration_ms=duration, payload=payload)
    carbs = _amount(doc, "carbs")
    if carbs is not None:
        b.add("food", "", carbs, payload={"event_type": "Combo Bolus"})


def _temp_basal(b: _Builder) -> None:
    doc = b.doc
    duration = _duration_ms(doc)
    rate = _number(doc, "absolute")
    if rate is None:
        rate = _number(doc, "rate")
    change = _number(doc, "percent")
    if duration == 0:
        b.ignored.append("temp_basal_end")
        return
    if rate is None and change is None:
        msg = "temp basal without absolute, rate or percent"
        raise NightscoutDocumentError(msg)
    if rate is not None and rate < 0:
        msg = "temp basal rate is negative"
        raise NightscoutDocumentError(msg)
    payload = None if change is None else {"percent": 100.0 + change}
    identity = "" if rate is not None or change is None else f"percent={100.0 + change:g}"
    subtype = "automated" if doc.get("automatic") is True else "temp"
    b.add("basal", subtype, rate, duration_ms=duration, payload=payload, identity=identity)


def _wizard(b: _Builder) -> None:
    doc = b.doc
    payload: dict[str, Any] = {"estimate": _amount(doc, "insulin"), "bg_input": None}
    if doc.get("units"):
        glucose = _glucose(doc)
        payload["bg_input"] = None if glucose is None else glucose[0]
    b.add("wizard", "", _amount(doc, "carbs"), payload=payload)


def treatment_records(doc: Mapping[str, Any], zone: zoneinfo.ZoneInfo) -> MappedDocument:
    """A ``treatments`` document as records (module notes list the event types).

    ``zone`` gives the offset where the document gives none. Raises
    :class:`NightscoutDocumentError` for an unreadable document.
    """
    if _is_deleted(doc):
        return MappedDocument(ignored=("deleted",))
    raw_event = doc.get("eventType")
    event = raw_event.strip() if isinstance(raw_event, str) else "<none>"
    folded = event.lower()
    if event in EVENTS_NOT_STORED:
        return MappedDocument(ignored=(f"event:{event}",))
    if folded == "temp basal end":
        return MappedDocument(ignored=("temp_basal_end",))
    b = _Builder(doc, zone)
    glucose_read = True  # the event's own mapping reads (or deliberately skips) its glucose
    if folded in _BOLUS_EVENTS:
        _bolus(b, event or "<none>")
    elif folded == "combo bolus":
        _combo_bolus(b)
        glucose_read = False
    elif folded in _TEMP_BASAL_EVENTS:
        _temp_basal(b)
        glucose_read = False
    elif folded == "bg check":
        kind = _text(doc.get("glucoseType")).lower()
        if kind == "sensor":
            b.ignored.append("bg_sensor")
        else:
            b.glucose("manual" if kind == "manual" else "meter")
    elif folded == "calibration":
        b.glucose("calibration")
    elif folded in _DEVICE_EVENTS:
        _device_event(b, folded)
        glucose_read = False
    elif folded == "exercise":
        intensity = _text(doc.get("intensity")).lower()
        subtype = intensity if intensity in _INTENSITIES else "unknown"
        b.add("physicalActivity", subtype, duration_ms=_duration_ms(doc))
        glucose_read = False
    elif folded in _NOTE_CATEGORIES:
        category = _NOTE_CATEGORIES[folded]
        text = _text(doc.get("notes"))
        if text or category == "D.A.D. Alert":
            b.note(text or event, category)
        _fingerstick(b)
        return b.done()
    elif folded == "bolus wizard":
        _wizard(b)
    else:
        return MappedDocument(ignored=("event_other",))
    if not glucose_read:
        _fingerstick(b)
    b.notes()
    return b.done()


def _fingerstick(b: _Builder) -> None:
    """The careportal's BG field on any event: stored when it is a fingerstick or typed in.

    Beside a bolus or carbs the BG field is secondary: without ``units`` it is left out (listed as
    ``glucose_units``) instead of refusing the treatment (tconnectsync sends boluses so); a BG
    Check without units is still refused, never guessed.
    """
    kind = _text(b.doc.get("glucoseType")).lower()
    if kind not in ("finger", "manual"):
        return
    if b.doc.get("units") in (None, "") and _number(b.doc, "glucose"):
        b.ignored.append("glucose_units")
        return
    b.glucose("meter" if kind == "finger" else "manual")


def _device_event(b: _Builder, folded: str) -> None:
    subtype, other = _DEVICE_EVENTS[folded]
    if other is not None:
        b.add("deviceEvent", subtype, payload={"event": other}, identity=other)
    elif folded == "sensor change":
        b.add("deviceEvent", subtype, payload={"event_type": "Sensor Change"})
    else:
        duration = _duration_ms(b.doc) if subtype == "suspend" else None
        b.add("deviceEvent", subtype, duration_ms=duration)


# -- profiles -------------------------------------------------------------------------------------


def _profile_unit(profile: Mapping[str, Any], doc: Mapping[str, Any]) -> str:
    for where in (profile, doc):
        units = where.get("units")
        if isinstance(units, str) and units.strip():
            unit = _PROFILE_UNITS.get(units.strip().lower())
            if unit is None:
                msg = "units is not mg/dl or mmol"
                raise NightscoutDocumentError(msg)
            return unit
    msg = "profile without units (mg/dl or mmol)"
    raise NightscoutDocumentError(msg)


def _start_min(item: Mapping[str, Any], field: str) -> int:
    seconds = item.get("timeAsSeconds")
    if seconds is not None and seconds != "":
        number = _number(item, "timeAsSeconds")
        if number is None or number < 0:
            msg = f"{field}: timeAsSeconds is not a time of day"
            raise NightscoutDocumentError(msg)
        return int(number // 60)
    match = _CLOCK.match(str(item.get("time", "")))
    if match is None:
        msg = f"{field}: time is not HH:MM"
        raise NightscoutDocumentError(msg)
    return int(match[1]) * 60 + int(match[2])


def _profile_schedule(value: object, field: str, factor: float = 1.0) -> list[tuple[int, float]]:
    """``(start_min, value × factor)`` of a Nightscout schedule, by time of day."""
    if value is None:
        return []
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        value = [{"time": "00:00", "value": value}]  # old profiles hold one number for the day
    if not isinstance(value, list):
        msg = f"{field} is not a list"
        raise NightscoutDocumentError(msg)
    entries: list[tuple[int, float]] = []
    for item in value:
        if not isinstance(item, dict):
            msg = f"{field} holds an entry that is not an object"
            raise NightscoutDocumentError(msg)
        number = _number(item, "value")
        if number is None:
            msg = f"{field}: an entry has no value"
            raise NightscoutDocumentError(msg)
        entries.append((_start_min(item, field), number * factor))
    return sorted(entries)


def _targets(low: list[tuple[int, float]], high: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """``target_low`` and ``target_high`` merged: at each start, the low and high in force."""
    if not low or not high:
        return []
    out: list[dict[str, Any]] = []
    starts = sorted({s for s, _ in low} | {s for s, _ in high})
    for start in starts:
        lo = next((v for s, v in reversed(low) if s <= start), low[0][1])
        hi = next((v for s, v in reversed(high) if s <= start), high[0][1])
        out.append({"start_min": start, "low_mgdl": lo, "high_mgdl": hi})
    return out


def profile_records(doc: Mapping[str, Any], zone: zoneinfo.ZoneInfo) -> MappedDocument:
    """A ``profile`` document as one ``pumpSettings`` record (canonical payload, module notes).

    Raises :class:`NightscoutDocumentError` when the profile cannot be read or its settings break
    the canonical payload's rules (:func:`~glucoshare.analytics.settings.parse_pump_settings`).
    """
    if _is_deleted(doc):
        return MappedDocument(ignored=("deleted",))
    store = doc.get("store")
    if not isinstance(store, dict) or not store:
        msg = "store holds no profile"
        raise NightscoutDocumentError(msg)
    if not all(isinstance(p, dict) for p in store.values()):
        msg = "store holds a profile that is not an object"
        raise NightscoutDocumentError(msg)
    time_ms, offset = _document_time(doc, _PROFILE_TIME, zone)
    default = doc.get("defaultProfile")
    main_name = default if isinstance(default, str) and default in store else next(iter(store))
    main: Mapping[str, Any] = store[main_name]
    schedules: dict[str, list[dict[str, Any]]] = {}
    for name, profile in store.items():
        basal = _profile_schedule(profile.get("basal"), f"store.{name}.basal")
        if basal:
            schedules[str(name)] = [{"start_min": s, "rate_u_h": v} for s, v in basal]
    factor = MGDL_PER_MMOLL if _profile_unit(main, doc) == "mmol/L" else 1.0
    dia = _number(main, "dia")
    loop_settings = doc.get("loopSettings")
    limits = loop_settings if isinstance(loop_settings, dict) else {}
    payload: dict[str, Any] = {
        "active_schedule": main_name if main_name in schedules else None,
        "basal_schedules": schedules,
        "carb_ratios": [
            {"start_min": s, "g_per_u": v}
            for s, v in _profile_schedule(main.get("carbratio"), f"store.{main_name}.carbratio")
        ],
        "sensitivities": [
            {"start_min": s, "mgdl_per_u": v}
            for s, v in _profile_schedule(main.get("sens"), f"store.{main_name}.sens", factor)
        ],
        "targets": _targets(
            _profile_schedule(main.get("target_low"), f"store.{main_name}.target_low", factor),
            _profile_schedule(main.get("target_high"), f"store.{main_name}.target_high", factor),
        ),
        "max_bolus_u": _number(limits, "maximumBolus"),
        "max_basal_u_h": _number(limits, "maximumBasalRatePerHour"),
        "insulin_duration_h": dia,
    }
    try:
        parse_pump_settings(payload, time_ms + offset * 60_000)
    except InvalidPumpSettingsError as exc:
        raise NightscoutDocumentError(str(exc)) from None
    others = [
        p
        for name, p in store.items()
        if name != main_name and any(p.get(k) for k in ("carbratio", "sens", "target_low", "target_high"))
    ]
    record = MappedRecord("pumpSettings", "", time_ms, offset, treatment_source(doc), payload=payload)
    return MappedDocument((record,), ("profile_other",) if others else ())


def devicestatus_records(doc: Mapping[str, Any], zone: zoneinfo.ZoneInfo) -> MappedDocument:  # noqa: ARG001
    """A ``devicestatus`` document: not stored (loop, pump and phone state; module notes)."""
    return MappedDocument(ignored=("devicestatus",))


# -- canonical records → Nightscout documents -----------------------------------------------------


def iso_utc(time_ms: int) -> str:
    """``2024-01-18T16:00:00.000Z``: an instant as the Nightscout server writes it."""
    moment = _EPOCH + dt.timedelta(milliseconds=time_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


def _number_out(value: float) -> int | float:
    """A number as JSON: whole numbers without ``.0`` (as clients write them)."""
    return int(value) if float(value).is_integer() else value


def entry_document(record: MappedRecord) -> Document | None:
    """The ``entries`` document of a ``cbg`` (``sgv``) or an mg/dL ``smbg`` ``meter`` (``mbg``).

    ``sgv`` is written as a whole number of mg/dL (what Nightscout clients read); a ``low``
    reading as 39. Nightscout has no high code: a ``high`` reading keeps its value only. Other
    records have no entry (``None``).
    """
    if record.value is None:
        return None
    value: int | float
    if record.type == "cbg":
        value = SENSOR_LOW_CODE if record.annotation == "low" else round(record.value)
        kind, field = "sgv", "sgv"
    elif record.type == "smbg" and record.subtype == "meter" and record.orig_unit in (None, "mg/dL"):
        kind, field, value = "mbg", "mbg", _number_out(record.value)
    else:
        return None
    doc: Document = {
        "type": kind,
        field: value,
        "date": record.time_ms,
        "dateString": iso_utc(record.time_ms),
        "sysTime": iso_utc(record.time_ms),
        "utcOffset": record.utc_offset_min,
    }
    if record.device:
        doc["device"] = record.device
    return doc


def _treatment(record: MappedRecord, event: str, **fields: Any) -> Document:  # noqa: ANN401
    doc: Document = {
        "eventType": event,
        "created_at": iso_utc(record.time_ms),
        "utcOffset": record.utc_offset_min,
    }
    if record.device:
        doc["device"] = record.device
        doc["enteredBy"] = record.device
    doc.update({k: v for k, v in fields.items() if v is not None})
    return doc


def _minutes(duration_ms: int | None) -> int | float | None:
    return None if duration_ms is None else _number_out(duration_ms / 60_000)


def _bolus_document(record: MappedRecord, payload: Mapping[str, Any]) -> Document:
    event = str(payload.get("event_type") or "Correction Bolus")
    value = record.value or 0.0
    if event == "Combo Bolus" and "normal_u" in payload and "extended_u" in payload:
        now, extended = float(payload["normal_u"]), float(payload["extended_u"])
        hours = (record.duration_ms or 0) / 3_600_000
        return _treatment(
            record,
            "Combo Bolus",
            insulin=_number_out(now),
            enteredinsulin=_number_out(value),
            relative=_number_out(extended / hours) if hours and extended else None,
            splitNow=_number_out(round(100 * now / value)) if value else None,
            splitExt=_number_out(round(100 * extended / value)) if value else None,
            duration=_minutes(record.duration_ms),
        )
    kind = {"extended": "square", "dual": "dual"}.get(record.subtype, "normal")
    automated = record.subtype == "automated"
    return _treatment(
        record,
        event,
        insulin=_number_out(value),
        type="SMB" if automated else kind,
        automatic=True if automated else None,
        isSMB=True if automated else None,
        programmed=payload.get("programmed"),
        duration=_minutes(record.duration_ms) if kind != "normal" else None,
    )


def _glucose_fields(record: MappedRecord, glucose_type: str) -> dict[str, Any]:
    mmol = record.orig_unit == "mmol/L" and record.orig_value is not None
    value = record.orig_value if mmol else record.value
    return {
        "glucose": _number_out(value or 0.0),
        "glucoseType": glucose_type,
        "units": "mmol" if mmol else "mg/dl",
    }


def treatment_document(record: MappedRecord) -> Document | None:  # noqa: PLR0911 - a branch per type
    """The ``treatments`` document of a canonical record; ``None`` when Nightscout has none.

    Boluses (normal, extended and dual as Loop writes them, automated as a Loop/AndroidAPS SMB, a
    careportal Combo Bolus again as one), carbohydrate, temporary basals, fingersticks (``BG
    Check``, calibrations), site, reservoir and sensor changes, pump suspends and resumes, notes,
    exercise, priming and the bolus calculator. Times are written as the server stores them
    (``created_at`` in UTC plus ``utcOffset``); the record's device becomes ``device`` and
    ``enteredBy``.
    """
    payload: Mapping[str, Any] = record.payload or {}
    kind, subtype = record.type, record.subtype
    if kind == "bolus" and record.value is not None:
        return _bolus_document(record, payload)
    if kind == "food" and record.value is not None:
        return _treatment(
            record,
            str(payload.get("event_type") or "Carb Correction"),
            carbs=_number_out(record.value),
            absorptionTime=payload.get("absorption_min"),
            protein=payload.get("protein_g"),
            fat=payload.get("fat_g"),
        )
    if kind == "basal" and subtype in ("temp", "automated"):
        percent = payload.get("percent")
        rate = None if record.value is None else _number_out(record.value)
        return _treatment(
            record,
            "Temp Basal",
            absolute=rate,
            rate=rate,
            percent=None if percent is None else _number_out(float(percent) - 100.0),
            duration=_minutes(record.duration_ms),
            automatic=True if subtype == "automated" else None,
        )
    if kind == "smbg" and record.value is not None:
        if subtype == "calibration":
            return _treatment(record, "Calibration", **_glucose_fields(record, "Finger"))
        return _treatment(
            record, "BG Check", **_glucose_fields(record, "Manual" if subtype == "manual" else "Finger")
        )
    if kind == "deviceEvent":
        if subtype == "prime" and record.value is not None:
            return _treatment(record, "Correction Bolus", insulin=_number_out(record.value), type="PRIMING")
        if subtype == "sensorStart" and payload.get("event_type") == "Sensor Change":
            return _treatment(record, "Sensor Change")
        name = _DEVICE_EVENT_NAMES.get((subtype, payload.get("event") if subtype == "other" else None))
        if name is None:
            return None
        return _treatment(
            record, name, duration=_minutes(record.duration_ms) if subtype == "suspend" else None
        )
    if kind == "note":
        text = str(payload.get("text") or "")
        category = payload.get("category")
        event = _NOTE_EVENTS.get(category if isinstance(category, str) else None, "Note")
        return _treatment(record, event, notes=text) if text else None
    if kind == "physicalActivity":
        return _treatment(
            record,
            "Exercise",
            duration=_minutes(record.duration_ms),
            intensity=subtype if subtype in _INTENSITIES else None,
        )
    if kind == "wizard":
        bg = payload.get("bg_input")
        return _treatment(
            record,
            "Bolus Wizard",
            carbs=None if record.value is None else _number_out(record.value),
            insulin=payload.get("estimate"),
            glucose=None if bg is None else _number_out(float(bg)),
            units="mg/dl" if bg is not None else None,
        )
    if kind == "insulin" and record.value is not None:
        name = str(payload.get("insulin_name") or record.identity or "")
        injection = json.dumps([{"insulin": name, "units": _number_out(record.value)}])
        return _treatment(record, "<none>", insulin=_number_out(record.value), insulinInjections=injection)
    return None


def _clock_entries(entries: list[Mapping[str, Any]], key: str) -> list[Document]:
    """A canonical schedule as Nightscout's ``{time, timeAsSeconds, value}`` list."""
    out: list[Document] = []
    for entry in entries:
        start = int(entry["start_min"])
        value = float(entry[key])
        out.append(
            {
                "time": f"{start // 60:02d}:{start % 60:02d}",
                "timeAsSeconds": start * 60,
                "value": _number_out(value),
            }
        )
    return out


def profile_document(record: MappedRecord) -> Document | None:
    """The ``profile`` document of a ``pumpSettings`` record (glucose in mg/dL).

    Each basal schedule becomes a named profile; the active one (``defaultProfile``) also holds
    the carb ratios, sensitivities, targets and insulin duration; maximum bolus and basal go into
    ``loopSettings`` as Loop writes them.
    """
    if record.type != "pumpSettings" or not record.payload:
        return None
    payload = record.payload
    schedules: Mapping[str, list[Mapping[str, Any]]] = payload.get("basal_schedules") or {}
    active = payload.get("active_schedule")
    main = active if isinstance(active, str) else next(iter(schedules), "Default")
    store: dict[str, Document] = {
        str(name): {"basal": _clock_entries(entries, "rate_u_h"), "units": "mg/dl"}
        for name, entries in schedules.items()
    }
    profile = store.setdefault(main, {"basal": [], "units": "mg/dl"})
    targets = payload.get("targets") or []
    profile.update(
        {
            "carbratio": _clock_entries(payload.get("carb_ratios") or [], "g_per_u"),
            "sens": _clock_entries(payload.get("sensitivities") or [], "mgdl_per_u"),
            "target_low": _clock_entries(targets, "low_mgdl"),
            "target_high": _clock_entries(targets, "high_mgdl"),
        }
    )
    if payload.get("insulin_duration_h") is not None:
        profile["dia"] = _number_out(float(payload["insulin_duration_h"]))
    doc: Document = {
        "defaultProfile": main,
        "startDate": iso_utc(record.time_ms),
        "created_at": iso_utc(record.time_ms),
        "mills": record.time_ms,
        "utcOffset": record.utc_offset_min,
        "units": "mg/dl",
        "store": store,
    }
    limits = {
        key: _number_out(float(payload[name]))
        for key, name in (("maximumBolus", "max_bolus_u"), ("maximumBasalRatePerHour", "max_basal_u_h"))
        if payload.get(name) is not None
    }
    if limits:
        doc["loopSettings"] = limits
    if record.device:
        doc["enteredBy"] = record.device
        doc["device"] = record.device
    return doc


def nightscout_document(record: MappedRecord) -> tuple[str, Document] | None:
    """``(collection, document)`` of a canonical record; ``None`` when Nightscout has no place for it.

    ``cbg`` and mg/dL meter readings are entries (:func:`entry_document`), ``pumpSettings`` a
    profile (:func:`profile_document`), the rest treatments (:func:`treatment_document`).
    """
    doc = entry_document(record)
    if doc is not None:
        return "entries", doc
    doc = profile_document(record)
    if doc is not None:
        return "profile", doc
    doc = treatment_document(record)
    return None if doc is None else ("treatments", doc)
