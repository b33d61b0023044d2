"""AGP modal day and daily profiles: known answers on synthetic data, invariants (hypothesis)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from glucoshare.analytics.agp import AGP_PERCENTILES, agp, daily_profiles

MINUTE = 60_000
DAY = 86_400_000
FIRST_DAY = 19_000  # 2022-01-08


def _regular(days: int, step_min: int = 5, offset_ms: int = 0) -> np.ndarray:
    """Local times of readings every `step_min` minutes over `days` days from FIRST_DAY."""
    per_day = 1440 // step_min
    return FIRST_DAY * DAY + offset_ms + np.arange(days * per_day, dtype=np.int64) * step_min * MINUTE


def _curves(profile) -> np.ndarray:
    return np.vstack([profile.p5, profile.p25, profile.p50, profile.p75, profile.p95])


def _readonly(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


def test_shape_and_slots() -> None:
    times = _regular(14)
    profile = agp(times, np.full(times.size, 120.0))
    assert profile.slots == 288
    assert profile.slot_start_min[0] == 0
    assert profile.slot_start_min[-1] == 1435
    assert np.all(np.diff(profile.slot_start_min) == 5)
    assert profile.days == 14
    assert profile.readings == 14 * 288
    assert np.all(profile.slot_readings == 14)
    assert np.all(profile.window_readings == 14 * 7)  # the slot and 15 minutes on either side


def test_constant_per_time_of_day_gives_that_value_unsmoothed() -> None:
    times = _regular(14)
    slot = (times % DAY) // (5 * MINUTE)
    by_slot = 60.0 + (np.arange(288) * 7 % 250)  # an arbitrary value per time of day
    profile = agp(times, by_slot[slot], half_window_minutes=0)
    for curve in _curves(profile):
        np.testing.assert_array_equal(curve, by_slot)


def test_constant_per_hour_gives_that_value_where_the_window_stays_in_the_hour() -> None:
    times = _regular(14)
    hour = (times % DAY) // (60 * MINUTE)
    by_hour = 80.0 + 5.0 * np.arange(24)
    profile = agp(times, by_hour[hour])
    inside = (profile.slot_start_min % 60 >= 15) & (profile.slot_start_min % 60 < 45)
    expected = by_hour[profile.slot_start_min // 60]
    for curve in _curves(profile):
        np.testing.assert_array_equal(curve[inside], expected[inside])


def test_uniformly_spread_readings_give_the_expected_percentiles() -> None:
    # 101 days; at every time of day the readings are 100, 101, …, 200 mg/dL (one per day, shuffled).
    days = 101
    times = _regular(days)
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.permutation(days) for _ in range(288)]).astype(np.float64) + 100.0
    slot_major = np.argsort((times % DAY) * days + (times // DAY - FIRST_DAY), kind="stable")
    ordered = np.empty_like(values)
    ordered[slot_major] = values  # slot by slot, each slot one permutation of 100…200
    unsmoothed = agp(times, ordered, half_window_minutes=0)
    smoothed = agp(times, ordered)
    for q, curve in zip(AGP_PERCENTILES, _curves(unsmoothed), strict=True):
        np.testing.assert_array_equal(curve, np.full(288, 100.0 + q))
    # Pooling 7 slots repeats every value 7 times: the percentiles stay where they were.
    for q, curve in zip(AGP_PERCENTILES, _curves(smoothed), strict=True):
        np.testing.assert_array_equal(curve, np.full(288, 100.0 + q))


def test_equals_numpy_percentile_over_the_window() -> None:
    rng = np.random.default_rng(3)
    times = _regular(20) + rng.integers(0, 4 * MINUTE, 20 * 288)
    values = rng.normal(150.0, 40.0, times.size)
    profile = agp(times, values, half_window_minutes=30)
    slot = (times % DAY) // (5 * MINUTE)
    for k in (0, 1, 5, 143, 282, 287):
        window = (slot - k + 6) % 288 <= 12
        expected = np.percentile(values[window], AGP_PERCENTILES)
        np.testing.assert_array_equal(_curves(profile)[:, k], expected)
        assert profile.window_readings[k] == window.sum()


def test_window_wraps_around_midnight() -> None:
    days = np.arange(5, dtype=np.int64)
    before = (FIRST_DAY + days) * DAY + (23 * 60 + 57) * MINUTE  # 23:57
    after = (FIRST_DAY + days + 1) * DAY + 2 * MINUTE  # 00:02 the next day
    times = np.concatenate([before, after])
    values = np.concatenate([np.full(5, 100.0), np.full(5, 200.0)])
    profile = agp(times, values)
    for k in (0, 287, 286, 1):  # windows that hold both sides of midnight
        assert profile.window_readings[k] == 10
        assert profile.p5[k] == 100.0
        assert profile.p50[k] == 150.0
        assert profile.p95[k] == 200.0
    assert profile.p50[3] == 200.0  # 00:15: only the readings after midnight are within 15 minutes
    assert profile.p50[284] == 100.0  # 23:40: only the readings before midnight
    assert np.isnan(profile.p50[4])  # 00:20: none within 15 minutes
    assert profile.slot_readings[0] == 5
    assert profile.slot_readings[287] == 5
    assert profile.days == 6


def test_too_few_readings_give_nan_and_empty_input_all_nan() -> None:
    times = FIRST_DAY * DAY + np.array([600, 601, 602, 603], dtype=np.int64) * MINUTE
    profile = agp(times, np.array([100.0, 110.0, 120.0, 130.0]))
    assert np.all(np.isnan(_curves(profile)))
    assert agp(times, np.array([100.0, 110.0, 120.0, 130.0]), min_readings=4).p50[120] == 115.0
    empty = agp(np.array([], np.int64), np.array([], np.float64))
    assert np.all(np.isnan(_curves(empty)))
    assert empty.days == 0
    assert empty.readings == 0


def test_non_finite_readings_are_ignored() -> None:
    times = _regular(7)
    values = np.full(times.size, 140.0)
    values[::3] = np.nan
    profile = agp(times, values)
    assert profile.readings == np.isfinite(values).sum()
    assert np.all(profile.p50 == 140.0)


def test_percentile_accessor_and_invalid_settings() -> None:
    times = _regular(7)
    profile = agp(times, np.full(times.size, 99.0))
    assert profile.percentile(50) is profile.p50
    with pytest.raises(ValueError, match="percentiles"):
        profile.percentile(90)
    for settings in (
        {"slot_minutes": 7},
        {"half_window_minutes": 12},
        {"half_window_minutes": 720},
        {"min_readings": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(settings))):
            agp(times, np.full(times.size, 99.0), **settings)
    with pytest.raises(ValueError, match="readings"):
        agp(times, np.ones(3))


def test_other_slot_sizes() -> None:
    times = _regular(14, step_min=15)  # FreeStyle Libre history
    values = 100.0 + (times % DAY) // (60 * MINUTE)
    profile = agp(times, values, slot_minutes=15, half_window_minutes=0, min_readings=1)
    assert profile.slots == 96
    np.testing.assert_array_equal(profile.p50, 100.0 + np.arange(96) // 4)


def test_inputs_are_not_mutated() -> None:
    rng = np.random.default_rng(11)
    times = rng.permutation(_regular(10))
    values = rng.normal(150.0, 50.0, times.size)
    times_copy, values_copy = times.copy(), values.copy()
    _readonly(times, values)
    agp(times, values)
    daily_profiles(times, values, first_day=FIRST_DAY, last_day=FIRST_DAY + 9)
    np.testing.assert_array_equal(times, times_copy)
    np.testing.assert_array_equal(values, values_copy)


readings = st.integers(min_value=0, max_value=600).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.int64, n, elements=st.integers(FIRST_DAY * DAY, (FIRST_DAY + 14) * DAY - 1)),
        hnp.arrays(np.float64, n, elements=st.floats(39.0, 401.0)),
    )
)


@given(readings, st.randoms(use_true_random=False))
def test_order_of_readings_is_irrelevant(data: tuple[np.ndarray, np.ndarray], random) -> None:
    times, values = data
    order = np.arange(times.size)
    random.shuffle(order)
    one = agp(times, values)
    other = agp(times[order], values[order])
    np.testing.assert_array_equal(_curves(one), _curves(other))
    np.testing.assert_array_equal(one.window_readings, other.window_readings)


@given(readings, st.sampled_from([0, 5, 15, 60]))
def test_percentiles_are_ordered_and_defined_together(data: tuple[np.ndarray, np.ndarray], half: int) -> None:
    times, values = data
    profile = agp(times, values, half_window_minutes=half)
    curves = _curves(profile)
    defined = np.isfinite(curves)
    assert np.all(defined == defined[0])
    assert np.array_equal(defined[0], profile.window_readings >= 5)
    known = curves[:, defined[0]]
    assert np.all(np.diff(known, axis=0) >= 0)
    assert np.all((known >= values.min(initial=np.inf)) & (known <= values.max(initial=-np.inf)))
    assert profile.window_readings.sum() == (2 * half // 5 + 1) * values.size


# --- daily profiles -----------------------------------------------------------------------------


def test_days_without_data_are_present_and_empty() -> None:
    times = np.concatenate([_regular(1), _regular(1) + 3 * DAY])
    values = np.full(times.size, 120.0)
    profiles = daily_profiles(times, values, first_day=FIRST_DAY - 1, last_day=FIRST_DAY + 4)
    assert [p.day for p in profiles] == list(range(FIRST_DAY - 1, FIRST_DAY + 5))
    assert [p.readings for p in profiles] == [0, 288, 0, 0, 288, 0]
    empty = profiles[0]
    assert empty.minutes.size == 0
    assert empty.mgdl.size == 0
    assert empty.below_pct is None
    assert empty.in_range_pct is None
    assert empty.above_pct is None
    assert profiles[1].date == dt.date(2022, 1, 8)


def test_midnight_belongs_to_the_next_day() -> None:
    last_second = FIRST_DAY * DAY + DAY - 1000  # 23:59:59
    midnight = (FIRST_DAY + 1) * DAY  # 00:00 of the next day
    profiles = daily_profiles(
        np.array([midnight, last_second]),
        np.array([200.0, 60.0]),
        first_day=FIRST_DAY,
        last_day=FIRST_DAY + 1,
    )
    assert profiles[0].minutes.tolist() == [1440 - 1 / 60]
    assert profiles[0].mgdl.tolist() == [60.0]
    assert profiles[0].below_pct == 100.0
    assert profiles[1].minutes.tolist() == [0.0]
    assert profiles[1].mgdl.tolist() == [200.0]
    assert profiles[1].above_pct == 100.0


def test_readings_are_sorted_and_bands_follow_the_consensus_boundaries() -> None:
    minutes = np.array([300, 10, 200, 100, 0], dtype=np.int64)
    values = np.array([181.0, 69.9, 70.0, 180.0, 250.0])
    profile = daily_profiles(
        FIRST_DAY * DAY + minutes * MINUTE, values, first_day=FIRST_DAY, last_day=FIRST_DAY
    )[0]
    assert profile.minutes.tolist() == [0, 10, 100, 200, 300]
    assert profile.mgdl.tolist() == [250.0, 69.9, 180.0, 70.0, 181.0]
    assert profile.below_pct == pytest.approx(20.0)
    assert profile.in_range_pct == pytest.approx(40.0)
    assert profile.above_pct == pytest.approx(40.0)


def test_readings_outside_the_days_are_ignored_and_bad_period_rejected() -> None:
    times = _regular(5)
    profiles = daily_profiles(
        times, np.full(times.size, 100.0), first_day=FIRST_DAY + 1, last_day=FIRST_DAY + 2
    )
    assert [p.readings for p in profiles] == [288, 288]
    with pytest.raises(ValueError, match="before"):
        daily_profiles(times, np.full(times.size, 100.0), first_day=FIRST_DAY + 2, last_day=FIRST_DAY + 1)


@given(readings)
def test_band_percentages_sum_to_100_on_days_with_data(data: tuple[np.ndarray, np.ndarray]) -> None:
    times, values = data
    profiles = daily_profiles(times, values, first_day=FIRST_DAY, last_day=FIRST_DAY + 13)
    assert len(profiles) == 14
    assert sum(p.readings for p in profiles) == times.size
    for profile in profiles:
        assert np.all(np.diff(profile.minutes) >= 0)
        assert np.all((profile.minutes >= 0) & (profile.minutes < 1440))
        if profile.readings:
            assert profile.below_pct is not None
            assert profile.in_range_pct is not None
            assert profile.above_pct is not None
            assert profile.below_pct + profile.in_range_pct + profile.above_pct == pytest.approx(100.0)
            assert profile.below_pct == pytest.approx(100.0 * np.mean(profile.mgdl < 70))
        else:
            assert profile.below_pct is None
