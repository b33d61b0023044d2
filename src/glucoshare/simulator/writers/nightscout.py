"""Write a simulated timeline as Nightscout JSON saved from the API (research/formats.md §11).

The documents are shaped like those of one uploader (:class:`NightscoutOptions` ``uploader``),
from the shapes in research/nightscout.md §3 and Nightscout's own client fixtures:

* ``xdrip``: ``sgv`` entries of device ``xDrip-<collector>`` (with ``delta``, ``filtered``,
  ``unfiltered``, ``rssi``, ``noise``, ``sysTime``), fingersticks as ``mbg`` entries each followed
  by a ``cal`` entry (calibration parameters, not stored), treatments of ``eventType`` ``<none>``
  with ``carbs`` and ``insulin`` (pen doses with ``insulinInjections``), ``Sensor Start``, ``Note``;
  devicestatus documents without ``created_at``, as xDrip+ posts them;
* ``loop``, ``aaps``, ``trio``: entries of the loop app, pump boluses (Loop ``Correction Bolus``
  with ``programmed``; AndroidAPS ``Meal Bolus``/``Correction Bolus`` with ``pumpId``, ``type``
  ``NORMAL``, ``app: "AAPS"``; Trio ``Bolus``), ``Carb Correction``, ``BG Check``, temporary basals
  with ``absolute`` (Loop's marked ``automatic``), ``Suspend Pump``/``Resume Pump``, ``Insulin
  Change`` at a rewind, ``Site Change`` at a cannula fill (AndroidAPS also a ``PRIMING`` bolus for
  the tubing), ``Sensor Start``, ``Exercise``, ``Note``, AndroidAPS ``Bolus Wizard``; loop or
  OpenAPS devicestatus;
* ``share2``, ``librelinkup``: entries of the bridge (``share2``, ``nightscout-librelink-up``) and
  treatments typed into the careportal (``enteredBy`` a nickname, or none): ``Meal Bolus`` or
  ``Correction Bolus``, ``Carb Correction``, ``BG Check``, ``Temp Basal`` as a ``percent`` change,
  ``Site Change``, ``Insulin Change``, ``Sensor Start``, ``Exercise``, ``Note``.

Every timeline also gets its profile documents: the carb ratios, sensitivities and targets of
:func:`~glucoshare.simulator.writers.carelink.calculator_schedule` (one document from the start,
one from its change), the pump's basal schedule as profile ``Default`` and 80 % of it as
``Exercise`` (none on multiple daily injections), in the chosen glucose units.

A CGM reading below 40 mg/dL is written as 39 (Dexcom's ``LOW``, expected as 40 ``low``), one
above the sensor's range as the range's top; readings are whole mg/dL. Each collection is written
newest first, as the API returns it. The expected records are what an importer must read back
(``cal`` entries and devicestatus documents hold none).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any, Literal

from glucoshare.ingest.nightscout_mapping import iso_utc, zone_offset_min
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator.timeline import CGM_RANGE_MGDL, Event, Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport
from glucoshare.simulator.writers.carelink import CalculatorSettings, calculator_schedule

Uploader = Literal["xdrip", "loop", "aaps", "trio", "share2", "librelinkup"]
Layout = Literal["collections", "array", "entries", "treatments", "profile", "devicestatus"]
DateStyle = Literal["utc", "offset", "compact", "naive", "none"]

XDRIP_COLLECTORS = {
    "dexcom_g6": "DexcomG6",
    "dexcom_g7": "DexcomG7",
    "libre2": "LibreReceiver",
    "libre3": "LibreReceiver",
    "guardian4": "CLFollower",
}
AAPS_SOURCES = {
    "dexcom_g6": "DexcomG6",
    "dexcom_g7": "DexcomG7",
    "libre2": "Libre2",
    "libre3": "Libre3",
    "guardian4": "MM640g",
}
LOW_CODE = 39
SENSOR_LOW_MGDL = 40.0
WARMUP_MS = 60 * 60_000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
BIG_MEAL_G = 90.0
XDRIP_INSULINS = {"pen_rapid": "Fiasp", "pen_long": "Tresiba"}
CAREPORTAL_NICKNAME = "Mom"
PUMP_TYPE = "ACCU_CHEK_INSIGHT_BLUETOOTH"


@dataclasses.dataclass(frozen=True, slots=True)
class NightscoutOptions:
    """Variants of a Nightscout JSON file."""

    uploader: Uploader = "xdrip"
    """Whose documents: ``xdrip``, ``loop``, ``aaps`` (AndroidAPS), ``trio``, or a CGM bridge with
    careportal treatments: ``share2`` (careportal ``enteredBy`` a nickname) or ``librelinkup`` (no
    ``enteredBy``)."""
    layout: Layout = "collections"
    """``collections``: an object ``{"entries": [...], "treatments": [...], "devicestatus": [...],
    "profile": [...]}``; ``array``: one array of every document, newest first; or the array of one
    collection."""
    date_string: DateStyle = "utc"
    """How ``dateString``/``created_at``/``startDate`` are written: ``utc`` (``...Z``, as the
    server stores them), ``offset`` (``+01:00``), ``compact`` (``+0100``, as xDrip+ sends them),
    ``naive`` (UTC without an offset) or ``none`` (entries without ``dateString``)."""
    utc_offset: bool = True
    """Write ``utcOffset`` (minutes), as the server adds it."""
    pretty: bool = False
    """Indented (one field per line) instead of minified."""
    crlf: bool = False
    """CRLF line ends (for ``pretty``)."""
    newest_first: bool = True
    """Each collection newest first, as the API returns it (oldest first otherwise)."""
    glucose_units: Literal["mg/dl", "mmol"] = "mg/dl"
    """Units of treatment glucose and of the profiles."""
    automatic_every: int = 0
    """Every n-th pump bolus automatic (Loop ``automatic``, AndroidAPS/Trio ``SMB``); 0: none."""
    combo_every: int = 0
    """Every n-th bolus typed into the careportal as a ``Combo Bolus`` (half now, half over an
    hour); 0: none."""
    calibrations: bool = True
    """xDrip+: a ``cal`` entry after each ``mbg`` entry."""
    ids: bool = True
    """Give every document an ``_id`` (24 hex digits)."""
    bom: bool = False
    """Start the file with a UTF-8 byte-order mark."""


@dataclasses.dataclass(slots=True)
class _Doc:
    collection: str
    utc_ms: int
    body: dict[str, Any]
    expected: list[ExpectedRecord]


class _Writer:
    """Builds the documents of one timeline."""

    def __init__(self, timeline: Timeline, opts: NightscoutOptions) -> None:
        self.timeline = timeline
        self.opts = opts
        self.tz = timeline.tz
        self.docs: list[_Doc] = []
        self.serial = timeline.device_serials["pump"]
        self.pump_id = 4000
        self.ids = 0
        self.seed = timeline.profile.seed
        cgm = timeline.profile.cgm
        up = opts.uploader
        self.entries_device = {
            "xdrip": f"xDrip-{XDRIP_COLLECTORS[cgm]}",
            "loop": "loop://iPhone",
            "aaps": f"AndroidAPS-{AAPS_SOURCES[cgm]}",
            "trio": "Trio",
            "share2": "share2",
            "librelinkup": "nightscout-librelink-up",
        }[up]
        self.entered_by: str | None = {
            "xdrip": "xdrip",
            "loop": "Loop",
            "aaps": "openaps://AndroidAPS",
            "trio": "Trio",
            "share2": CAREPORTAL_NICKNAME,
            "librelinkup": None,
        }[up]
        self.loop_app = up in ("loop", "aaps", "trio")
        self.careportal = up in ("share2", "librelinkup")

    # -- formatting ---------------------------------------------------------------------------

    def offset(self, utc_ms: int) -> int:
        return zone_offset_min(self.tz, utc_ms)

    def stamp(self, utc_ms: int, *, entry: bool = False) -> str | None:
        """A time written in the chosen style (``None``: left out)."""
        style = self.opts.date_string
        if style == "none" and entry:
            return None
        if style in ("utc", "none"):
            return iso_utc(utc_ms)
        offset = 0 if style == "naive" else self.offset(utc_ms)
        wall = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=utc_ms + offset * MINUTE_MS)  # noqa: DTZ001
        text = wall.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc_ms % 1000:03d}"
        if style == "naive":
            return text
        sign = "+" if offset >= 0 else "-"
        hours, minutes = divmod(abs(offset), 60)
        return text + (
            f"{sign}{hours:02d}:{minutes:02d}" if style == "offset" else f"{sign}{hours:02d}{minutes:02d}"
        )

    def new_id(self) -> str:
        self.ids += 1
        return f"{(self.seed * 1_000_003 + self.ids) % (1 << 96):024x}"

    def glucose(self, mgdl: float) -> tuple[float | int, float]:
        """``(written value, mg/dL read back)`` of treatment glucose in the chosen units."""
        if self.opts.glucose_units == "mmol":
            written = round(mgdl / MGDL_PER_MMOLL, 1)
            return written, written * MGDL_PER_MMOLL
        value = round(mgdl)
        return value, float(value)

    def add(self, collection: str, utc_ms: int, body: dict[str, Any], *expected: ExpectedRecord) -> None:
        if self.opts.ids:
            body = {"_id": self.new_id(), **body}
        if self.opts.utc_offset and collection != "devicestatus":
            body["utcOffset"] = self.offset(utc_ms)
        self.docs.append(_Doc(collection, utc_ms, body, list(expected)))

    def treatment(self, utc_ms: int, event: str, *expected: ExpectedRecord, **fields: Any) -> None:  # noqa: ANN401
        """A treatment of the uploader's shape (``enteredBy``, app fields)."""
        body: dict[str, Any] = {"eventType": event, "created_at": self.stamp(utc_ms)}
        if self.opts.uploader == "aaps":
            body.update({"date": utc_ms, "isValid": True, "app": "AAPS"})
        elif self.opts.uploader == "xdrip":
            body.update({"timestamp": utc_ms, "uuid": str(uuid.UUID(int=utc_ms << 20 | self.ids))})
        elif self.opts.uploader == "loop":
            body["syncIdentifier"] = f"{utc_ms:x}{self.ids:04x}"
        if self.entered_by is not None and "enteredBy" not in fields:
            body["enteredBy"] = self.entered_by
        body.update({k: v for k, v in fields.items() if v is not None})
        self.add("treatments", utc_ms, body, *expected)

    # -- entries -----------------------------------------------------------------------------------

    def entries(self) -> None:
        timeline = self.timeline
        top = CGM_RANGE_MGDL[timeline.profile.cgm][1]
        previous: int | None = None
        for at, mgdl in zip(timeline.cgm_ms.tolist(), timeline.cgm_mgdl.tolist(), strict=True):
            if mgdl < SENSOR_LOW_MGDL:
                written, expected = LOW_CODE, ExpectedRecord("cbg", "sensor", at, SENSOR_LOW_MGDL, "low")
            else:
                written = round(min(mgdl, top))
                expected = ExpectedRecord("cbg", "sensor", at, float(written))
            delta = 0 if previous is None else written - previous
            previous = written
            body: dict[str, Any] = {
                "device": self.entries_device,
                "date": at,
                "dateString": self.stamp(at, entry=True),
                "sgv": written,
                "direction": _direction(delta),
                "type": "sgv",
            }
            if self.opts.uploader == "xdrip":
                body.update(
                    {
                        "delta": float(delta),
                        "filtered": written * 1000.0,
                        "unfiltered": written * 1010.0,
                        "rssi": 100,
                        "noise": 1,
                        "sysTime": self.stamp(at, entry=True),
                    }
                )
            elif self.opts.uploader == "aaps":
                body["app"] = "AAPS"
            if body["dateString"] is None:
                del body["dateString"]
                body.pop("sysTime", None)
            self.add("entries", at, body, expected)

    def fingersticks(self) -> None:
        for event in self.timeline.of_kind("fingerstick"):
            if event.value is None:
                continue
            at = event.utc_ms
            if self.opts.uploader == "xdrip":
                value = round(event.value)
                body = {
                    "device": self.entries_device,
                    "type": "mbg",
                    "date": at,
                    "dateString": self.stamp(at, entry=True),
                    "mbg": value,
                }
                if body["dateString"] is None:
                    del body["dateString"]
                self.add("entries", at, body, ExpectedRecord("smbg", "meter", at, float(value)))
                if self.opts.calibrations:
                    cal = {
                        "device": self.entries_device,
                        "type": "cal",
                        "date": at,
                        "slope": 1000.0,
                        "intercept": 0.0,
                        "scale": 1,
                    }
                    self.add("entries", at, cal)
                continue
            written, mgdl = self.glucose(event.value)
            self.treatment(
                at,
                "BG Check",
                ExpectedRecord("smbg", "meter", at, mgdl),
                glucose=written,
                glucoseType="Finger",
                units=self.opts.glucose_units,
            )

    # -- treatments --------------------------------------------------------------------------------

    def carbs(self) -> None:
        for event in self.timeline.of_kind("carbs"):
            if event.value is None:
                continue
            at = event.utc_ms
            grams = round(event.value)
            expected = [ExpectedRecord("food", "", at, float(grams))]
            notes = None
            if event.value >= BIG_MEAL_G:
                notes = "Pizza mit Käse"
                expected.append(ExpectedRecord("note", "", at, None))
            if self.opts.uploader == "xdrip":
                self.treatment(at, "<none>", *expected, carbs=grams, insulin=0, notes=notes or "")
            else:
                absorption = 180 if self.opts.uploader == "loop" else None
                self.treatment(
                    at, "Carb Correction", *expected, carbs=grams, absorptionTime=absorption, notes=notes
                )

    def boluses(self) -> None:
        """Pump boluses and rapid pen doses (the latter as careportal boluses outside xDrip+)."""
        meals = [e.utc_ms for e in self.timeline.of_kind("carbs")]
        wizards = {e.utc_ms: e for e in self.timeline.of_kind("wizard")}
        number = 0
        for event in self.timeline.of_kind("bolus", "pen_rapid", "pen_long"):
            if event.value is None:
                continue
            at = event.utc_ms
            if self.opts.uploader == "xdrip":
                self.xdrip_dose(event)
                continue
            if event.kind == "pen_long":
                continue  # the careportal has no long-acting insulin; such doses stay in a pen log
            number += 1
            combo = bool(self.opts.combo_every) and number % self.opts.combo_every == 0
            if combo:
                self.combo(at, event.value)
                continue
            near_meal = any(abs(at - m) <= 30 * MINUTE_MS for m in meals)
            automatic = (
                event.kind == "bolus"
                and self.loop_app
                and bool(self.opts.automatic_every)
                and number % self.opts.automatic_every == 0
            )
            expected = ExpectedRecord("bolus", "automated" if automatic else "normal", at, event.value)
            up = self.opts.uploader
            if up == "loop" and event.kind == "bolus":
                self.treatment(
                    at,
                    "Correction Bolus",
                    expected,
                    type="normal",
                    insulin=event.value,
                    programmed=event.programmed,
                    duration=0,
                    automatic=automatic,
                    insulinType="humalog",
                )
            elif up == "aaps" and event.kind == "bolus":
                wizard = wizards.get(at)
                meal = wizard is not None and bool(wizard.value)
                self.pump_id += 1
                self.treatment(
                    at,
                    "Meal Bolus" if meal and not automatic else "Correction Bolus",
                    expected,
                    enteredBy=None,
                    insulin=event.value,
                    type="SMB" if automatic else "NORMAL",
                    isSMB=automatic,
                    pumpId=self.pump_id,
                    pumpType=PUMP_TYPE,
                    pumpSerial=self.serial,
                )
            elif up == "trio" and event.kind == "bolus":
                self.treatment(at, "Bolus", expected, insulin=event.value, isSMB=automatic or None)
            else:
                event_type = "Meal Bolus" if near_meal else "Correction Bolus"
                self.treatment(at, event_type, expected, insulin=event.value)

    def combo(self, at: int, units: float) -> None:
        """A careportal Combo Bolus: half now, half over an hour (as the careportal computes it)."""
        now = units * 50 / 100
        self.treatment(
            at,
            "Combo Bolus",
            ExpectedRecord("bolus", "dual", at, units),
            enteredinsulin=units,
            insulin=now,
            relative=units * 50 / 100 / 60 * 60,
            splitNow=50,
            splitExt=50,
            duration=60,
        )

    def xdrip_dose(self, event: Event) -> None:
        at, units = event.utc_ms, event.value or 0.0
        if event.kind == "bolus":
            self.treatment(
                at, "<none>", ExpectedRecord("bolus", "normal", at, units), insulin=units, carbs=0, notes=""
            )
            return
        name = XDRIP_INSULINS[event.kind]
        subtype = "rapid" if event.kind == "pen_rapid" else "long"
        injections = json.dumps([{"insulin": name, "units": units}])
        self.treatment(
            at,
            "<none>",
            ExpectedRecord("insulin", subtype, at, units),
            insulin=units,
            carbs=0,
            insulinInjections=injections,
            notes="",
        )

    def basals(self) -> None:
        timeline = self.timeline
        if not timeline.basal_schedule or self.opts.uploader == "xdrip":
            return
        starts = [start for start, _ in timeline.basal_schedule]
        for event in timeline.of_kind("basal", "suspend", "resume"):
            at = event.utc_ms
            if event.kind == "basal" and event.subtype == "temp" and event.percent is not None:
                minutes = (event.duration_s or 0) // 60
                if self.careportal:
                    expected = ExpectedRecord("basal", "temp", at, None)
                    self.treatment(at, "Temp Basal", expected, percent=event.percent - 100, duration=minutes)
                    continue
                local = timeline.local(at)
                minute = local.hour * 60 + local.minute
                scheduled = timeline.basal_schedule[bisect.bisect_right(starts, minute) - 1][1]
                rate = round(scheduled * event.percent / 100, 3)
                automatic = self.opts.uploader == "loop"
                expected = ExpectedRecord("basal", "automated" if automatic else "temp", at, rate)
                fields: dict[str, Any] = {"absolute": rate, "rate": rate, "duration": minutes}
                if automatic:
                    fields.update({"temp": "absolute", "automatic": True, "reason": "predicted low"})
                elif self.opts.uploader == "aaps":
                    self.pump_id += 1
                    fields.update(
                        {
                            "type": "NORMAL",
                            "pumpId": self.pump_id,
                            "pumpType": PUMP_TYPE,
                            "pumpSerial": self.serial,
                        }
                    )
                self.treatment(at, "Temp Basal", expected, **fields)
            elif event.kind == "suspend" and self.loop_app:
                minutes = (event.duration_s or 0) // 60
                expected = ExpectedRecord("deviceEvent", "suspend", at, None)
                self.treatment(at, "Suspend Pump", expected, duration=minutes)
            elif event.kind == "resume" and self.loop_app:
                self.treatment(at, "Resume Pump", ExpectedRecord("deviceEvent", "resume", at, None))

    def device_events(self) -> None:
        timeline = self.timeline
        xdrip = self.opts.uploader == "xdrip"
        for event in timeline.of_kind("rewind", "prime", "exercise", "health"):
            at = event.utc_ms
            if event.kind == "rewind" and not xdrip:
                self.treatment(
                    at, "Insulin Change", ExpectedRecord("deviceEvent", "reservoirChange", at, None)
                )
            elif event.kind == "prime" and event.subtype == "cannula" and not xdrip:
                self.treatment(at, "Site Change", ExpectedRecord("deviceEvent", "siteChange", at, None))
            elif event.kind == "prime" and self.opts.uploader == "aaps" and event.value:
                self.pump_id += 1
                self.treatment(
                    at,
                    "Correction Bolus",
                    ExpectedRecord("deviceEvent", "prime", at, event.value),
                    enteredBy=None,
                    insulin=event.value,
                    type="PRIMING",
                    isSMB=False,
                    pumpId=self.pump_id,
                    pumpType=PUMP_TYPE,
                    pumpSerial=self.serial,
                )
            elif event.kind == "exercise" and not xdrip:
                minutes = (event.duration_s or 0) // 60
                activity = ExpectedRecord("physicalActivity", "unknown", at, None)
                note = ExpectedRecord("note", "", at, None)
                self.treatment(at, "Exercise", activity, note, duration=minutes, notes="Running")
            elif event.kind == "health":
                text = (event.text or event.subtype or "unwell").strip()
                self.treatment(at, "Note", ExpectedRecord("note", "", at, None), notes=text)
        sessions = timeline.cgm_session
        if sessions.size:
            firsts = [0] + [i for i in range(1, sessions.size) if sessions[i] != sessions[i - 1]]
            for index in firsts:
                at = int(timeline.cgm_ms[index]) - WARMUP_MS
                if at < timeline.start_ms:
                    continue
                expected = [ExpectedRecord("deviceEvent", "sensorStart", at, None)]
                notes = None
                if self.careportal:
                    notes = "left arm"
                    expected.append(ExpectedRecord("note", "", at, None))
                self.treatment(at, "Sensor Start", *expected, notes=notes)

    def wizards(self) -> None:
        if self.opts.uploader != "aaps":
            return
        for event in self.timeline.of_kind("wizard"):
            at = event.utc_ms - 1000  # the calculation comes just before its bolus
            carbs = round(event.value or 0)
            fields: dict[str, Any] = {"carbs": carbs or None, "insulin": event.recommended}
            if event.bg is not None:
                written, _ = self.glucose(event.bg)
                fields.update({"glucose": written, "glucoseType": "Sensor", "units": self.opts.glucose_units})
            expected = ExpectedRecord("wizard", "", at, float(carbs) if carbs else None)
            self.treatment(at, "Bolus Wizard", expected, enteredBy=None, **fields)

    # -- profiles and device status ----------------------------------------------------------------

    def profiles(self) -> None:
        timeline = self.timeline
        schedule = calculator_schedule(timeline)
        moments = [(timeline.start_ms, schedule.before)]
        if timeline.start_ms < schedule.change_ms < timeline.end_ms:
            moments.append((schedule.change_ms, schedule.after))
        mmol = self.opts.glucose_units == "mmol"
        factor = 1 / MGDL_PER_MMOLL if mmol else 1.0
        digits = 1 if mmol else 0

        def entries(
            pairs: list[tuple[int, float]], scale: float = 1.0, decimals: int = 2
        ) -> list[dict[str, Any]]:
            out = []
            for start, value in pairs:
                number = round(value * scale, decimals)
                out.append(
                    {
                        "time": f"{start // 60:02d}:{start % 60:02d}",
                        "value": int(number) if decimals == 0 else number,
                        "timeAsSeconds": start * 60,
                    }
                )
            return out

        for at, settings in moments:
            default = self.profile_entry(settings, entries, factor, digits)
            store: dict[str, Any] = {"Default": default}
            if timeline.basal_schedule:
                store["Exercise"] = {
                    "basal": entries([(s, r * 0.8) for s, r in timeline.basal_schedule], decimals=3),
                    "units": self.opts.glucose_units,
                    "timezone": timeline.profile.timezone,
                }
            body: dict[str, Any] = {
                "defaultProfile": "Default",
                "startDate": self.stamp(at),
                "created_at": self.stamp(at),
                "mills": str(at),
                "units": self.opts.glucose_units,
                "store": store,
            }
            if self.entered_by is not None:
                body["enteredBy"] = "Loop" if self.opts.uploader == "loop" else self.entered_by
            if self.opts.uploader == "loop":
                body["loopSettings"] = {
                    "dosingEnabled": True,
                    "maximumBolus": 10.0,
                    "maximumBasalRatePerHour": 3.0,
                }
            self.add("profile", at, body, ExpectedRecord("pumpSettings", "", at, None))

    def profile_entry(
        self,
        settings: CalculatorSettings,
        entries: Callable[..., list[dict[str, Any]]],
        factor: float,
        digits: int,
    ) -> dict[str, Any]:
        basal = self.timeline.basal_schedule
        return {
            "dia": 6 if self.opts.uploader == "loop" else "5",
            "carbs_hr": "20",
            "delay": "20",
            "timezone": self.timeline.profile.timezone,
            "units": self.opts.glucose_units,
            "basal": entries(list(basal), decimals=3),
            "carbratio": entries(list(settings.carb_ratios), decimals=1),
            "sens": entries(list(settings.sensitivities), factor, digits),
            "target_low": entries([(s, lo) for s, lo, _ in settings.targets], factor, digits),
            "target_high": entries([(s, hi) for s, _, hi in settings.targets], factor, digits),
        }

    def devicestatus(self) -> None:
        timeline = self.timeline
        device = {
            "xdrip": self.entries_device,
            "loop": "loop://iPhone",
            "aaps": "openaps://samsung SM-G970F",
            "trio": "Trio",
            "share2": "share2",
            "librelinkup": "nightscout-librelink-up",
        }[self.opts.uploader]
        for at in range(timeline.start_ms + HOUR_MS // 2, timeline.end_ms, HOUR_MS):
            body: dict[str, Any] = {"device": device, "uploader": {"battery": 80 - (at // HOUR_MS) % 50}}
            if self.opts.uploader != "xdrip":
                body["created_at"] = self.stamp(at)
            if self.opts.uploader == "loop":
                body["loop"] = {
                    "iob": {"iob": 1.2},
                    "cob": {"cob": 10},
                    "enacted": {"rate": 0.8, "duration": 30},
                }
                body["pump"] = {"reservoir": 120, "battery": {"percent": 70}}
            elif self.opts.uploader in ("aaps", "trio"):
                body["openaps"] = {"iob": {"iob": 1.1}, "suggested": {"bg": 120, "eventualBG": 110}}
                body["pump"] = {"reservoir": 118.5, "battery": {"percent": 65}}
            self.add("devicestatus", at, body)


def _direction(delta: int) -> str:
    """Nightscout's trend name of a change per five minutes (mg/dL)."""
    for limit, name in (
        (-15, "DoubleDown"),
        (-10, "SingleDown"),
        (-5, "FortyFiveDown"),
        (5, "Flat"),
        (10, "FortyFiveUp"),
        (15, "SingleUp"),
    ):
        if delta < limit:
            return name
    return "DoubleUp"


def write_nightscout(timeline: Timeline, options: NightscoutOptions | None = None) -> WrittenExport:
    """Write ``timeline`` as Nightscout JSON; returns the bytes and the records they hold."""
    opts = options or NightscoutOptions()
    writer = _Writer(timeline, opts)
    writer.entries()
    writer.fingersticks()
    writer.carbs()
    writer.boluses()
    writer.basals()
    writer.device_events()
    writer.wizards()
    writer.profiles()
    writer.devicestatus()
    docs = sorted(writer.docs, key=lambda d: d.utc_ms, reverse=opts.newest_first)
    collections = ("entries", "treatments", "devicestatus", "profile")
    if opts.layout == "collections":
        kept = docs
        data: Any = {name: [d.body for d in docs if d.collection == name] for name in collections}
    elif opts.layout == "array":
        kept = docs
        data = [d.body for d in docs]
    else:
        kept = [d for d in docs if d.collection == opts.layout]
        data = [d.body for d in kept]
    if opts.pretty:
        text = json.dumps(data, indent=2, ensure_ascii=False)
        if opts.crlf:
            text = text.replace("\n", "\r\n")
    else:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if opts.bom:
        text = "\ufeff" + text
    expected = [record for d in kept for record in d.expected]
    name = "nightscout.json" if opts.layout in ("collections", "array") else f"{opts.layout}.json"
    return WrittenExport(name, text.encode("utf-8"), expected)
