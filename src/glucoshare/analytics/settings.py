"""Pump settings: canonical payload, calculator-derived settings, observed basal, changes.

The data of a "Device settings" report, after Tidepool's Device Settings view (research/tidepool.md
§1.2 and §4.1): the latest pump settings, their history of changes, and the settings seen in use.

Times are minutes of the local day (``start_min``, 0 to 1439) or milliseconds on the *local* time
axis (wall-clock milliseconds since 1970-01-01, so that ``// 86_400_000`` is the local day number).
Glucose is always mg/dL; insulin in U, basal rates in U/h.

The canonical ``pumpSettings`` payload
--------------------------------------
A ``pumpSettings`` record (``value`` empty) keeps one snapshot of a pump's settings in its payload,
Tidepool's ``pumpSettings`` reduced to what a report shows, with glucose converted to mg/dL::

    {
      "active_schedule": "Standard",
      "basal_schedules": {"Standard": [{"start_min": 0, "rate_u_h": 0.8},
                                       {"start_min": 420, "rate_u_h": 1.05}]},
      "carb_ratios": [{"start_min": 0, "g_per_u": 8.0}, {"start_min": 660, "g_per_u": 10.0}],
      "sensitivities": [{"start_min": 0, "mgdl_per_u": 45.0}],
      "targets": [{"start_min": 0, "low_mgdl": 100.0, "high_mgdl": 120.0}],
      "max_bolus_u": 10.0,
      "max_basal_u_h": 3.0,
      "insulin_duration_h": 4.0
    }

Every key may be missing or ``null`` (a schedule may also be ``[]``): the pump did not report it.
:func:`parse_pump_settings` is strict: no other keys; a schedule is a list of entries with exactly
the keys shown, ``start_min`` an integer 0 to 1439, strictly ascending, the first at 0; values are
finite numbers within :data:`BOUNDS` (carb ratio 1–150 g/U, sensitivity 5–600 mg/dL/U, targets
40–300 mg/dL with low ≤ high, basal rate 0–35 U/h, max bolus 0–100 U, max basal 0–35 U/h, insulin
duration 1–10 h; only basal rates may be 0); a named basal schedule has at least one entry, and
``active_schedule`` names one of them. Anything else raises :class:`InvalidPumpSettingsError`
naming the field (``carb_ratios[2].g_per_u``), never its value. :func:`pump_settings_payload` is
the inverse and writes every key, so importers build payloads through it.

Settings derived from the bolus calculator
------------------------------------------
Where no pump reports its settings, the bolus calculator (``wizard`` records) shows the carb ratio,
sensitivity and target range it used each time it was used. :func:`calculator_settings` turns
these into schedules:

1. **Uses by day.** Per local day, the value of each field at each use (minute of the day).
2. **Snapshots.** Consecutive days whose uses agree are merged into one snapshot; a day that
   contradicts the snapshot being built starts a new one. A use *contradicts* when it falls within
   the span of the day over which the snapshot saw one value (its first to its last use) and
   differs from it; or when it falls between such spans, equals neither the value seen just before
   it nor the one just after it, and lies within :data:`NEAR_MIN` (an hour) of one of them. A value
   seen further from any other is an entry the snapshot had not seen yet (an export often starts
   in the middle of a day, and a day may skip a meal).
3. **Settings persist.** A new snapshot keeps the runs of the snapshot before that its own uses
   leave standing (none of its uses contradicts them, and none of its runs of another value
   overlaps them), so an entry not used for a while is not lost; the agreement of later days is
   judged against these too.
4. **Entries.** The snapshot's uses, sorted by time of day, form runs of equal values; each run is
   an entry that starts at its first use rounded down to the half hour (to 15, 5 or 1 minute where
   the half hour would reach back over a use of the value before) and runs until the next
   different value; the first entry starts at 00:00. Consecutive snapshots that place a boundary
   between two entries in overlapping spans (after the last use of the value before, up to the
   first use of the next) share it, with one start from the earliest of those first uses, so that
   an unchanged boundary is not reported as a change. Consecutive snapshots that end up with the
   same settings are merged.

Limits: a value is only seen when the calculator is used, so an entry's true start lies somewhere
between the last use of the value before and the first use of its own value, and an entry never
used does not appear (the first entry reaches back to 00:00 although the night may differ). A
change is only seen from the first use after it: a snapshot starts on the first day the new
settings were used, not on the day they were changed. A changed value first used more than an hour
away from the uses of the value it replaces is taken for a new entry until a later use contradicts
the old one; a value used for the first time within an hour of another, say a rarely used
late-evening entry, cannot be told from a change and starts a new snapshot. The calculator shows
no basal rates, maximum bolus or basal, or insulin duration.

Observed basal schedule
-----------------------
:func:`observed_basal_schedule` reads the scheduled basal rate by time of day from the scheduled
basal segments of the most recent *complete* day: a local day that scheduled segments cover
entirely (a temporary basal or a suspension interrupts the schedule, and a pump log stops
mid-day).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt

DAY_MS: Final = 86_400_000
MINUTE_MS: Final = 60_000
MINUTES_PER_DAY: Final = 1440
COMPLETE_DAY_SLACK_MS: Final = MINUTE_MS
"""A day counts as complete when scheduled basal covers all of it but at most this much."""
NEAR_MIN: Final = 60
"""A calculator use this close (minutes) to a use of another value contradicts it (module notes)."""
MAX_OPEN_SEGMENT_MS: Final = DAY_MS
"""A basal segment without a duration runs to the next segment, at most this long."""

BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "rate_u_h": (0.0, 35.0),
    "g_per_u": (1.0, 150.0),
    "mgdl_per_u": (5.0, 600.0),
    "target_mgdl": (40.0, 300.0),
    "max_bolus_u": (0.0, 100.0),
    "max_basal_u_h": (0.0, 35.0),
    "insulin_duration_h": (1.0, 10.0),
}
"""Plausible ranges of the payload's numbers (inclusive; only ``rate_u_h`` may be 0, the
maxima must be above 0)."""

_KEYS: Final = frozenset(
    {
        "active_schedule",
        "basal_schedules",
        "carb_ratios",
        "sensitivities",
        "targets",
        "max_bolus_u",
        "max_basal_u_h",
        "insulin_duration_h",
    }
)
_START_STEPS = (30, 15, 5, 1)
_TOLERANCE = 1e-9

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
GlucoseUnit = Literal["mg/dL", "mmol/L"]
_MGDL_PER_MMOLL = 18.01559  # as records.vocabulary.MGDL_PER_MMOLL (analytics imports no domain module)


class InvalidPumpSettingsError(ValueError):
    """A ``pumpSettings`` payload does not follow the canonical shape; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"pumpSettings {field}: {problem}")
        self.field = field
        self.problem = problem


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """One entry of a schedule: in force from ``start_min`` (minute of the local day) until the next."""

    start_min: int
    value: float


