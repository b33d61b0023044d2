"""Write a simulated timeline as a Tidepool JSON export (research/formats.md §12, research/tidepool.md §1).

The file is a JSON array of Tidepool datums, in one of the two shapes Glucoshare reads
(:class:`TidepoolOptions`): the *platform* shape (datums as Tidepool's data API returns them) or
the *export* shape (what Tidepool's web "Export data → JSON" writes: flattened datums, nested
fields as JSON text, ``localTime``, basal and device-event durations in minutes, ``pumpSettings``
split into one row per schedule entry, glucose optionally in mg/dL). Glucose is stored the way
Tidepool stores it: mg/dL ÷ 18.01559 rounded half up to 5 decimals. What is written, from the
timeline:

* CGM readings → ``cbg`` of the CGM (readings beyond the sensor's range at the threshold, with a
  ``bg/out-of-range`` annotation); one ``cgmSettings`` at the start;
* ``fingerstick`` → ``smbg`` of a meter (``linked`` to the pump for pump therapy), every third one
  a CGM calibration (``deviceEvent`` ``calibration``);
* MDI: ``carbs`` → ``food``, ``pen_rapid``/``pen_long`` → ``insulin`` (formulation rapid/long),
  from a phone app;
* pump: ``pumpSettings`` at the start, ``basal`` (scheduled with their duration, temp with percent
  and rate, a suspend segment for each suspension), ``bolus`` (every fifth a dual and every
  seventh a square bolus), ``wizard``, ``prime``, ``rewind`` → ``reservoirChange``, ``suspend``/
  ``resume`` → ``status``, ``alarm``;
* ``exercise`` → ``physicalActivity``; one ``upload`` datum per device.

The expected records are what an importer reads back: glucose that was a whole mg/dL number
exactly, other glucose as the stored mmol/L × 18.01559.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any, Literal

from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator.timeline import CGM_RANGE_MGDL, Event, Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

MINUTE_MS = 60_000
PRECISION = 100_000.0
CALIBRATION_EVERY = 3
DUAL_EVERY = 5
SQUARE_EVERY = 7
INTENSITY = {"light": "low", "medium": "medium", "heavy": "high"}
CGM_DEVICES: dict[str, tuple[str, str, str]] = {
    "dexcom_g6": ("Dexcom", "G6 Mobile", "DexG6MobRec"),
    "dexcom_g7": ("Dexcom", "G7", "DexG7"),
    "libre2": ("Abbott", "FreeStyle Libre 2", "AbbottFreeStyleLibre2"),
    "libre3": ("Abbott", "FreeStyle Libre 3", "AbbottFreeStyleLibre3"),
    "guardian4": ("Medtronic", "Guardian 4", "MMT-Guardian4"),
}
STRINGIFIED = frozenset({"annotations", "payload", "nutrition", "deviceManufacturers", "deviceTags"})
"""Fields the web export writes as JSON text (and ``duration`` of physical activity)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TidepoolOptions:
    """Variants of the Tidepool export."""

    layout: Literal["platform", "export"] = "platform"
    """``platform``: datums as the data API returns them; ``export``: the web export's flattened rows."""
    pretty: bool = False
    """Indented JSON over many lines instead of one line."""
    units: Literal["mmol/L", "mg/dL"] = "mmol/L"
    """Glucose unit of the web export (``export`` layout only): mg/dL is the stored mmol/L × 18.01559."""
    glucose: Literal["integer", "decimal", "mmol"] = "integer"
    """What the devices reported: whole mg/dL, mg/dL with one decimal, or mmol/L with one decimal."""
    out_of_range: bool = True
    """Readings beyond the sensor's range at the threshold with an annotation (else as they are)."""
    unknown_types: bool = False
    """Add datums of types Glucoshare does not store (``dosingDecision``, ``water``)."""
    uploads: Literal["first", "last", "none"] = "first"
    """Where the ``upload`` datums stand (``none``: left out, the devices are then unnamed)."""
    several_devices: bool = True
    """CGM, meter, pump and phone app as separate devices (else every datum of the CGM's upload)."""
    time_precision: Literal["ms", "s", "ns"] = "ms"
    """Fraction of ``time``: milliseconds, none, or nine digits (RFC 3339 nano)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Device:
    device_id: str
    upload_id: str
    manufacturers: list[str]
    model: str
    serial: str
    tags: list[str]


def stored_mmol(mgdl: float) -> float:
    """Tidepool's stored mmol/L of a mg/dL value (÷ 18.01559, rounded half up to 5 decimals)."""
    return int(mgdl / MGDL_PER_MMOLL * PRECISION + 0.5) / PRECISION


