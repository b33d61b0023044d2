"""MAGE: iglu 4.3.0's results, a slow reference implementation, properties and the cohort function."""

from __future__ import annotations

import math
import statistics
from fractions import Fraction
from random import Random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glucoshare.analytics.grid import day_grid
from glucoshare.analytics.mage import (
    DIRECTIONS,
    Direction,
    _crossings,
    _delta_signs,
    _excursions,
    _segments,
    _turning_points,
    mage_ma,
    mage_many,
    mage_naive,
)
from tests.analytics import iglu

REL = 1e-9  # we reach ~1e-15 against iglu; iglu's own tests allow 0.1 mg/dL
MINUTE_MS = 60_000
T0 = 1_700_006_400_000  # 2023-11-15 00:00 UTC

# The 18 JHU segments of iglu's MAGE tests: 1-based rows of example_data_5_subject.csv (all subjects
# concatenated in file order), from iglu's tests/testthat/data/manual_calculations.csv (dataset "JHU").
JHU_ROWS = [
    (405, 644), (2994, 3281), (3282, 3569), (3570, 3857), (3858, 4144), (4145, 4432), (5746, 5842),
    (7413, 7698), (7699, 7985), (7986, 8273), (8274, 8561), (8562, 8849), (11018, 11301),
    (11302, 11588), (11589, 11830), (11831, 12118), (12119, 12406), (12653, 12940),
]  # fmt: skip
# MAGE by hand for the same segments (Fernandes et al., J Diabetes Sci Technol 2022; same file).
JHU_MANUAL = [47, 70, 81, 154, 104, 95, 89, 75, 58, 45, 69, 32, 120, 211, 147, 125, 227, 153]
# iglu's results for the same segments, tests/testthat/data/mage_ground_truth.csv (iglu repository).
JHU_IGLU = {
    "plus": [
        43.6716666666667, 82.4123522853958, 68.9066666666667, 154, 102.578087855297, 114.265,
        209.293333333333, 71.6316666666667, 50.688, 43.7059579180509, 38.9346666666667,
        33.2729487179487, 119.580666666667, 212.650044272342, 152.282222222222, 120.126566332219,
        185.96, 171.256666666667,
    ],
    "minus": [
        39.2488888888889, 69.6904570791527, 79.96, 64, 104.360465116279, 93.9966666666667,
        87.8533333333333, 75.0433333333333, 53.768, 44.76, 46.4741666666667, 32.0318376068376,
        117.979333333333, 189.996710939009, 141.923333333333, 125.406666666667, 225.5,
        152.761666666667,
    ],
    "avg": [
        41.4602777777778, 76.0514046822742, 74.4333333333333, 109, 103.469276485788, 104.130833333333,
        148.573333333333, 73.3375, 52.228, 44.2329789590255, 42.7044166666667, 32.6523931623932,
        118.78, 201.323377605675, 147.102777777778, 122.766616499443, 205.73, 162.009166666667,
    ],
    "service": [
        43.6716666666667, 69.6904570791527, 79.96, 64, 102.578087855297, 93.9966666666667,
        87.8533333333333, 75.0433333333333, 50.688, 44.76, 38.9346666666667, 32.0318376068376,
        119.580666666667, 212.650044272342, 152.282222222222, 125.406666666667, 225.5,
        152.761666666667,
    ],
    "max": [
        43.6716666666667, 82.4123522853958, 79.96, 154, 104.360465116279, 114.265, 209.293333333333,
        75.0433333333333, 53.768, 44.76, 46.4741666666667, 33.2729487179487, 119.580666666667,
        212.650044272342, 152.282222222222, 125.406666666667, 225.5, 171.256666666667,
    ],
}  # fmt: skip


