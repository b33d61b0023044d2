"""Patterns: hand-built 14-day traces with exact wording and evidence, and monotonicity (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.analytics.patterns import Pattern, PatternKind, find_patterns

MINUTE = 60_000
DAY = 86_400_000
FIRST_DAY = 19_000  # 2022-01-08
LAST_DAY = FIRST_DAY + 13  # 14 days


class Trace:
    """A 14-day trace of 5-minute readings at 120 mg/dL, to be edited by local day and time."""

    def __init__(self, days: int = 14) -> None:
        self.times = FIRST_DAY * DAY + np.arange(days * 288, dtype=np.int64) * 5 * MINUTE
        self.values = np.full(self.times.size, 120.0)
        self.keep = np.ones(self.times.size, np.bool_)

    def _at(self, day: int, start: str, end: str) -> np.ndarray:
        minute = (self.times % DAY) // MINUTE
        return (self.times // DAY == FIRST_DAY + day) & (minute >= _min(start)) & (minute < _min(end))

    def set(self, days: list[int], start: str, end: str, value: float) -> Trace:
        """Readings from `start` (inclusive) to `end` (exclusive) on the given day offsets."""
        for day in days:
            self.values[self._at(day, start, end)] = value
        return self

    def drop(self, days: list[int], start: str, end: str) -> Trace:
        for day in days:
            self.keep &= ~self._at(day, start, end)
        return self

    def patterns(self, **kwargs) -> list[Pattern]:
        return find_patterns(
            self.times[self.keep], self.values[self.keep], first_day=FIRST_DAY, last_day=LAST_DAY, **kwargs
        )


def _min(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _of(kind: PatternKind, patterns: list[Pattern]) -> list[Pattern]:
    return [p for p in patterns if p.kind is kind]


def test_clean_trace_has_no_patterns() -> None:
    assert Trace().patterns() == []


def test_nightly_lows_on_5_of_14_nights() -> None:
    nights = [1, 3, 5, 8, 11]
    trace = Trace().set(nights, "02:10", "03:40", 62.0).set([3], "02:40", "02:55", 51.0)
    [pattern] = trace.patterns()
    assert pattern.kind is PatternKind.RECURRING_LOW
    assert pattern.summary == "Lows below 70 mg/dL on 5 of 14 nights between 02:00 and 04:00"
    assert pattern.days == tuple(FIRST_DAY + n for n in nights)
    assert (pattern.start_min, pattern.end_min) == (120, 240)
    assert pattern.occurrences == 5
    assert pattern.days_observed == 14
    assert pattern.events == 5
    assert pattern.worst_mgdl == 51.0
    assert [d.isoformat() for d in pattern.dates][:2] == ["2022-01-09", "2022-01-11"]


def test_lows_on_2_days_are_no_pattern() -> None:
    assert Trace().set([2, 9], "02:00", "04:00", 55.0).patterns() == []


def test_lows_on_3_of_14_nights_are_below_a_quarter_but_3_of_10_are_a_pattern() -> None:
    assert Trace().set([1, 4, 7], "03:00", "03:30", 60.0).patterns() == []
    trace = Trace().set([1, 4, 7], "03:00", "03:30", 60.0).drop([0, 2, 3, 5], "01:00", "06:00")
    [low] = _of(PatternKind.RECURRING_LOW, trace.patterns())
    assert low.summary == "Lows below 70 mg/dL on 3 of 10 nights between 03:00 and 04:00"
    assert low.days == (FIRST_DAY + 1, FIRST_DAY + 4, FIRST_DAY + 7)


def test_lows_shorter_than_15_minutes_do_not_count() -> None:
    two_readings = Trace().set([0, 1, 2, 3, 4, 5], "15:00", "15:10", 50.0)
    assert two_readings.patterns() == []
    three_readings = Trace().set([0, 1, 2, 3, 4, 5], "15:00", "15:15", 50.0)
    [low] = three_readings.patterns()
    assert low.summary == "Lows below 70 mg/dL on 6 of 14 days between 15:00 and 16:00"


def test_a_missed_reading_splits_a_low() -> None:
    # 15:00, 15:05, (15:10 missing), 15:15, 15:20: two runs of two readings, neither lasts 15 minutes.
    trace = Trace().set([0, 1, 2, 3], "15:00", "15:25", 50.0).drop([0, 1, 2, 3], "15:10", "15:15")
    assert _of(PatternKind.RECURRING_LOW, trace.patterns()) == []


def test_daytime_and_night_lows_are_separate_patterns_and_windows_wrap_midnight() -> None:
    trace = Trace().set([0, 2, 4, 6], "23:30", "23:59", 65.0).set([0, 2, 4, 6], "00:00", "00:30", 65.0)
    trace.set([1, 3, 5, 7, 9], "14:20", "14:50", 60.0)
    lows = _of(PatternKind.RECURRING_LOW, trace.patterns())
    assert [p.summary for p in lows] == [
        "Lows below 70 mg/dL on 5 of 14 days between 14:00 and 15:00",
        "Lows below 70 mg/dL on 4 of 14 days between 23:00 and 01:00",
    ]
    assert (lows[1].start_min, lows[1].end_min) == (1380, 60)
    assert lows[1].events == 8  # the low before and the low after midnight are separate episodes


def test_lows_all_night_give_one_merged_window() -> None:
    trace = Trace().set([0, 1, 2, 3, 4], "00:30", "05:30", 60.0)
    [low] = trace.patterns()
    assert low.summary == "Lows below 70 mg/dL on 5 of 14 nights between 00:00 and 06:00"
    assert (low.start_min, low.end_min) == (0, 360)
    assert low.events == 5


def test_lows_all_day_long() -> None:
    trace = Trace().set([0, 1, 2, 3], "00:00", "24:00", 60.0)
    [low] = _of(PatternKind.RECURRING_LOW, trace.patterns())
    assert low.summary == "Lows below 70 mg/dL on 4 of 14 days at any time of day"
    assert (low.start_min, low.end_min) == (0, 1440)


def test_overnight_highs() -> None:
    trace = Trace().set([0, 4, 5, 12], "00:00", "06:00", 220.0).set([12], "02:00", "03:00", 300.0)
    [high] = trace.patterns()
    assert high.kind is PatternKind.OVERNIGHT_HIGH
    assert high.summary == "Mean glucose above 180 mg/dL between 00:00 and 06:00 on 4 of 14 nights"
    assert high.days == (FIRST_DAY, FIRST_DAY + 4, FIRST_DAY + 5, FIRST_DAY + 12)
    assert (high.start_min, high.end_min) == (0, 360)
    assert high.worst_mgdl == pytest.approx((5 * 220.0 + 300.0) / 6)


def test_overnight_mean_at_180_is_not_high_and_sparse_nights_are_not_observed() -> None:
    assert Trace().set([0, 1, 2, 3, 4], "00:00", "06:00", 180.0).patterns() == []
    trace = Trace().set([0, 1, 2], "00:00", "06:00", 250.0).drop(list(range(3, 14)), "00:00", "02:00")
    [high] = _of(PatternKind.OVERNIGHT_HIGH, trace.patterns())
    assert high.summary == "Mean glucose above 180 mg/dL between 00:00 and 06:00 on 3 of 3 nights"


def _meals(days: list[int], at: str, carbs: float = 50.0) -> dict[str, np.ndarray]:
    times = np.array([(FIRST_DAY + d) * DAY + _min(at) * MINUTE for d in days], dtype=np.int64)
    return {"meal_local_ms": times, "carbs_g": np.full(times.size, carbs)}


def test_post_meal_spike_after_breakfast_on_4_days() -> None:
    spikes = [2, 3, 7, 10]
    trace = Trace().set(spikes, "07:45", "09:30", 200.0).set([7], "08:30", "08:35", 210.0)
    [pattern] = trace.patterns(**_meals(list(range(14)), "07:30"))
    assert pattern.kind is PatternKind.POST_MEAL_HIGH
    assert pattern.summary == (
        "Glucose above 250 mg/dL or rising more than 60 mg/dL within 2 hours after breakfast "
        "(05:00–10:00) on 4 of 14 days"
    )
    assert pattern.days == tuple(FIRST_DAY + d for d in spikes)
    assert (pattern.start_min, pattern.end_min) == (300, 600)
    assert pattern.events == 4
    assert pattern.worst_mgdl == 210.0


def test_post_meal_rules_rise_needs_a_pre_meal_value_and_250_does_not() -> None:
    days = [0, 1, 2, 3]
    # A rise of exactly 60 is not more than 60.
    assert Trace().set(days, "12:05", "13:00", 180.0).patterns(**_meals(days, "12:00")) == []
    # No reading in the 15 minutes before the meal: a rise cannot be told, a peak above 250 can.
    no_pre = Trace().set(days, "12:05", "13:00", 200.0).drop(days, "11:40", "12:01")
    assert _of(PatternKind.POST_MEAL_HIGH, no_pre.patterns(**_meals(days, "12:00"))) == []
    above = Trace().set(days, "12:05", "13:00", 251.0).drop(days, "11:40", "12:01")
    [pattern] = _of(PatternKind.POST_MEAL_HIGH, above.patterns(**_meals(days, "12:00")))
    assert pattern.summary.endswith("after lunch (10:00–15:00) on 4 of 4 days")
    # Spikes later than 2 hours after the meal do not count.
    late = Trace().set(days, "14:05", "15:00", 300.0)
    assert _of(PatternKind.POST_MEAL_HIGH, late.patterns(**_meals(days, "12:00"))) == []


def test_post_meal_highs_by_meal_window_and_zero_carbs_ignored() -> None:
    trace = Trace().set([0, 1, 2], "22:15", "23:00", 260.0).set([5, 6, 7], "18:15", "19:00", 260.0)
    meals = _meals([0, 1, 2], "22:00")
    dinner = _meals([5, 6, 7], "18:00")
    zero = _meals([8, 9, 10], "18:00", carbs=0.0)
    trace.set([8, 9, 10], "18:15", "19:00", 260.0)
    patterns = trace.patterns(
        meal_local_ms=np.concatenate(
            [meals["meal_local_ms"], dinner["meal_local_ms"], zero["meal_local_ms"]]
        ),
        carbs_g=np.concatenate([meals["carbs_g"], dinner["carbs_g"], zero["carbs_g"]]),
    )
    assert [p.summary for p in patterns] == [
        "Glucose above 250 mg/dL or rising more than 60 mg/dL within 2 hours after dinner (15:00–21:00) on 3 of 3 days",
        "Glucose above 250 mg/dL or rising more than 60 mg/dL within 2 hours after night-time meals (21:00–05:00) on 3 of 3 days",
    ]
    assert (patterns[1].start_min, patterns[1].end_min) == (1260, 300)


def test_a_5_hour_gap() -> None:
    trace = Trace().drop([6], "10:01", "15:00")
    [gap] = trace.patterns()
    assert gap.kind is PatternKind.DATA_GAP
    assert gap.summary == "1 gap of 5.0 hours without readings"
    assert gap.days == (FIRST_DAY + 6,)
    assert gap.events == 1
    assert gap.gap_longest_min == 300.0
    assert gap.gap_total_min == 300.0
    assert (gap.start_min, gap.end_min) == (0, 1440)


def test_gaps_across_midnight_and_short_days() -> None:
    trace = Trace().drop([2], "22:01", "24:00").drop([3], "00:00", "01:30").drop([9], "06:01", "08:00")
    trace.drop([12, 13], "00:00", "24:00")
    gaps, short = _of(PatternKind.DATA_GAP, trace.patterns())
    assert gaps.summary == (
        "2 gaps of 2 hours or more without readings (5.5 hours in total, longest 3.5 hours)"
    )
    assert gaps.days == (FIRST_DAY + 2, FIRST_DAY + 3, FIRST_DAY + 9)
    assert gaps.occurrences == 3
    assert gaps.events == 2
    assert short.summary == "Fewer than 70% of the possible readings on 2 of 14 days"
    assert short.days == (FIRST_DAY + 12, FIRST_DAY + 13)
    assert short.days_observed == 14


def test_sorted_by_kind_then_window_and_empty_input() -> None:
    trace = (
        Trace().set([1, 3, 5, 8, 11], "14:00", "14:30", 60.0).set([1, 3, 5, 8, 11], "02:00", "02:30", 60.0)
    )
    trace.set([0, 4, 6, 7], "00:00", "06:00", 240.0).drop([13], "12:01", "15:00")
    kinds = [(p.kind, p.start_min) for p in trace.patterns()]
    assert kinds == [
        (PatternKind.RECURRING_LOW, 120),
        (PatternKind.RECURRING_LOW, 840),
        (PatternKind.OVERNIGHT_HIGH, 0),
        (PatternKind.DATA_GAP, 0),
    ]
    [short] = find_patterns(
        np.array([], np.int64), np.array([], np.float64), first_day=FIRST_DAY, last_day=FIRST_DAY
    )
    assert short.summary == "Fewer than 70% of the possible readings on 1 of 1 day"


def test_15_minute_sensor() -> None:
    times = FIRST_DAY * DAY + np.arange(14 * 96, dtype=np.int64) * 15 * MINUTE
    values = np.full(times.size, 120.0)
    minute = (times % DAY) // MINUTE
    values[(minute == 3 * 60) & np.isin(times // DAY - FIRST_DAY, [0, 1, 2, 3])] = (
        60.0  # one reading = 15 min
    )
    [low] = find_patterns(times, values, first_day=FIRST_DAY, last_day=LAST_DAY, interval_min=15)
    assert low.summary == "Lows below 70 mg/dL on 4 of 14 nights between 03:00 and 04:00"
    assert find_patterns(times, values, first_day=FIRST_DAY, last_day=LAST_DAY, interval_min=5)[0].kind is (
        PatternKind.DATA_GAP
    )


def test_invalid_arguments() -> None:
    times = np.array([FIRST_DAY * DAY], np.int64)
    with pytest.raises(ValueError, match="before"):
        find_patterns(times, np.array([100.0]), first_day=FIRST_DAY, last_day=FIRST_DAY - 1)
    with pytest.raises(ValueError, match="interval"):
        find_patterns(times, np.array([100.0]), first_day=FIRST_DAY, last_day=FIRST_DAY, interval_min=0)
    with pytest.raises(ValueError, match="both"):
        find_patterns(times, np.array([100.0]), first_day=FIRST_DAY, last_day=FIRST_DAY, meal_local_ms=times)
    with pytest.raises(ValueError, match="readings"):
        find_patterns(times, np.array([100.0, 1.0]), first_day=FIRST_DAY, last_day=FIRST_DAY)


def test_inputs_are_not_mutated_and_order_is_irrelevant() -> None:
    trace = Trace().set([1, 3, 5, 8, 11], "02:10", "03:40", 62.0).set([2, 3, 7, 10], "07:45", "09:30", 200.0)
    meals = _meals(list(range(14)), "07:30")
    rng = np.random.default_rng(5)
    order = rng.permutation(trace.times.size)
    times, values = trace.times[order], trace.values[order]
    copies = [a.copy() for a in (times, values, meals["meal_local_ms"], meals["carbs_g"])]
    for array in (times, values, meals["meal_local_ms"], meals["carbs_g"]):
        array.setflags(write=False)
    shuffled = find_patterns(times, values, first_day=FIRST_DAY, last_day=LAST_DAY, **meals)
    for array, copy in zip((times, values, meals["meal_local_ms"], meals["carbs_g"]), copies, strict=True):
        np.testing.assert_array_equal(array, copy)
    assert shuffled == trace.patterns(**meals)


# --- adding readings in range never creates a low pattern ---------------------------------------


def _hours(pattern: Pattern) -> set[int]:
    start, end = pattern.start_min // 60, pattern.end_min // 60
    length = (end - start) % 24 or 24
    return {(start + i) % 24 for i in range(length)}


# Low episodes (day, first 5-minute slot, readings, value), most of them around one time of day so
# that patterns do occur.
lows = st.integers(0, 287).flatmap(
    lambda base: st.lists(
        st.tuples(
            st.integers(0, 13),
            st.one_of(st.integers(base - 12, base + 12), st.integers(0, 287)),
            st.integers(1, 30),
            st.floats(40.0, 69.9),
        ),
        max_size=12,
    )
)
extra = st.lists(st.tuples(st.integers(0, 14 * 288 - 1), st.floats(70.0, 180.0)), min_size=1, max_size=300)


@given(lows, extra)
def test_adding_readings_in_range_never_creates_a_low_pattern(
    episodes: list[tuple[int, int, int, float]], added: list[tuple[int, float]]
) -> None:
    trace = Trace()
    for day, slot, length, value in episodes:
        start = max(0, day * 288 + slot)
        trace.values[start : start + length] = value
    before = _of(PatternKind.RECURRING_LOW, trace.patterns())
    at = np.array([i for i, _ in added], np.int64)
    times = np.concatenate([trace.times, trace.times[at] + 150_000])  # halfway between two readings
    values = np.concatenate([trace.values, np.array([v for _, v in added])])
    after = _of(
        PatternKind.RECURRING_LOW, find_patterns(times, values, first_day=FIRST_DAY, last_day=LAST_DAY)
    )
    if not before:
        assert after == []
    for pattern in after:  # every pattern left lies within one found before, on some of its days
        assert any(_hours(pattern) <= _hours(old) and set(pattern.days) <= set(old.days) for old in before), (
            pattern,
            before,
        )