@dataclasses.dataclass(frozen=True, slots=True)
class TargetEntry:
    """One entry of the glucose target schedule (mg/dL), in force from ``start_min`` until the next."""

    start_min: int
    low_mgdl: float
    high_mgdl: float


_Entry = TypeVar("_Entry", ScheduleEntry, TargetEntry)


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsInForce:
    """The settings in force at one minute of the day (``None`` where not known)."""

    basal_u_h: float | None
    carb_ratio_g_per_u: float | None
    sensitivity_mgdl_per_u: float | None
    target_low_mgdl: float | None
    target_high_mgdl: float | None


def entry_at(entries: Sequence[_Entry], minute: int) -> _Entry | None:
    """The entry of a schedule (ascending starts, the first at 0) in force at ``minute`` (0–1439)."""
    if not 0 <= minute < MINUTES_PER_DAY:
        msg = f"minute must be 0 to {MINUTES_PER_DAY - 1}"
        raise ValueError(msg)
    at = bisect.bisect_right([e.start_min for e in entries], minute)
    return entries[at - 1] if at else None


@dataclasses.dataclass(frozen=True, slots=True)
class PumpSettings:
    """One snapshot of pump settings.

    ``local_ms`` is when the snapshot was taken (the record's local time; for calculator-derived
    settings the local midnight of their first day of use). ``first_local_ms`` and
    ``last_local_ms`` bound the span over which these settings were seen: the first and last
    record that reported them, or, for calculator-derived settings, the local midnights starting
    the first and the last day of use. Basal schedules in U/h by name, carb ratios in g/U,
    sensitivities in mg/dL per U, targets in mg/dL.
    """

    local_ms: int
    source: Literal["pump", "calculator"]
    first_local_ms: int
    last_local_ms: int
    active_schedule: str | None = None
    basal_schedules: dict[str, tuple[ScheduleEntry, ...]] = dataclasses.field(default_factory=dict)
    carb_ratios: tuple[ScheduleEntry, ...] = ()
    sensitivities: tuple[ScheduleEntry, ...] = ()
    targets: tuple[TargetEntry, ...] = ()
    max_bolus_u: float | None = None
    max_basal_u_h: float | None = None
    insulin_duration_h: float | None = None

    @property
    def basal_schedule(self) -> tuple[ScheduleEntry, ...]:
        """The active basal schedule; the only one when none is named active; else empty."""
        if self.active_schedule is not None:
            return self.basal_schedules.get(self.active_schedule, ())
        if len(self.basal_schedules) == 1:
            return next(iter(self.basal_schedules.values()))
        return ()

    def at(self, minute: int) -> SettingsInForce:
        """The settings in force at ``minute`` of the local day (0–1439).

        Basal from :attr:`basal_schedule`; ``None`` where a schedule is not set.
        """
        basal = entry_at(self.basal_schedule, minute)
        ratio = entry_at(self.carb_ratios, minute)
        sensitivity = entry_at(self.sensitivities, minute)
        target = entry_at(self.targets, minute)
        return SettingsInForce(
            basal_u_h=None if basal is None else basal.value,
            carb_ratio_g_per_u=None if ratio is None else ratio.value,
            sensitivity_mgdl_per_u=None if sensitivity is None else sensitivity.value,
            target_low_mgdl=None if target is None else target.low_mgdl,
            target_high_mgdl=None if target is None else target.high_mgdl,
        )

    def same_settings(self, other: PumpSettings) -> bool:
        """True when ``other`` holds the same settings (times and source aside)."""
        return (
            self.active_schedule == other.active_schedule
            and self.basal_schedules == other.basal_schedules
            and self.carb_ratios == other.carb_ratios
            and self.sensitivities == other.sensitivities
            and self.targets == other.targets
            and self.max_bolus_u == other.max_bolus_u
            and self.max_basal_u_h == other.max_basal_u_h
            and self.insulin_duration_h == other.insulin_duration_h
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsChange:
    """One difference between consecutive snapshots, from the later one's ``local_ms`` on.

    ``what`` names the setting (``carb ratio from 06:00``), ``before`` and ``after`` its values as
    text (``10 g/U`` → ``8 g/U``; ``not set`` or ``no entry`` where there was none).
    """

    local_ms: int
    what: str
    before: str
    after: str

    def __str__(self) -> str:
        return f"{self.what}: {self.before} → {self.after}"


# -- the canonical payload ---------------------------------------------------------------------------


def _number(value: object, field: str, bounds: tuple[float, float], *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPumpSettingsError(field, "is not a number")
    number = float(value)
    low, high = bounds
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidPumpSettingsError(field, f"is outside {low:g} to {high:g}")
    if number == 0 and not zero:
        raise InvalidPumpSettingsError(field, "is 0")
    return number


def _optional(payload: Mapping[str, Any], key: str) -> float | None:
    value = payload.get(key)
    return None if value is None else _number(value, key, BOUNDS[key])


def _entries(value: object, field: str, keys: tuple[str, ...]) -> list[tuple[int, list[object]]]:
    """``(start_min, [values of keys])`` of a schedule, with its structure checked."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPumpSettingsError(field, "is not a list")
    out: list[tuple[int, list[object]]] = []
    for at, entry in enumerate(value):
        where = f"{field}[{at}]"
        if not isinstance(entry, Mapping):
            raise InvalidPumpSettingsError(where, "is not an object")
        for key in ("start_min", *keys):
            if key not in entry:
                raise InvalidPumpSettingsError(f"{where}.{key}", "is missing")
        extra = sorted(set(entry) - {"start_min", *keys})
        if extra:
            raise InvalidPumpSettingsError(f"{where}.{extra[0]}", "is not a field of this schedule")
        start = entry["start_min"]
        if isinstance(start, bool) or not isinstance(start, int):
            raise InvalidPumpSettingsError(f"{where}.start_min", "is not an integer")
        if not 0 <= start < MINUTES_PER_DAY:
            raise InvalidPumpSettingsError(f"{where}.start_min", f"is outside 0 to {MINUTES_PER_DAY - 1}")
        if at == 0 and start != 0:
            raise InvalidPumpSettingsError(f"{where}.start_min", "is not 0 (a schedule starts at midnight)")
        if out and start <= out[-1][0]:
            raise InvalidPumpSettingsError(f"{where}.start_min", "is not after the entry before")
        out.append((start, [entry[key] for key in keys]))
    return out


def _schedule(value: object, field: str, key: str, *, zero: bool = False) -> tuple[ScheduleEntry, ...]:
    bounds = BOUNDS[key]
    return tuple(
        ScheduleEntry(start, _number(values[0], f"{field}[{at}].{key}", bounds, zero=zero))
        for at, (start, values) in enumerate(_entries(value, field, (key,)))
    )


def _targets(value: object) -> tuple[TargetEntry, ...]:
    out: list[TargetEntry] = []
    bounds = BOUNDS["target_mgdl"]
    for at, (start, (low, high)) in enumerate(_entries(value, "targets", ("low_mgdl", "high_mgdl"))):
        entry = TargetEntry(
            start,
            _number(low, f"targets[{at}].low_mgdl", bounds),
            _number(high, f"targets[{at}].high_mgdl", bounds),
        )
        if entry.low_mgdl > entry.high_mgdl:
            raise InvalidPumpSettingsError(f"targets[{at}].low_mgdl", "is above high_mgdl")
        out.append(entry)
    return tuple(out)


def parse_pump_settings(payload: Mapping[str, Any], local_ms: int) -> PumpSettings:
    """Read and validate a canonical ``pumpSettings`` payload (module notes) taken at ``local_ms``.

    Returns a snapshot with ``source="pump"`` seen at ``local_ms`` only. Raises
    :class:`InvalidPumpSettingsError` naming the first field at fault.
    """
    if not isinstance(payload, Mapping):
        raise InvalidPumpSettingsError("payload", "is not an object")
    unknown = sorted(set(payload) - _KEYS)
    if unknown:
        raise InvalidPumpSettingsError(str(unknown[0]), "is not a pumpSettings field")
    named = payload.get("basal_schedules")
    if named is not None and not isinstance(named, Mapping):
        raise InvalidPumpSettingsError("basal_schedules", "is not an object")
    schedules: dict[str, tuple[ScheduleEntry, ...]] = {}
    for name, entries in (named or {}).items():
        field = f"basal_schedules.{name}"
        if not isinstance(name, str) or not name.strip():
            raise InvalidPumpSettingsError("basal_schedules", "has a schedule without a name")
        schedule = _schedule(entries, field, "rate_u_h", zero=True)
        if not schedule:
            raise InvalidPumpSettingsError(field, "has no entries")
        schedules[name] = schedule
    active = payload.get("active_schedule")
    if active is not None and (not isinstance(active, str) or active not in schedules):
        raise InvalidPumpSettingsError("active_schedule", "does not name one of basal_schedules")
    return PumpSettings(
        local_ms=local_ms,
        source="pump",
        first_local_ms=local_ms,
        last_local_ms=local_ms,
        active_schedule=active,
        basal_schedules=schedules,
        carb_ratios=_schedule(payload.get("carb_ratios"), "carb_ratios", "g_per_u"),
        sensitivities=_schedule(payload.get("sensitivities"), "sensitivities", "mgdl_per_u"),
        targets=_targets(payload.get("targets")),
        max_bolus_u=_optional(payload, "max_bolus_u"),
        max_basal_u_h=_optional(payload, "max_basal_u_h"),
        insulin_duration_h=_optional(payload, "insulin_duration_h"),
    )


def pump_settings_payload(settings: PumpSettings) -> dict[str, Any]:
    """The canonical ``pumpSettings`` payload of ``settings``, every key written.

    The inverse of :func:`parse_pump_settings` (times and source aside); glucose in mg/dL.
    """
    return {
        "active_schedule": settings.active_schedule,
        "basal_schedules": {
            name: [{"start_min": e.start_min, "rate_u_h": e.value} for e in entries]
            for name, entries in settings.basal_schedules.items()
        },
        "carb_ratios": [{"start_min": e.start_min, "g_per_u": e.value} for e in settings.carb_ratios],
        "sensitivities": [{"start_min": e.start_min, "mgdl_per_u": e.value} for e in settings.sensitivities],
        "targets": [
            {"start_min": e.start_min, "low_mgdl": e.low_mgdl, "high_mgdl": e.high_mgdl}
            for e in settings.targets
        ],
        "max_bolus_u": settings.max_bolus_u,
        "max_basal_u_h": settings.max_basal_u_h,
        "insulin_duration_h": settings.insulin_duration_h,
    }


def merge_unchanged(snapshots: Sequence[PumpSettings]) -> list[PumpSettings]:
    """Snapshots in time order, consecutive ones with the same settings merged into the first.

    The merged snapshot keeps the first one's ``local_ms`` and ``first_local_ms`` and reaches the
    last one's ``last_local_ms`` (a pump reports the same settings with every upload).
    """
    merged: list[PumpSettings] = []
    for snapshot in sorted(snapshots, key=lambda s: s.local_ms):
        if merged and merged[-1].same_settings(snapshot):
            merged[-1] = dataclasses.replace(
                merged[-1], last_local_ms=max(merged[-1].last_local_ms, snapshot.last_local_ms)
            )
        else:
            merged.append(snapshot)
    return merged


# -- settings derived from the bolus calculator -----------------------------------------------------

Value = tuple[float, ...]
"""One field's value at a use: ``(g/U,)``, ``(mg/dL per U,)`` or ``(low, high)`` mg/dL."""
Use = tuple[int, Value]
"""A use of the calculator: (minute of the local day, value)."""
_FIELDS: Final = ("carb_ratios", "sensitivities", "targets")


@dataclasses.dataclass(slots=True)
class _Run:
    """Uses of one value, consecutive by time of day: the value and its first and last minute."""

    value: Value
    first: int
    last: int


@dataclasses.dataclass(slots=True)
class _Snapshot:
    """A snapshot being built: its days and its own uses by field.

    ``earlier`` holds all uses of the snapshot before (its own and those it inherited), of which
    this one inherits what its own uses leave standing.
    """

    days: list[int]
    uses: dict[str, list[Use]]
    earlier: dict[str, list[Use]]

    def all_uses(self, field: str) -> list[Use]:
        """Own uses plus the inherited ones (module notes)."""
        own = self.uses[field]
        return own + _inherited(self.earlier[field], own)


def _same(a: Value, b: Value) -> bool:
    return all(math.isclose(x, y, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE) for x, y in zip(a, b, strict=True))


def _runs(uses: Sequence[Use]) -> list[_Run]:
    """The runs of equal values of the uses, by time of day."""
    runs: list[_Run] = []
    for minute, value in sorted(uses, key=lambda u: u[0]):
        if runs and _same(runs[-1].value, value):
            runs[-1].last = minute
        else:
            runs.append(_Run(value, minute, minute))
    return runs


def _contradicted(runs: Sequence[_Run], minute: int, value: Value) -> list[int]:
    """The runs a use contradicts (module notes): the one it falls in, or the near neighbours."""
    before: int | None = None
    after: int | None = None
    for at, run in enumerate(runs):
        if run.first <= minute <= run.last:
            return [] if _same(value, run.value) else [at]
        if minute < run.first:
            after = at
            break
        before = at
    if any(at is not None and _same(value, runs[at].value) for at in (before, after)):
        return []
    near = []
    if before is not None and minute - runs[before].last <= NEAR_MIN:
        near.append(before)
    if after is not None and runs[after].first - minute <= NEAR_MIN:
        near.append(after)
    return near


def _agrees(snapshot: _Snapshot, day: dict[str, list[Use]]) -> bool:
    for field in _FIELDS:
        runs = _runs(snapshot.all_uses(field))
        if any(_contradicted(runs, minute, value) for minute, value in day[field]):
            return False
    return True


def _inherited(previous: Sequence[Use], own: Sequence[Use]) -> list[Use]:
    """Uses of the runs of the snapshot before that the own uses leave standing (module notes)."""
    runs = _runs(previous)
    own_runs = _runs(own)
    dropped = {at for minute, value in own for at in _contradicted(runs, minute, value)}
    dropped.update(
        at
        for at, run in enumerate(runs)
        for o in own_runs
        if o.first <= run.last and run.first <= o.last and not _same(o.value, run.value)
    )
    return [
        use
        for at, run in enumerate(runs)
        if at not in dropped
        for use in previous
        if run.first <= use[0] <= run.last and _same(use[1], run.value)
    ]


@dataclasses.dataclass(eq=False, slots=True)
class _Boundary:
    """Where an entry starts, shared by consecutive snapshots (module notes).

    After minute ``lo`` (the last use of the value before), at the latest at ``hi`` (the first use
    of its own value).
    """

    lo: int
    hi: int

    @property
    def start(self) -> int:
        """``hi`` rounded down to the half hour, or to 15, 5 or 1 minute to stay after ``lo``."""
        for step in _START_STEPS:
            start = self.hi // step * step
            if start > self.lo:
                return start
        return self.hi


def _boundaries(snapshot_runs: Sequence[Sequence[_Run]]) -> list[list[_Boundary | None]]:
    """The boundary before each run after the first, per snapshot.

    ``None`` where the two uses share a minute; a boundary whose span overlaps one of the snapshot
    before is the same boundary.
    """
    out: list[list[_Boundary | None]] = []
    earlier: list[_Boundary] = []
    for runs in snapshot_runs:
        bounds: list[_Boundary | None] = []
        taken: list[_Boundary] = []
        for before, run in itertools.pairwise(runs):
            lo, hi = before.last, run.first
            if lo >= hi:
                bounds.append(None)
                continue
            shared = next(
                (b for b in earlier if max(b.lo, lo) < min(b.hi, hi) and all(b is not t for t in taken)), None
            )
            if shared is None:
                shared = _Boundary(lo, hi)
            else:
                shared.lo, shared.hi = max(shared.lo, lo), min(shared.hi, hi)
            taken.append(shared)
            bounds.append(shared)
        out.append(bounds)
        earlier = taken
    return out


def _day_uses(
    minutes: IntArray, carb_ratio: FloatArray, sensitivity: FloatArray, low: FloatArray, high: FloatArray
) -> dict[str, list[Use]]:
    uses: dict[str, list[Use]] = {field: [] for field in _FIELDS}
    for minute, ratio, isf, lo, hi in zip(
        minutes.tolist(), carb_ratio.tolist(), sensitivity.tolist(), low.tolist(), high.tolist(), strict=True
    ):
        if not math.isnan(ratio):
            uses["carb_ratios"].append((minute, (ratio,)))
        if not math.isnan(isf):
            uses["sensitivities"].append((minute, (isf,)))
        if not math.isnan(lo):
            uses["targets"].append((minute, (lo, hi)))
    return uses


def _plausible(values: FloatArray, key: str) -> FloatArray:
    low, high = BOUNDS[key]
    with np.errstate(invalid="ignore"):
        return np.where((values >= low) & (values <= high), values, np.nan)


def calculator_settings(
    local_ms: IntArray,
    carb_ratio: FloatArray,
    sensitivity: FloatArray,
    target_low: FloatArray,
    target_high: FloatArray,
) -> list[PumpSettings]:
    """Settings snapshots derived from the bolus calculator's uses (method and limits: module notes).

    Inputs are one element per use: local time (ms), carb ratio (g/U), sensitivity (mg/dL per U) and
    the target range (mg/dL), NaN where not recorded. A value outside :data:`BOUNDS` (the 0 some
    pumps write for an unset field) counts as not recorded; a target with only one bound recorded
    is that bound for both. Returns the snapshots (``source="calculator"``) in time order; none
    without a recorded value.
    """
    size = local_ms.size
    if not carb_ratio.size == sensitivity.size == target_low.size == target_high.size == size:
        msg = "the arrays differ in length"
        raise ValueError(msg)
    order = np.argsort(local_ms, kind="stable")
    times = local_ms[order]
    ratio = _plausible(carb_ratio[order].astype(np.float64), "g_per_u")
    isf = _plausible(sensitivity[order].astype(np.float64), "mgdl_per_u")
    low = _plausible(target_low[order].astype(np.float64), "target_mgdl")
    high = _plausible(target_high[order].astype(np.float64), "target_mgdl")
    low, high = np.where(np.isnan(low), high, low), np.where(np.isnan(high), low, high)
    with np.errstate(invalid="ignore"):
        bad = low > high
    low, high = np.where(bad, np.nan, low), np.where(bad, np.nan, high)

    days = times // DAY_MS
    minutes = (times - days * DAY_MS) // MINUTE_MS
    snapshots: list[_Snapshot] = []
    for day in np.unique(days).tolist():
        at = np.flatnonzero(days == day)
        uses = _day_uses(minutes[at], ratio[at], isf[at], low[at], high[at])
        if not any(uses.values()):
            continue
        if snapshots and _agrees(snapshots[-1], uses):
            snapshots[-1].days.append(day)
            for field in _FIELDS:
                snapshots[-1].uses[field].extend(uses[field])
        else:
            earlier = {field: snapshots[-1].all_uses(field) if snapshots else [] for field in _FIELDS}
            snapshots.append(_Snapshot([day], uses, earlier))
    return merge_unchanged(_finish(snapshots))


def _finish(snapshots: Sequence[_Snapshot]) -> list[PumpSettings]:
    """Snapshots with inherited entries and shared boundaries (module notes) as :class:`PumpSettings`."""
    runs = {field: [_runs(snapshot.all_uses(field)) for snapshot in snapshots] for field in _FIELDS}
    schedules: dict[str, list[list[tuple[int, Value]]]] = {field: [] for field in _FIELDS}
    for field in _FIELDS:
        for field_runs, bounds in zip(runs[field], _boundaries(runs[field]), strict=True):
            entries: list[tuple[int, Value]] = []
            for at, run in enumerate(field_runs):
                bound = None if at == 0 else bounds[at - 1]
                if at and (bound is None or _same(entries[-1][1], run.value)):
                    continue
                entries.append((0 if bound is None else bound.start, run.value))
            schedules[field].append(entries)
    out: list[PumpSettings] = []
    for at, snapshot in enumerate(snapshots):
        first, last = snapshot.days[0] * DAY_MS, snapshot.days[-1] * DAY_MS
        out.append(
            PumpSettings(
                local_ms=first,
                source="calculator",
                first_local_ms=first,
                last_local_ms=last,
                carb_ratios=tuple(ScheduleEntry(s, v[0]) for s, v in schedules["carb_ratios"][at]),
                sensitivities=tuple(ScheduleEntry(s, v[0]) for s, v in schedules["sensitivities"][at]),
                targets=tuple(TargetEntry(s, v[0], v[1]) for s, v in schedules["targets"][at]),
            )
        )
    return out


# -- the observed basal schedule ----------------------------------------------------------------------


def observed_basal_schedule(
    start_local_ms: IntArray,
    duration_ms: IntArray,
    rate_u_h: FloatArray,
    scheduled_mask: npt.NDArray[np.bool_],
    *,
    within: tuple[int, int] | None = None,
) -> tuple[ScheduleEntry, ...]:
    """The scheduled basal rate (U/h) by time of day of the most recent complete day (module notes).

    Inputs are every basal segment (scheduled or not): local start (ms), duration (ms, negative when
    unknown: the segment then runs to the next one, at most 24 hours, and the last one covers
    nothing), rate (U/h), and which are scheduled. A later segment takes over from its start.
    ``within`` (local ms, ``[start, end)``) limits the days considered to those wholly inside it.
    Entries start at the minute a scheduled segment starts on that day (the first at 00:00);
    consecutive equal rates are one entry. Empty when no day is complete.
    """
    order = np.argsort(start_local_ms, kind="stable")
    start = start_local_ms[order].astype(np.int64)
    duration = duration_ms[order].astype(np.int64)
    has_next = np.arange(start.size) < start.size - 1
    following = np.empty_like(start)
    following[:-1] = start[1:]
    following[-1:] = start[-1:]
    open_end = np.where(has_next, np.minimum(following, start + MAX_OPEN_SEGMENT_MS), start)
    end = np.where(duration >= 0, start + duration, open_end)
    end = np.where(has_next, np.minimum(end, following), end)
    keep = scheduled_mask[order] & (end > start)
    start, end, rate = start[keep], end[keep], rate_u_h[order][keep].astype(np.float64)
    if start.size == 0:
        return ()

    covered: dict[int, int] = {}
    for first, last in zip(start.tolist(), end.tolist(), strict=True):
        at = first
        while at < last:
            day = at // DAY_MS
            stop = min(last, (day + 1) * DAY_MS)
            covered[day] = covered.get(day, 0) + stop - at
            at = stop
    complete = [
        day
        for day, ms in covered.items()
        if ms >= DAY_MS - COMPLETE_DAY_SLACK_MS
        and (within is None or (within[0] <= day * DAY_MS and (day + 1) * DAY_MS <= within[1]))
    ]
    if not complete:
        return ()
    day_start = max(complete) * DAY_MS
    overlapping = np.flatnonzero((start < day_start + DAY_MS) & (end > day_start))
    entries: list[ScheduleEntry] = []
    for index in overlapping.tolist():
        minute = 0 if not entries else int((max(int(start[index]), day_start) - day_start) // MINUTE_MS)
        value = float(rate[index])
        if entries and entries[-1].start_min == minute:
            entries.pop()
        if entries and math.isclose(entries[-1].value, value, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE):
            continue
        entries.append(ScheduleEntry(minute, value))
    return tuple(entries)


# -- changes -------------------------------------------------------------------------------------------


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _num(value: float) -> str:
    return f"{round(value, 3):g}"


class _Texts:
    """Values as text, glucose in the unit asked for."""

    def __init__(self, unit: GlucoseUnit) -> None:
        self.unit = unit

    def glucose(self, mgdl: float) -> str:
        if self.unit == "mmol/L":
            return f"{mgdl / _MGDL_PER_MMOLL:.1f}"
        return f"{mgdl:.0f}"

    def entry(self, kind: str, entry: ScheduleEntry | TargetEntry) -> str:
        if isinstance(entry, TargetEntry):
            return f"{self.glucose(entry.low_mgdl)}–{self.glucose(entry.high_mgdl)} {self.unit}"
        if kind == "sensitivity":
            return f"{self.glucose(entry.value)} {self.unit}/U"
        if kind == "carb ratio":
            return f"{_num(entry.value)} g/U"
        return f"{_num(entry.value)} U/h"

    def schedule(self, kind: str, entries: Sequence[ScheduleEntry | TargetEntry]) -> str:
        if not entries:
            return "not set"
        return ", ".join(f"{_clock(e.start_min)} {self.entry(kind, e)}" for e in entries)


def _schedule_changes(
    at: int,
    *,
    kind: str,
    plural: str,
    before: Sequence[ScheduleEntry | TargetEntry],
    after: Sequence[ScheduleEntry | TargetEntry],
    texts: _Texts,
) -> list[SettingsChange]:
    if not before or not after:
        if before or after:
            return [SettingsChange(at, plural, texts.schedule(kind, before), texts.schedule(kind, after))]
        return []
    old = {e.start_min: e for e in before}
    new = {e.start_min: e for e in after}
    changes = []
    for start in sorted(set(old) | set(new)):
        was, now = old.get(start), new.get(start)
        if was == now:
            continue
        changes.append(
            SettingsChange(
                at,
                f"{kind} from {_clock(start)}",
                "no entry" if was is None else texts.entry(kind, was),
                "no entry" if now is None else texts.entry(kind, now),
            )
        )
    return changes


def _scalar_change(
    at: int, what: str, before: float | None, after: float | None, unit: str
) -> list[SettingsChange]:
    if before == after:
        return []

    def text(value: float | None) -> str:
        return "not set" if value is None else f"{_num(value)} {unit}"

    return [SettingsChange(at, what, text(before), text(after))]


def settings_changes(
    snapshots: Sequence[PumpSettings], *, glucose_unit: GlucoseUnit = "mg/dL"
) -> list[SettingsChange]:
    """What changed between consecutive snapshots (taken in ``local_ms`` order), in time order.

    Per pair, in this order: the active basal schedule; each basal schedule (by name: added,
    removed, or entry by entry); carb ratios, sensitivities and targets entry by entry (an entry is
    identified by its start; a schedule added or removed as a whole is one change); max bolus, max
    basal, insulin duration. Each change carries the later snapshot's ``local_ms``. Glucose values
    are written in ``glucose_unit``. Snapshots should come from one source: calculator-derived ones
    have no basal settings.
    """
    texts = _Texts(glucose_unit)
    ordered = sorted(snapshots, key=lambda s: s.local_ms)
    changes: list[SettingsChange] = []
    for old, new in itertools.pairwise(ordered):
        at = new.local_ms
        if old.active_schedule != new.active_schedule:
            changes.append(
                SettingsChange(
                    at,
                    "active basal schedule",
                    old.active_schedule or "not set",
                    new.active_schedule or "not set",
                )
            )
        for name in sorted(set(old.basal_schedules) | set(new.basal_schedules)):
            changes += _schedule_changes(
                at,
                kind=f'basal schedule "{name}"',
                plural=f'basal schedule "{name}"',
                before=old.basal_schedules.get(name, ()),
                after=new.basal_schedules.get(name, ()),
                texts=texts,
            )
        for kind, plural, before, after in (
            ("carb ratio", "carb ratios", old.carb_ratios, new.carb_ratios),
            ("sensitivity", "sensitivities", old.sensitivities, new.sensitivities),
            ("target", "targets", old.targets, new.targets),
        ):
            changes += _schedule_changes(
                at, kind=kind, plural=plural, before=before, after=after, texts=texts
            )
        changes += _scalar_change(at, "max bolus", old.max_bolus_u, new.max_bolus_u, "U")
        changes += _scalar_change(at, "max basal", old.max_basal_u_h, new.max_basal_u_h, "U/h")
        changes += _scalar_change(at, "insulin duration", old.insulin_duration_h, new.insulin_duration_h, "h")
    return changes
