"""MAGE, the mean amplitude of glycaemic excursions, as iglu 4.3.0 computes it, for one patient or a cohort.

MAGE (Service FJ et al., "Mean amplitude of glycemic excursions, a measure of diabetic instability",
Diabetes 1970;19:644) is the mean height of the glucose swings between a nadir and the next peak (MAGE+)
or a peak and the next nadir (MAGE−) that are larger than one standard deviation of the trace. All
values are mg/dL. Our reference is the R package iglu 4.3.0 (Broll S et al., "Interpreting blood
GLUcose data with R package iglu", PLoS One 2021;16:e0248560), whose default, the moving-average
algorithm of Fernandes NJ et al. ("Open-source algorithm to calculate mean amplitude of glycemic
excursions using short and long moving averages", J Diabetes Sci Technol 2022;16:576,
doi:10.1177/19322968211061165), :func:`mage_ma` reproduces step by step:

1. **Grid.** The readings are interpolated onto the 5-minute grid of whole local days of
   :func:`glucoshare.analytics.grid.day_grid` (always 5 minutes, whatever the sampling interval);
   grid points before the first and after the last known value are dropped. A trace of fewer than
   7 points, or fewer than the long window, has no MAGE.
2. **Segments.** A run of unknown points lasting longer than ``max_gap_min`` (180 minutes: 37 or
   more points) splits the trace; each piece between such runs is a segment, scored on its own.
   Shorter runs of unknown points stay inside their segment. A segment scores nothing when it has
   fewer than 7 points or fewer than the long window, or when the SD of its known points is below
   1 mg/dL.
3. **Moving averages.** In each segment, the short (5 points) and the long (32 points) trailing
   means of the known values in the window (unknown points skipped; a window without known values
   has no mean); the first ``w − 1`` points of a segment take the first full window's mean.
   ``Δ = short − long``.
4. **Crossings.** Turning-point intervals are delimited by the first point, every point where the
   averages cross, and the last point. A point counts only when it and the point before it are
   known: it is a crossing where Δ changes sign from the point before, or, failing that, where Δ has
   the opposite sign of Δ at the previous crossing (this catches sign changes across unknown points
   and across a Δ of exactly 0; while the first point has Δ = 0 only the first rule applies, until
   it first fires). An interval opened by a point with Δ > 0 holds a peak, otherwise a nadir.
5. **Turning points.** Each interval's nadir (minimum) or peak (maximum) of the known values is
   searched from the previous turning point (the first one from the first point) to the next
   crossing, both included; on ties the earliest point wins.
6. **Excursions.** With ``sd`` the sample SD of the segment's known values, scanning the turning
   points ``m_1 … m_N`` left to right: MAGE+ looks for the first ``j`` with ``m_j − min(m_p … m_j)
   ≥ sd`` (``p`` where the last excursion ended, 1 at first), follows the peak up while it rises,
   and closes the excursion at the first later point more than ``sd`` below the peak, or at
   ``m_N``; the height is the peak minus that minimum, and the scan resumes where the excursion
   closed. MAGE− is the mirror image (peak to nadir, closed by a rise of more than ``sd`` or at
   ``m_N``) but resumes its search from the nadir. A segment's MAGE+ and MAGE− are the means of
   their heights (absolute value for MAGE−); a direction without heights has none.
7. **Directions.** Per-segment values are combined with weights proportional to the segment's
   duration (last minus first point). ``avg`` (the default) weighs every known MAGE+ and MAGE− of
   every segment; ``plus`` / ``minus`` take that direction of every segment that has an excursion
   at all, and are ``None`` when one of those lacks it; ``max`` takes the larger of the two in the
   segments that have both (both when equal); ``service`` takes, per segment, the direction of the
   excursion that comes first (MAGE+ when its peak is not after the first MAGE− peak).

Conventions. Functions return ``None`` (the cohort function NaN) where iglu returns NA. Results are
not rounded. ``short_ma`` must be smaller than ``long_ma`` (iglu swaps them with a warning; we raise).
Only the sign of Δ matters, and it is computed with care: the window sums come from cumulative sums
with a rigorous rounding bound, and where ``|Δ|`` is within that bound both means are recomputed the
way R's ``mean`` computes them (long-double sum, residual correction, rounded to double). So exact
ties give Δ = 0 as in iglu: constant stretches, windows whose only known values are the same after a
gap, and windows whose means are equal once rounded. The excursion scan keeps running minima and
maxima instead of rescanning, which picks the same turning points. Inputs are never modified.

:func:`mage_naive` is iglu's ``version = "naive"`` (iglu ≤ 2.0.0): the mean of the absolute
deviations from the mean that exceed one SD.

Speed: :func:`mage_many` scores a cohort in one pass. All segments are laid end to end; averages,
crossings and SDs are whole-array NumPy operations. The two sequential parts (turning points, which
depend on the previous turning point, and the excursion scan) either advance many segments in
lockstep, one NumPy step per turning point of the longest segment, or walk one segment at a time
(a NumPy ``argmin``/``argmax`` per interval, a loop over plain floats for the scan). Each part picks,
segment by segment, whichever a cost estimate finds faster: one at a time for one patient's long
trace (90 days of readings in a few milliseconds instead of tens), lockstep for a large cohort. Both
ways take the same steps with the same arithmetic, so the results are identical.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from glucoshare.analytics.grid import DEFAULT_INTER_GAP_MIN, day_grid

Direction = Literal["avg", "plus", "minus", "max", "service"]
DIRECTIONS: Final[tuple[Direction, ...]] = get_args(Direction)

GRID_STEP_MIN: Final = 5
"""MAGE always works on a 5-minute grid (iglu ≥ 4.0)."""
SHORT_MA: Final = 5
LONG_MA: Final = 32
MAX_GAP_MIN: Final = 180
MIN_POINTS: Final = 7
"""iglu's floor on the number of grid points of a trace or segment."""
MIN_SD_MGDL: Final = 1.0
"""A segment whose SD is below this has no MAGE (iglu: no glucose variation)."""

