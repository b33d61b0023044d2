"""Patterns a clinician can check: recurring lows, overnight highs, post-meal highs and data gaps.

The AGP report's modal day shows *when* glucose tends to be out of range (Johnson ML et al.,
"Utilizing the Ambulatory Glucose Profile to Standardize and Implement Continuous Glucose
Monitoring in Clinical Practice", Diabetes Technol Ther 2019;21(S2):S2-17, recommends reading it
for lows first, then highs, by time of day). This module turns the same questions into explicit,
countable rules, each with its evidence (the day numbers it occurred on), so that a summary such as
"Lows below 70 mg/dL on 5 of 14 nights between 02:00 and 04:00" can be checked against the daily
profiles. Thresholds are the module's constants; glucose in mg/dL, times in local wall-clock time
(``local_ms``: UTC instant plus UTC offset in milliseconds, see :mod:`glucoshare.analytics.agp`).

Common definitions
------------------
* **Period**: the local days ``first_day`` … ``last_day`` (day numbers, inclusive); readings and
  meals outside it, and readings that are not finite, are ignored.
* **Day of an event**: the local calendar day of the reading (or meal) concerned; time-of-day
  windows are circular, so a window 23:00–01:00 of day *d* is 23:00–24:00 and 00:00–01:00 of that
  same calendar day. "Nights" are 00:00–06:00, so the night from Monday to Tuesday is Tuesday's.
* **Observed**: a day observes a window when it has at least ``MIN_COVERAGE_PCT`` (70) % of the
  readings possible in it at ``interval_min`` (the consensus's sufficiency rule, Battelino T et al.,
  Diabetes Care 2019;42:1593, applied to the window). A day on which a pattern occurred counts as
  observed even with fewer readings, so the evidence is always part of the observed days.
* **Recurring**: a pattern is reported when it occurred on at least ``PATTERN_MIN_DAYS`` (3) days
  *and* on at least ``PATTERN_MIN_SHARE_PCT`` (25) % of the observed days.

Rules
-----
``recurring_low``
    A low episode is at least ``LOW_MIN_MINUTES`` (15) minutes of consecutive readings below
    ``LOW_MGDL`` (70): a run of readings < 70 mg/dL without a step longer than 1.5 intervals (a
    missed reading ends the run) and with at least 15 / ``interval_min`` readings, each reading
    standing for one interval (3 readings at 5 minutes, 1 at 15 minutes; Danne T et al., Diabetes
    Care 2017;40:1631; Battelino T et al., Lancet Diabetes Endocrinol 2023;11:42). A day has a low
    in a window when a reading of one of its low episodes lies in the window. Windows are 2 hours
    long and start every hour (00:00–02:00, 01:00–03:00, …, 23:00–01:00). Recurring windows that
    overlap or touch are merged, and the merged span is trimmed to the whole hours in which its
    episodes' readings lie: nightly lows from 02:10 to 03:40 give the window 02:00–04:00. The
    counts, days and wording are those of the trimmed window; it is worded "nights" when it lies
    within 00:00–06:00, "days" otherwise. Worst value: the lowest reading of those episodes.
``overnight_high``
    A night (00:00–06:00) with mean glucose above ``OVERNIGHT_HIGH_MGDL`` (180); only observed
    nights count, since a mean over a few readings says little. Worst value: the highest mean.
``post_meal_high``
    A meal is a carbohydrate entry of more than 0 g. Its pre-meal value is the latest reading at
    most ``PRE_MEAL_MINUTES`` (15) minutes before it (at the meal's time included); its peak the
    highest reading in the ``POST_MEAL_MINUTES`` (120) after it. The meal is high when the peak is
    above ``POST_MEAL_HIGH_MGDL`` (250) or more than ``POST_MEAL_RISE_MGDL`` (60) above the
    pre-meal value (the rise needs a pre-meal value). Meals are grouped by the time they were eaten:
    breakfast 05:00–10:00, lunch 10:00–15:00, dinner 15:00–21:00, night-time meals 21:00–05:00;
    within each group a day observes it when it has a meal with 70 % of the readings in the 2 hours
    after. Worst value: the highest peak.
``data_gap``
    Two patterns. (1) Gaps: two successive readings at least ``GAP_MIN_MINUTES`` (120) apart; the
    gap's length is the time between them, its days those it touches; reported whenever there is
    one, with the number of gaps, the total and the longest. Gaps before the first and after the
    last reading of the period are left to (2). (2) Days with fewer than ``MIN_COVERAGE_PCT`` % of
    the readings possible in a day (1,440 / ``interval_min``), days without readings included.

Summaries are plain English with exact numbers (times as HH:MM, gap lengths in hours to one
decimal, singular and plural as needed); nothing else is rounded. Patterns come sorted by kind (in
the order above) and then by window. Wall-clock times make a daylight-saving night look one hour
shorter or longer: a real gap of 1.5 hours across the spring change counts as 2.5 hours.
Everything is vectorised over readings; inputs are never modified.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math

import numpy as np
import numpy.typing as npt

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
DAY_MINUTES = 1440
HOURS = 24

LOW_MGDL = 70.0
"""Lows: readings below this (mg/dL)."""
LOW_MIN_MINUTES = 15
"""Lows: an episode lasts at least this long."""
LOW_WINDOW_HOURS = 2
"""Lows: length of the windows searched (they start every hour)."""
NIGHT_END_MIN = 360
"""Nights are 00:00 to this many minutes after midnight (06:00)."""
OVERNIGHT_HIGH_MGDL = 180.0
"""Overnight highs: a night's mean glucose above this (mg/dL)."""
PRE_MEAL_MINUTES = 15
"""Post-meal highs: the pre-meal reading is at most this long before the meal."""
POST_MEAL_MINUTES = 120
"""Post-meal highs: the peak is searched this long after the meal."""
POST_MEAL_RISE_MGDL = 60.0
"""Post-meal highs: a rise above the pre-meal value of more than this (mg/dL)."""
POST_MEAL_HIGH_MGDL = 250.0
"""Post-meal highs: a peak above this (mg/dL)."""
GAP_MIN_MINUTES = 120
"""Data gaps: successive readings at least this far apart."""
MIN_COVERAGE_PCT = 70
"""A day observes a window (or a whole day counts as covered) with this % of the possible readings."""
PATTERN_MIN_DAYS = 3
"""A pattern occurs on at least this many days …"""
PATTERN_MIN_SHARE_PCT = 25
"""… and on at least this % of the observed days."""
RUN_MAX_STEP_INTERVALS = 1.5
"""Readings of one low episode are at most this many intervals apart."""