def offset_min(subject: iglu.Subject, row: int = 0) -> int:
    return int((subject.local_ms[row] - subject.utc_ms[row]) // MINUTE_MS)


def jhu_segments() -> list[tuple[np.ndarray, np.ndarray, int]]:
    subjects = list(iglu.subjects("example_data_5_subject.csv").values())
    utc = np.concatenate([s.utc_ms for s in subjects])
    local = np.concatenate([s.local_ms for s in subjects])
    gl = np.concatenate([s.gl for s in subjects])
    return [
        (utc[a - 1 : b], gl[a - 1 : b], int((local[a - 1] - utc[a - 1]) // MINUTE_MS)) for a, b in JHU_ROWS
    ]


# --- iglu 4.3.0 -----------------------------------------------------------------------------------


def test_mage_equals_iglu_on_the_five_example_subjects() -> None:
    expected = iglu.per_subject("mage", "MAGE")
    for name, subject in iglu.subjects("example_data_5_subject.csv").items():
        value = mage_ma(subject.utc_ms, subject.gl, first_offset_min=offset_min(subject))
        assert value == pytest.approx(expected[name], rel=REL), name


def test_mage_equals_iglu_on_every_single_day_of_the_one_subject_file() -> None:
    result = iglu.expected("mage", "example_data_1_subject_with_days.csv")
    expected = {result["id"][row]: value for row, value in result["MAGE"].items()}
    subjects = iglu.subjects("example_data_1_subject_with_days.csv")
    assert set(subjects) == set(expected)
    for name, subject in subjects.items():
        value = mage_ma(subject.utc_ms, subject.gl, first_offset_min=offset_min(subject))
        assert value == pytest.approx(expected[name], rel=REL), name


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_mage_equals_iglu_on_the_18_hand_scored_segments_in_every_direction(direction: Direction) -> None:
    for (utc, gl, offset), want in zip(jhu_segments(), JHU_IGLU[direction], strict=True):
        value = mage_ma(utc, gl, first_offset_min=offset, direction=direction)
        assert value == pytest.approx(want, rel=REL)


def test_mage_avg_is_7_percent_and_mage_service_1_percent_off_the_hand_calculations() -> None:
    def median_error_pct(direction: Direction) -> float:
        errors = []
        for (utc, gl, offset), manual in zip(jhu_segments(), JHU_MANUAL, strict=True):
            value = mage_ma(utc, gl, first_offset_min=offset, direction=direction)
            assert value is not None
            errors.append(abs(value - manual) / manual * 100)
        return statistics.median(errors)

    # iglu's default (avg) is what we reproduce; Service's own rule (the first excursion's direction)
    # is much closer to the hand calculations: 6.998 % and 0.919 % median absolute error.
    assert median_error_pct("avg") <= 7.0
    assert median_error_pct("service") <= 1.0


def test_naive_mage_equals_iglu() -> None:
    for file in ("example_data_5_subject.csv", "example_data_1_subject_with_days.csv"):
        result = iglu.expected("mage", file, version="naive")
        expected = {result["id"][row]: value for row, value in result["MAGE"].items()}
        for name, subject in iglu.subjects(file).items():
            assert mage_naive(subject.gl) == pytest.approx(expected[name], rel=REL), name


# --- a slow, literal reference ----------------------------------------------------------------------


def exact_mean(values: list[float]) -> float:
    """The correctly rounded mean (R's long-double mean gets it for these window sizes)."""
    return float(sum(map(Fraction, values), Fraction(0)) / len(values)) if values else math.nan


def reference_segment(g: list[float]) -> tuple[list[float], list[float], bool] | None:
    """Heights of the rises and falls of one segment, and whether a rise comes first."""
    known = [v for v in g if not math.isnan(v)]
    if len(g) < 32 or statistics.stdev(known) < 1:
        return None
    sd = statistics.stdev(known)

    def moving(width: int, i: int) -> float:
        end = max(i, width - 1)
        return exact_mean([v for v in g[end - width + 1 : end + 1] if not math.isnan(v)])

    delta = [moving(5, i) - moving(32, i) for i in range(len(g))]
    bounds = [(0, delta[0] > 0)]
    at_last = delta[0]
    for i in range(1, len(g)):
        if math.isnan(g[i]) or math.isnan(g[i - 1]):
            continue
        if delta[i] * delta[i - 1] < 0:
            bounds.append((i, not delta[i] < delta[i - 1]))
            at_last = delta[i]
        elif delta[i] * at_last < 0:
            bounds.append((i, not delta[i] < at_last))
            at_last = delta[i]
    bounds.append((len(g) - 1, delta[-1] > 0))

    m: list[float] = []
    left = 0
    for (_, peak), (right, _) in zip(bounds, bounds[1:], strict=False):
        span = [(v, k) for k, v in enumerate(g[left : right + 1], start=left) if not math.isnan(v)]
        best = max(span, key=lambda vk: (vk[0], -vk[1])) if peak else min(span)
        m.append(best[0])
        left = best[1]

    def scan(rising: bool) -> tuple[list[float], tuple[int, int] | None]:
        sign = 1 if rising else -1
        heights: list[float] = []
        first = None
        j = resume = 0
        while j < len(m):
            gains = [sign * (m[j] - m[k]) for k in range(resume, j + 1)]
            i = resume + gains.index(max(gains))
            if max(gains) < sd:
                j += 1
                continue
            for k in range(j, len(m)):
                if sign * (m[k] - m[j]) > 0:
                    j = k
                if sign * (m[k] - m[j]) < -sd or k == len(m) - 1:
                    heights.append(m[j] - m[i])
                    first = first or (i, j)
                    resume = k if rising else j
                    j = k
                    break
        return heights, first

    rises, first_rise = scan(rising=True)
    falls, first_fall = scan(rising=False)
    if not rises and not falls:
        return None
    rise_first = bool(rises) and (not falls or first_rise[1] <= first_fall[0])  # type: ignore[index]
    return rises, [abs(h) for h in falls], rise_first


def reference_mage(utc_ms: np.ndarray, mgdl: np.ndarray, direction: Direction) -> float | None:
    grid = day_grid(utc_ms, mgdl, first_offset_min=0, dt_min=5)
    if grid is None:
        return None
    trace = grid.flat.tolist()
    known = [i for i, v in enumerate(trace) if not math.isnan(v)]
    if not known or known[-1] - known[0] + 1 < 32:
        return None
    trace = trace[known[0] : known[-1] + 1]
    pieces, begin, i = [], 0, 0
    while i < len(trace):
        if not math.isnan(trace[i]):
            i += 1
            continue
        j = i
        while math.isnan(trace[j]):
            j += 1
        if (j - i) * 5 > 180:
            pieces.append(trace[begin:i])
            begin = j
        i = j
    pieces.append(trace[begin:])
    rows: list[tuple[int, float | None]] = []  # (duration, MAGE) of the selected rows, as iglu lists them
    for piece in pieces:
        scored = reference_segment(piece)
        if scored is None:
            continue
        rises, falls, rise_first = scored
        up = statistics.fmean(rises) if rises else None
        down = statistics.fmean(falls) if falls else None
        duration = len(piece) - 1
        if direction in {"plus", "minus"}:
            rows.append((duration, up if direction == "plus" else down))
        elif direction == "avg":
            rows += [(duration, v) for v in (up, down) if v is not None]
        elif direction == "service":
            rows.append((duration, up if rise_first else down))
        elif up is not None and down is not None:  # max: the larger one, both when equal
            rows += [(duration, v) for v in (up, down) if v == max(up, down)]
    weighted = [(duration, value) for duration, value in rows if value is not None]
    if not rows or len(weighted) < len(rows):
        return None
    total = sum(duration for duration, _ in weighted)
    return sum(value * (duration / total) for duration, value in weighted)


# --- generated traces ------------------------------------------------------------------------------


@st.composite
def traces(
    draw: st.DrawFn, max_size: int = 240, *, aligned: bool = False, split: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """CGM-like readings: a random walk of whole mg/dL with flat stretches, jitter, gaps and NaN.

    ``aligned``: readings on the 5-minute grid, 5 minutes or more than the 45-minute interpolation
    limit apart, so the grid holds the readings themselves (nothing interpolated, all exact);
    ``split``: with gaps long enough to split the trace into segments.
    """
    n = draw(st.integers(0, max_size))
    if aligned:
        gaps = st.sampled_from([5, 5, 5, 5, 50, 185, 300] if split else [5, 5, 5, 5, 50])
        minutes = 5 * draw(st.integers(0, 287)) + np.cumsum(
            [0, *draw(st.lists(gaps, min_size=n, max_size=n))]
        )
        utc = T0 + minutes[:n].astype(np.int64) * MINUTE_MS
    else:
        gaps = st.one_of(st.just(300), st.integers(30, 900), st.integers(900, 20_000))
        seconds = draw(st.integers(0, 86_400)) + np.cumsum(draw(st.lists(gaps, min_size=n, max_size=n)))
        utc = T0 + np.asarray(seconds, np.int64) * 1000
    moves = draw(st.lists(st.sampled_from([0, 0, 1, -1, 3, -3, 8, -8, 20, -20]), min_size=n, max_size=n))
    mgdl = np.clip(draw(st.integers(60, 250)) + np.cumsum(moves), 40, 400).astype(np.float64)
    for index in draw(st.lists(st.integers(0, n - 1), max_size=5)) if n else []:
        mgdl[index] = np.nan
    return utc.astype(np.int64), mgdl


@given(traces(), st.sampled_from(DIRECTIONS))
def test_mage_equals_a_slow_literal_reference_on_generated_traces(
    trace: tuple[np.ndarray, np.ndarray], direction: Direction
) -> None:
    utc, mgdl = trace
    want = reference_mage(utc, mgdl, direction)
    got = mage_ma(utc, mgdl, direction=direction)
    assert (got is None) == (want is None)
    if want is not None:
        assert got == pytest.approx(want, rel=1e-9)


@given(traces(), st.sampled_from(DIRECTIONS))
def test_mage_is_never_negative(trace: tuple[np.ndarray, np.ndarray], direction: Direction) -> None:
    value = mage_ma(*trace, direction=direction)
    assert value is None or value >= 0


@given(traces(), st.randoms(use_true_random=False))
def test_mage_does_not_depend_on_the_order_of_the_readings(
    trace: tuple[np.ndarray, np.ndarray], random: Random
) -> None:
    utc, mgdl = trace
    order = list(range(utc.size))
    random.shuffle(order)
    assert mage_ma(utc[order], mgdl[order]) == mage_ma(utc, mgdl)


# Shift and scale: readings on the 5-minute grid with whole mg/dL values, and factors that are powers
# of two, keep every intermediate exact, so no rounding can move a crossing between the two runs.
@given(traces(aligned=True), st.integers(-30, 500))
def test_adding_a_constant_to_every_reading_leaves_mage_unchanged(
    trace: tuple[np.ndarray, np.ndarray], constant: int
) -> None:
    utc, mgdl = trace
    for direction in DIRECTIONS:
        before = mage_ma(utc, mgdl, direction=direction)
        after = mage_ma(utc, mgdl + constant, direction=direction)
        assert (before is None) == (after is None)
        if before is not None:
            assert after == pytest.approx(before, rel=1e-12)


# One segment only: a factor above 1 could lift a second, flat segment over the 1 mg/dL SD floor.
@given(traces(aligned=True, split=False), st.sampled_from([2.0, 4.0, 8.0, 1024.0]))
def test_scaling_every_reading_scales_mage(trace: tuple[np.ndarray, np.ndarray], factor: float) -> None:
    utc, mgdl = trace
    for direction in DIRECTIONS:
        before = mage_ma(utc, mgdl, direction=direction)
        if before is not None:
            assert mage_ma(utc, mgdl * factor, direction=direction) == pytest.approx(
                before * factor, rel=1e-12
            )


@given(st.integers(0, 31), st.lists(st.integers(60, 300), min_size=31, max_size=31), st.integers(1, 5))
def test_fewer_readings_than_the_long_window_have_no_mage(
    count: int, values: list[int], step_min: int
) -> None:
    utc = T0 + np.arange(count, dtype=np.int64) * step_min * MINUTE_MS
    mgdl = np.array(values[:count], np.float64)
    assert mage_ma(utc, mgdl) is None


# --- the cohort function ---------------------------------------------------------------------------


def simulated(seed: int, days: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = days * 288
    utc = T0 + np.arange(n, dtype=np.int64) * 300_000 + rng.integers(-30_000, 30_000, n)
    hours = np.arange(n) / 12
    mgdl = 140 + 50 * np.sin(hours / 3) + 20 * np.sin(hours * 1.3) + rng.normal(0, 6, n)
    mgdl[rng.random(n) < 0.02] = np.nan
    if seed % 2:
        mgdl[n // 3 : n // 3 + 50] = np.nan  # a gap of 4 h 10 min splits the trace
    return utc, np.round(mgdl)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_cohort_mage_equals_mage_of_every_patient_alone(direction: Direction) -> None:
    patients = [(s.utc_ms, s.gl) for s in iglu.subjects("example_data_5_subject.csv").values()]
    patients += [simulated(seed) for seed in range(6)]
    patients += [(np.array([T0], np.int64), np.array([100.0])), (np.empty(0, np.int64), np.empty(0))]
    counts = np.array([utc.size for utc, _ in patients], np.int64)
    cohort = mage_many(
        np.concatenate([utc for utc, _ in patients]),
        np.concatenate([mgdl for _, mgdl in patients]),
        counts,
        direction=direction,
    )
    assert cohort.shape == (len(patients),)
    for value, (utc, mgdl) in zip(cohort, patients, strict=True):
        alone = mage_ma(utc, mgdl, direction=direction)
        if alone is None:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(alone, rel=1e-12)


def test_cohort_rejects_counts_or_offsets_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="sum"):
        mage_many(np.zeros(3, np.int64), np.zeros(3), np.array([2], np.int64))
    with pytest.raises(ValueError, match="one offset per patient"):
        mage_many(
            np.zeros(3, np.int64),
            np.zeros(3),
            np.array([3], np.int64),
            first_offsets_min=np.zeros(2, np.int64),
        )


def test_the_utc_offset_does_not_change_mage() -> None:
    # The grid starts at local midnight; any offset in whole 5 minutes gives the same grid instants.
    subject = next(iter(iglu.subjects("example_data_5_subject.csv").values()))
    values = {mage_ma(subject.utc_ms, subject.gl, first_offset_min=offset) for offset in (-300, 0, 120, 345)}
    assert len(values) == 1


# --- behaviour on constructed traces ---------------------------------------------------------------


def wave(hours: int, amplitude: float, start_min: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A 4-hour cycle around 150 mg/dL from nadir to nadir, every 5 minutes on the grid (from 00:05)."""
    minutes = np.arange(0, hours * 60 + 1, 5)
    utc = T0 + (start_min + minutes).astype(np.int64) * MINUTE_MS
    return utc, 150 - amplitude * np.cos(2 * np.pi * minutes / 240)


def test_a_regular_wave_has_mage_of_its_peak_to_nadir_height() -> None:
    utc, mgdl = wave(24, 50)
    for direction in DIRECTIONS:
        value = mage_ma(utc, mgdl, direction=direction)
        assert value == pytest.approx(100.0, rel=1e-12), direction


def test_a_gap_over_three_hours_splits_the_trace_into_segments_weighted_by_duration() -> None:
    first = wave(24, 50)
    second = wave(12, 100, start_min=5 + 24 * 60 + 245)  # 4 hours after the first ends
    utc, mgdl = np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])
    a, b = mage_ma(*first), mage_ma(*second)
    assert a is not None
    assert b is not None
    duration_a, duration_b = first[0].size - 1, second[0].size - 1
    assert mage_ma(utc, mgdl) == pytest.approx((a * duration_a + b * duration_b) / (duration_a + duration_b))


def test_a_gap_of_three_hours_does_not_split_the_trace() -> None:
    first = wave(24, 50)
    second = wave(12, 100, start_min=5 + 24 * 60 + 185)
    utc, mgdl = np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])
    a, b = mage_ma(*first), mage_ma(*second)
    assert a is not None
    assert b is not None
    split = (a * (first[0].size - 1) + b * (second[0].size - 1)) / (first[0].size + second[0].size - 2)
    assert mage_ma(utc, mgdl) != pytest.approx(split)


def test_a_flat_trace_and_an_empty_one_have_no_mage() -> None:
    utc, _ = wave(24, 0)
    assert mage_ma(utc, np.full(utc.size, 120.0)) is None
    assert mage_ma(np.empty(0, np.int64), np.empty(0)) is None
    assert mage_ma(np.array([T0], np.int64), np.array([120.0])) is None


def test_mage_does_not_modify_its_inputs() -> None:
    utc, mgdl = simulated(1)
    utc_copy, mgdl_copy = utc.copy(), mgdl.copy()
    mage_ma(utc[::-1], mgdl[::-1])
    mage_naive(mgdl)
    mage_many(utc, mgdl, np.array([utc.size], np.int64))
    np.testing.assert_array_equal(utc, utc_copy)
    np.testing.assert_array_equal(mgdl, mgdl_copy)


def test_unknown_direction_and_inverted_windows_are_rejected() -> None:
    utc, mgdl = wave(24, 50)
    with pytest.raises(ValueError, match="direction"):
        mage_ma(utc, mgdl, direction="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="short_ma"):
        mage_ma(utc, mgdl, short_ma=32, long_ma=5)


def test_naive_mage_is_the_mean_deviation_beyond_one_sd() -> None:
    values = np.array([100.0, 100.0, 100.0, 100.0, 200.0, np.nan])
    # mean 120, SD 44.72: only 200 is further than one SD from the mean (80 mg/dL).
    assert mage_naive(values) == pytest.approx(80.0)
    assert mage_naive(values, sd_multiplier=0.1) == pytest.approx((4 * 20 + 80) / 5)
    assert mage_naive(np.array([120.0])) is None
    assert mage_naive(np.full(10, 120.0)) is None


@pytest.mark.parametrize("alone", [None, True, False])
def test_a_fall_closed_at_the_last_point_can_open_another_fall_there(alone: bool | None) -> None:
    # MAGE− resumes at the nadir: turning points 10, 0, 5, 0 with SD 5 fall 10 (closed at the last
    # point, since the rise to 5 is not more than one SD), then 5 from the peak since that nadir.
    # Alone (one segment at a time, the default here) and in lockstep alike.
    turning = np.array([10.0, 0.0, 5.0, 0.0])
    count, sd = np.array([4], np.int64), np.array([5.0])
    mask = None if alone is None else np.array([alone])
    falls = _excursions(-turning, count, sd, resume_at_peak=True, alone=mask)
    assert (falls.total[0], falls.count[0], falls.first_start[0], falls.first_peak[0]) == (15.0, 2, 0, 1)
    rises = _excursions(turning, count, sd, resume_at_peak=False, alone=mask)
    assert (rises.total[0], rises.count[0], rises.first_start[0], rises.first_peak[0]) == (5.0, 1, 1, 2)


# --- one segment at a time and in lockstep ---------------------------------------------------------
# The sequential parts (turning points, excursion scans) walk each segment alone when there are few
# segments and advance all of them in lockstep for a cohort, or a mix; every way must give the very
# same numbers. ``masks`` are: all in lockstep, all alone, and a random mix.


def masks(segments: int, random: Random) -> list[np.ndarray]:
    mixed = np.array([random.random() < 0.5 for _ in range(segments)], np.bool_)
    return [np.zeros(segments, np.bool_), np.ones(segments, np.bool_), mixed]


def assert_same_excursions(m: np.ndarray, count: np.ndarray, sd: np.ndarray, random: Random) -> None:
    for resume_at_peak, sign in ((False, 1.0), (True, -1.0)):
        runs = [
            _excursions(sign * m, count, sd, resume_at_peak=resume_at_peak, alone=mask)
            for mask in masks(count.size, random)
        ]
        runs.append(_excursions(sign * m, count, sd, resume_at_peak=resume_at_peak))
        for run in runs[1:]:
            for field in ("total", "count", "first_start", "first_peak"):
                np.testing.assert_array_equal(getattr(run, field), getattr(runs[0], field), err_msg=field)


@given(st.lists(traces(max_size=1200), min_size=1, max_size=6), st.randoms(use_true_random=False))
@settings(  # large cohorts on purpose: the generator may hit Hypothesis's size checks under load
    suppress_health_check=[HealthCheck.data_too_large, HealthCheck.large_base_example, HealthCheck.too_slow]
)
def test_alone_and_lockstep_give_identical_turning_points_and_excursions_on_generated_cohorts(
    cohort: list[tuple[np.ndarray, np.ndarray]], random: Random
) -> None:
    grids = [day_grid(utc, mgdl, first_offset_min=0, dt_min=5) for utc, mgdl in cohort]
    seg = _segments([np.empty(0) if g is None else g.flat for g in grids], long_ma=32, max_gap_min=180)
    if seg.length.size == 0:
        return
    bounds, peak, count = _crossings(seg, _delta_signs(seg, 5, 32))
    runs = [_turning_points(seg.values, bounds, peak, count, mask) for mask in masks(count.size, random)]
    runs.append(_turning_points(seg.values, bounds, peak, count))
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])
    assert_same_excursions(runs[0], count, seg.sd, random)


@st.composite
def interval_problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments of few distinct values (many ties) with unknown points, and arbitrary interval bounds.

    Returns the values, the bounds, whether each bound opens a peak interval, and the turning points
    (intervals) per segment, as ``_crossings`` does.
    """
    values: list[float] = []
    bounds: list[int] = []
    peak: list[bool] = []
    count: list[int] = []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(2, 50))
        inner = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n // 2)))
        edges = [0, *inner, n - 1]
        piece = [float(v) for v in draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))]
        for index in draw(st.sets(st.integers(0, n - 1), max_size=n // 3)) - set(edges):
            piece[index] = math.nan  # bounds are known points
        bounds += [len(values) + edge for edge in edges]
        peak += draw(st.lists(st.booleans(), min_size=len(edges), max_size=len(edges)))  # per bound
        count.append(len(edges) - 1)
        values += piece
    return np.array(values), np.array(bounds, np.int64), np.array(peak, np.bool_), np.array(count, np.int64)


@given(interval_problems(), st.randoms(use_true_random=False))
def test_alone_and_lockstep_give_identical_turning_points_on_arbitrary_intervals(
    problem: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], random: Random
) -> None:
    y, bounds, peak, count = problem
    runs = [_turning_points(y, bounds, peak, count, mask) for mask in masks(count.size, random)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])


@given(
    st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=40), min_size=1, max_size=6),
    st.sampled_from([1.0, 2.0, 2.5, 3.0, 5.0]),
    st.randoms(use_true_random=False),
)
def test_alone_and_lockstep_give_identical_excursions_on_arbitrary_turning_points(
    segments: list[list[int]], sd: float, random: Random
) -> None:
    m = np.array([v for segment in segments for v in segment], np.float64)
    count = np.array([len(segment) for segment in segments], np.int64)
    assert_same_excursions(m, count, np.full(count.size, sd), random)


def test_alone_and_lockstep_agree_on_thousands_of_random_segments() -> None:
    # Many small cases in one call, so that rare ties (a fall of exactly one SD, equal extremes)
    # come up in every run, not only with the thorough Hypothesis profile.
    rng = np.random.default_rng(20_240_601)
    random = Random(7)
    count = rng.integers(1, 60, 4000)
    m = rng.integers(0, 13, int(count.sum())).astype(np.float64)
    assert_same_excursions(m, count, rng.choice([1.0, 2.0, 2.5, 3.0, 5.0], count.size), random)

    # Segments of few distinct values with unknown points, and arbitrary bounds as in interval_problems.
    values, bounds, peak, intervals = [], [], [], []
    offset = 0
    for n in rng.integers(2, 50, 2000).tolist():
        edges = [0, *sorted(set(rng.integers(1, n, rng.integers(0, n // 2 + 1)).tolist())), n - 1]
        piece = rng.integers(0, 5, n).astype(np.float64)
        unknown = rng.random(n) < 0.2
        unknown[edges] = False
        piece[unknown] = np.nan
        bounds.append(np.array(edges) + offset)
        peak.append(rng.random(len(edges)) < 0.5)
        intervals.append(len(edges) - 1)
        values.append(piece)
        offset += n
    y, count = np.concatenate(values), np.array(intervals, np.int64)
    all_bounds, all_peak = np.concatenate(bounds).astype(np.int64), np.concatenate(peak)
    runs = [_turning_points(y, all_bounds, all_peak, count, mask) for mask in masks(count.size, random)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])