_EPS: Final = float(np.finfo(np.float64).eps)
# Costs of the sequential parts, in turning points handled one segment at a time (see _alone): one
# lockstep step, net of the per-point work the lockstep does too, and one segment handled alone.
_TURNING_STEP_COST: Final = 30
_TURNING_SEGMENT_COST: Final = 10
_SCAN_STEP_COST: Final = 500
_SCAN_SEGMENT_COST: Final = 25

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclasses.dataclass(frozen=True, slots=True)
class _Segments:
    """The scored segments of all patients, laid end to end in ``values``."""

    values: FloatArray
    start: IntArray  # offset of each segment in values
    length: IntArray
    patient: IntArray  # patient of each segment
    sd: FloatArray


@dataclasses.dataclass(frozen=True, slots=True)
class _Excursions:
    """One direction's excursions of every segment (heights in the direction's sign)."""

    total: FloatArray
    count: IntArray
    first_start: IntArray  # turning point (ordinal) where the first excursion starts
    first_peak: IntArray  # ... and where it peaks


def _ranges(start: IntArray, length: IntArray) -> IntArray:
    """The indices ``start[k] … start[k] + length[k] − 1`` of every range, one range after the other."""
    offset = np.cumsum(length) - length
    return np.arange(int(length.sum()), dtype=np.int64) - np.repeat(offset - start, length)


def _check(direction: str, short_ma: int, long_ma: int) -> None:
    if direction not in DIRECTIONS:
        msg = f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}"
        raise ValueError(msg)
    if not 0 < short_ma < long_ma:
        msg = f"need 0 < short_ma < long_ma, got {short_ma} and {long_ma}"
        raise ValueError(msg)


def _segments(traces: list[FloatArray], *, long_ma: int, max_gap_min: int) -> _Segments:
    """Trim every trace to its known values, split it at long gaps and keep the scorable segments."""
    sizes = np.array([trace.size for trace in traces], np.int64)
    values = np.concatenate(traces) if traces else np.empty(0)
    ends = np.cumsum(sizes)
    known = np.flatnonzero(np.isfinite(values))
    lo = np.searchsorted(known, ends - sizes)
    hi = np.searchsorted(known, ends) - 1
    has = lo <= hi
    first = known[np.minimum(lo, known.size - 1)] if known.size else np.zeros_like(lo)
    last = known[np.maximum(hi, 0)] if known.size else np.zeros_like(hi)
    trimmed = last - first + 1
    ok = has & (trimmed >= max(MIN_POINTS, long_ma))
    patients = np.flatnonzero(ok)
    x = values[_ranges(first[ok], trimmed[ok])]
    starts = np.cumsum(trimmed[ok]) - trimmed[ok]
    stops = starts + trimmed[ok]
    # Runs of unknown points never touch a trimmed trace's ends, so they never span two patients.
    unknown = np.isnan(x)
    run_start = np.flatnonzero(~unknown[:-1] & unknown[1:]) + 1
    run_stop = np.flatnonzero(unknown[:-1] & ~unknown[1:]) + 1
    long_gap = (run_stop - run_start) * GRID_STEP_MIN > max_gap_min
    seg_start = np.sort(np.concatenate([starts, run_stop[long_gap]]))
    seg_stop = np.sort(np.concatenate([stops, run_start[long_gap]]))
    seg_length = seg_stop - seg_start
    keep = seg_length >= max(MIN_POINTS, long_ma)
    seg_start, seg_length = seg_start[keep], seg_length[keep]
    owner = patients[np.searchsorted(starts, seg_start, side="right") - 1]
    y = x[_ranges(seg_start, seg_length)]
    offset = np.cumsum(seg_length) - seg_length
    sd = _segment_sd(y, offset, seg_length)
    varied = sd >= MIN_SD_MGDL
    if not varied.all():
        y = y[_ranges(offset[varied], seg_length[varied])]
        seg_length, owner, sd = seg_length[varied], owner[varied], sd[varied]
        offset = np.cumsum(seg_length) - seg_length
    return _Segments(values=y, start=offset, length=seg_length, patient=owner.astype(np.int64), sd=sd)


