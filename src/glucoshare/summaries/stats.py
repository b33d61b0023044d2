"""The stats document of one patient and period, computed from the stored readings.

Period (CONTRACT.md): ``--from``/``--to`` are the patient's local dates, both inclusive; ``--days N``
(default 14) are the N local days ending with the day of the patient's latest CGM reading (today
when there is none). Conventions, beyond the analytics modules' own:

* the readings are the regular CGM series (``cbg`` ``sensor``; FreeStyle Libre scans are left out),
  one per sampling slot (:mod:`glucoshare.analytics.coverage`);
* **sensor active %** counts the possible readings from the period's start to its end, or to the
  patient's latest reading when that is earlier (the rest of today has not happened yet);
* **sufficient data**: at least 14 days and at least 70 % sensor active (2019 consensus);
* MAGE, MODD, CONGA1 and the events use the readings interpolated onto the day grid
  (:mod:`glucoshare.analytics.grid`); everything else uses the readings themselves;
* the target block applies the patient's target scheme; mmol/L readings are judged on the printed
  cut-offs for the standard ranges.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np

from glucoshare.analytics.coverage import active_pct, one_per_slot, sampling_interval
from glucoshare.analytics.events import EventKind, EventLevel, glucose_events
from glucoshare.analytics.grid import DayGrid, day_grid
from glucoshare.analytics.insulin import insulin_summary
from glucoshare.analytics.mage import mage_many_directions
from glucoshare.analytics.metrics import cohort_metrics, gmi_mmol_mol, gri, j_index, risk_indices
from glucoshare.analytics.patterns import find_patterns
from glucoshare.analytics.ranges import MMOL_CUTOFFS, TargetRange
from glucoshare.analytics.variability import conga, modd
from glucoshare.summaries.data import CgmArrays, TherapyArrays
from glucoshare.summaries.schemas import GoalsOut, PatternOut, StatsOut, TargetOut

SUFFICIENT_DAYS = 14
SUFFICIENT_ACTIVE_PCT = 70.0
MINUTE_MS = 60_000
DAY_MS = 86_400_000
_EPOCH_DATE = dt.date(1970, 1, 1)

# The printed mmol/L ends of the standard target ranges, for readings reported in mmol/L.
_MMOL_ENDS = {70.0: MMOL_CUTOFFS.low, 180.0: MMOL_CUTOFFS.high, 63.0: 3.5, 140.0: MMOL_CUTOFFS.tight_high}


@dataclasses.dataclass(frozen=True, slots=True)
class Period:
    """A stats period: local dates (inclusive) and the UTC instants ``[start_ms, end_ms)``."""

    first: dt.date
    last: dt.date
    start_ms: int
    end_ms: int

    @property
    def days(self) -> int:
        """Local days in the period."""
        return (self.last - self.first).days + 1


def _in_target(cgm: CgmArrays, target: TargetRange) -> tuple[float, float, float] | None:
    """Percent of readings below, in and above the target range (printed mmol/L ends where known)."""
    if cgm.mgdl.size == 0:
        return None
    below = cgm.mgdl < target.low_mgdl
    above = cgm.mgdl > target.high_mgdl
    low_mmol, high_mmol = _MMOL_ENDS.get(target.low_mgdl), _MMOL_ENDS.get(target.high_mgdl)
    reported = np.isfinite(cgm.mmol)
    if reported.any() and low_mmol is not None and high_mmol is not None:
        below[reported] = cgm.mmol[reported] < low_mmol
        above[reported] = cgm.mmol[reported] > high_mmol
    n = cgm.mgdl.size
    low_pct, high_pct = 100.0 * below.sum() / n, 100.0 * above.sum() / n
    return low_pct, 100.0 - low_pct - high_pct, high_pct


def _target(cgm: CgmArrays, target: TargetRange, bands: list[float] | None, cv: float | None) -> TargetOut:
    split = _in_target(cgm, target)
    goals = target.goals
    met: dict[str, bool] = {}
    if split is not None and bands is not None:
        below, inside, above = split
        checks = {
            "in_target": (goals.in_target_min_pct, inside, True),
            "below": (goals.below_max_pct, below, False),
            "very_low": (goals.very_low_max_pct, bands[0], False),
            "above": (goals.above_max_pct, above, False),
            "very_high": (goals.very_high_max_pct, bands[4], False),
        }
        for name, (goal, value, at_least) in checks.items():
            if goal is not None:
                met[name] = value > goal if at_least else value < goal
        if cv is not None:
            met["cv"] = cv <= goals.cv_max_pct
    return TargetOut(
        scheme=target.scheme.value,
        low_mgdl=target.low_mgdl,
        high_mgdl=target.high_mgdl,
        time_below_target_pct=None if split is None else split[0],
        time_in_target_pct=None if split is None else split[1],
        time_above_target_pct=None if split is None else split[2],
        goals=GoalsOut(
            in_target_min_pct=goals.in_target_min_pct,
            below_max_pct=goals.below_max_pct,
            very_low_max_pct=goals.very_low_max_pct,
            above_max_pct=goals.above_max_pct,
            very_high_max_pct=goals.very_high_max_pct,
            cv_max_pct=goals.cv_max_pct,
        ),
        goals_met=met,
    )


def _grid(cgm: CgmArrays) -> DayGrid | None:
    if cgm.utc_ms.size < 2:  # noqa: PLR2004
        return None
    offset_min = int(cgm.local_ms[0] - cgm.utc_ms[0]) // MINUTE_MS
    return day_grid(cgm.utc_ms, cgm.mgdl, first_offset_min=offset_min)


def compute_stats(
    *,
    patient: str,
    timezone: str,
    display_units: str,
    target: TargetRange,
    period: Period,
    cgm: CgmArrays,
    therapy: TherapyArrays,
    latest_ms: int | None,
) -> StatsOut:
    """Every number of the stats document from the period's readings and therapy records."""
    interval = sampling_interval(cgm.utc_ms) if cgm.utc_ms.size else None
    if interval is not None:
        cgm = cgm.take(one_per_slot(cgm.utc_ms, interval))
    n = int(cgm.mgdl.size)
    # Possible readings run to the period's end, or to the latest reading when it falls inside.
    inside = latest_ms is not None and period.start_ms <= latest_ms < period.end_ms
    end = latest_ms + 1 if inside and latest_ms is not None else period.end_ms
    active = active_pct(n, interval, end - period.start_ms) if interval is not None else 0.0
    sufficient = period.days >= SUFFICIENT_DAYS and active is not None and active >= SUFFICIENT_ACTIVE_PCT

    core = cohort_metrics(cgm.mgdl, np.array([n], np.int64), cgm.mmol) if n else None

    def value(array: np.ndarray | None) -> float | None:
        if array is None or not np.isfinite(array[0]):
            return None
        return float(array[0])

    bands = None if core is None else [float(x) for x in core.band_pct[0]]
    mean = value(None if core is None else core.mean_mgdl)
    sd = value(None if core is None else core.sd_mgdl)
    cv = value(None if core is None else core.cv_pct)
    glycaemia = None if bands is None else gri(bands[0], bands[1], bands[3], bands[4])
    risk = risk_indices(cgm.mgdl) if n else None
    grid = _grid(cgm)
    variability = grid_figures(cgm, grid)

    day_start = (period.first - _EPOCH_DATE).days * DAY_MS  # local midnight opening the period
    insulin = insulin_summary(
        period=(day_start, day_start + period.days * DAY_MS),
        basal=therapy.basal,
        boluses=therapy.boluses,
        rapid_pen=therapy.rapid_pen,
        long_pen=therapy.long_pen,
        wizard_carbs=therapy.wizard_carbs,
        food_carbs=therapy.food_carbs,
        site_changes=therapy.site_changes,
    )
    return StatsOut(
        patient=patient,
        from_=period.first.isoformat(),
        to=period.last.isoformat(),
        days=period.days,
        readings=n,
        sensor_active_pct=active,
        sufficient_data=sufficient,
        mean_mgdl=mean,
        sd_mgdl=sd,
        cv_pct=cv,
        gmi_pct=value(None if core is None else core.gmi_pct),
        time_very_low_pct=None if bands is None else bands[0],
        time_low_pct=None if bands is None else bands[1],
        time_in_range_pct=None if bands is None else bands[2],
        time_high_pct=None if bands is None else bands[3],
        time_very_high_pct=None if bands is None else bands[4],
        time_tight_range_pct=value(None if core is None else core.tight_pct),
        time_below_range_pct=None if bands is None else bands[0] + bands[1],
        time_above_range_pct=None if bands is None else bands[3] + bands[4],
        gri=None if glycaemia is None else glycaemia.gri,
        gri_hypo=None if glycaemia is None else glycaemia.hypo,
        gri_hyper=None if glycaemia is None else glycaemia.hyper,
        lbgi=None if risk is None else risk.lbgi,
        hbgi=None if risk is None else risk.hbgi,
        mage_mgdl=variability.mage,
        modd_mgdl=variability.modd,
        conga1_mgdl=variability.conga1,
        j_index=None if mean is None or sd is None else j_index(mean, sd),
        hypo_events_l1=variability.hypo_l1,
        hypo_events_l2=variability.hypo_l2,
        hyper_events_l1=variability.hyper_l1,
        hyper_events_l2=variability.hyper_l2,
        insulin_total_daily_u=insulin.total_daily_u,
        insulin_basal_pct=insulin.basal_pct,
        carbs_daily_g=insulin.carbs_daily_g,
        timezone=timezone,
        display_units=display_units,
        sensor_interval_min=interval,
        days_with_cgm=len(set((cgm.local_ms // DAY_MS).tolist())),
        gmi_mmol_mol=None if mean is None else gmi_mmol_mol(mean),
        mage_service_mgdl=variability.mage_service,
        gri_zone=None if glycaemia is None else glycaemia.zone,
        hypo_events_extended=variability.hypo_extended,
        nocturnal_hypo_events=variability.nocturnal_hypo,
        insulin_basal_daily_u=insulin.basal_daily_u,
        insulin_bolus_daily_u=insulin.bolus_daily_u,
        boluses_daily=insulin.boluses_per_day,
        time_in_automated_pct=insulin.automated_pct,
        days_with_insulin=insulin.days_with_insulin,
        days_with_carbs=insulin.days_with_carbs,
        site_changes=insulin.site_changes,
        days_between_site_changes=insulin.days_between_site_changes,
        target=_target(cgm, target, bands, cv),
        patterns=_patterns(cgm, therapy, period, interval),
    )


def _clock(minutes: int) -> str:
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def _patterns(
    cgm: CgmArrays, therapy: TherapyArrays, period: Period, interval: int | None
) -> list[PatternOut]:
    if cgm.mgdl.size == 0:
        return []
    first_day = (period.first - _EPOCH_DATE).days
    found = find_patterns(
        cgm.local_ms,
        cgm.mgdl,
        first_day=first_day,
        last_day=first_day + period.days - 1,
        meal_local_ms=np.concatenate([therapy.wizard_carbs.time, therapy.food_carbs.time]),
        carbs_g=np.concatenate([therapy.wizard_carbs.units, therapy.food_carbs.units]),
        interval_min=interval or 5,
    )
    return [
        PatternOut(
            kind=pattern.kind.value,
            summary=pattern.summary,
            window_start=_clock(pattern.start_min),
            window_end=_clock(pattern.end_min),
            dates=[date.isoformat() for date in pattern.dates],
            occurrences=pattern.occurrences,
            days_observed=pattern.days_observed,
            worst_mgdl=pattern.worst_mgdl,
        )
        for pattern in found
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class GridFigures:
    """The figures computed on the day grid."""

    mage: float | None = None
    mage_service: float | None = None
    modd: float | None = None
    conga1: float | None = None
    hypo_l1: int | None = None
    hypo_l2: int | None = None
    hypo_extended: int | None = None
    hyper_l1: int | None = None
    hyper_l2: int | None = None
    nocturnal_hypo: int | None = None


def grid_figures(cgm: CgmArrays, grid: DayGrid | None) -> GridFigures:
    """MAGE, MODD, CONGA1 and the event counts of the period's readings."""
    if grid is None:
        return GridFigures()
    offsets = (cgm.local_ms - cgm.utc_ms) // MINUTE_MS
    events = glucose_events(cgm.utc_ms, cgm.mgdl, offsets)

    def count(kind: EventKind, level: EventLevel) -> int:
        return sum(1 for event in events if event.kind is kind and event.level is level)

    mage, mage_service = (  # both from one search for excursions
        float(values[0]) if np.isfinite(values[0]) else None
        for values in mage_many_directions(
            cgm.utc_ms,
            cgm.mgdl,
            np.array([cgm.utc_ms.size], np.int64),
            directions=("avg", "service"),
            first_offsets_min=np.array([int(offsets[0])], np.int64),
        )
    )
    return GridFigures(
        mage=mage,
        mage_service=mage_service,
        modd=modd(grid),
        conga1=conga(grid, hours=1),
        hypo_l1=count(EventKind.HYPO, EventLevel.LEVEL_1),
        hypo_l2=count(EventKind.HYPO, EventLevel.LEVEL_2),
        hypo_extended=count(EventKind.HYPO, EventLevel.EXTENDED),
        hyper_l1=count(EventKind.HYPER, EventLevel.LEVEL_1),
        hyper_l2=count(EventKind.HYPER, EventLevel.LEVEL_2),
        nocturnal_hypo=sum(
            1 for e in events if e.kind is EventKind.HYPO and e.level is EventLevel.LEVEL_1 and e.nocturnal
        ),
    )
