"""Hypoglycaemia and hyperglycaemia events (episodes) from CGM readings.

Definitions follow the 2023 international consensus (Battelino T et al., "Continuous glucose
monitoring and metrics for clinical trials: an international consensus statement", Lancet Diabetes
Endocrinol 2023;11:42–57), computed the way iglu 4.3.0's ``episode_calculation`` computes them, so
that counts, durations and mean glucose equal iglu's on its example data:

==============  =====================================  ===============================
event           starts with                            ends before
==============  =====================================  ===============================
hypo level 1    ≥ 15 consecutive min below 70 mg/dL     ≥ 15 consecutive min at ≥ 70
hypo level 2    ≥ 15 consecutive min below 54           ≥ 15 consecutive min at ≥ 54
extended hypo   > 120 consecutive min below 70          ≥ 15 consecutive min at ≥ 70
hyper level 1   ≥ 15 consecutive min above 180          ≥ 15 consecutive min at ≤ 180
hyper level 2   ≥ 15 consecutive min above 250          ≥ 15 consecutive min at ≤ 250
==============  =====================================  ===============================

Conventions (all of them iglu's):

* The readings are first put on the regular day grid of :mod:`glucoshare.analytics.grid` (iglu's
  ``CGMS2DayByDay``: linear interpolation, NaN across gaps longer than ``inter_gap``). Time is
  counted in grid points: "15 min" means ``ceil(15 / dt)`` consecutive points (3 at 5 min), and an
  event of ``n`` points lasts ``n × dt`` minutes. Extended hypoglycaemia needs at least
  ``120 / dt + 1`` points (25 at 5 min, i.e. 125 min).
* A grid gap (NaN) splits the trace into segments that are treated independently: an event never
  spans a gap; an event still running when its segment ends, ends there.
* An event starts at the first point of a qualifying run (below the threshold for hypo, above it for
  hyper) and takes in everything up to the first point of the next qualifying recovery run of the
  same segment (``≥ end_length`` at or beyond the threshold); shorter excursions back across the
  threshold stay inside the event, and later qualifying runs before that recovery belong to it too.
* Level 1 includes the events that reach level 2 (level 2 events always lie inside level 1 events);
  the exclusive level-1 figures (iglu's ``lv1_excl``) count only level-1 events that contain no
  level-2 event.
* Events per day divide by the time covered by the grid outside gaps (points with data × dt), not
  by calendar days.
* Times are UTC milliseconds. An event covers the half-open interval ``[start_ms, end_ms)`` from its
  first grid point to one step past its last one, so ``end_ms − start_ms`` is its duration. Nadir,
  peak and mean glucose are taken over the event's grid values (as iglu's mean is).

No time-zone database is used here: callers pass local UTC offsets (see :data:`UtcOffsets`). The
grid's days start at the local midnight of the first reading, and an event is *nocturnal* when it
starts at a local time in [00:00, 06:00).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from glucoshare.analytics.grid import DEFAULT_INTER_GAP_MIN, MINUTE_MS, DayGrid, day_grid

DAY_MIN = 1440
NIGHT_END_MIN = 360  # nocturnal events start at local 00:00 ≤ t < 06:00

UtcOffsets = int | npt.NDArray[np.integer] | Callable[[npt.NDArray[np.int64]], npt.NDArray[np.integer]]
"""Local UTC offsets in minutes (local time − UTC, +120 for UTC+2), given as one of

* an ``int``: one offset for the whole trace;
* an integer array with one offset per reading, aligned with ``utc_ms`` (what a device export
  records); an instant takes the offset of the latest reading at or before it;
* a callable mapping an array of UTC instants (ms) to their offsets (e.g. backed by a zone database
  outside analytics).