def _segment_mean(y: FloatArray, start: IntArray) -> FloatArray:
    """Mean of the known values of every segment (segments contiguous, starting at ``start``)."""
    known = np.isfinite(y)
    total = np.add.reduceat(np.where(known, y, 0.0), start)
    result: FloatArray = total / np.add.reduceat(known.astype(np.int64), start)
    return result


def _segment_sd(y: FloatArray, start: IntArray, length: IntArray) -> FloatArray:
    """Sample SD of the known values of every segment (two passes, relative to the segment's first value)."""
    if start.size == 0:
        return np.empty(0)
    known = np.isfinite(y)
    deviation = np.where(known, y - np.repeat(y[start], length), 0.0)
    n = np.add.reduceat(known.astype(np.int64), start).astype(np.float64)
    mean = np.add.reduceat(deviation, start) / n
    centred = np.where(known, deviation - np.repeat(mean, length), 0.0)
    result: FloatArray = np.sqrt(np.add.reduceat(centred * centred, start) / (n - 1.0))
    return result


def _delta_signs(seg: _Segments, short_ma: int, long_ma: int) -> npt.NDArray[np.int8]:
    """The sign of short − long moving average at every point (0 where the point is unknown)."""
    y, start, length = seg.values, seg.start, seg.length
    n = y.size
    known = np.isfinite(y)
    # Integer centres keep integer data integer, so the cumulative sums below are exact for it.
    centre = np.repeat(np.round(_segment_mean(y, start)), length)
    z = np.where(known, y - centre, 0.0)
    sums = np.concatenate([[0.0], np.cumsum(z)])
    counts = np.concatenate([[0], np.cumsum(known, dtype=np.int64)])

    def window(width: int) -> FloatArray:
        # The window ending at every point (slices, not gathers: this runs on whole cohorts) ...
        total = np.empty(n)
        number = np.empty(n, np.int64)
        total[: width - 1], number[: width - 1] = 0.0, 1  # the first lead-in, overwritten below
        total[width - 1 :] = sums[width:] - sums[: n + 1 - width]
        number[width - 1 :] = counts[width:] - counts[: n + 1 - width]
        mean: FloatArray = total / number
        # ... and the first full window's mean in each segment's lead-in (segments are longer).
        lead = _ranges(start, np.full(start.size, width - 1, np.int64))
        mean[lead] = np.repeat(mean[start + (width - 1)], width - 1)
        return mean

    with np.errstate(invalid="ignore", divide="ignore"):
        delta = window(short_ma) - window(long_ma)
    # Rounding of a window sum from the cumulative sums is at most width·eps·max|sums| (plus one
    # rounding of the result); near 0 the sign is decided again with R's own arithmetic.
    scale = float(np.abs(sums).max()) + float(np.abs(z).max(initial=0.0)) if y.size else 0.0
    bound = 2.0 * (short_ma + long_ma + 2) * _EPS * scale
    unsure = np.flatnonzero(known & ~(np.abs(delta) > bound))
    if unsure.size:
        first = start[np.searchsorted(start, unsure, side="right") - 1]
        short_end = np.maximum(unsure, first + (short_ma - 1))  # the lead-in's window, as above
        long_end = np.maximum(unsure, first + (long_ma - 1))
        delta[unsure] = _r_means(y, short_end, short_ma) - _r_means(y, long_end, long_ma)
    return np.sign(np.where(known, delta, 0.0)).astype(np.int8)


def _r_means(y: FloatArray, end: IntArray, width: int) -> FloatArray:
    """Mean of the known values of ``y[end − width + 1 … end]`` for every ``end``, computed as R's ``mean``.

    That is: a sequential long-double sum divided by n, plus the mean of the residuals, rounded to
    double. NumPy's long double is C's, as R's on the same platform, so ties come out as in R: a
    constant window gives its value, windows with the same known values the same mean, and means
    that are equal once rounded the same double.
    """
    values = y[end[:, None] - np.arange(width - 1, -1, -1)].astype(np.longdouble)
    known = np.isfinite(values)
    n = known.sum(axis=1).astype(np.longdouble)
    mean = np.cumsum(np.where(known, values, 0.0), axis=1)[:, -1] / n  # adding 0 changes no sum
    residual = np.cumsum(np.where(known, values - mean[:, None], 0.0), axis=1)[:, -1]
    result: FloatArray = (mean + residual / n).astype(np.float64)
    return result


