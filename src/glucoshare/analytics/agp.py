"""Ambulatory Glucose Profile: the modal day and the daily glucose profiles.

The AGP report (International Diabetes Center, "AGP Report: Continuous Glucose Monitoring", v5;
Johnson ML et al., "Utilizing the Ambulatory Glucose Profile to Standardize and Implement
Continuous Glucose Monitoring in Clinical Practice", Diabetes Technol Ther 2019;21(S2):S2-17;
construction: Bergenstal RM et al., "Recommendations for Standardizing Glucose Reporting and
Analysis to Optimize Clinical Decision Making in Diabetes: The Ambulatory Glucose Profile",
Diabetes Technol Ther 2013;15:198) draws all days of a period on top of each other as one "modal
day": the median (50th percentile), the 25th–75th and the 5th–95th percentile bands of glucose by
time of day, and below it one small midnight-to-midnight panel per calendar day, shaded below 70
and above 180 mg/dL. The numbers printed next to the graph (time in ranges, mean glucose, GMI, CV,
% time CGM active) come from :mod:`glucoshare.analytics.metrics`, :mod:`~glucoshare.analytics.summary`
and :mod:`~glucoshare.analytics.coverage`; they are not repeated here.

Times are local wall-clock times: ``local_ms`` is the UTC instant plus the UTC offset in
milliseconds, so ``local_ms // 86_400_000`` is the local day number and ``local_ms % 86_400_000``
the time of day. A day with a daylight-saving change therefore has 23 or 25 hours of readings, but
every reading is drawn at the clock time the patient saw.

**Binning and smoothing of the modal day.** IDC publishes no binning or smoothing rule for the
curves. Peers differ: iglu's ``plot_agp`` takes the quantiles of each 5-minute slot of its
interpolated day-by-day grid and then smooths every quantile curve separately with loess (span
0.3, about seven hours); agp-tool bins raw readings into 5-minute slots (at least 5 readings, NaN
otherwise) and draws them unsmoothed. Glucoshare does this:

* 288 slots of ``slot_minutes = 5`` minutes by local time of day; slot ``k`` starts ``5 k`` minutes
  after midnight and holds the readings with ``k·5 ≤ time of day < (k + 1)·5`` minutes.
* Every slot's percentiles are computed over the *raw readings* of the slot and of
  ``half_window_minutes = 15`` minutes on either side (a 35-minute window centred on the slot),
  wrapping around midnight: the window of 00:00 also takes the readings from 23:45 onwards.
* Percentiles 5, 25, 50, 75 and 95 with linear interpolation between order statistics
  (Hyndman & Fan type 7, NumPy's default; the same arithmetic as :func:`numpy.percentile`).
* A slot whose window holds fewer than ``min_readings = 5`` readings is NaN (agp-tool's minimum).
* Readings that are not finite numbers are ignored.

Why: with 14 days of 5-minute readings one slot holds about 14 readings, so its 5th and 95th
percentiles are little more than its lowest and highest reading and the outer band turns into
noise. Pooling a 35-minute window gives about 98 readings per slot (about 5 beyond each outer
percentile) while staying short against meal excursions (1–3 hours) and the dawn rise, whose timing
and height a seven-hour loess would flatten. Because the smoothing pools readings instead of
smoothing each curve afterwards, every value stays a true percentile of readings, the curves can
never cross (p5 ≤ p25 ≤ p50 ≤ p75 ≤ p95), and the counts behind every point are known. The day is
a circle, so 23:55 and 00:00 are neighbours. ``half_window_minutes = 0`` gives agp-tool's
unsmoothed 5-minute bins.

**Daily profiles.** One entry per local calendar day, midnight to midnight: the readings in time
order and the percentages of that day's readings below 70, in 70–180 and above 180 mg/dL (70 and
180 are in range; Battelino T et al., Diabetes Care 2019;42:1593). With readings at a regular
interval, percentages of readings are percentages of time.

Everything is vectorised (no loop over readings); inputs are never modified.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import numpy.typing as npt

from glucoshare.analytics.ranges import MGDL_CUTOFFS

MINUTE_MS = 60_000
DAY_MS = 86_400_000
DAY_MINUTES = 1440
AGP_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)
"""The percentiles of the AGP v5 graph."""
DEFAULT_SLOT_MINUTES = 5
DEFAULT_HALF_WINDOW_MINUTES = 15
DEFAULT_MIN_READINGS = 5
EPOCH = dt.date(1970, 1, 1)


@dataclasses.dataclass(frozen=True, slots=True)
class AgpProfile:
    """The AGP modal day: glucose percentiles (mg/dL) by local time of day, one value per slot.

    Slot ``k`` starts ``slot_start_min[k]`` minutes after local midnight and lasts ``slot_minutes``;
    its percentiles come from the readings within ``half_window_minutes`` of the slot, wrapping
    around midnight (module notes). A percentile is NaN where the window holds fewer than
    ``min_readings`` readings; the five curves are NaN together.
    """

    slot_minutes: int
    half_window_minutes: int
    min_readings: int
    slot_start_min: npt.NDArray[np.int64]
    p5: npt.NDArray[np.float64]
    p25: npt.NDArray[np.float64]
    p50: npt.NDArray[np.float64]
    p75: npt.NDArray[np.float64]
    p95: npt.NDArray[np.float64]
    slot_readings: npt.NDArray[np.int64]
    """Readings whose time of day falls in the slot itself."""
    window_readings: npt.NDArray[np.int64]
    """Readings the slot's percentiles were computed from (its whole window)."""
    days: int
    """Local calendar days with at least one reading used."""
    readings: int
    """Readings used (finite glucose values)."""

    @property
    def slots(self) -> int:
        """Number of slots in the day (288 for 5-minute slots)."""
        return int(self.slot_start_min.size)

    def percentile(self, q: float) -> npt.NDArray[np.float64]:
        """The curve of percentile ``q`` (one of 5, 25, 50, 75, 95)."""
        curves = {5.0: self.p5, 25.0: self.p25, 50.0: self.p50, 75.0: self.p75, 95.0: self.p95}
        if float(q) not in curves:
            msg = f"the AGP has the percentiles {AGP_PERCENTILES}, not {q}"
            raise ValueError(msg)
        return curves[float(q)]


