"""Simulate a patient's true glucose trace and therapy events.

The model is deliberately simple and transparent, made to exercise importers, analytics and reports
with realistic shapes rather than to predict physiology: glucose is a baseline with a dawn rise,
plus meal and insulin responses (difference-of-exponential kernels, so every response returns to
baseline), exercise dips, a missed-dose effect for long-acting insulin, and AR(1) noise. Sensor
sessions have warm-ups and signal-loss gaps; readings outside the sensor's range stay in the
timeline and are written by each vendor's writer as that vendor writes LO/HI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import string
import uuid
import zoneinfo

import numpy as np
import numpy.typing as npt

from glucoshare.simulator.timeline import CGM_INTERVAL_S, Event, PatientProfile, Timeline

MINUTE_MS = 60_000
_SESSION_DAYS = {"dexcom_g6": 10, "dexcom_g7": 10, "libre2": 14, "libre3": 14, "guardian4": 7}
_WARMUP_MIN = {"dexcom_g6": 120, "dexcom_g7": 30, "libre2": 60, "libre3": 60, "guardian4": 120}
_PUMP_SCHEDULE = [(0, 0.8), (180, 0.95), (420, 1.05), (720, 0.85), (1200, 0.9)]


def _response(length_min: int, rise_min: float, fall_min: float) -> npt.NDArray[np.float64]:
    """Unit-peak response kernel: difference of two exponential approach curves."""
    tau = np.arange(length_min, dtype=np.float64)
    curve = np.exp(-tau / fall_min) - np.exp(-tau / rise_min)
    peak = float(curve.max())
    return np.asarray(curve / peak, dtype=np.float64)


def _local_ms(day: dt.date, minute: float, tz: zoneinfo.ZoneInfo) -> int:
    wall = dt.datetime.combine(day, dt.time(0)) + dt.timedelta(minutes=float(minute))
    return int(wall.replace(tzinfo=tz).timestamp() * 1000)


class _Builder:
    def __init__(self, profile: PatientProfile, start: dt.date, days: int, interval_s: int | None) -> None:
        self.profile = profile
        self.interval_s = interval_s or CGM_INTERVAL_S[profile.cgm]
        self.tz = zoneinfo.ZoneInfo(profile.timezone)
        self.rng = np.random.default_rng(profile.seed)
        self.start = start
        self.days = days
        self.start_ms = _local_ms(start, 0, self.tz)
        self.end_ms = _local_ms(start + dt.timedelta(days=days), 0, self.tz)
        self.n = (self.end_ms - self.start_ms) // MINUTE_MS
        self.events: list[Event] = []
        self.drive = np.zeros(self.n, dtype=np.float64)  # mg/dL effect of each impulse, before kernels
        self.meal_drive = np.zeros(self.n)
        self.insulin_drive = np.zeros(self.n)
        self.exercise_drive = np.zeros(self.n)
        self.slow_drive = np.zeros(self.n)
        self.looseness = 1.5 - profile.control
        self.icr = float(self.rng.uniform(8, 14))
        self.isf = float(self.rng.uniform(35, 60))
        # Carb sensitivity factor, mg/dL per gram, slightly off when control is loose.
        self.csf = self.isf / self.icr * (1.0 + 0.15 * (self.looseness - 0.5))

    def index(self, utc_ms: int) -> int:
        return int((utc_ms - self.start_ms) // MINUTE_MS)

    def local_minutes(self) -> npt.NDArray[np.float64]:
        """Local minute of the day at each grid minute (offsets looked up once per hour)."""
        minutes = np.empty(self.n, dtype=np.float64)
        for hour_start in range(0, self.n, 60):
            utc = dt.datetime.fromtimestamp((self.start_ms + hour_start * MINUTE_MS) / 1000, tz=self.tz)
            offset = utc.utcoffset()
            offset_min = int(offset.total_seconds() // 60) if offset is not None else 0
            stop = min(hour_start + 60, self.n)
            utc_min = (self.start_ms // MINUTE_MS) + np.arange(hour_start, stop)
            minutes[hour_start:stop] = (utc_min + offset_min) % 1440
        return minutes

    def add(self, event: Event) -> None:
        if self.start_ms <= event.utc_ms < self.end_ms:
            self.events.append(event)

    def therapy(self) -> None:
        rng, profile = self.rng, self.profile
        icr, isf, target = self.icr, self.isf, 110.0
        for d in range(self.days):
            day = self.start + dt.timedelta(days=d)
            meals = [(7 * 60, 90, 30, 70), (12 * 60, 90, 40, 90), (18 * 60, 120, 50, 100)]
            if rng.random() < 0.5:
                meals.append((int(rng.choice([15 * 60, 21 * 60])), 60, 10, 30))
            for start_min, spread, low, high in meals:
                minute = start_min + rng.uniform(0, spread)
                at = _local_ms(day, minute, self.tz)
                carbs = float(round(rng.uniform(low, high)))
                self.add(Event(at, "carbs", carbs))
                self.meal(at, carbs)
                if rng.random() < 0.15 * self.looseness:
                    continue  # forgotten bolus
                dose = carbs / icr * float(rng.lognormal(0, 0.3 * self.looseness))
                bolus_at = at + int(rng.normal(0, 10 * self.looseness)) * MINUTE_MS
                if rng.random() < 0.08 * self.looseness:
                    dose *= 2.2  # overbolus: the source of most lows
                self.dose(bolus_at, dose, icr=icr, isf=isf, target=target, carbs=carbs)
            if rng.random() < 0.3:
                at = _local_ms(day, rng.uniform(17 * 60, 19 * 60), self.tz)
                duration = int(rng.choice([30, 45, 60])) * 60
                intensity = str(rng.choice(["light", "medium", "heavy"]))
                self.add(Event(at, "exercise", subtype=intensity, duration_s=duration))
                depth = {"light": 30, "medium": 50, "heavy": 80}[intensity]
                self.exercise_drive[max(0, self.index(at))] += depth if 0 <= self.index(at) < self.n else 0
            if rng.random() < 0.3 + 0.4 * self.looseness:
                # A high from stress, illness or an unannounced snack, corrected about two hours later.
                at = _local_ms(day, rng.uniform(10 * 60, 21 * 60), self.tz)
                rise = float(rng.uniform(40, 110)) * self.looseness
                i = self.index(at)
                if 0 <= i < self.n:
                    self.slow_drive[i] += rise
                correction_at = at + int(rng.uniform(90, 180)) * MINUTE_MS
                self.dose(correction_at, rise / isf * 0.9, icr=icr, isf=isf, target=target, carbs=0.0)
            if profile.therapy == "mdi":
                at = _local_ms(day, 22 * 60 + rng.normal(0, 20), self.tz)
                if rng.random() < 0.05 * self.looseness:
                    i = self.index(at)
                    if 0 <= i < self.n:
                        self.slow_drive[i] += 70  # missed long-acting dose
                else:
                    self.add(Event(at, "pen_long", float(round(rng.uniform(16, 24)))))
            else:
                self.pump_day(day)
            for _ in range(int(rng.integers(0, 3))):
                at = _local_ms(day, rng.uniform(6 * 60, 22 * 60), self.tz)
                self.add(Event(at, "fingerstick", subtype="meter"))

    def meal(self, at: int, carbs: float) -> None:
        i = self.index(at)
        if 0 <= i < self.n:
            self.meal_drive[i] += carbs * self.csf

    def dose(self, at: int, units: float, *, icr: float, isf: float, target: float, carbs: float) -> None:
        units = round(units * 20) / 20 if self.profile.therapy == "pump" else round(units * 2) / 2
        if units <= 0:
            return
        i = self.index(at)
        if 0 <= i < self.n:
            self.insulin_drive[i] += units * isf
        if self.profile.therapy == "pump":
            self.add(
                Event(at, "wizard", carbs, ratio=icr, isf=isf, target=target, recommended=units, bg=None)
            )
            programmed = units
            delivered = units
            if self.rng.random() < 0.03:
                delivered = round(units * float(self.rng.uniform(0.2, 0.9)), 2)
            self.add(Event(at, "bolus", delivered, subtype="normal", programmed=programmed))
        else:
            self.add(Event(at, "pen_rapid", units))

    def pump_day(self, day: dt.date) -> None:
        rng = self.rng
        for start_min, rate in _PUMP_SCHEDULE:
            at = _local_ms(day, start_min, self.tz)
            self.add(Event(at, "basal", rate, subtype="scheduled"))
        if rng.random() < 0.25:
            at = _local_ms(day, rng.uniform(8 * 60, 20 * 60), self.tz)
            percent = float(rng.choice([50, 70, 80, 120, 150]))
            hours = int(rng.integers(1, 5))
            self.add(Event(at, "basal", None, subtype="temp", percent=percent, duration_s=hours * 3600))
        if (day - self.start).days % 3 == 1:
            at = _local_ms(day, rng.uniform(7 * 60, 21 * 60), self.tz)
            self.add(Event(at, "rewind"))
            self.add(Event(at + 60_000, "prime", round(float(rng.uniform(7, 9)), 1), subtype="tubing"))
            self.add(Event(at + 120_000, "prime", 0.3, subtype="cannula"))
        if rng.random() < 0.1:
            at = _local_ms(day, rng.uniform(8 * 60, 20 * 60), self.tz)
            minutes = int(rng.integers(15, 90))
            self.add(Event(at, "suspend", duration_s=minutes * 60))
            self.add(Event(at + minutes * MINUTE_MS, "resume"))
            i = self.index(at)
            if 0 <= i < self.n:
                self.slow_drive[i] += minutes * 0.4

    def glucose(self) -> npt.NDArray[np.float64]:
        rng = self.rng
        n = self.n
        minutes = self.local_minutes()
        control = self.profile.control
        base = 150.0 - 40.0 * control
        dawn = 25.0 * np.exp(-(((minutes - 6 * 60) / 90.0) ** 2))
        g = base + dawn
        meal_kernel = _response(360, 20, 70)
        insulin_kernel = _response(480, 45, 130)
        # Same area for both: a dose that matches the meal's carbs leaves no net effect.
        insulin_kernel *= meal_kernel.sum() / insulin_kernel.sum()
        for drive, kernel, scale in (
            (self.meal_drive, meal_kernel, 0.45 * self.looseness),
            (-self.insulin_drive, insulin_kernel, 0.45 * self.looseness),
            (-self.exercise_drive, _response(240, 20, 60), 1.0),
            (self.slow_drive, _response(1440, 60, 600), 1.0),
        ):
            if drive.any():
                g = g + scale * np.convolve(drive, kernel)[:n]
        noise = np.empty(n)
        phi, sigma = 0.985, 2.2 * (1.6 - control)
        shocks = rng.normal(0, sigma, n)
        value = 0.0
        for i in range(n):  # AR(1); a plain loop is fast enough for a year of minutes
            value = phi * value + shocks[i]
            noise[i] = value
        return np.clip(g + noise, 25.0, 600.0)

    def sensor(self, truth: npt.NDArray[np.float64]) -> _SensorData:
        rng, kind = self.rng, self.profile.cgm
        interval_s = self.interval_s
        session_ms = _SESSION_DAYS[kind] * 86_400_000
        warmup_ms = _WARMUP_MIN[kind] * MINUTE_MS
        times: list[npt.NDArray[np.int64]] = []
        sessions: list[npt.NDArray[np.int32]] = []
        tx_numbers: list[npt.NDArray[np.int32]] = []
        clocks: list[npt.NDArray[np.int64]] = []
        transmitters: list[str] = []
        session_start = self.start_ms - int(rng.uniform(0, session_ms * 0.8))
        number = 0
        g6_tx_start = session_start
        while session_start < self.end_ms:
            if kind == "dexcom_g6":
                if session_start - g6_tx_start >= 90 * 86_400_000 or not transmitters:
                    g6_tx_start = session_start
                    transmitters.append(_g6_transmitter(rng))
                tx_start = g6_tx_start
            else:
                transmitters.append("".join(rng.choice(list(string.digits), 12)))
                tx_start = session_start
            first = session_start + warmup_ms
            stop = min(session_start + session_ms, self.end_ms)
            count = max(0, (stop - first) // (interval_s * 1000))
            at = first + np.arange(count, dtype=np.int64) * interval_s * 1000
            if kind.startswith("dexcom"):
                at = at + rng.integers(-2000, 2001, count)
            keep = at >= self.start_ms
            for _ in range(rng.poisson(0.3 * _SESSION_DAYS[kind])):
                gap_start = int(rng.uniform(first, max(first + 1, stop)))
                gap_len = int(rng.uniform(15, 120)) * MINUTE_MS
                keep &= ~((at >= gap_start) & (at < gap_start + gap_len))
            at = at[keep]
            times.append(at)
            sessions.append(np.full(at.size, number, dtype=np.int32))
            tx_numbers.append(np.full(at.size, len(transmitters) - 1, dtype=np.int32))
            clocks.append((at - tx_start) // 1000)
            session_start += session_ms + int(rng.uniform(5, 60)) * MINUTE_MS
            number += 1
        cgm_ms = np.concatenate(times) if times else np.empty(0, dtype=np.int64)
        idx = np.clip((cgm_ms - self.start_ms) // MINUTE_MS, 0, self.n - 1)
        values = truth[idx] + rng.normal(0, 3, cgm_ms.size)
        return _SensorData(
            ms=cgm_ms.astype(np.int64),
            mgdl=np.round(values, 1),
            session=np.concatenate(sessions) if sessions else np.empty(0, dtype=np.int32),
            clock_s=np.concatenate(clocks).astype(np.int64) if clocks else np.empty(0, dtype=np.int64),
            transmitter=np.concatenate(tx_numbers) if tx_numbers else np.empty(0, dtype=np.int32),
            transmitters=transmitters,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _SensorData:
    ms: npt.NDArray[np.int64]
    mgdl: npt.NDArray[np.float64]
    session: npt.NDArray[np.int32]
    clock_s: npt.NDArray[np.int64]
    transmitter: npt.NDArray[np.int32]
    transmitters: list[str]


def _g6_transmitter(rng: np.random.Generator) -> str:
    alphabet = list(string.digits + string.ascii_uppercase)
    return "8" + "".join(rng.choice(alphabet, 5))


def simulate(
    profile: PatientProfile, *, start: dt.date, days: int, cgm_interval_s: int | None = None
) -> Timeline:
    """Simulate ``days`` local days of ``profile`` starting at local midnight of ``start``.

    ``cgm_interval_s`` overrides the sensor's sampling interval (for example 60 s to make the
    one-minute files of the benchmarks). Deterministic for a given profile (its ``seed``), start,
    length and interval.
    """
    if days < 1:
        msg = "days must be at least 1"
        raise ValueError(msg)
    builder = _Builder(profile, start, days, cgm_interval_s)
    builder.therapy()
    truth = builder.glucose()
    sensor = builder.sensor(truth)
    events = []
    for planned in sorted(builder.events, key=lambda e: (e.utc_ms, e.kind)):
        event = planned
        if event.kind in ("fingerstick", "wizard"):
            i = min(max(builder.index(event.utc_ms), 0), builder.n - 1)
            bg = float(round(truth[i] + builder.rng.normal(0, 5)))
            if event.kind == "fingerstick":
                event = Event(event.utc_ms, "fingerstick", bg, subtype=event.subtype)
            elif builder.rng.random() < 0.5:
                event = Event(
                    event.utc_ms,
                    "wizard",
                    event.value,
                    bg=bg,
                    ratio=event.ratio,
                    isf=event.isf,
                    target=event.target,
                    recommended=event.recommended,
                )
        events.append(event)
    serials = {
        "pump": f"NG{builder.rng.integers(1_000_000, 9_999_999)}H",
        "reader": f"MB{builder.rng.integers(10_000_000, 99_999_999)}",
        "app": str(
            uuid.UUID(int=int(builder.rng.integers(0, 2**63)) << 64 | profile.seed, version=4)
        ).upper(),
        "meter": f"{builder.rng.integers(0x100000, 0xFFFFFF):06X}",
    }
    return Timeline(
        profile=profile,
        start_ms=builder.start_ms,
        end_ms=builder.end_ms,
        cgm_ms=sensor.ms,
        cgm_mgdl=sensor.mgdl,
        cgm_session=sensor.session,
        cgm_clock_s=sensor.clock_s,
        cgm_transmitter=sensor.transmitter,
        transmitters=sensor.transmitters,
        events=events,
        basal_schedule=list(_PUMP_SCHEDULE) if profile.therapy == "pump" else [],
        device_serials=serials,
    )