"""


class EventKind(enum.StrEnum):
    """Below (hypo) or above (hyper) the range."""

    HYPO = "hypo"
    HYPER = "hyper"


class EventLevel(enum.StrEnum):
    """Consensus level of an event (iglu's ``level`` column)."""

    LEVEL_1 = "lv1"
    LEVEL_2 = "lv2"
    EXTENDED = "extended"


@dataclasses.dataclass(frozen=True, slots=True)
class EventCriteria:
    """Thresholds (mg/dL) and durations (minutes) defining events; defaults are the consensus ones.

    The names follow iglu's ``episode_calculation`` arguments. Hypo thresholds are strict upper bounds
    (``g < lv1_hypo``), hyper thresholds strict lower bounds (``g > lv1_hyper``). ``dur_length_min``
    is the time needed to start an event, ``end_length_min`` the time back across the threshold that
    ends it, ``extended_hypo_min`` the time below ``lv1_hypo`` that an extended hypo must exceed
    (iglu fixes it at 120). Pregnancy or custom targets change the thresholds, e.g. ``lv1_hypo=63``.
    """

    lv1_hypo: float = 70.0
    lv2_hypo: float = 54.0
    lv1_hyper: float = 180.0
    lv2_hyper: float = 250.0
    dur_length_min: float = 15.0
    end_length_min: float = 15.0
    extended_hypo_min: float = 120.0

    def __post_init__(self) -> None:
        """Reject criteria under which level 2 would not be nested in level 1."""
        if not self.lv2_hypo <= self.lv1_hypo <= self.lv1_hyper <= self.lv2_hyper:
            msg = "thresholds must satisfy lv2_hypo ≤ lv1_hypo ≤ lv1_hyper ≤ lv2_hyper"
            raise ValueError(msg)
        if not min(self.dur_length_min, self.end_length_min, self.extended_hypo_min) > 0:
            msg = "durations must be positive"
            raise ValueError(msg)


CONSENSUS = EventCriteria()
"""The 2023 consensus criteria: 70/54 and 180/250 mg/dL, 15 minutes to start and to end."""


@dataclasses.dataclass(frozen=True, slots=True)
class GlucoseEvent:
    """One event of one patient.

    ``start_ms``/``end_ms``: UTC ms, half-open (see the module notes); ``duration_min`` =
    grid points × dt; ``extreme_mgdl``: the nadir of a hypo, the peak of a hyper; ``mean_mgdl``: mean
    over the event's grid points; ``nocturnal``: starts at local 00:00–06:00 (end exclusive);
    ``reaches_level_2``: a level-2 event of the same kind lies within it (a level-1 event without one
    is "level-1 exclusive"; always true for level-2 events).
    """

    kind: EventKind
    level: EventLevel
    start_ms: int
    end_ms: int
    duration_min: int
    extreme_mgdl: float
    mean_mgdl: float
    nocturnal: bool
    reaches_level_2: bool


@dataclasses.dataclass(frozen=True, slots=True)
class EventStats:
    """Summary of one kind and level of events, as iglu's ``episode_calculation`` reports it.

    ``count`` (iglu ``total_episodes``); ``per_day`` = count / recorded days (``avg_ep_per_day``;
    ``None`` when nothing was recorded); ``mean_duration_min`` (``avg_ep_duration``; 0.0 when there
    are no events, as in iglu); ``mean_mgdl``: mean over events of each event's mean glucose
    (``avg_ep_gl``; ``None`` when there are no events).
    """

    count: int
    per_day: float | None
    mean_duration_min: float
    mean_mgdl: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class EventSummary:
    """Events of one patient by kind and level; ``*_excl`` are level-1 events never reaching level 2.

    ``recorded_days``: the time the grid covers outside gaps, in days (the ``per_day`` denominator).
    """

    recorded_days: float
    hypo_l1: EventStats
    hypo_l2: EventStats
    hypo_extended: EventStats
    hyper_l1: EventStats
    hyper_l2: EventStats
    hypo_l1_excl: EventStats
    hyper_l1_excl: EventStats


@dataclasses.dataclass(frozen=True, slots=True)
class _Found:
    """Events of one kind and level as arrays: first and last grid index (inclusive) and statistics."""

    first: npt.NDArray[np.intp]
    last: npt.NDArray[np.intp]
    mean: npt.NDArray[np.float64]
    extreme: npt.NDArray[np.float64]
    reaches_level_2: npt.NDArray[np.bool_]


@dataclasses.dataclass(frozen=True, slots=True)
class _Detection:
    grid: DayGrid | None
    recorded_points: int
    found: dict[tuple[EventKind, EventLevel], _Found]


def _points(minutes: float, dt_min: int) -> int:
    """Consecutive grid points needed for ``minutes`` (iglu: ``ceiling(minutes / dt)``)."""
    return math.ceil(minutes / dt_min)


def _segment_last(valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.intp]:
    """For every index, the last index of the run of valid points it belongs to (garbage elsewhere)."""
    n = valid.size
    padded = np.concatenate(([False], valid, [False]))
    edges = np.diff(padded.astype(np.int8))
    run_first = np.flatnonzero(edges == 1)
    run_last = np.flatnonzero(edges == -1) - 1
    owner = np.searchsorted(run_first, np.arange(n), side="right") - 1
    return run_last[np.clip(owner, 0, None)] if run_first.size else np.full(n, -1, np.intp)


def _episodes(
    beyond: npt.NDArray[np.bool_],
    valid: npt.NDArray[np.bool_],
    segment_last: npt.NDArray[np.intp],
    start_points: int,
    end_points: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """First and last index of each episode, given where the trace is beyond the threshold."""
    # 0 = gap, 1 = within the threshold, 2 = beyond it; runs of equal state.
    state = valid.astype(np.int8) + (valid & beyond).astype(np.int8)
    if state.size == 0:
        empty = np.empty(0, np.intp)
        return empty, empty
    run_first = np.concatenate(([0], np.flatnonzero(np.diff(state)) + 1))
    run_length = np.diff(np.append(run_first, state.size))
    run_state = state[run_first]
    first = run_first[(run_state == 2) & (run_length >= start_points)]  # noqa: PLR2004
    recovery = run_first[(run_state == 1) & (run_length >= end_points)]
    # The first recovery after a start closes it, unless the segment ends before.
    following = np.searchsorted(recovery, first, side="right")
    closing = np.append(recovery, np.iinfo(np.intp).max)[following]
    last = np.minimum(closing - 1, segment_last[first])
    keep = np.ones(first.size, np.bool_)
    keep[1:] = last[1:] != last[:-1]  # later starts before the same recovery join the earlier event
    return first[keep].astype(np.intp), last[keep].astype(np.intp)


def _reduce(
    ufunc: np.ufunc, values: npt.NDArray[np.float64], first: npt.NDArray[np.intp], last: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """``ufunc`` reduced over each closed index range ``[first, last]`` (ranges sorted, disjoint)."""
    if first.size == 0:
        return np.empty(0, np.float64)
    bounds = np.empty(2 * first.size, np.intp)
    bounds[0::2] = first
    bounds[1::2] = last + 1
    padded = np.append(values, 0.0)
    reduced: npt.NDArray[np.float64] = ufunc.reduceat(padded, bounds)[0::2]
    return reduced


def _overlapping(
    first: npt.NDArray[np.intp],
    last: npt.NDArray[np.intp],
    other_first: npt.NDArray[np.intp],
    other_last: npt.NDArray[np.intp],
) -> npt.NDArray[np.bool_]:
    """Whether each range overlaps any of the other (sorted, disjoint) ranges."""
    if other_first.size == 0:
        return np.zeros(first.size, np.bool_)
    candidate = np.searchsorted(other_first, last, side="right") - 1
    found = candidate >= 0
    return found & (other_last[np.clip(candidate, 0, None)] >= first)


def _first_offset(
    utc_offset_min: UtcOffsets, utc_ms: npt.NDArray[np.int64], finite: npt.NDArray[np.bool_]
) -> int:
    """The UTC offset (minutes) at the earliest reading with a value."""
    times = utc_ms[finite]
    earliest = int(np.argmin(times))
    return int(_offsets_at(utc_offset_min, utc_ms, finite, times[earliest : earliest + 1])[0])


def _offsets_at(
    utc_offset_min: UtcOffsets,
    utc_ms: npt.NDArray[np.int64],
    finite: npt.NDArray[np.bool_],
    instants: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """UTC offsets (minutes) at ``instants`` (see :data:`UtcOffsets`)."""
    if callable(utc_offset_min):
        return np.asarray(utc_offset_min(instants), np.int64).reshape(instants.shape)
    offsets = np.asarray(utc_offset_min, np.int64)
    if offsets.ndim == 0:
        return np.full(instants.shape, int(offsets), np.int64)
    if offsets.shape != utc_ms.shape:
        msg = "utc_offset_min must be an int, a callable or one offset per reading"
        raise ValueError(msg)
    order = np.argsort(utc_ms[finite], kind="stable")
    times, known = utc_ms[finite][order], offsets[finite][order]
    latest = np.clip(np.searchsorted(times, instants, side="right") - 1, 0, times.size - 1)
    result: npt.NDArray[np.int64] = known[latest]
    return result


def _detect(
    utc_ms: npt.NDArray[np.int64],
    mgdl: npt.NDArray[np.float64],
    utc_offset_min: UtcOffsets,
    *,
    criteria: EventCriteria,
    dt_min: int | None,
    inter_gap_min: int,
) -> _Detection:
    """Grid the readings and find every kind and level of event."""
    finite = np.isfinite(mgdl)
    grid = None
    if np.count_nonzero(finite) >= 2:  # noqa: PLR2004
        first_offset = _first_offset(utc_offset_min, utc_ms, finite)
        grid = day_grid(
            utc_ms, mgdl, first_offset_min=first_offset, dt_min=dt_min, inter_gap_min=inter_gap_min
        )
    if grid is None:
        return _Detection(None, 0, {})
    values = grid.flat
    valid = np.isfinite(values)
    segment_last = _segment_last(valid)
    start_points = _points(criteria.dur_length_min, grid.dt_min)
    end_points = _points(criteria.end_length_min, grid.dt_min)
    extended_points = math.ceil(criteria.extended_hypo_min / grid.dt_min + 1)
    with np.errstate(invalid="ignore"):
        searches = {
            (EventKind.HYPO, EventLevel.LEVEL_1): (values < criteria.lv1_hypo, start_points),
            (EventKind.HYPO, EventLevel.LEVEL_2): (values < criteria.lv2_hypo, start_points),
            (EventKind.HYPO, EventLevel.EXTENDED): (values < criteria.lv1_hypo, extended_points),
            (EventKind.HYPER, EventLevel.LEVEL_1): (values > criteria.lv1_hyper, start_points),
            (EventKind.HYPER, EventLevel.LEVEL_2): (values > criteria.lv2_hyper, start_points),
        }
    ranges = {
        key: _episodes(beyond, valid, segment_last, points, end_points)
        for key, (beyond, points) in searches.items()
    }
    filled = np.where(valid, values, 0.0)
    found: dict[tuple[EventKind, EventLevel], _Found] = {}
    for (kind, level), (first, last) in ranges.items():
        level_2 = ranges[kind, EventLevel.LEVEL_2]
        extreme_of = np.minimum if kind is EventKind.HYPO else np.maximum
        found[kind, level] = _Found(
            first=first,
            last=last,
            mean=_reduce(np.add, filled, first, last) / (last - first + 1),
            extreme=_reduce(extreme_of, filled, first, last),
            reaches_level_2=_overlapping(first, last, *level_2),
        )
    return _Detection(grid, int(np.count_nonzero(valid)), found)


def glucose_events(
    utc_ms: npt.NDArray[np.int64],
    mgdl: npt.NDArray[np.float64],
    utc_offset_min: UtcOffsets,
    *,
    criteria: EventCriteria = CONSENSUS,
    dt_min: int | None = None,
    inter_gap_min: int = DEFAULT_INTER_GAP_MIN,
) -> list[GlucoseEvent]:
    """All hypo- and hyperglycaemia events of one patient, ordered by start, kind and level.

    ``utc_ms``: reading instants (UTC ms, any order); ``mgdl``: readings (mg/dL, NaN ignored);
    ``utc_offset_min``: local UTC offsets in minutes (see :data:`UtcOffsets`); ``criteria``:
    thresholds and durations (default: the consensus); ``dt_min`` and ``inter_gap_min``: iglu's
    ``dt0`` and ``inter_gap`` for the grid. Each event of level 1 and level 2 and each extended hypo
    is listed (level 1 includes the events reaching level 2, see ``reaches_level_2``).

    Definitions: Battelino et al., Lancet Diabetes Endocrinol 2023;11:42, as computed by iglu 4.3.0
    ``episode_calculation`` (see the module notes). Fewer than two readings give no events.
    """
    times, values = np.asarray(utc_ms, np.int64), np.asarray(mgdl, np.float64)
    detection = _detect(
        times, values, utc_offset_min, criteria=criteria, dt_min=dt_min, inter_gap_min=inter_gap_min
    )
    grid = detection.grid
    if grid is None:
        return []
    keys = list(detection.found)  # in kind, then level order
    parts = [detection.found[key] for key in keys]
    first = np.concatenate([found.first for found in parts]).astype(np.int64)
    last = np.concatenate([found.last for found in parts]).astype(np.int64)
    which = np.repeat(np.arange(len(keys)), [found.first.size for found in parts])
    order = np.lexsort((which, first))  # by start, then kind and level
    first, last, which = first[order], last[order], which[order]
    step_ms = grid.dt_min * MINUTE_MS
    start = grid.start_ms + (first + 1) * step_ms
    offsets = _offsets_at(utc_offset_min, times, np.isfinite(values), start)
    nocturnal = (start // MINUTE_MS + offsets) % DAY_MIN < NIGHT_END_MIN
    columns = zip(
        which.tolist(),
        start.tolist(),
        (start + (last - first + 1) * step_ms).tolist(),
        ((last - first + 1) * grid.dt_min).tolist(),
        np.concatenate([found.extreme for found in parts])[order].tolist(),
        np.concatenate([found.mean for found in parts])[order].tolist(),
        nocturnal.tolist(),
        np.concatenate([found.reaches_level_2 for found in parts])[order].tolist(),
        strict=True,
    )
    return [GlucoseEvent(*keys[k], *rest) for k, *rest in columns]


def _stats(found: _Found | None, dt_min: int, recorded_days: float, select: str = "all") -> EventStats:
    """The summary of one kind and level; ``select`` = "exclusive" keeps events not reaching level 2."""
    if found is None:
        return EventStats(0, None, 0.0, None)
    chosen = ~found.reaches_level_2 if select == "exclusive" else np.ones(found.first.size, np.bool_)
    count = int(np.count_nonzero(chosen))
    per_day = count / recorded_days if recorded_days > 0 else None
    if count == 0:
        return EventStats(0, per_day, 0.0, None)
    points = (found.last - found.first + 1)[chosen]
    return EventStats(
        count=count,
        per_day=per_day,
        mean_duration_min=float(np.mean(points * dt_min)),
        mean_mgdl=float(np.mean(found.mean[chosen])),
    )


def event_summary(
    utc_ms: npt.NDArray[np.int64],
    mgdl: npt.NDArray[np.float64],
    utc_offset_min: UtcOffsets,
    *,
    criteria: EventCriteria = CONSENSUS,
    dt_min: int | None = None,
    inter_gap_min: int = DEFAULT_INTER_GAP_MIN,
) -> EventSummary:
    """Counts, events per day, mean duration (min) and mean glucose (mg/dL) per kind and level of event.

    Arguments as for :func:`glucose_events`. Equals iglu 4.3.0 ``episode_calculation``'s
    ``total_episodes``, ``avg_ep_per_day`` (count / (grid points with data × dt / 1440)),
    ``avg_ep_duration`` and ``avg_ep_gl`` (mean of the events' mean glucose) for the levels ``lv1``,
    ``lv2``, ``extended`` and ``lv1_excl``. Definitions: Battelino et al., Lancet Diabetes Endocrinol
    2023;11:42. Fewer than two readings give zero counts and ``recorded_days`` 0.
    """
    detection = _detect(
        np.asarray(utc_ms, np.int64),
        np.asarray(mgdl, np.float64),
        utc_offset_min,
        criteria=criteria,
        dt_min=dt_min,
        inter_gap_min=inter_gap_min,
    )
    dt = detection.grid.dt_min if detection.grid is not None else 1
    days = detection.recorded_points * dt / DAY_MIN
    found = detection.found.get
    hypo_l1 = found((EventKind.HYPO, EventLevel.LEVEL_1))
    hyper_l1 = found((EventKind.HYPER, EventLevel.LEVEL_1))
    return EventSummary(
        recorded_days=days,
        hypo_l1=_stats(hypo_l1, dt, days),
        hypo_l2=_stats(found((EventKind.HYPO, EventLevel.LEVEL_2)), dt, days),
        hypo_extended=_stats(found((EventKind.HYPO, EventLevel.EXTENDED)), dt, days),
        hyper_l1=_stats(hyper_l1, dt, days),
        hyper_l2=_stats(found((EventKind.HYPER, EventLevel.LEVEL_2)), dt, days),
        hypo_l1_excl=_stats(hypo_l1, dt, days, "exclusive"),
        hyper_l1_excl=_stats(hyper_l1, dt, days, "exclusive"),
    )
