"""Insulin and carbohydrates over a period: daily dose, basal/bolus split, carbs, automation, sites.

Inputs are the period's records as arrays on the *local* time axis (wall-clock milliseconds since
1970-01-01, so that ``// 86_400_000`` is the local day number). Definitions follow Tidepool's
statistics (``viz`` ``StatUtil``; research/tidepool.md §4.3) and the AGP report:

* **basal delivered** = rate (U/h) × duration of every basal segment (``scheduled``, ``temp``,
  ``suspend`` at 0 U/h, ``automated``), clipped to the period. Where a segment overlaps the next
  one, the later one takes over from its start (a temporary basal replaces the schedule). A segment
  without a duration runs until the next one starts, at most 24 hours. A segment whose rate is
  unknown (NaN: a temporary basal given only as a percentage of a schedule the file does not hold)
  ends the one before it but delivers nothing and makes no day a day with insulin data.
* **bolus** = delivered units of pump boluses (all subtypes) and of rapid-acting (or unknown) pen
  doses; long-acting pen doses count as basal.
* **total daily dose** = (basal + bolus) ÷ days with insulin data (local days on which any insulin
  record falls); **basal %** = basal ÷ (basal + bolus) × 100.
* **carbs per day** = wizard carb inputs plus food entries, ÷ days with carb data; a food entry
  within 5 minutes of a wizard entry is the same meal and counts once (the wizard's).
* **time in automated mode** = automated basal time ÷ all basal time × 100.
* **site changes**: cannula (site) changes, or reservoir changes where a device reports no site
  change; the mean days between consecutive ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
SAME_MEAL_MS = 5 * 60_000
MAX_OPEN_SEGMENT_MS = 24 * HOUR_MS

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True, slots=True)
class BasalSegments:
    """Basal records: start (local ms), duration (ms, -1: unknown), rate (U/h, NaN: unknown), automated."""

    start: IntArray
    duration: IntArray
    rate: FloatArray
    automated: npt.NDArray[np.bool_]


@dataclasses.dataclass(frozen=True, slots=True)
class Doses:
    """Single doses: time (local ms) and units (U)."""

    time: IntArray
    units: FloatArray


@dataclasses.dataclass(frozen=True, slots=True)
class InsulinSummary:
    """Insulin and carbohydrate figures of a period (``None`` where there is no data)."""

    days_with_insulin: int
    total_daily_u: float | None
    basal_daily_u: float | None
    bolus_daily_u: float | None
    basal_pct: float | None
    boluses_per_day: float | None
    automated_pct: float | None
    days_with_carbs: int
    carbs_daily_g: float | None
    site_changes: int
    days_between_site_changes: float | None


def empty_doses() -> Doses:
    """No doses."""
    return Doses(np.empty(0, np.int64), np.empty(0, np.float64))


def empty_basal() -> BasalSegments:
    """No basal segments."""
    return BasalSegments(
        np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.bool_)
    )


def segment_ends(basal: BasalSegments) -> tuple[IntArray, IntArray]:
    """The order that sorts the segments by start, and their effective ends (local ms) in that order.

    A segment ends at its start plus its duration, or earlier where the next one starts; a segment
    of unknown duration runs until the next one, at most a day (module notes).
    """
    order = np.argsort(basal.start, kind="stable")
    start = basal.start[order]
    duration = basal.duration[order]
    following = np.empty_like(start)
    following[:-1] = start[1:]
    following[-1:] = np.iinfo(np.int64).max
    open_end = np.minimum(following, start + MAX_OPEN_SEGMENT_MS)
    end = np.where(duration >= 0, np.minimum(start + duration, following), open_end)
    return order, end


def _day_spread(start: IntArray, end: IntArray) -> dict[int, int]:
    """Milliseconds each local day is covered by the intervals (for days with insulin data)."""
    covered: dict[int, int] = {}
    for first, last in zip(start.tolist(), end.tolist(), strict=True):
        at = first
        while at < last:
            day = at // DAY_MS
            stop = min(last, (day + 1) * DAY_MS)
            covered[day] = covered.get(day, 0) + stop - at
            at = stop
    return covered


def insulin_summary(
    *,
    period: tuple[int, int],
    basal: BasalSegments,
    boluses: Doses,
    rapid_pen: Doses,
    long_pen: Doses,
    wizard_carbs: Doses,
    food_carbs: Doses,
    site_changes: IntArray,
) -> InsulinSummary:
    """The figures of the module notes for the local period ``[period[0], period[1])`` (local ms).

    Doses and carbs outside the period are ignored; basal segments are clipped to it.
    """
    low, high = period

    def inside(doses: Doses) -> Doses:
        keep = (doses.time >= low) & (doses.time < high)
        return Doses(doses.time[keep], doses.units[keep])

    boluses, rapid_pen, long_pen = inside(boluses), inside(rapid_pen), inside(long_pen)
    wizard_carbs, food_carbs = inside(wizard_carbs), inside(food_carbs)

    order, end = segment_ends(basal)
    start = np.clip(basal.start[order], low, high)
    end = np.clip(end, low, high)
    hours = np.maximum(end - start, 0) / HOUR_MS
    rate = basal.rate[order]
    known = ~np.isnan(rate)  # a temporary basal given as a percentage of an unknown schedule
    hours = np.where(known, hours, 0.0)
    delivered = np.where(known, rate, 0.0) * hours
    automated_hours = float(hours[basal.automated[order]].sum())
    basal_hours = float(hours.sum())

    insulin_days: set[int] = set(_day_spread(start[hours > 0], end[hours > 0]))
    for doses in (boluses, rapid_pen, long_pen):
        insulin_days.update((doses.time // DAY_MS).tolist())
    days = len(insulin_days)
    basal_u = float(delivered.sum()) + float(long_pen.units.sum())
    bolus_u = float(boluses.units.sum()) + float(rapid_pen.units.sum())
    total = basal_u + bolus_u

    meals = _meals(wizard_carbs, food_carbs)
    carb_days = len(set((meals.time // DAY_MS).tolist()))

    sites = np.sort(site_changes[(site_changes >= low) & (site_changes < high)])
    between = float(np.diff(sites).mean()) / DAY_MS if sites.size > 1 else None
    return InsulinSummary(
        days_with_insulin=days,
        total_daily_u=total / days if days else None,
        basal_daily_u=basal_u / days if days else None,
        bolus_daily_u=bolus_u / days if days else None,
        basal_pct=100.0 * basal_u / total if total > 0 else None,
        boluses_per_day=(boluses.time.size + rapid_pen.time.size) / days if days else None,
        automated_pct=100.0 * automated_hours / basal_hours if basal_hours > 0 else None,
        days_with_carbs=carb_days,
        carbs_daily_g=float(meals.units.sum()) / carb_days if carb_days else None,
        site_changes=int(sites.size),
        days_between_site_changes=between,
    )


def _meals(wizard: Doses, food: Doses) -> Doses:
    """Wizard carb inputs plus the food entries that are not within 5 minutes of one of them."""
    if wizard.time.size and food.time.size:
        ordered = np.sort(wizard.time)
        after = np.searchsorted(ordered, food.time)
        gap_after = np.abs(ordered[np.minimum(after, ordered.size - 1)] - food.time)
        gap_before = np.abs(food.time - ordered[np.maximum(after - 1, 0)])
        separate = np.minimum(gap_after, gap_before) > SAME_MEAL_MS
        food = Doses(food.time[separate], food.units[separate])
    return Doses(np.concatenate([wizard.time, food.time]), np.concatenate([wizard.units, food.units]))