@dataclasses.dataclass(frozen=True, slots=True)
class MealWindow:
    """A named time-of-day window for meals, ``start_min`` to ``end_min`` (wraps past midnight)."""

    name: str
    start_min: int
    end_min: int


MEAL_WINDOWS = (
    MealWindow("breakfast", 300, 600),
    MealWindow("lunch", 600, 900),
    MealWindow("dinner", 900, 1260),
    MealWindow("night-time meals", 1260, 300),
)


class PatternKind(enum.StrEnum):
    """What a pattern is about; patterns sort in this order."""

    RECURRING_LOW = "recurring_low"
    OVERNIGHT_HIGH = "overnight_high"
    POST_MEAL_HIGH = "post_meal_high"
    DATA_GAP = "data_gap"


_KIND_ORDER = {kind: at for at, kind in enumerate(PatternKind)}


@dataclasses.dataclass(frozen=True, slots=True)
class Pattern:
    """A pattern found in a period, with its evidence (rules in the module notes).

    The time-of-day window runs from ``start_min`` to ``end_min`` minutes after local midnight
    (``0 ≤ start_min < 1440``, ``0 < end_min ≤ 1440``); it wraps past midnight when ``end_min ≤
    start_min`` and is the whole day for ``0, 1440``. ``days`` are the local day numbers it
    occurred on (``occurrences`` of them) and ``days_observed`` the days with enough data to tell
    (for data gaps: the days of the period).
    """

    kind: PatternKind
    summary: str
    start_min: int
    end_min: int
    days: tuple[int, ...]
    occurrences: int
    days_observed: int
    events: int
    """Low episodes, high nights, high meals, gaps or short days behind the pattern."""
    worst_mgdl: float | None = None
    """Lowest reading (lows), highest nightly mean (overnight highs), highest peak (post-meal)."""
    gap_total_min: float | None = None
    """Data gaps: total length of the gaps in minutes."""
    gap_longest_min: float | None = None
    """Data gaps: the longest gap in minutes."""

    @property
    def dates(self) -> tuple[dt.date, ...]:
        """The local calendar dates of ``days``."""
        epoch = dt.date(1970, 1, 1)
        return tuple(epoch + dt.timedelta(days=day) for day in self.days)


