"""Counting a CGM reading that arrived by several routes once, and two sensors worn together twice."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoshare.analytics.sources import (
    RANK_AGGREGATOR,
    RANK_PRIMARY,
    RANK_RELAY,
    TIME_TOLERANCE_MS,
    repeated_readings,
)
from glucoshare.records.vocabulary import MGDL_PER_MMOLL

FIVE_MIN = 300_000
DAY_MS = 86_400_000


def _sensor(
    days: int, seed: int, *, start_ms: int = 1_750_000_000_000
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """A smooth glucose trace sampled every five minutes with a random phase."""
    rng = np.random.default_rng(seed)
    times = start_ms + int(rng.integers(0, FIVE_MIN)) + np.arange(days * 288, dtype=np.int64) * FIVE_MIN
    hours = (times - start_ms) / 3_600_000
    truth = 140 + 50 * np.sin(hours / 3.1) + 25 * np.sin(hours / 0.9 + 1)
    return times, np.round(truth + rng.normal(0, 4, len(times)))


def _streams(
    *parts: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    times = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1] for p in parts])
    stream = np.concatenate([np.full(len(p[0]), p[2], np.int64) for p in parts])
    return times, values, stream


def test_the_same_readings_by_a_second_route_are_dropped_from_the_lower_ranked_one() -> None:
    times, values = _sensor(3, seed=1)
    rng = np.random.default_rng(2)
    relayed = (times // 60_000) * 60_000 + rng.integers(
        -20_000, 20_000, len(times)
    )  # minute-rounded, jittered
    mmol = np.round(values / MGDL_PER_MMOLL, 1) * MGDL_PER_MMOLL  # written in mmol/L with one decimal
    all_times, all_values, stream = _streams((times, values, 7), (relayed, mmol, 3))
    drop = repeated_readings(all_times, all_values, stream, {7: RANK_PRIMARY, 3: RANK_RELAY})
    assert not drop[stream == 7].any()  # the maker's export wins although it was stored later
    assert drop[stream == 3].all()


def test_two_sensors_worn_at_once_are_both_counted() -> None:
    dexcom_t, dexcom_v = _sensor(4, seed=3)
    libre_t, libre_v = _sensor(4, seed=4)
    libre_v = libre_v * 1.06  # another sensor reads a few per cent apart
    times, values, stream = _streams((dexcom_t, dexcom_v, 1), (libre_t, libre_v, 2))
    drop = repeated_readings(times, values, stream, {1: RANK_PRIMARY, 2: RANK_PRIMARY})
    assert not drop.any()


def test_the_second_route_fills_the_gaps_of_the_first() -> None:
    times, values = _sensor(2, seed=5)
    gap = (times > times[100]) & (times < times[160])
    times_a, values_a = times[~gap], values[~gap]
    all_times, all_values, stream = _streams((times_a, values_a, 1), (times + 5_000, values, 2))
    drop = repeated_readings(all_times, all_values, stream, {1: RANK_PRIMARY, 2: RANK_AGGREGATOR})
    kept = all_times[~drop]
    assert len(kept) == len(times)  # every slot once: the aggregator's readings fill the gap only
    assert (stream[~drop] == 2).sum() == gap.sum()


def test_equal_ranks_keep_the_source_stored_first_and_unranked_sources_count_as_relays() -> None:
    times, values = _sensor(1, seed=6)
    all_times, all_values, stream = _streams((times, values, 9), (times, values, 4))
    drop = repeated_readings(all_times, all_values, stream, {})
    assert drop[stream == 9].all()
    assert not drop[stream == 4].any()
    drop = repeated_readings(all_times, all_values, stream, {9: RANK_AGGREGATOR})
    assert drop[stream == 4].all()


def test_one_source_and_small_overlaps_are_left_alone() -> None:
    times, values = _sensor(1, seed=7)
    assert not repeated_readings(times, values, np.ones(len(times), np.int64), {}).any()
    few_t, few_v = times[:5], values[:5]  # five readings of the same sensor: too few to call it the same
    all_times, all_values, stream = _streams((times, values, 1), (few_t, few_v, 2))
    assert not repeated_readings(all_times, all_values, stream, {1: 0, 2: 2}).any()


def test_same_sensor_is_decided_per_day() -> None:
    """UTC day 1: the same sensor by two routes; day 2: the relay carries another sensor."""
    midnight = 1_749_945_600_000
    times, values = _sensor(2, seed=8, start_ms=midnight)
    other_t, other_v = _sensor(2, seed=9, start_ms=midnight)
    day_one = times < times[0] + DAY_MS
    relay_t = np.where(day_one, times + 1_000, other_t)
    relay_v = np.where(day_one, values, other_v * 1.08)
    all_times, all_values, stream = _streams((times, values, 1), (relay_t, relay_v, 2))
    drop = repeated_readings(all_times, all_values, stream, {1: RANK_PRIMARY, 2: RANK_RELAY})
    relay_drop = drop[stream == 2]
    assert relay_drop[day_one].mean() > 0.95
    assert relay_drop[~day_one].mean() < 0.1


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    jitter_s=st.integers(0, TIME_TOLERANCE_MS // 1000 - 1),
    routes=st.integers(2, 4),
)
def test_any_number_of_routes_for_one_sensor_counts_each_reading_once(
    seed: int, jitter_s: int, routes: int
) -> None:
    times, values = _sensor(1, seed=seed)
    parts = [(times + (jitter_s * 1000 if r % 2 else 0), values, r) for r in range(routes)]
    all_times, all_values, stream = _streams(*parts)
    drop = repeated_readings(all_times, all_values, stream, {r: r % 3 for r in range(routes)})
    assert (~drop).sum() == len(times)
    assert len(np.unique(stream[~drop])) == 1


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), bias=st.floats(1.04, 1.3))
def test_independent_sensors_never_lose_a_reading(seed: int, bias: float) -> None:
    a_t, a_v = _sensor(2, seed=seed)
    b_t, b_v = _sensor(2, seed=seed + 1)
    times, values, stream = _streams((a_t, a_v, 1), (b_t, b_v * bias, 2))
    assert not repeated_readings(times, values, stream, {1: 0, 2: 1}).any()