def _crossings(seg: _Segments, signs: npt.NDArray[np.int8]) -> tuple[IntArray, BoolArray, IntArray]:
    """Interval bounds of every segment: first point, crossings, last point (see the module notes).

    Returns the points (all segments one after the other), whether each opens a peak interval, and
    the number of turning points (bounds − 1) of every segment.
    """
    start, length = seg.start, seg.length
    n = seg.values.size
    known = np.isfinite(seg.values)
    opens = np.zeros(n, np.bool_)
    opens[start] = True
    valid = known & np.concatenate([[False], known[:-1]]) & ~opens
    previous = np.concatenate([[np.int8(0)], signs[:-1]])
    flips = valid & (signs * previous < 0)
    signed = valid & (signs != 0)
    point = np.arange(n, dtype=np.int64)
    anchor = np.maximum.accumulate(np.where(signed | opens, point, -1))
    reference = signs[np.concatenate([[0], anchor[:-1]])]
    against = valid & ~flips & (signs * reference < 0)
    flat_start = signs[start] == 0
    if flat_start.any():
        # While the first point's Δ is 0, only a change of sign from the point before counts.
        flip_at = np.flatnonzero(flips)
        k = np.searchsorted(flip_at, start[flat_start])
        stop = start[flat_start] + length[flat_start] - 1
        found = k < flip_at.size
        first_flip = np.where(found, flip_at[np.minimum(k, flip_at.size - 1)], stop) if flip_at.size else stop
        first_flip = np.minimum(first_flip, stop)
        mark = np.zeros(n + 1, np.int64)
        np.add.at(mark, start[flat_start], 1)
        np.add.at(mark, first_flip + 1, -1)
        against &= np.cumsum(mark[:-1]) == 0
    inner = np.flatnonzero(flips | against)
    ends = start + length - 1
    key = np.concatenate([start * 3, inner * 3 + 1, ends * 3 + 2])
    bounds = np.sort(key) // 3
    per_segment = np.diff(np.searchsorted(inner, np.concatenate([start, [n]])))
    return bounds, signs[bounds] > 0, per_segment + 1


def _alone(count: IntArray, *, step_cost: int, segment_cost: int) -> BoolArray:
    """Which segments a sequential part handles one at a time rather than in lockstep.

    The lockstep takes as many steps as its longest segment has turning points, each costing about
    ``step_cost`` turning points handled alone, plus ``segment_cost`` for each segment handled alone.
    So the segments with the most turning points go alone, as many as minimise the total cost: all
    of them for one patient, none for a large cohort of similar patients. The results are the same.
    """
    order = np.argsort(-count, kind="stable")
    ranked = count[order]
    alone_cost = np.concatenate([[0], np.cumsum(ranked + segment_cost)])  # the first k alone ...
    lockstep_cost = np.concatenate([ranked, [0]]) * step_cost  # ... the rest in lockstep
    take = int(np.argmin(alone_cost + lockstep_cost))
    result = np.zeros(count.size, np.bool_)
    result[order[:take]] = True
    return result


def _active(count: IntArray, lockstep: BoolArray) -> tuple[IntArray, IntArray]:
    """The ``lockstep`` segments by decreasing count and, per step, how many of them are still active."""
    chosen = np.flatnonzero(lockstep)
    order = chosen[np.argsort(-count[chosen], kind="stable")]
    ranked = count[order]
    steps = int(ranked[0]) if ranked.size else 0
    active = np.searchsorted(-ranked, -np.arange(steps), side="left").astype(np.int64)
    return order.astype(np.int64), active


