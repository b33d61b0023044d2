"""Insulin and carbohydrate figures on hand-built days with known answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.analytics.insulin import (
    BasalSegments,
    Doses,
    empty_basal,
    empty_doses,
    insulin_summary,
)

DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000
D0 = 20_000 * DAY  # a local day number far from the epoch


def _doses(*pairs: tuple[int, float]) -> Doses:
    return Doses(np.array([t for t, _ in pairs], np.int64), np.array([u for _, u in pairs], np.float64))


def _basal(*segments: tuple[int, int, float, bool]) -> BasalSegments:
    return BasalSegments(
        np.array([s[0] for s in segments], np.int64),
        np.array([s[1] for s in segments], np.int64),
        np.array([s[2] for s in segments], np.float64),
        np.array([s[3] for s in segments], np.bool_),
    )


def _summary(**overrides: object):
    fields: dict[str, object] = {
        "period": (D0, D0 + 2 * DAY),
        "basal": empty_basal(),
        "boluses": empty_doses(),
        "rapid_pen": empty_doses(),
        "long_pen": empty_doses(),
        "wizard_carbs": empty_doses(),
        "food_carbs": empty_doses(),
        "site_changes": np.empty(0, np.int64),
    }
    fields.update(overrides)
    return insulin_summary(**fields)  # type: ignore[arg-type]


def test_pump_day_basal_bolus_split_and_automation() -> None:
    # Day 1: 1 U/h all day, with a 2-hour temp basal at 0.5 U/h from 10:00 (the schedule segment
    # runs on underneath and is replaced); 3 boluses of 4 U. Day 2: automated 0.8 U/h all day.
    basal = _basal(
        (D0, DAY, 1.0, False),
        (D0 + 10 * HOUR, 2 * HOUR, 0.5, False),
        (D0 + 12 * HOUR, 12 * HOUR, 1.0, False),
        (D0 + DAY, DAY, 0.8, True),
    )
    boluses = _doses((D0 + 8 * HOUR, 4.0), (D0 + 13 * HOUR, 4.0), (D0 + 19 * HOUR, 4.0))
    summary = _summary(basal=basal, boluses=boluses)
    basal_u = 10 * 1.0 + 2 * 0.5 + 12 * 1.0 + 24 * 0.8
    assert summary.days_with_insulin == 2
    assert summary.total_daily_u == pytest.approx((basal_u + 12.0) / 2)
    assert summary.basal_pct == pytest.approx(100 * basal_u / (basal_u + 12.0))
    assert summary.boluses_per_day == pytest.approx(1.5)
    assert summary.automated_pct == pytest.approx(50.0)


def test_open_basal_segments_run_to_the_next_one_and_are_clipped_to_the_period() -> None:
    basal = _basal((D0 - 6 * HOUR, -1, 2.0, False), (D0 + 6 * HOUR, -1, 1.0, False))
    summary = _summary(basal=basal, period=(D0, D0 + DAY))
    # 06:00 of the day before the period until 06:00: 6 h inside; then 1 U/h for at most 24 h, to 24:00.
    assert summary.basal_daily_u == pytest.approx(6 * 2.0 + 18 * 1.0)


def test_injections_long_acting_is_basal_rapid_is_bolus() -> None:
    summary = _summary(
        long_pen=_doses((D0 + 22 * HOUR, 20.0), (D0 + DAY + 22 * HOUR, 20.0)),
        rapid_pen=_doses((D0 + 8 * HOUR, 6.0), (D0 + 13 * HOUR, 8.0), (D0 + DAY + 8 * HOUR, 6.0)),
    )
    assert summary.total_daily_u == pytest.approx((40 + 20) / 2)
    assert summary.basal_pct == pytest.approx(100 * 40 / 60)
    assert summary.boluses_per_day == pytest.approx(1.5)
    assert summary.automated_pct is None


def test_carbs_from_wizard_and_food_count_a_meal_once() -> None:
    wizard = _doses((D0 + 8 * HOUR, 50.0), (D0 + 13 * HOUR, 70.0))
    food = _doses(
        (D0 + 8 * HOUR + 3 * MINUTE, 50.0),  # the same breakfast, logged twice
        (D0 + 16 * HOUR, 20.0),  # a snack
        (D0 + DAY + 12 * HOUR, 60.0),
    )
    summary = _summary(wizard_carbs=wizard, food_carbs=food)
    assert summary.days_with_carbs == 2
    assert summary.carbs_daily_g == pytest.approx((50 + 70 + 20 + 60) / 2)


def test_site_changes_and_days_between() -> None:
    sites = np.array([D0 - DAY, D0 + 2 * HOUR, D0 + 3 * DAY + 2 * HOUR, D0 + 6 * DAY], np.int64)
    summary = _summary(site_changes=sites, period=(D0, D0 + 7 * DAY))
    assert summary.site_changes == 3
    assert summary.days_between_site_changes == pytest.approx((6 * DAY - 2 * HOUR) / 2 / DAY)


def test_no_data_gives_none_not_zero() -> None:
    summary = _summary()
    assert summary.days_with_insulin == 0
    assert summary.total_daily_u is None
    assert summary.basal_pct is None
    assert summary.carbs_daily_g is None


@given(
    doses=st.lists(st.tuples(st.integers(0, 2 * DAY - 1), st.floats(0.05, 30.0)), min_size=1, max_size=40),
    seed=st.integers(0, 2**32 - 1),
)
def test_order_of_doses_is_irrelevant(doses: list[tuple[int, float]], seed: int) -> None:
    ordered = _doses(*[(D0 + t, u) for t, u in doses])
    permutation = np.random.default_rng(seed).permutation(len(doses))
    shuffled = Doses(ordered.time[permutation], ordered.units[permutation])
    assert dataclasses.astuple(_summary(boluses=ordered)) == pytest.approx(
        dataclasses.astuple(_summary(boluses=shuffled))
    )


def test_a_basal_of_unknown_rate_delivers_nothing_and_makes_no_insulin_day() -> None:
    day = D0
    basal = BasalSegments(
        start=np.array([day, day + 6 * HOUR, day + DAY], np.int64),
        duration=np.array([-1, 2 * HOUR, 2 * HOUR], np.int64),
        rate=np.array([1.0, np.nan, np.nan], np.float64),
        automated=np.zeros(3, np.bool_),
    )
    empty = empty_doses()
    summary = insulin_summary(
        period=(day, day + 2 * DAY),
        basal=basal,
        boluses=empty,
        rapid_pen=empty,
        long_pen=empty,
        wizard_carbs=empty,
        food_carbs=empty,
        site_changes=np.empty(0, np.int64),
    )
    assert summary.days_with_insulin == 1  # the second day holds only a basal of unknown rate
    assert summary.total_daily_u == pytest.approx(6.0)  # 1 U/h until the unknown temporary basal starts