@dataclasses.dataclass(frozen=True, slots=True)
class _Trace:
    """The period's readings in time order, with per-day and per-hour bookkeeping."""

    times: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    day: npt.NDArray[np.intp]  # index into the period's days
    hour: npt.NDArray[np.intp]  # local hour of day
    per_hour: npt.NDArray[np.int64]  # readings per (day, hour)
    first_day: int
    days: int
    interval_min: int

    def enough(self, readings: npt.NDArray[np.int64], minutes: int) -> npt.NDArray[np.bool_]:
        """Whether ``readings`` are at least MIN_COVERAGE_PCT % of those possible in ``minutes``."""
        return readings * (100 * self.interval_min) >= MIN_COVERAGE_PCT * minutes


def _trace(
    local_ms: npt.ArrayLike, mgdl: npt.ArrayLike, first_day: int, last_day: int, interval_min: int
) -> _Trace:
    times = np.asarray(local_ms, dtype=np.int64).reshape(-1)
    values = np.asarray(mgdl, dtype=np.float64).reshape(-1)
    if times.shape != values.shape:
        msg = f"local_ms has {times.size} readings but mgdl has {values.size}"
        raise ValueError(msg)
    days = last_day - first_day + 1
    keep = np.isfinite(values) & (times >= first_day * DAY_MS) & (times < (last_day + 1) * DAY_MS)
    times = times[keep]
    values = values[keep]
    order = np.argsort(times, kind="stable")
    times = times[order]
    values = values[order]
    day = (times // DAY_MS - first_day).astype(np.intp)
    hour = ((times % DAY_MS) // HOUR_MS).astype(np.intp)
    per_hour = np.bincount(day * HOURS + hour, minlength=days * HOURS).reshape(days, HOURS)
    return _Trace(times, values, day, hour, per_hour.astype(np.int64), first_day, days, interval_min)


def _hhmm(minutes: int) -> str:
    minutes %= DAY_MINUTES
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _noun(count: int, noun: str) -> str:
    return noun if count == 1 else f"{noun}s"


def _duration(minutes: int) -> str:
    """A threshold duration: "2 hours", "1 hour", "15 minutes"."""
    if minutes % 60 == 0:
        return _plural(minutes // 60, "hour")
    return _plural(minutes, "minute")


def _hours(minutes: float) -> str:
    """A measured duration in hours to one decimal: "5.0 hours"."""
    return f"{minutes / 60:.1f} hours"


def _mgdl(value: float) -> str:
    return f"{value:g} mg/dL"


def _window_text(start_min: int, end_min: int) -> str:
    if end_min - start_min == DAY_MINUTES:
        return "at any time of day"
    return f"between {_hhmm(start_min)} and {_hhmm(end_min)}"


def _recurring(occurrences: npt.NDArray[np.int64], observed: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """The recurrence rule: at least PATTERN_MIN_DAYS days and PATTERN_MIN_SHARE_PCT % of observed days."""
    return (occurrences >= PATTERN_MIN_DAYS) & (occurrences * 100 >= PATTERN_MIN_SHARE_PCT * observed)


def _circular_runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(start, length) of the runs of True in a circular mask; ``[(0, n)]`` when all are True."""
    size = int(mask.size)
    if mask.all():
        return [(0, size)]
    starts = np.flatnonzero(mask & ~np.roll(mask, 1))
    runs = []
    for start in starts.tolist():
        length = 0
        while mask[(start + length) % size]:
            length += 1
        runs.append((start, length))
    return runs


def _trim(arc: tuple[int, int], marked: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """The shortest sub-arc (start hour, length) of ``arc`` holding all its ``marked`` hours."""
    start, length = arc
    if length == HOURS:
        if marked.all():
            return 0, HOURS
        gap_start, gap_length = max(_circular_runs(~marked), key=lambda run: run[1])
        return (gap_start + gap_length) % HOURS, HOURS - gap_length
    inside = [i for i in range(length) if marked[(start + i) % HOURS]]
    return (start + inside[0]) % HOURS, inside[-1] - inside[0] + 1


def _recurring_lows(trace: _Trace) -> list[Pattern]:
    values, times = trace.values, trace.times
    low = values < LOW_MGDL
    close = np.diff(times) <= RUN_MAX_STEP_INTERVALS * trace.interval_min * MINUTE_MS
    continues = np.zeros(low.size, np.bool_)
    continues[1:] = low[1:] & low[:-1] & close
    run = np.cumsum(low & ~continues) - 1  # run number of each low reading
    run_length = np.bincount(run[low], minlength=1)
    need = math.ceil(LOW_MIN_MINUTES / trace.interval_min)
    episode = low & (run_length[np.maximum(run, 0)] >= need)

    marked = np.zeros((trace.days, HOURS), np.bool_)
    marked[trace.day[episode], trace.hour[episode]] = True
    window_hours = np.arange(LOW_WINDOW_HOURS)
    occurs = np.zeros_like(marked)
    readings = np.zeros_like(trace.per_hour)
    for shift in window_hours.tolist():
        occurs |= np.roll(marked, -shift, axis=1)
        readings += np.roll(trace.per_hour, -shift, axis=1)
    observed = occurs | trace.enough(readings, LOW_WINDOW_HOURS * 60)
    n_occurs = occurs.sum(axis=0)
    n_observed = observed.sum(axis=0)
    recurring = _recurring(n_occurs, n_observed)
    covered = np.zeros(HOURS, np.bool_)
    for shift in window_hours.tolist():
        covered |= np.roll(recurring, shift)

    marked_hours = np.count_nonzero(marked, axis=0) > 0
    patterns = []
    for arc in _circular_runs(covered):
        start, length = _trim(arc, marked_hours)
        hours = (start + np.arange(length)) % HOURS
        in_window = np.zeros(HOURS, np.bool_)
        in_window[hours] = True
        occurred = np.count_nonzero(marked[:, hours], axis=1) > 0
        seen = occurred | trace.enough(trace.per_hour[:, hours].sum(axis=1), length * 60)
        evidence = episode & in_window[trace.hour] & occurred[trace.day]
        start_min, end_min = start * 60, (start + length) * 60
        if end_min > DAY_MINUTES:
            end_min -= DAY_MINUTES
        nights = end_min > start_min and end_min <= NIGHT_END_MIN
        n_occurred, n_seen = int(occurred.sum()), int(seen.sum())
        noun = _noun(n_seen, "night" if nights else "day")
        patterns.append(
            Pattern(
                kind=PatternKind.RECURRING_LOW,
                summary=(
                    f"Lows below {_mgdl(LOW_MGDL)} on {n_occurred} of {n_seen} {noun} "
                    f"{_window_text(start_min, end_min)}"
                ),
                start_min=start_min,
                end_min=end_min,
                days=_day_numbers(trace, occurred),
                occurrences=n_occurred,
                days_observed=n_seen,
                events=int(np.unique(run[evidence]).size),
                worst_mgdl=float(values[evidence].min()),
            )
        )
    return patterns


def _day_numbers(trace: _Trace, mask: npt.NDArray[np.bool_]) -> tuple[int, ...]:
    return tuple(int(day) + trace.first_day for day in np.flatnonzero(mask))


def _overnight_highs(trace: _Trace) -> list[Pattern]:
    night = (trace.times % DAY_MS) < NIGHT_END_MIN * MINUTE_MS
    count = np.bincount(trace.day[night], minlength=trace.days).astype(np.int64)
    total = np.bincount(trace.day[night], weights=trace.values[night], minlength=trace.days)
    observed = trace.enough(count, NIGHT_END_MIN)
    mean = np.full(trace.days, np.nan)
    mean[observed] = total[observed] / count[observed]
    high = observed & (mean > OVERNIGHT_HIGH_MGDL)
    n_high, n_observed = int(high.sum()), int(observed.sum())
    if not _recurring(np.array(n_high), np.array(n_observed)):
        return []
    return [
        Pattern(
            kind=PatternKind.OVERNIGHT_HIGH,
            summary=(
                f"Mean glucose above {_mgdl(OVERNIGHT_HIGH_MGDL)} {_window_text(0, NIGHT_END_MIN)} "
                f"on {n_high} of {n_observed} {_noun(n_observed, 'night')}"
            ),
            start_min=0,
            end_min=NIGHT_END_MIN,
            days=_day_numbers(trace, high),
            occurrences=n_high,
            days_observed=n_observed,
            events=n_high,
            worst_mgdl=float(mean[high].max()),
        )
    ]


def _post_meal_highs(trace: _Trace, meal_local_ms: npt.ArrayLike, carbs_g: npt.ArrayLike) -> list[Pattern]:
    meals = np.asarray(meal_local_ms, dtype=np.int64).reshape(-1)
    carbs = np.asarray(carbs_g, dtype=np.float64).reshape(-1)
    if meals.shape != carbs.shape:
        msg = f"meal_local_ms has {meals.size} entries but carbs_g has {carbs.size}"
        raise ValueError(msg)
    first_ms = trace.first_day * DAY_MS
    meals = meals[(carbs > 0) & (meals >= first_ms) & (meals < first_ms + trace.days * DAY_MS)]
    if meals.size == 0:
        return []
    times, values = trace.times, trace.values
    before = np.searchsorted(times, meals, side="right") - 1
    has_pre = before >= 0
    has_pre[has_pre] = times[before[has_pre]] >= meals[has_pre] - PRE_MEAL_MINUTES * MINUTE_MS
    pre = np.full(meals.size, np.nan)
    pre[has_pre] = values[before[has_pre]]
    after_first = before + 1
    after_end = np.searchsorted(times, meals + POST_MEAL_MINUTES * MINUTE_MS, side="right")
    after_count = (after_end - after_first).astype(np.int64)
    padded = np.append(values, -np.inf)
    peak = np.maximum.reduceat(padded, np.column_stack([after_first, after_end]).reshape(-1))[::2]
    peak[after_count == 0] = np.nan
    with np.errstate(invalid="ignore"):
        high = (after_count > 0) & (
            (peak > POST_MEAL_HIGH_MGDL) | (has_pre & (peak - pre > POST_MEAL_RISE_MGDL))
        )
    observed = high | trace.enough(after_count, POST_MEAL_MINUTES)
    meal_day = (meals // DAY_MS - trace.first_day).astype(np.intp)
    meal_min = (meals % DAY_MS) // MINUTE_MS

    patterns = []
    for window in MEAL_WINDOWS:
        if window.start_min < window.end_min:
            in_window = (meal_min >= window.start_min) & (meal_min < window.end_min)
        else:
            in_window = (meal_min >= window.start_min) | (meal_min < window.end_min)
        occurred = np.zeros(trace.days, np.bool_)
        occurred[meal_day[in_window & high]] = True
        seen = np.zeros(trace.days, np.bool_)
        seen[meal_day[in_window & observed]] = True
        n_occurred, n_seen = int(occurred.sum()), int(seen.sum())
        if not _recurring(np.array(n_occurred), np.array(n_seen)):
            continue
        patterns.append(
            Pattern(
                kind=PatternKind.POST_MEAL_HIGH,
                summary=(
                    f"Glucose above {_mgdl(POST_MEAL_HIGH_MGDL)} or rising more than "
                    f"{_mgdl(POST_MEAL_RISE_MGDL)} within {_duration(POST_MEAL_MINUTES)} after "
                    f"{window.name} ({_hhmm(window.start_min)}–{_hhmm(window.end_min)}) "
                    f"on {n_occurred} of {n_seen} {_noun(n_seen, 'day')}"
                ),
                start_min=window.start_min,
                end_min=window.end_min,
                days=_day_numbers(trace, occurred),
                occurrences=n_occurred,
                days_observed=n_seen,
                events=int((in_window & high).sum()),
                worst_mgdl=float(peak[in_window & high].max()),
            )
        )
    return patterns


def _data_gaps(trace: _Trace) -> list[Pattern]:
    patterns = []
    times = trace.times
    steps = np.diff(times)
    gap = steps >= GAP_MIN_MINUTES * MINUTE_MS
    if gap.any():
        starts = times[:-1][gap]
        ends = times[1:][gap]
        touched = np.zeros(trace.days, np.bool_)
        for first, last in zip((starts // DAY_MS).tolist(), ((ends - 1) // DAY_MS).tolist(), strict=True):
            touched[first - trace.first_day : last - trace.first_day + 1] = True
        lengths = steps[gap] / MINUTE_MS
        count, total, longest = int(gap.sum()), float(lengths.sum()), float(lengths.max())
        if count == 1:
            summary = f"1 gap of {_hours(longest)} without readings"
        else:
            summary = (
                f"{count} gaps of {_duration(GAP_MIN_MINUTES)} or more without readings "
                f"({_hours(total)} in total, longest {_hours(longest)})"
            )
        patterns.append(
            Pattern(
                kind=PatternKind.DATA_GAP,
                summary=summary,
                start_min=0,
                end_min=DAY_MINUTES,
                days=_day_numbers(trace, touched),
                occurrences=int(touched.sum()),
                days_observed=trace.days,
                events=count,
                gap_total_min=total,
                gap_longest_min=longest,
            )
        )
    short = ~trace.enough(trace.per_hour.sum(axis=1), DAY_MINUTES)
    if short.any():
        n_short = int(short.sum())
        patterns.append(
            Pattern(
                kind=PatternKind.DATA_GAP,
                summary=(
                    f"Fewer than {MIN_COVERAGE_PCT}% of the possible readings on {n_short} of "
                    f"{trace.days} {_noun(trace.days, 'day')}"
                ),
                start_min=0,
                end_min=DAY_MINUTES,
                days=_day_numbers(trace, short),
                occurrences=n_short,
                days_observed=trace.days,
                events=n_short,
            )
        )
    return patterns


def find_patterns(
    local_ms: npt.ArrayLike,
    mgdl: npt.ArrayLike,
    *,
    first_day: int,
    last_day: int,
    meal_local_ms: npt.ArrayLike | None = None,
    carbs_g: npt.ArrayLike | None = None,
    interval_min: int = 5,
) -> list[Pattern]:
    """Recurring lows, overnight highs, post-meal highs and data gaps in a period of CGM readings.

    ``local_ms`` / ``mgdl``: the readings (local wall-clock milliseconds, mg/dL, any order);
    ``first_day`` … ``last_day``: the period's local day numbers, inclusive; ``meal_local_ms`` /
    ``carbs_g``: carbohydrate entries (local milliseconds, grams), both or neither; ``interval_min``:
    the sensor's sampling interval in minutes (5 for most sensors, 15 for the Libre history). Rules,
    thresholds and wording: module notes (Battelino 2019 and 2023 consensus; Johnson 2019 for
    reading the AGP). Sorted by kind, then window start and end. Raises ``ValueError`` for an empty
    period, an interval below 1 minute or arrays of different lengths.
    """
    if last_day < first_day:
        msg = f"last_day ({last_day}) is before first_day ({first_day})"
        raise ValueError(msg)
    if interval_min < 1:
        msg = f"interval_min must be at least 1 minute, not {interval_min}"
        raise ValueError(msg)
    if (meal_local_ms is None) != (carbs_g is None):
        msg = "meal_local_ms and carbs_g go together: give both or neither"
        raise ValueError(msg)
    trace = _trace(local_ms, mgdl, first_day, last_day, interval_min)
    patterns = [*_recurring_lows(trace), *_overnight_highs(trace)]
    if meal_local_ms is not None and carbs_g is not None:
        patterns.extend(_post_meal_highs(trace, meal_local_ms, carbs_g))
    patterns.extend(_data_gaps(trace))
    return sorted(patterns, key=lambda p: (_KIND_ORDER[p.kind], p.start_min, p.end_min))