def _turning_points(
    y: FloatArray, bounds: IntArray, peak: BoolArray, count: IntArray, alone: BoolArray | None = None
) -> FloatArray:
    """Glucose at every turning point; segment after segment, ``count`` of them per segment.

    Turning point ``t`` of a segment is the extreme of ``y`` from turning point ``t − 1`` (the first
    bound for ``t = 0``) to bound ``t + 1``. The ``alone`` segments (default: as :func:`_alone`
    finds fastest) are walked one interval at a time; the others advance together, one ``t`` per step.
    """
    if alone is None:
        alone = _alone(count, step_cost=_TURNING_STEP_COST, segment_cost=_TURNING_SEGMENT_COST)
    turning_offset = np.cumsum(count) - count
    bound_offset = turning_offset + np.arange(count.size)
    out = np.empty(int(count.sum()))
    for k in np.flatnonzero(alone).tolist():
        b, c = int(bound_offset[k]), int(count[k])
        first = int(bounds[b])
        at = _segment_turning_points(
            y[first : int(bounds[b + c]) + 1], (bounds[b + 1 : b + c + 1] - first).tolist(), peak[b : b + c]
        )
        out[turning_offset[k] : turning_offset[k] + c] = y[first + at]
    order, active = _active(count, ~alone)
    turning_base = turning_offset[order]
    bound_base = bound_offset[order]
    left = bounds[bound_base].copy()
    for t, a in enumerate(active.tolist()):
        lo = left[:a]
        right = bounds[bound_base[:a] + t + 1]
        width = right - lo + 1
        offset = np.cumsum(width) - width
        points = np.arange(int(width.sum()), dtype=np.int64) - np.repeat(offset - lo, width)
        sign = np.where(peak[bound_base[:a] + t], -1.0, 1.0)
        key = y[points] * np.repeat(sign, width)  # minimise; unknown points stay NaN and are skipped
        best = np.fmin.reduceat(key, offset)
        hits = np.flatnonzero(key == np.repeat(best, width))
        chosen = points[hits[np.searchsorted(hits, offset)]]
        left[:a] = chosen
        out[turning_base[:a] + t] = y[chosen]
    return out


def _segment_turning_points(piece: FloatArray, right: list[int], peak: BoolArray) -> IntArray:
    """Positions in one segment's ``piece`` (first bound to last) of its turning points.

    ``right[t]`` is the position of bound ``t + 1``, ``peak[t]`` whether interval ``t`` holds a peak.
    ``argmax`` and ``argmin`` take the earliest extreme; unknown points become −∞ / +∞ and never win
    (every interval has known points: its bounds).
    """
    known = np.isfinite(piece)
    high = np.where(known, piece, -np.inf)
    low = np.where(known, piece, np.inf)
    at = np.empty(len(right), np.int64)
    left = 0
    for t, (stop, is_peak) in enumerate(zip(right, peak.tolist(), strict=True)):
        window = (high if is_peak else low)[left : stop + 1]
        left += int(window.argmax() if is_peak else window.argmin())
        at[t] = left
    return at


@dataclasses.dataclass(frozen=True, slots=True)
class _Scan:
    """State of the excursion scan of every segment (arrays; views of a prefix write through)."""

    rising: BoolArray  # inside an excursion
    low: FloatArray  # lowest point since the scan resumed ...
    low_at: IntArray  # ... and its turning-point ordinal
    start: FloatArray  # the current excursion's start ...
    start_at: IntArray
    peak: FloatArray  # ... and peak so far
    peak_at: IntArray
    since: FloatArray  # lowest point since that peak
    since_at: IntArray
    total: FloatArray  # sum and number of closed excursions' heights
    count: IntArray
    first_start: IntArray  # start and peak ordinals of the first excursion
    first_peak: IntArray

    @classmethod
    def empty(cls, segments: int) -> _Scan:
        def ints() -> IntArray:
            return np.zeros(segments, np.int64)

        return cls(
            rising=np.zeros(segments, np.bool_),
            low=np.full(segments, np.inf),
            low_at=ints(),
            start=np.zeros(segments),
            start_at=ints(),
            peak=np.zeros(segments),
            peak_at=ints(),
            since=np.zeros(segments),
            since_at=ints(),
            total=np.zeros(segments),
            count=ints(),
            first_start=np.full(segments, -1, np.int64),
            first_peak=np.full(segments, -1, np.int64),
        )

    def head(self, size: int) -> _Scan:
        """Views of the first ``size`` segments."""
        return _Scan(*(getattr(self, field.name)[:size] for field in dataclasses.fields(self)))

    def begin(self, where: BoolArray, x: FloatArray, p: int) -> None:
        """Open an excursion at point ``p`` (value ``x``) from the lowest point since resuming."""
        np.copyto(self.rising, True, where=where)  # noqa: FBT003 - NumPy's positional value
        np.copyto(self.start, self.low, where=where)
        np.copyto(self.start_at, self.low_at, where=where)
        for value, at in ((self.peak, self.peak_at), (self.since, self.since_at)):
            np.copyto(value, x, where=where)
            np.copyto(at, p, where=where)

    def follow(self, x: FloatArray, p: int) -> None:
        """Inside an excursion: move the peak up, and track the lowest point since the peak."""
        higher = self.rising & (x > self.peak)
        dip = self.rising & ~higher & (x < self.since)
        for value, at in ((self.peak, self.peak_at), (self.since, self.since_at)):
            np.copyto(value, x, where=higher)
            np.copyto(at, p, where=higher)
        np.copyto(self.since, x, where=dip)
        np.copyto(self.since_at, p, where=dip)

    def close(self, where: BoolArray, x: FloatArray, p: int, *, resume_at_peak: bool) -> None:
        """Record the open excursion's height and resume the scan at ``p`` or at the peak."""
        first = where & (self.count == 0)
        np.copyto(self.first_start, self.start_at, where=first)
        np.copyto(self.first_peak, self.peak_at, where=first)
        self.total[...] += np.where(where, self.peak - self.start, 0.0)
        self.count[...] += where
        np.copyto(self.rising, False, where=where)  # noqa: FBT003 - NumPy's positional value
        np.copyto(self.low, self.since if resume_at_peak else x, where=where)
        np.copyto(self.low_at, self.since_at if resume_at_peak else p, where=where)


