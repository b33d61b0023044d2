"""The true timeline of a simulated patient: what happened, in UTC, before any vendor wrote it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from typing import Literal

import numpy as np
import numpy.typing as npt

Therapy = Literal["mdi", "pump"]
CgmKind = Literal["dexcom_g6", "dexcom_g7", "libre2", "libre3", "guardian4"]

CGM_RANGE_MGDL: dict[str, tuple[float, float]] = {
    "dexcom_g6": (40.0, 400.0),
    "dexcom_g7": (40.0, 400.0),
    "libre2": (40.0, 500.0),
    "libre3": (40.0, 500.0),
    "guardian4": (40.0, 400.0),
}
"""Reporting range of each sensor; readings outside are written as the vendor writes LO/HI."""

CGM_INTERVAL_S: dict[str, int] = {
    "dexcom_g6": 300,
    "dexcom_g7": 300,
    "libre2": 900,
    "libre3": 300,
    "guardian4": 300,
}


@dataclasses.dataclass(frozen=True, slots=True)
class PatientProfile:
    """Who is simulated and with which devices."""

    name: str
    email: str
    birthdate: dt.date
    timezone: str
    therapy: Therapy
    cgm: CgmKind
    units: Literal["mg/dL", "mmol/L"] = "mg/dL"
    control: float = 0.5
    """0 (poor control: long highs, frequent lows) … 1 (tight control)."""
    seed: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One discrete true event.

    ``kind`` and ``value``:
    ``carbs`` (g), ``bolus`` (U delivered; ``programmed`` may differ when interrupted),
    ``pen_rapid`` / ``pen_long`` (U), ``basal`` (U/h; ``subtype`` scheduled/temp/suspend,
    ``duration_s``, ``percent`` for temp), ``fingerstick`` (mg/dL; ``subtype`` meter/calibration),
    ``exercise`` (``duration_s``, ``subtype`` light/medium/heavy), ``prime`` (U), ``rewind``,
    ``suspend``, ``resume``, ``alarm`` (``text``), ``wizard`` (carbs g with ``bg``, ``ratio``,
    ``isf``, ``target``, ``recommended``), ``health`` (``text``), ``scan`` (mg/dL).
    """

    utc_ms: int
    kind: str
    value: float | None = None
    subtype: str = ""
    duration_s: int | None = None
    percent: float | None = None
    programmed: float | None = None
    text: str | None = None
    bg: float | None = None
    ratio: float | None = None
    isf: float | None = None
    target: float | None = None
    recommended: float | None = None


@dataclasses.dataclass(slots=True)
class Timeline:
    """Everything that happened to one simulated patient.

    ``cgm_ms``/``cgm_mgdl`` are the sensor's readings (true value, not yet clipped to the sensor's
    range), ``cgm_session`` the sensor session number of each reading, ``cgm_clock_s`` the
    transmitter clock (seconds since the reading's transmitter started) and ``cgm_transmitter`` the
    index of that transmitter in ``transmitters``.
    """

    profile: PatientProfile
    start_ms: int
    end_ms: int
    cgm_ms: npt.NDArray[np.int64]
    cgm_mgdl: npt.NDArray[np.float64]
    cgm_session: npt.NDArray[np.int32]
    cgm_clock_s: npt.NDArray[np.int64]
    cgm_transmitter: npt.NDArray[np.int32]
    transmitters: list[str]
    events: list[Event]
    basal_schedule: list[tuple[int, float]]
    """Pump basal schedule: (minute of the local day it starts, U/h)."""
    device_serials: dict[str, str]

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        """The patient's time zone."""
        return zoneinfo.ZoneInfo(self.profile.timezone)

    def local(self, utc_ms: int) -> dt.datetime:
        """The patient's wall time (naive) at an instant."""
        aware = dt.datetime.fromtimestamp(utc_ms / 1000, tz=self.tz)
        return aware.replace(tzinfo=None)

    def window(self, start_ms: int, end_ms: int) -> Timeline:
        """The part of this timeline in ``[start_ms, end_ms)``: an export of a shorter date range."""
        keep = (self.cgm_ms >= start_ms) & (self.cgm_ms < end_ms)
        return dataclasses.replace(
            self,
            start_ms=max(start_ms, self.start_ms),
            end_ms=min(end_ms, self.end_ms),
            cgm_ms=self.cgm_ms[keep],
            cgm_mgdl=self.cgm_mgdl[keep],
            cgm_session=self.cgm_session[keep],
            cgm_clock_s=self.cgm_clock_s[keep],
            cgm_transmitter=self.cgm_transmitter[keep],
            events=[e for e in self.events if start_ms <= e.utc_ms < end_ms],
        )

    def of_kind(self, *kinds: str) -> list[Event]:
        """The events of the given kinds, in time order."""
        return [e for e in self.events if e.kind in kinds]