def _ident(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


class _Writer:
    def __init__(self, timeline: Timeline, opts: TidepoolOptions) -> None:
        self.timeline = timeline
        self.opts = opts
        self.datums: list[tuple[int, dict[str, Any]]] = []
        self.expected: list[ExpectedRecord] = []
        profile = timeline.profile
        maker, model, prefix = CGM_DEVICES[profile.cgm]
        tx = timeline.transmitters[0] if timeline.transmitters else "SENSOR"
        self.cgm = self.device(f"{prefix}_{tx}", [maker], model, tx, ["cgm"])
        serials = timeline.device_serials
        if opts.several_devices:
            meter = serials.get("meter", "METER")
            self.meter = self.device(
                f"AscensiaContourNextOne-{meter}", ["Ascensia"], "Contour Next One", meter, ["bgm"]
            )
            pump = serials.get("pump", "PUMP")
            self.pump = self.device(f"MMT-1884:{pump}", ["Medtronic"], "MiniMed 780G", pump, ["insulin-pump"])
            app = serials.get("app", "APP")
            self.app = self.device(f"tidepool-mobile-{app}", ["Tidepool"], "Tidepool Mobile", app, [])
        else:
            self.meter = self.pump = self.app = self.cgm
        self.sequence = 0

    @staticmethod
    def device(device_id: str, manufacturers: list[str], model: str, serial: str, tags: list[str]) -> _Device:
        return _Device(device_id, _ident("upload", device_id), manufacturers, model, serial, tags)

    # -- values --------------------------------------------------------------------------------------

    def glucose(self, mgdl: float) -> tuple[float, float]:
        """``(stored mmol/L, mg/dL an importer reads back)`` of a device's reading."""
        if self.opts.glucose == "mmol":
            mmol = round(mgdl / MGDL_PER_MMOLL, 1)
            return mmol, mmol * MGDL_PER_MMOLL
        written = float(int(mgdl + 0.5)) if self.opts.glucose == "integer" else round(mgdl, 1)
        stored = stored_mmol(written)
        if written == int(written):
            return stored, written
        return stored, stored * MGDL_PER_MMOLL

    def stamp(self, utc_ms: int) -> tuple[str, int]:
        """The ``time`` text and the instant it names."""
        moment = dt.datetime.fromtimestamp(utc_ms // 1000, tz=dt.UTC)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        precision = self.opts.time_precision
        if precision == "s":
            return text + "Z", utc_ms // 1000 * 1000
        if precision == "ns":
            return f"{text}.{utc_ms % 1000:03d}000000Z", utc_ms
        return f"{text}.{utc_ms % 1000:03d}Z", utc_ms

    def datum(self, kind: str, utc_ms: int, device: _Device, **fields: Any) -> int:  # noqa: ANN401 - datum fields
        """Add a datum; returns the instant its ``time`` names."""
        text, instant = self.stamp(utc_ms)
        local = self.timeline.local(instant)
        offset = round((local - dt.datetime(1970, 1, 1)).total_seconds() / 60 - instant / MINUTE_MS)  # noqa: DTZ001
        self.sequence += 1
        datum: dict[str, Any] = {
            "id": _ident(kind, utc_ms, self.sequence),
            "type": kind,
            "time": text,
            "deviceTime": local.strftime("%Y-%m-%dT%H:%M:%S"),
            "timezoneOffset": offset,
            "conversionOffset": 0,
            "clockDriftOffset": 0,
            "deviceId": device.device_id,
            "uploadId": device.upload_id,
            **fields,
        }
        self.datums.append((instant, datum))
        return instant

    def expect(
        self, kind: str, subtype: str, utc_ms: int, value: float | None, annotation: str | None = None
    ) -> None:
        self.expected.append(ExpectedRecord(kind, subtype, utc_ms, value, annotation))

    # -- the timeline --------------------------------------------------------------------------------

    def cgm_readings(self) -> None:
        low, high = CGM_RANGE_MGDL[self.timeline.profile.cgm]
        for utc_ms, mgdl in zip(self.timeline.cgm_ms.tolist(), self.timeline.cgm_mgdl.tolist(), strict=True):
            annotation = None
            if self.opts.out_of_range and mgdl < low:
                annotation, mgdl = "low", low  # noqa: PLW2901 - the value written
            elif self.opts.out_of_range and mgdl > high:
                annotation, mgdl = "high", high  # noqa: PLW2901
            stored, value = self.glucose(mgdl)
            fields: dict[str, Any] = {"value": stored, "units": "mmol/L"}
            if annotation is not None:
                stored = stored_mmol(mgdl)
                value = float(mgdl)
                fields["value"] = stored
                fields["annotations"] = [
                    {"code": "bg/out-of-range", "value": annotation, "threshold": int(mgdl)}
                ]
            instant = self.datum("cbg", utc_ms, self.cgm, **fields)
            self.expect("cbg", "sensor", instant, value, annotation)
        if self.timeline.cgm_ms.size:
            at = int(self.timeline.cgm_ms[0])
            instant = self.datum(
                "cgmSettings",
                at,
                self.cgm,
                units="mmol/L",
                transmitterId=self.cgm.serial,
                lowAlerts={"enabled": True, "level": stored_mmol(70), "snooze": 1800000},
                highAlerts={"enabled": True, "level": stored_mmol(250), "snooze": 7200000},
            )
            self.expect("cgmSettings", "", instant, None)

    def fingersticks(self) -> None:
        pump = self.timeline.profile.therapy == "pump"
        for number, event in enumerate(self.timeline.of_kind("fingerstick")):
            if event.value is None:
                continue
            stored, value = self.glucose(event.value)
            if number % CALIBRATION_EVERY == CALIBRATION_EVERY - 1:
                instant = self.datum(
                    "deviceEvent", event.utc_ms, self.cgm, subType="calibration", value=stored, units="mmol/L"
                )
                self.expect("smbg", "calibration", instant, value)
                continue
            fields: dict[str, Any] = {"value": stored, "units": "mmol/L"}
            if pump:
                fields["subType"] = "linked"
            instant = self.datum("smbg", event.utc_ms, self.pump if pump else self.meter, **fields)
            self.expect("smbg", "meter", instant, value)

    def mdi(self) -> None:
        for event in self.timeline.of_kind("carbs", "pen_rapid", "pen_long"):
            if not event.value:
                continue
            if event.kind == "carbs":
                nutrition = {"carbohydrate": {"net": event.value, "units": "grams"}}
                instant = self.datum("food", event.utc_ms, self.app, nutrition=nutrition, meal="other")
                self.expect("food", "", instant, event.value)
                continue
            acting = "rapid" if event.kind == "pen_rapid" else "long"
            instant = self.datum(
                "insulin",
                event.utc_ms,
                self.app,
                dose={"total": event.value, "units": "Units"},
                formulation={"simple": {"actingType": acting}},
            )
            self.expect("insulin", acting, instant, event.value)

    def pump_settings(self) -> None:
        timeline = self.timeline
        wizard = next((e for e in timeline.events if e.kind == "wizard"), None)
        ratio = round(wizard.ratio, 1) if wizard is not None and wizard.ratio else 10.0
        isf = float(round(wizard.isf)) if wizard is not None and wizard.isf else 50.0
        schedule = timeline.basal_schedule or [(0, 1.0)]
        instant = self.datum(
            "pumpSettings",
            timeline.start_ms,
            self.pump,
            activeSchedule="Standard",
            basalSchedules={
                "Standard": [{"start": minute * MINUTE_MS, "rate": rate} for minute, rate in schedule],
                "Sick day": [{"start": 0, "rate": 1.2}],
            },
            carbRatios={
                "Standard": [{"start": 0, "amount": ratio}, {"start": 660 * MINUTE_MS, "amount": ratio + 2}]
            },
            insulinSensitivities={"Standard": [{"start": 0, "amount": stored_mmol(isf)}]},
            bgTargets={"Standard": [{"start": 0, "low": stored_mmol(100), "high": stored_mmol(120)}]},
            units={"bg": "mmol/L", "carb": "grams"},
            bolus={
                "amountMaximum": {"value": 10, "units": "Units"},
                "calculator": {"enabled": True, "insulin": {"duration": 4, "units": "hours"}},
            },
            basal={"rateMaximum": {"value": 3.5, "units": "Units/hour"}},
            manufacturers=self.pump.manufacturers,
            model=self.pump.model,
            serialNumber=self.pump.serial,
        )
        self.expect("pumpSettings", "", instant, None)

    def pump_therapy(self) -> None:
        self.pump_settings()
        timeline = self.timeline
        basals = timeline.of_kind("basal")
        scheduled_rate = 1.0
        for at, event in enumerate(basals):
            following = basals[at + 1].utc_ms if at + 1 < len(basals) else timeline.end_ms
            if event.subtype == "scheduled" and event.value is not None:
                scheduled_rate = event.value
                instant = self.datum(
                    "basal",
                    event.utc_ms,
                    self.pump,
                    deliveryType="scheduled",
                    rate=event.value,
                    duration=following - event.utc_ms,
                    scheduleName="Standard",
                )
                self.expect("basal", "scheduled", instant, event.value)
            elif event.subtype == "temp" and event.percent is not None:
                rate = round(scheduled_rate * event.percent / 100, 3)
                instant = self.datum(
                    "basal",
                    event.utc_ms,
                    self.pump,
                    deliveryType="temp",
                    rate=rate,
                    percent=event.percent / 100,
                    duration=(event.duration_s or 0) * 1000,
                    suppressed={"type": "basal", "deliveryType": "scheduled", "rate": scheduled_rate},
                )
                self.expect("basal", "temp", instant, rate)
        boluses = 0
        for event in timeline.events:
            boluses += self.pump_event(event, boluses)

    def pump_event(self, event: Event, boluses: int) -> int:
        """Write one pump event; returns 1 for a bolus (to count them)."""
        kind = event.kind
        if kind == "bolus" and event.value:
            number = boluses + 1
            fields: dict[str, Any]
            if number % DUAL_EVERY == 0:
                normal = round(event.value * 0.6, 2)
                extended = round(event.value - normal, 2)
                fields = {
                    "subType": "dual/square",
                    "normal": normal,
                    "extended": extended,
                    "duration": 7_200_000,
                }
                subtype, value = "dual", normal + extended
            elif number % SQUARE_EVERY == 0:
                fields = {"subType": "square", "extended": event.value, "duration": 3_600_000}
                subtype, value = "extended", event.value
            else:
                fields = {"subType": "normal", "normal": event.value}
                if event.programmed is not None and event.programmed != event.value:
                    fields["expectedNormal"] = event.programmed
                subtype, value = "normal", event.value
            instant = self.datum("bolus", event.utc_ms, self.pump, **fields)
            self.expect("bolus", subtype, instant, value)
            return 1
        if kind == "wizard":
            fields = {
                "carbInput": event.value or 0,
                "carbUnits": "grams",
                "insulinCarbRatio": round(event.ratio or 10.0, 1),
                "insulinSensitivity": stored_mmol(round(event.isf or 50.0)),
                "bgTarget": {"target": stored_mmol(event.target or 110.0), "range": stored_mmol(10)},
                "recommended": {
                    "carb": event.recommended or 0,
                    "correction": 0,
                    "net": event.recommended or 0,
                },
                "insulinOnBoard": 0,
                "units": "mmol/L",
            }
            if event.bg is not None:
                fields["bgInput"] = self.glucose(event.bg)[0]
            instant = self.datum("wizard", event.utc_ms, self.pump, **fields)
            self.expect("wizard", "", instant, float(event.value or 0))
        elif kind == "prime" and event.value is not None:
            instant = self.datum(
                "deviceEvent",
                event.utc_ms,
                self.pump,
                subType="prime",
                primeTarget=event.subtype,
                volume=event.value,
            )
            self.expect("deviceEvent", "prime", instant, event.value)
        elif kind == "rewind":
            instant = self.datum("deviceEvent", event.utc_ms, self.pump, subType="reservoirChange")
            self.expect("deviceEvent", "reservoirChange", instant, None)
        elif kind == "suspend":
            duration = (event.duration_s or 0) * 1000
            instant = self.datum(
                "deviceEvent",
                event.utc_ms,
                self.pump,
                subType="status",
                status="suspended",
                reason={"suspended": "manual"},
                duration=duration,
            )
            self.expect("deviceEvent", "suspend", instant, None)
            instant = self.datum(
                "basal", event.utc_ms + 1, self.pump, deliveryType="suspend", duration=duration
            )
            self.expect("basal", "suspend", instant, 0.0)
        elif kind == "resume":
            instant = self.datum(
                "deviceEvent",
                event.utc_ms,
                self.pump,
                subType="status",
                status="resumed",
                reason={"resumed": "manual"},
            )
            self.expect("deviceEvent", "resume", instant, None)
        elif kind == "alarm":
            instant = self.datum(
                "deviceEvent", event.utc_ms, self.pump, subType="alarm", alarmType="occlusion"
            )
            self.expect("deviceEvent", "alarm", instant, None)
        return 0

    def activities(self) -> None:
        for event in self.timeline.of_kind("exercise"):
            instant = self.datum(
                "physicalActivity",
                event.utc_ms,
                self.app,
                duration={"value": (event.duration_s or 0) / 60, "units": "minutes"},
                reportedIntensity=INTENSITY.get(event.subtype, "medium"),
                name="Evening walk",
            )
            self.expect("physicalActivity", event.subtype or "unknown", instant, None)

    def unknown(self) -> None:
        start = self.timeline.start_ms
        for hour in range(3):
            self.datum("water", start + hour * 3_600_000 + 1, self.app, amount={"value": 250, "units": "mL"})
        self.datum("dosingDecision", start + 5, self.pump, reason="loop")

    def uploads(self) -> list[dict[str, Any]]:
        seen: dict[str, _Device] = {}
        for device in (self.cgm, self.meter, self.pump, self.app):
            seen.setdefault(device.device_id, device)
        used = {datum["deviceId"] for _, datum in self.datums}
        uploads: list[dict[str, Any]] = []
        text, _ = self.stamp(self.timeline.end_ms)
        for device in seen.values():
            if device.device_id not in used:
                continue
            uploads.append(
                {
                    "id": device.upload_id,
                    "type": "upload",
                    "uploadId": device.upload_id,
                    "deviceId": device.device_id,
                    "deviceManufacturers": device.manufacturers,
                    "deviceModel": device.model,
                    "deviceSerialNumber": device.serial,
                    "deviceTags": device.tags,
                    "time": text,
                    "computerTime": self.timeline.local(self.timeline.end_ms).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timezone": self.timeline.profile.timezone,
                    "timeProcessing": "utc-bootstrapping",
                    "version": "2.60.0",
                    "client": {
                        "name": "org.tidepool.uploader",
                        "version": "2.60.0",
                        "private": {"os": "linux"},
                    },
                    "dataSetType": "normal",
                }
            )
        return uploads


def _to_mgdl(value: object) -> object:
    return value * MGDL_PER_MMOLL if isinstance(value, int | float) and not isinstance(value, bool) else value


def _flatten(datum: dict[str, Any]) -> dict[str, Any]:
    """A datum as the web export's processor writes it (stringify, localTime, durations, flatten)."""
    out: dict[str, Any] = {}
    for key, value in datum.items():
        if key in STRINGIFIED or (key == "duration" and datum["type"] == "physicalActivity"):
            out[key] = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, dict):
            for inner, item in value.items():
                out[f"{key}.{inner}"] = item
        else:
            out[key] = value
    if datum["type"] in ("basal", "deviceEvent"):
        for key in ("duration", "expectedDuration"):
            if key in out:
                out[key] = out[key] / MINUTE_MS
    local = dt.datetime.fromisoformat(datum["deviceTime"]) if "deviceTime" in datum else None
    if local is not None:
        out["localTime"] = local.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return out


def _in_mgdl(row: dict[str, Any]) -> dict[str, Any]:
    """A flattened row with its glucose in mg/dL (the web export's ``bgUnits=mg/dL``)."""
    kind = row["type"]
    if "units.bg" in row:
        row["units.bg"] = "mg/dL"
    if kind in ("cbg", "smbg", "deviceEvent") and "value" in row and row.get("units") == "mmol/L":
        row["value"] = _to_mgdl(row["value"])
        row["units"] = "mg/dL"
    elif kind == "wizard":
        for key in (
            "bgInput",
            "insulinSensitivity",
            "bgTarget.target",
            "bgTarget.range",
            "bgTarget.low",
            "bgTarget.high",
        ):
            if key in row:
                row[key] = _to_mgdl(row[key])
        row["units"] = "mg/dL"
    elif kind in ("pumpSettings.bgTargets", "pumpSettings.insulinSensitivities"):
        for key in (
            "bgTarget.low",
            "bgTarget.high",
            "bgTarget.target",
            "bgTarget.range",
            "insulinSensitivity.amount",
        ):
            if key in row:
                row[key] = _to_mgdl(row[key])
    elif kind == "cgmSettings":
        row["units"] = "mg/dL"
        for key in ("lowAlerts.level", "highAlerts.level"):
            if key in row:
                row[key] = _to_mgdl(row[key])
    return row


def _split_settings(datum: dict[str, Any]) -> list[dict[str, Any]]:
    """A pumpSettings datum as the web export splits it: one row per schedule entry."""
    common = {
        key: value
        for key, value in datum.items()
        if key not in ("basalSchedules", "bgTargets", "carbRatios", "insulinSensitivities", "units")
    }
    rows: list[dict[str, Any]] = []
    for field, entry_name in (
        ("basalSchedules", "basalSchedule"),
        ("bgTargets", "bgTarget"),
        ("carbRatios", "carbRatio"),
        ("insulinSensitivities", "insulinSensitivity"),
    ):
        for name, entries in datum.get(field, {}).items():
            for entry in entries:
                row = {**common, "type": f"pumpSettings.{field}", "scheduleName": name, entry_name: entry}
                if field != "basalSchedules":
                    row["units"] = datum["units"]
                rows.append(row)
    return rows


def write_tidepool(timeline: Timeline, options: TidepoolOptions | None = None) -> WrittenExport:
    """Write ``timeline`` as a Tidepool JSON export; returns the bytes and the records they hold."""
    opts = options or TidepoolOptions()
    writer = _Writer(timeline, opts)
    writer.cgm_readings()
    writer.fingersticks()
    if timeline.profile.therapy == "pump":
        writer.pump_therapy()
    else:
        writer.mdi()
    writer.activities()
    if opts.unknown_types:
        writer.unknown()
    writer.datums.sort(key=lambda item: item[0])
    datums = [datum for _, datum in writer.datums]
    uploads = [] if opts.uploads == "none" else writer.uploads()
    datums = [*uploads, *datums] if opts.uploads == "first" else [*datums, *uploads]
    if opts.layout == "export":
        rows: list[dict[str, Any]] = []
        for datum in datums:
            parts = _split_settings(datum) if datum["type"] == "pumpSettings" else [datum]
            for part in parts:
                row = _flatten(part)
                rows.append(_in_mgdl(row) if opts.units == "mg/dL" else row)
        datums = [dict(sorted(row.items())) for row in rows]
    if opts.pretty:
        text = json.dumps(datums, indent=2) + "\n"
    else:
        text = "[" + ",".join(json.dumps(datum, separators=(",", ":")) for datum in datums) + "]"
    return WrittenExport("TidepoolExport.json", text.encode("utf-8"), writer.expected)