def _excursions(
    m: FloatArray, count: IntArray, sd: FloatArray, *, resume_at_peak: bool, alone: BoolArray | None = None
) -> _Excursions:
    """Rises of at least ``sd`` in every segment's turning points ``m`` (see the module notes).

    A rise starts at the lowest point since the scan resumed, once the current point is ``sd`` or
    more above it; it follows the peak up and closes at the first point more than ``sd`` below the
    peak, or at the last point. The scan resumes at the closing point, or at the peak when
    ``resume_at_peak`` (iglu's MAGE−, run on −m). Heights are peak − start. The ``alone`` segments
    (default: as :func:`_alone` finds fastest) are scanned one at a time
    (:func:`_segment_excursions`); the others advance together, one turning point per step, with
    the same arithmetic.
    """
    if alone is None:
        alone = _alone(count, step_cost=_SCAN_STEP_COST, segment_cost=_SCAN_SEGMENT_COST)
    total = np.zeros(count.size)
    number = np.zeros(count.size, np.int64)
    first_start = np.full(count.size, -1, np.int64)
    first_peak = np.full(count.size, -1, np.int64)
    offset = np.cumsum(count) - count
    for k in np.flatnonzero(alone).tolist():
        begin = int(offset[k])
        scanned = _segment_excursions(
            m[begin : begin + int(count[k])].tolist(), float(sd[k]), resume_at_peak=resume_at_peak
        )
        total[k], number[k], first_start[k], first_peak[k] = scanned
    order, active = _active(count, ~alone)
    base = offset[order]
    last = count[order] - 1
    threshold = sd[order]
    scan = _Scan.empty(order.size)
    for p, size in enumerate(active.tolist()):
        x = m[base[:size] + p]
        sd_now = threshold[:size]
        now = scan.head(size)
        searching = ~now.rising
        lower = searching & (x < now.low)
        np.copyto(now.low, x, where=lower)
        np.copyto(now.low_at, p, where=lower)
        now.begin(searching & (x - now.low >= sd_now), x, p)
        now.follow(x, p)
        is_last = last[:size] == p
        closing = now.rising & ((x - now.peak < -sd_now) | is_last)
        if closing.any():
            now.close(closing, x, p, resume_at_peak=resume_at_peak)
            # Resuming at the peak can open an excursion at once; that happens only at the last
            # point, where it closes again (nothing is above or below the current point there).
            again = closing & (x - now.low >= sd_now)
            if again.any():
                now.begin(again, x, p)
                now.close(again & is_last, x, p, resume_at_peak=resume_at_peak)
    total[order], number[order] = scan.total, scan.count
    first_start[order], first_peak[order] = scan.first_start, scan.first_peak
    return _Excursions(total=total, count=number, first_start=first_start, first_peak=first_peak)


def _segment_excursions(m: list[float], sd: float, *, resume_at_peak: bool) -> tuple[float, int, int, int]:
    """:func:`_excursions` of one segment, step for step as :class:`_Scan` takes them, on plain floats.

    Returns the sum and number of the heights and the first excursion's start and peak ordinals
    (−1 when there is none).
    """
    total, count, first_start, first_peak = 0.0, 0, -1, -1
    rising = False
    low, low_at = math.inf, 0
    start = peak = since = 0.0
    start_at = peak_at = since_at = 0
    last = len(m) - 1
    for p, x in enumerate(m):
        if rising:
            if x > peak:
                peak, peak_at, since, since_at = x, p, x, p
            elif x < since:
                since, since_at = x, p
        else:
            if x < low:
                low, low_at = x, p
            if x - low >= sd:  # begin; following the peak at the same point changes nothing
                rising, start, start_at = True, low, low_at
                peak, peak_at, since, since_at = x, p, x, p
        if rising and (x - peak < -sd or p == last):
            while True:  # close (twice at most, see _excursions)
                if count == 0:
                    first_start, first_peak = start_at, peak_at
                total += peak - start
                count += 1
                rising = False
                low, low_at = (since, since_at) if resume_at_peak else (x, p)
                if not x - low >= sd:
                    break
                rising, start, start_at = True, low, low_at
                peak, peak_at, since, since_at = x, p, x, p
                if p != last:
                    break
    return total, count, first_start, first_peak