def _check_readings(
    local_ms: npt.ArrayLike, mgdl: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Times and values as arrays of one length, readings with non-finite glucose left out (copies)."""
    times = np.asarray(local_ms, dtype=np.int64).reshape(-1)
    values = np.asarray(mgdl, dtype=np.float64).reshape(-1)
    if times.shape != values.shape:
        msg = f"local_ms has {times.size} readings but mgdl has {values.size}"
        raise ValueError(msg)
    keep = np.isfinite(values)
    return times[keep], values[keep]


def _lerp(
    below: npt.NDArray[np.float64], above: npt.NDArray[np.float64], weight: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Linear interpolation as NumPy's percentile does it (monotone in ``weight``)."""
    step = above - below
    result: npt.NDArray[np.float64] = below + step * weight
    from_above = weight >= 0.5  # noqa: PLR2004 - NumPy's switch to the upper end for accuracy
    result[from_above] = (above - step * (1.0 - weight))[from_above]
    return result


def agp(
    local_ms: npt.ArrayLike,
    mgdl: npt.ArrayLike,
    *,
    slot_minutes: int = DEFAULT_SLOT_MINUTES,
    half_window_minutes: int = DEFAULT_HALF_WINDOW_MINUTES,
    min_readings: int = DEFAULT_MIN_READINGS,
) -> AgpProfile:
    """The AGP modal day of CGM readings: percentiles 5/25/50/75/95 in mg/dL by local time of day.

    ``local_ms`` are local wall-clock times in milliseconds (any order), ``mgdl`` the glucose values.
    ``slot_minutes`` must divide a day (1,440 minutes); ``half_window_minutes`` (the pooling on
    either side of a slot, wrapping around midnight) must be a multiple of it and shorter than half
    a day; ``min_readings`` ≥ 1 is the least number of readings in a window for a value. Binning,
    smoothing and the reasons: module notes (IDC AGP v5; Bergenstal 2013; Johnson 2019).
    Raises ``ValueError`` for invalid settings or arrays of different lengths.
    """
    if slot_minutes <= 0 or DAY_MINUTES % slot_minutes:
        msg = f"slot_minutes must divide the 1,440 minutes of a day, not {slot_minutes}"
        raise ValueError(msg)
    slots = DAY_MINUTES // slot_minutes
    if half_window_minutes < 0 or half_window_minutes % slot_minutes:
        msg = f"half_window_minutes must be a multiple of slot_minutes, not {half_window_minutes}"
        raise ValueError(msg)
    reach = half_window_minutes // slot_minutes  # neighbouring slots pooled on either side
    width = 2 * reach + 1
    if width > slots:
        msg = f"half_window_minutes must be shorter than half a day, not {half_window_minutes}"
        raise ValueError(msg)
    if min_readings < 1:
        msg = f"min_readings must be at least 1, not {min_readings}"
        raise ValueError(msg)

    times, values = _check_readings(local_ms, mgdl)
    slot = (times % DAY_MS) // (slot_minutes * MINUTE_MS)

    # Every reading joins the windows of its slot and of the `reach` slots on either side. Readings
    # go in ascending glucose order, each repeated for its `width` windows; a stable sort by window
    # (a radix sort on 16-bit keys) then leaves every window's readings contiguous and sorted.
    # (Equal glucose values are interchangeable, so the sort by value need not be stable.)
    by_value = np.argsort(values)
    shifts = np.arange(-reach, reach + 1, dtype=np.int16)
    window = (slot.astype(np.int16)[by_value][:, np.newaxis] + shifts).reshape(-1)
    window[window < 0] += slots
    window[window >= slots] -= slots
    pooled = np.repeat(values[by_value], width)[np.argsort(window, kind="stable")]
    counts = np.bincount(window, minlength=slots).astype(np.int64)
    first = np.cumsum(counts) - counts

    defined = counts >= min_readings
    n = counts[defined]
    start = first[defined]
    curves = np.full((len(AGP_PERCENTILES), slots), np.nan)
    for row, q in enumerate(AGP_PERCENTILES):
        position = (n - 1) * (q / 100.0)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, n - 1)
        curves[row, defined] = _lerp(pooled[start + below], pooled[start + above], position - below)

    days = np.unique(times // DAY_MS).size
    return AgpProfile(
        slot_minutes=slot_minutes,
        half_window_minutes=half_window_minutes,
        min_readings=min_readings,
        slot_start_min=np.arange(slots, dtype=np.int64) * slot_minutes,
        p5=curves[0],
        p25=curves[1],
        p50=curves[2],
        p75=curves[3],
        p95=curves[4],
        slot_readings=np.bincount(slot, minlength=slots).astype(np.int64),
        window_readings=counts,
        days=int(days),
        readings=int(values.size),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class DailyProfile:
    """One local calendar day (midnight to midnight) of the AGP's daily glucose profiles.

    ``minutes`` are the readings' local times of day in minutes after midnight (fractional, 0 ≤
    minutes < 1,440), in time order, ``mgdl`` their glucose values. The percentages are of the
    day's readings (70 and 180 mg/dL are in range) and ``None`` on a day without readings.
    """

    day: int
    """Local day number (days since 1970-01-01)."""
    minutes: npt.NDArray[np.float64]
    mgdl: npt.NDArray[np.float64]
    below_pct: float | None
    """Readings below 70 mg/dL, % of the day's readings."""
    in_range_pct: float | None
    """Readings in 70–180 mg/dL, %."""
    above_pct: float | None
    """Readings above 180 mg/dL, %."""

    @property
    def date(self) -> dt.date:
        """The local calendar date."""
        return EPOCH + dt.timedelta(days=self.day)

    @property
    def readings(self) -> int:
        """Number of readings on the day."""
        return int(self.mgdl.size)


def daily_profiles(
    local_ms: npt.ArrayLike, mgdl: npt.ArrayLike, *, first_day: int, last_day: int
) -> list[DailyProfile]:
    """One :class:`DailyProfile` per local day from ``first_day`` to ``last_day`` (day numbers, inclusive).

    Days without readings are present with empty arrays and ``None`` percentages; readings outside
    the days and non-finite values are ignored. A reading at 23:59:59 belongs to its day, one at
    00:00 to the next (IDC AGP v5 daily panels; ranges per Battelino 2019). Raises ``ValueError``
    when ``last_day`` is before ``first_day``.
    """
    if last_day < first_day:
        msg = f"last_day ({last_day}) is before first_day ({first_day})"
        raise ValueError(msg)
    times, values = _check_readings(local_ms, mgdl)
    order = np.argsort(times, kind="stable")
    times = times[order]
    values = values[order]
    day_of = times // DAY_MS
    days = np.arange(first_day, last_day + 1, dtype=np.int64)
    bounds = np.searchsorted(day_of, np.append(days, last_day + 1))
    times = times[bounds[0] : bounds[-1]]
    values = values[bounds[0] : bounds[-1]]
    bounds = bounds - bounds[0]
    minutes = (times % DAY_MS) / MINUTE_MS
    index = (times // DAY_MS - first_day).astype(np.intp)
    count = np.diff(bounds)
    below = np.bincount(index, weights=values < MGDL_CUTOFFS.low, minlength=days.size)
    above = np.bincount(index, weights=values > MGDL_CUTOFFS.high, minlength=days.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        below_pct = 100.0 * below / count
        above_pct = 100.0 * above / count
        in_range_pct = 100.0 * (count - below - above) / count
    profiles = []
    for at, day in enumerate(days.tolist()):
        lo, hi = bounds[at], bounds[at + 1]
        has = hi > lo
        profiles.append(
            DailyProfile(
                day=day,
                minutes=minutes[lo:hi],
                mgdl=values[lo:hi],
                below_pct=float(below_pct[at]) if has else None,
                in_range_pct=float(in_range_pct[at]) if has else None,
                above_pct=float(above_pct[at]) if has else None,
            )
        )
    return profiles


TREND_PERCENTILES = (10.0, 25.0, 50.0, 75.0, 90.0)
"""The percentiles of the trends (overlay) view, after Tidepool's CGM trends."""


@dataclasses.dataclass(frozen=True, slots=True)
class TimeOfDayBins:
    """Glucose (mg/dL) by time of day in fixed bins: extremes and :data:`TREND_PERCENTILES`.

    Bin ``k`` covers ``[k·bin_minutes, (k + 1)·bin_minutes)`` minutes after local midnight; every
    statistic is NaN in a bin without readings. ``percentiles[i]`` is the curve of
    ``TREND_PERCENTILES[i]`` (linear interpolation, NumPy's default).
    """

    bin_minutes: int
    start_min: npt.NDArray[np.int64]
    minimum: npt.NDArray[np.float64]
    maximum: npt.NDArray[np.float64]
    percentiles: npt.NDArray[np.float64]
    """Shape ``(len(TREND_PERCENTILES), bins)``."""
    readings: npt.NDArray[np.int64]


def time_of_day_bins(local_ms: npt.ArrayLike, mgdl: npt.ArrayLike, *, bin_minutes: int = 30) -> TimeOfDayBins:
    """The readings' distribution by local time of day in ``bin_minutes`` bins (trends view).

    Unlike :func:`agp`, bins do not overlap and nothing is pooled across them: this is the view of
    Tidepool's CGM trends (30-minute bins: minimum, 10th–90th and 25th–75th percentile ranges,
    median, maximum). ``bin_minutes`` must divide 1,440 (``ValueError`` otherwise).
    """
    if bin_minutes <= 0 or DAY_MINUTES % bin_minutes:
        msg = f"bin_minutes must divide a day of {DAY_MINUTES} minutes, not {bin_minutes}"
        raise ValueError(msg)
    times, values = _check_readings(local_ms, mgdl)
    bins = DAY_MINUTES // bin_minutes
    index = ((times % DAY_MS) // (bin_minutes * MINUTE_MS)).astype(np.intp)
    order = np.argsort(index, kind="stable")
    index, values = index[order], values[order]
    bounds = np.searchsorted(index, np.arange(bins + 1))
    curves = np.full((len(TREND_PERCENTILES), bins), np.nan)
    minimum = np.full(bins, np.nan)
    maximum = np.full(bins, np.nan)
    for k in range(bins):  # at most 288 bins; each one's values are sorted by NumPy in C
        chunk = values[bounds[k] : bounds[k + 1]]
        if chunk.size:
            curves[:, k] = np.percentile(chunk, TREND_PERCENTILES)
            minimum[k], maximum[k] = chunk.min(), chunk.max()
    return TimeOfDayBins(
        bin_minutes=bin_minutes,
        start_min=np.arange(bins, dtype=np.int64) * bin_minutes,
        minimum=minimum,
        maximum=maximum,
        percentiles=curves,
        readings=np.diff(bounds).astype(np.int64),
    )