def _combine(
    seg: _Segments, plus: _Excursions, minus: _Excursions, patients: int, direction: str
) -> FloatArray:
    """Per-patient MAGE: the segments' values weighted by duration, as iglu combines them."""
    with np.errstate(invalid="ignore", divide="ignore"):
        up = plus.total / plus.count
        down = minus.total / minus.count
    has_up, has_down = plus.count > 0, minus.count > 0
    scored = has_up | has_down
    duration = (seg.length - 1).astype(np.float64)
    if direction == "avg":
        value = np.concatenate([up[has_up], down[has_down]])
        weight = np.concatenate([duration[has_up], duration[has_down]])
        owner = np.concatenate([seg.patient[has_up], seg.patient[has_down]])
    elif direction in {"plus", "minus"}:
        value = (up if direction == "plus" else down)[scored]
        weight, owner = duration[scored], seg.patient[scored]
    elif direction == "max":
        both = has_up & has_down
        take_up = both & (up >= down)
        take_down = both & (down >= up)
        value = np.concatenate([up[take_up], down[take_down]])
        weight = np.concatenate([duration[take_up], duration[take_down]])
        owner = np.concatenate([seg.patient[take_up], seg.patient[take_down]])
    else:  # service
        plus_first = has_up & (~has_down | (plus.first_peak <= minus.first_start))
        value = np.where(plus_first, up, down)[scored]
        weight, owner = duration[scored], seg.patient[scored]
    denominator = np.bincount(owner, weights=weight, minlength=patients)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = value * (weight / denominator[owner])
    # (np.bincount returns integers when it has nothing to count)
    result = np.bincount(owner, weights=share, minlength=patients).astype(np.float64)
    result[np.bincount(owner, minlength=patients) == 0] = np.nan
    return result


def _mage_traces(
    traces: list[FloatArray], *, directions: Sequence[str], short_ma: int, long_ma: int, max_gap_min: int
) -> list[FloatArray]:
    """MAGE (ma) of every 5-minute grid trace (NaN = unknown point), for each of ``directions``.

    Turning points and excursions do not depend on the direction; only the last step does, so
    several directions cost little more than one. NaN where a trace has no MAGE.
    """
    seg = _segments(traces, long_ma=long_ma, max_gap_min=max_gap_min)
    if seg.length.size == 0:
        return [np.full(len(traces), np.nan) for _ in directions]
    signs = _delta_signs(seg, short_ma, long_ma)
    bounds, peak, count = _crossings(seg, signs)
    m = _turning_points(seg.values, bounds, peak, count)
    scan_alone = _alone(count, step_cost=_SCAN_STEP_COST, segment_cost=_SCAN_SEGMENT_COST)
    plus = _excursions(m, count, seg.sd, resume_at_peak=False, alone=scan_alone)
    minus = _excursions(-m, count, seg.sd, resume_at_peak=True, alone=scan_alone)
    return [_combine(seg, plus, minus, len(traces), direction) for direction in directions]


def mage_many(
    utc_ms: IntArray,
    mgdl: FloatArray,
    counts: IntArray,
    *,
    first_offsets_min: IntArray | None = None,
    direction: Direction = "avg",
    short_ma: int = SHORT_MA,
    long_ma: int = LONG_MA,
    max_gap_min: int = MAX_GAP_MIN,
    inter_gap_min: int = DEFAULT_INTER_GAP_MIN,
) -> FloatArray:
    """MAGE in mg/dL of every patient of a cohort, iglu's moving-average algorithm (see :func:`mage_ma`).

    The cohort is laid out as in :func:`glucoshare.analytics.metrics.cohort_metrics`: ``utc_ms``
    (int64 UTC epoch ms) and ``mgdl`` hold every patient's readings, one patient after the other
    (any order within a patient), and ``counts`` how many readings each patient has.
    ``first_offsets_min`` is each patient's UTC offset at their first reading (default 0; it only
    places the grid's day boundaries, which do not change MAGE unless the offset is not a multiple
    of 5 minutes). Returns one value per patient, NaN where :func:`mage_ma` returns ``None``.

    The grid (Broll et al., PLoS One 2021) is built per patient; everything after it runs on all
    segments at once (Fernandes et al., J Diabetes Sci Technol 2022; Service et al., Diabetes
    1970;19:644).
    """
    return mage_many_directions(
        utc_ms,
        mgdl,
        counts,
        directions=(direction,),
        first_offsets_min=first_offsets_min,
        short_ma=short_ma,
        long_ma=long_ma,
        max_gap_min=max_gap_min,
        inter_gap_min=inter_gap_min,
    )[0]


def mage_many_directions(
    utc_ms: IntArray,
    mgdl: FloatArray,
    counts: IntArray,
    *,
    directions: Sequence[Direction],
    first_offsets_min: IntArray | None = None,
    short_ma: int = SHORT_MA,
    long_ma: int = LONG_MA,
    max_gap_min: int = MAX_GAP_MIN,
    inter_gap_min: int = DEFAULT_INTER_GAP_MIN,
) -> list[FloatArray]:
    """:func:`mage_many` for each of ``directions`` (in that order); grid and excursions found once."""
    for direction in directions:
        _check(direction, short_ma, long_ma)
    counts = np.asarray(counts, np.int64)
    times = np.asarray(utc_ms, np.int64)
    values = np.asarray(mgdl, np.float64)
    if counts.sum() != times.size or times.size != values.size:
        msg = "utc_ms and mgdl must have sum(counts) readings"
        raise ValueError(msg)
    offsets = np.zeros(counts.size, np.int64) if first_offsets_min is None else np.asarray(first_offsets_min)
    if offsets.shape != counts.shape:
        msg = "first_offsets_min needs one offset per patient"
        raise ValueError(msg)
    stops = np.cumsum(counts).tolist()
    traces: list[FloatArray] = []
    for patient, stop in enumerate(stops):
        begin = stop - int(counts[patient])
        grid = day_grid(
            times[begin:stop],
            values[begin:stop],
            first_offset_min=int(offsets[patient]),
            dt_min=GRID_STEP_MIN,
            inter_gap_min=inter_gap_min,
        )
        traces.append(grid.flat if grid is not None else np.empty(0))
    return _mage_traces(
        traces, directions=directions, short_ma=short_ma, long_ma=long_ma, max_gap_min=max_gap_min
    )


def mage_ma(
    utc_ms: IntArray,
    mgdl: FloatArray,
    *,
    first_offset_min: int = 0,
    direction: Direction = "avg",
    short_ma: int = SHORT_MA,
    long_ma: int = LONG_MA,
    max_gap_min: int = MAX_GAP_MIN,
    inter_gap_min: int = DEFAULT_INTER_GAP_MIN,
) -> float | None:
    """MAGE in mg/dL of one patient's readings, iglu's default moving-average ("ma") algorithm.

    ``utc_ms`` are int64 UTC epoch ms (any order), ``mgdl`` the readings (NaN ignored),
    ``first_offset_min`` the UTC offset at the first reading. The readings go onto iglu's 5-minute
    day grid (``inter_gap_min`` is the longest interpolated gap), the trace is split at gaps longer
    than ``max_gap_min``, turning points are found between the crossings of the ``short_ma`` and
    ``long_ma``-point moving averages, and excursions larger than one SD are averaged per
    ``direction`` (``avg``, ``plus``, ``minus``, ``max`` or ``service``); the module notes give every
    step. ``None`` where iglu returns NA (too few points, no variation, no excursion).

    References: Service FJ et al., Diabetes 1970;19:644 (MAGE); Fernandes NJ et al., J Diabetes Sci
    Technol 2022;16:576 (the moving-average algorithm); Broll S et al., PLoS One 2021;16:e0248560
    (iglu, whose 4.3.0 results this reproduces).
    """
    times = np.asarray(utc_ms, np.int64)
    result = mage_many(
        times,
        np.asarray(mgdl, np.float64),
        np.array([times.size], np.int64),
        first_offsets_min=np.array([first_offset_min], np.int64),
        direction=direction,
        short_ma=short_ma,
        long_ma=long_ma,
        max_gap_min=max_gap_min,
        inter_gap_min=inter_gap_min,
    )
    value = float(result[0])
    return value if np.isfinite(value) else None


def mage_naive(mgdl: FloatArray, *, sd_multiplier: float = 1.0) -> float | None:
    """Naive MAGE in mg/dL (iglu's): the mean of ``|g − mean|`` where it exceeds ``sd_multiplier`` × SD.

    All known readings count (NaN ignored; no grid, order irrelevant); SD is the sample SD (n − 1).
    ``None`` with fewer than two readings or when no reading is that far from the mean. This is
    iglu's ``mage(version = "naive")``, kept for comparison with iglu ≤ 2.0.0 (Broll et al., PLoS One
    2021); it is not Service's excursion-based MAGE (Diabetes 1970;19:644).
    """
    values = np.asarray(mgdl, np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:  # noqa: PLR2004 - a sample SD needs two readings
        return None
    deviation = np.abs(values - values.mean())
    far = deviation[deviation > sd_multiplier * values.std(ddof=1)]
    return float(far.mean()) if far.size else None
