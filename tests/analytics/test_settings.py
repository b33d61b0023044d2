"""Pump settings: the canonical payload, calculator-derived schedules, observed basal, changes."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.analytics.settings import (
    BOUNDS,
    InvalidPumpSettingsError,
    PumpSettings,
    ScheduleEntry,
    SettingsChange,
    TargetEntry,
    calculator_settings,
    entry_at,
    merge_unchanged,
    observed_basal_schedule,
    parse_pump_settings,
    pump_settings_payload,
    settings_changes,
)

DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000
D0 = 20_000 * DAY  # a local day number far from the epoch

PAYLOAD: dict[str, Any] = {
    "active_schedule": "Standard",
    "basal_schedules": {
        "Standard": [
            {"start_min": 0, "rate_u_h": 0.8},
            {"start_min": 180, "rate_u_h": 0.95},
            {"start_min": 420, "rate_u_h": 1.05},
        ],
        "Weekend": [{"start_min": 0, "rate_u_h": 0.7}],
    },
    "carb_ratios": [{"start_min": 0, "g_per_u": 8.0}, {"start_min": 660, "g_per_u": 10.0}],
    "sensitivities": [{"start_min": 0, "mgdl_per_u": 45.0}, {"start_min": 1320, "mgdl_per_u": 55.0}],
    "targets": [{"start_min": 0, "low_mgdl": 100.0, "high_mgdl": 120.0}],
    "max_bolus_u": 10.0,
    "max_basal_u_h": 3.0,
    "insulin_duration_h": 4.0,
}


def _arrays(uses: list[tuple[int, float, float, float, float]]) -> tuple[np.ndarray, ...]:
    """(local ms, carb ratio, sensitivity, target low, target high) per use, as arrays."""
    columns = list(zip(*uses, strict=True)) if uses else [(), (), (), (), ()]
    return (np.array(columns[0], np.int64), *(np.array(c, np.float64) for c in columns[1:]))


# -- the canonical payload ---------------------------------------------------------------------------


def test_parse_reads_every_field() -> None:
    settings = parse_pump_settings(PAYLOAD, D0 + 9 * HOUR)
    assert (settings.local_ms, settings.first_local_ms, settings.last_local_ms) == (D0 + 9 * HOUR,) * 3
    assert settings.source == "pump"
    assert settings.active_schedule == "Standard"
    assert settings.basal_schedules["Standard"] == (
        ScheduleEntry(0, 0.8),
        ScheduleEntry(180, 0.95),
        ScheduleEntry(420, 1.05),
    )
    assert settings.carb_ratios == (ScheduleEntry(0, 8.0), ScheduleEntry(660, 10.0))
    assert settings.targets == (TargetEntry(0, 100.0, 120.0),)
    assert (settings.max_bolus_u, settings.max_basal_u_h, settings.insulin_duration_h) == (10.0, 3.0, 4.0)
    assert pump_settings_payload(settings) == PAYLOAD


def test_missing_fields_are_not_set_and_the_payload_names_every_key() -> None:
    settings = parse_pump_settings({"carb_ratios": [{"start_min": 0, "g_per_u": 12}]}, D0)
    assert settings.carb_ratios == (ScheduleEntry(0, 12.0),)
    assert settings.basal_schedules == {}
    assert settings.basal_schedule == ()
    assert settings.max_bolus_u is None
    payload = pump_settings_payload(settings)
    assert set(payload) == set(PAYLOAD)
    assert payload["sensitivities"] == []
    assert parse_pump_settings(payload, D0) == settings
    assert not parse_pump_settings({}, D0).same_settings(settings)
    assert parse_pump_settings(payload, D0 + DAY).same_settings(settings)


def test_lookups_by_minute_of_the_day() -> None:
    settings = parse_pump_settings(PAYLOAD, D0)
    early, late = settings.at(0), settings.at(1439)
    assert (early.basal_u_h, early.carb_ratio_g_per_u, early.sensitivity_mgdl_per_u) == (0.8, 8.0, 45.0)
    assert (late.basal_u_h, late.carb_ratio_g_per_u, late.sensitivity_mgdl_per_u) == (1.05, 10.0, 55.0)
    assert (late.target_low_mgdl, late.target_high_mgdl) == (100.0, 120.0)
    assert settings.at(179).basal_u_h == 0.8
    assert settings.at(180).basal_u_h == 0.95
    assert settings.at(659).carb_ratio_g_per_u == 8.0
    assert settings.at(660).carb_ratio_g_per_u == 10.0
    assert entry_at(settings.carb_ratios, 700) == ScheduleEntry(660, 10.0)
    assert entry_at((), 700) is None
    # Without an active schedule, the only schedule is the one in force; with two, none is.
    only = parse_pump_settings({"basal_schedules": {"A": [{"start_min": 0, "rate_u_h": 1.2}]}}, D0)
    assert only.at(600).basal_u_h == 1.2
    two = parse_pump_settings({**PAYLOAD, "active_schedule": None}, D0)
    assert two.at(600).basal_u_h is None
    with pytest.raises(ValueError, match="minute"):
        settings.at(1440)


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(PAYLOAD)
    target: Any = payload
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["carb_ratio"], [], "carb_ratio"),
        (["carb_ratios", 0, "start_min"], 30, "carb_ratios[0].start_min"),
        (["carb_ratios", 1, "start_min"], 0, "carb_ratios[1].start_min"),
        (["carb_ratios", 1, "start_min"], 1440, "carb_ratios[1].start_min"),
        (["carb_ratios", 1, "start_min"], 660.0, "carb_ratios[1].start_min"),
        (["carb_ratios", 1, "start_min"], True, "carb_ratios[1].start_min"),
        (["carb_ratios", 1, "g_per_u"], 0.5, "carb_ratios[1].g_per_u"),
        (["carb_ratios", 1, "g_per_u"], 151, "carb_ratios[1].g_per_u"),
        (["carb_ratios", 1, "g_per_u"], "10", "carb_ratios[1].g_per_u"),
        (["carb_ratios", 1, "g_per_u"], math.nan, "carb_ratios[1].g_per_u"),
        (["carb_ratios", 1, "g_per_u"], _DELETE, "carb_ratios[1].g_per_u"),
        (["carb_ratios", 1, "ratio"], 10, "carb_ratios[1].ratio"),
        (["carb_ratios", 1], 10, "carb_ratios[1]"),
        (["carb_ratios"], {"start_min": 0}, "carb_ratios"),
        (["sensitivities", 0, "mgdl_per_u"], 4, "sensitivities[0].mgdl_per_u"),
        (["sensitivities", 1, "mgdl_per_u"], 601, "sensitivities[1].mgdl_per_u"),
        (["targets", 0, "low_mgdl"], 39, "targets[0].low_mgdl"),
        (["targets", 0, "high_mgdl"], 301, "targets[0].high_mgdl"),
        (["targets", 0, "low_mgdl"], 130, "targets[0].low_mgdl"),
        (["basal_schedules", "Standard", 2, "rate_u_h"], -0.1, "basal_schedules.Standard[2].rate_u_h"),
        (["basal_schedules", "Standard", 2, "rate_u_h"], 36, "basal_schedules.Standard[2].rate_u_h"),
        (["basal_schedules", "Weekend"], [], "basal_schedules.Weekend"),
        (["basal_schedules"], [], "basal_schedules"),
        (["active_schedule"], "Holiday", "active_schedule"),
        (["max_bolus_u"], 0, "max_bolus_u"),
        (["max_bolus_u"], 101, "max_bolus_u"),
        (["max_basal_u_h"], 36, "max_basal_u_h"),
        (["insulin_duration_h"], 0.5, "insulin_duration_h"),
        (["insulin_duration_h"], 11, "insulin_duration_h"),
    ],
)
def test_invalid_payloads_name_the_field(path: list[Any], value: Any, field: str) -> None:
    with pytest.raises(InvalidPumpSettingsError) as caught:
        parse_pump_settings(_broken(path, value), D0)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"pumpSettings {field}: ")
    assert isinstance(caught.value, ValueError)


def test_a_zero_basal_rate_is_valid_and_values_never_reach_messages() -> None:
    assert parse_pump_settings(_broken(["basal_schedules", "Weekend", 0, "rate_u_h"], 0), D0)
    with pytest.raises(InvalidPumpSettingsError) as caught:
        parse_pump_settings(_broken(["carb_ratios", 1, "g_per_u"], 151.25), D0)
    assert "151.25" not in str(caught.value)
    with pytest.raises(InvalidPumpSettingsError, match="payload"):
        parse_pump_settings([], D0)  # type: ignore[arg-type]


def _schedule(values: st.SearchStrategy[float]) -> st.SearchStrategy[list[tuple[int, float]]]:
    return st.lists(st.tuples(st.integers(1, 1439), values), max_size=6, unique_by=lambda e: e[0]).flatmap(
        lambda rest: st.tuples(values).map(lambda first: sorted([(0, first[0]), *rest]))
    )


def _within(key: str, *, zero: bool = True) -> st.SearchStrategy[float]:
    low, high = BOUNDS[key]
    numbers = st.floats(low, high, allow_nan=False)
    return numbers if zero else numbers.filter(lambda v: v > 0)


@st.composite
def pump_settings(draw: st.DrawFn) -> PumpSettings:
    names = draw(st.lists(st.text(min_size=1, max_size=8).filter(str.strip), max_size=3, unique=True))
    schedules = {
        name: tuple(ScheduleEntry(s, v) for s, v in draw(_schedule(_within("rate_u_h")))) for name in names
    }
    targets = []
    for start, low in draw(_schedule(_within("target_mgdl"))):
        targets.append(TargetEntry(start, low, draw(st.floats(low, BOUNDS["target_mgdl"][1]))))
    optional = st.none()
    at = draw(st.integers(-(10**12), 10**13))
    return PumpSettings(
        local_ms=at,
        source="pump",
        first_local_ms=at,
        last_local_ms=at,
        active_schedule=draw(st.none() | st.sampled_from(names)) if names else None,
        basal_schedules=schedules,
        carb_ratios=tuple(ScheduleEntry(s, v) for s, v in draw(st.just([]) | _schedule(_within("g_per_u")))),
        sensitivities=tuple(
            ScheduleEntry(s, v) for s, v in draw(st.just([]) | _schedule(_within("mgdl_per_u")))
        ),
        targets=tuple(targets) if draw(st.booleans()) else (),
        max_bolus_u=draw(optional | _within("max_bolus_u", zero=False)),
        max_basal_u_h=draw(optional | _within("max_basal_u_h", zero=False)),
        insulin_duration_h=draw(optional | _within("insulin_duration_h")),
    )


@given(settings=pump_settings())
def test_parse_and_payload_round_trip(settings: PumpSettings) -> None:
    payload = pump_settings_payload(settings)
    again = parse_pump_settings(payload, settings.local_ms)
    assert again == settings
    assert pump_settings_payload(again) == payload


@given(settings=pump_settings(), minute=st.integers(0, 1439))
def test_the_entry_in_force_is_the_last_that_started(settings: PumpSettings, minute: int) -> None:
    in_force = settings.at(minute)
    started = [e for e in settings.carb_ratios if e.start_min <= minute]
    assert in_force.carb_ratio_g_per_u == (started[-1].value if started else None)
    targets = [e for e in settings.targets if e.start_min <= minute]
    assert in_force.target_high_mgdl == (targets[-1].high_mgdl if targets else None)


# -- settings derived from the bolus calculator ------------------------------------------------------

# The pump's calculator: carb ratio 8 g/U from 00:00, 10 from 11:00, 9 from 17:00 (12 from day 5
# on, the change); sensitivity 40 then 50 from 11:00; target 100-120, 110-130 from 21:00.
TIMES = (7 * 60 + 40, 12 * 60 + 15, 15 * 60 + 5, 18 * 60 + 50, 21 * 60 + 45)


def _truth(day: int, minute: int) -> tuple[float, float, float, float]:
    lunch = 12.0 if day >= 5 else 10.0
    ratio = 8.0 if minute < 660 else lunch if minute < 1020 else 9.0
    isf = 40.0 if minute < 660 else 50.0
    low, high = (100.0, 120.0) if minute < 1260 else (110.0, 130.0)
    return ratio, isf, low, high


def _uses(days: range, times: tuple[int, ...] = TIMES) -> list[tuple[int, float, float, float, float]]:
    return [(D0 + d * DAY + m * MINUTE, *_truth(d, m)) for d in days for m in times]


def test_a_time_of_day_schedule_and_one_change() -> None:
    uses = _uses(range(10))
    uses.append((D0 + 3 * DAY + 9 * HOUR, math.nan, 40.0, math.nan, math.nan))  # a correction: no ratio
    snapshots = calculator_settings(*_arrays(uses[::-1]))  # any order
    assert len(snapshots) == 2
    before, after = snapshots
    assert before.source == after.source == "calculator"
    assert (before.local_ms, before.first_local_ms, before.last_local_ms) == (D0, D0, D0 + 4 * DAY)
    assert (after.local_ms, after.first_local_ms, after.last_local_ms) == (D0 + 5 * DAY,) * 2 + (
        D0 + 9 * DAY,
    )
    # Entries start at the first use of their value, rounded down to the half hour.
    assert before.carb_ratios == (ScheduleEntry(0, 8.0), ScheduleEntry(720, 10.0), ScheduleEntry(1110, 9.0))
    assert after.carb_ratios == (ScheduleEntry(0, 8.0), ScheduleEntry(720, 12.0), ScheduleEntry(1110, 9.0))
    assert before.sensitivities == after.sensitivities == (ScheduleEntry(0, 40.0), ScheduleEntry(720, 50.0))
    assert before.targets == (TargetEntry(0, 100.0, 120.0), TargetEntry(1290, 110.0, 130.0))
    assert (before.basal_schedules, before.max_bolus_u, before.insulin_duration_h) == ({}, None, None)

    changes = settings_changes(snapshots)
    assert changes == [SettingsChange(D0 + 5 * DAY, "carb ratio from 12:00", "10 g/U", "12 g/U")]
    assert str(changes[0]) == "carb ratio from 12:00: 10 g/U → 12 g/U"


def test_days_that_skip_meals_and_partial_days_agree() -> None:
    # Day 0 starts at 17:00 (an export's first day), day 2 skips lunch, day 3 has only breakfast;
    # uses at other times of day than before agree as long as they match their neighbours.
    uses = (
        _uses(range(1), TIMES[3:])
        + _uses(range(1, 2))
        + _uses(range(2, 3), (8 * 60, 19 * 60 + 30))
        + _uses(range(3, 4), (7 * 60 + 5,))
        + _uses(range(4, 5), (10 * 60 + 55, 11 * 60 + 20, 16 * 60, 17 * 60 + 45))
    )
    (only,) = calculator_settings(*_arrays(uses))
    # Breakfast seen until 10:55 and lunch from 11:20: lunch from 11:00; dinner from 17:45: 17:30.
    assert only.carb_ratios == (ScheduleEntry(0, 8.0), ScheduleEntry(660, 10.0), ScheduleEntry(1050, 9.0))
    assert (only.first_local_ms, only.last_local_ms) == (D0, D0 + 4 * DAY)


def test_a_value_changed_near_earlier_uses_starts_a_snapshot_and_unused_entries_persist() -> None:
    # Days 0-2 see every entry; day 3 has only a lunch at 11:50, earlier than any lunch before
    # but within an hour of them, with the changed ratio 12: a new snapshot, which keeps the
    # breakfast, dinner and late-evening entries it did not see. Both place the lunch boundary
    # between 07:40 and 11:50, so they share it.
    uses = [*_uses(range(3)), (D0 + 3 * DAY + (11 * 60 + 50) * MINUTE, 12.0, 50.0, 100.0, 120.0)]
    before, after = calculator_settings(*_arrays(uses))
    assert after.first_local_ms == D0 + 3 * DAY
    assert before.carb_ratios == (ScheduleEntry(0, 8.0), ScheduleEntry(690, 10.0), ScheduleEntry(1110, 9.0))
    assert after.carb_ratios == (ScheduleEntry(0, 8.0), ScheduleEntry(690, 12.0), ScheduleEntry(1110, 9.0))
    assert after.targets == before.targets
    assert [str(c) for c in settings_changes([before, after])] == ["carb ratio from 11:30: 10 g/U → 12 g/U"]
    # A lunch more than an hour before any lunch seen is taken for an entry not seen before.
    early = [*_uses(range(3)), (D0 + 3 * DAY + (10 * 60 + 50) * MINUTE, 12.0, 50.0, 100.0, 120.0)]
    (only,) = calculator_settings(*_arrays(early))
    assert [e.value for e in only.carb_ratios] == [8.0, 12.0, 10.0, 9.0]


def test_identical_days_are_one_snapshot_and_implausible_values_are_not_recorded() -> None:
    uses = _uses(range(3))
    uses.append((D0 + HOUR, 0.0, 0.0, 0.0, 0.0))  # a pump writes 0 for a field it does not use
    uses.append((D0 + 2 * HOUR, math.nan, math.nan, math.nan, 115.0))  # one target bound: both
    (only,) = calculator_settings(*_arrays(uses))
    assert only.targets[0] == TargetEntry(0, 115.0, 115.0)
    assert only.carb_ratios[0] == ScheduleEntry(0, 8.0)
    assert calculator_settings(*_arrays([])) == []
    assert calculator_settings(*_arrays([(D0, math.nan, math.nan, math.nan, math.nan)])) == []
    with pytest.raises(ValueError, match="length"):
        calculator_settings(np.zeros(2, np.int64), *(np.zeros(1) for _ in range(4)))


@st.composite
def day_schedules(draw: st.DrawFn) -> tuple[list[tuple[int, float]], list[list[int]]]:
    """A carb ratio schedule with distinct neighbouring values, and per day one or more use times
    in each entry."""
    starts = sorted(draw(st.sets(st.integers(1, 1439 - 60), max_size=4)) | {0})
    starts = [s for i, s in enumerate(starts) if i == 0 or s - starts[i - 1] >= 30]
    values: list[float] = []
    for _ in starts:
        values.append(
            draw(st.sampled_from([v for v in (6.0, 8.0, 10.0, 12.0, 15.0) if not values or v != values[-1]]))
        )
    ends = [*starts[1:], 1440]
    days = draw(st.integers(1, 6))
    times = [
        sorted(
            {
                m
                for s, e in zip(starts, ends, strict=True)
                for m in draw(st.lists(st.integers(s, e - 1), min_size=1, max_size=2))
            }
        )
        for _ in range(days)
    ]
    return list(zip(starts, values, strict=True)), times


@given(case=day_schedules())
def test_unchanged_settings_seen_every_day_are_one_snapshot_that_holds_every_use(
    case: tuple[list[tuple[int, float]], list[list[int]]],
) -> None:
    schedule, times = case

    def truth(minute: int) -> float:
        return [v for s, v in schedule if s <= minute][-1]

    uses = [
        (D0 + d * DAY + m * MINUTE, truth(m), 50.0, 100.0, 120.0) for d, day in enumerate(times) for m in day
    ]
    (only,) = calculator_settings(*_arrays(uses))
    assert [e.value for e in only.carb_ratios] == [v for _, v in schedule]
    for _, minute in (divmod(u[0] - D0, DAY) for u in uses):
        assert only.at(minute // MINUTE).carb_ratio_g_per_u == truth(minute // MINUTE)
    assert settings_changes([only]) == []


@given(
    times=st.lists(st.lists(st.integers(0, 1439), min_size=1, max_size=6), min_size=1, max_size=8),
    change_day=st.integers(0, 8),
    new=st.sampled_from([7.0, 11.0, 14.0]),
)
def test_every_use_is_in_its_snapshot(times: list[list[int]], change_day: int, new: float) -> None:
    def truth(day: int, minute: int) -> float:
        if minute < 600:
            return 9.0
        return new if day >= change_day and minute < 1080 else 10.0 if minute < 1080 else 12.0

    uses = [
        (D0 + d * DAY + m * MINUTE, truth(d, m), 50.0, 100.0, 120.0)
        for d, day in enumerate(times)
        for m in day
    ]
    snapshots = calculator_settings(*_arrays(uses))
    assert [s.first_local_ms for s in snapshots] == sorted({s.first_local_ms for s in snapshots})
    for at, ratio, *_ in uses:
        day = (at - D0) // DAY
        covering = [s for s in snapshots if s.first_local_ms <= D0 + day * DAY <= s.last_local_ms]
        assert len(covering) == 1
        assert covering[0].at((at - D0 - day * DAY) // MINUTE).carb_ratio_g_per_u == ratio


# -- observed basal schedule -------------------------------------------------------------------------

SCHEDULE = [(0, 0.8), (180, 0.95), (420, 1.05), (720, 0.85), (1200, 0.9)]


def _basal_days(days: int, *, last_open: bool = True) -> list[tuple[int, int, float, bool]]:
    """Scheduled segments as a CareLink log has them: one per schedule entry, each running to the
    next, the last without a duration."""
    starts = [D0 + d * DAY + s * MINUTE for d in range(days) for s, _ in SCHEDULE]
    rates = [r for _ in range(days) for _, r in SCHEDULE]
    segments = [(s, e - s, r, True) for s, e, r in zip(starts, starts[1:], rates, strict=False)]
    segments.append((starts[-1], -1 if last_open else D0 + days * DAY - starts[-1], rates[-1], True))
    return segments


def _observed(segments: list[tuple[int, int, float, bool]], **kwargs: Any) -> tuple[ScheduleEntry, ...]:
    return observed_basal_schedule(
        np.array([s[0] for s in segments], np.int64),
        np.array([s[1] for s in segments], np.int64),
        np.array([s[2] for s in segments], np.float64),
        np.array([s[3] for s in segments], np.bool_),
        **kwargs,
    )


def test_the_schedule_of_the_most_recent_complete_day() -> None:
    expected = tuple(ScheduleEntry(s, r) for s, r in SCHEDULE)
    # The first day starts at midnight; the last one's final segment has no end: days 0 and 1.
    assert _observed(_basal_days(3)) == expected
    # A temp basal on day 1 (14:00-15:00) interrupts the schedule there: day 0 is the latest
    # complete one; a changed rate on day 0 shows.
    segments = [s for s in _basal_days(3) if s[0] != D0 + 420 * MINUTE]
    segments.append((D0 + 420 * MINUTE, 300 * MINUTE, 1.2, True))
    segments.append((D0 + DAY + 14 * HOUR, HOUR, 2.0, False))
    observed = _observed(segments)
    assert observed[2] == ScheduleEntry(420, 1.2)
    # ``within`` keeps the days wholly inside it.
    assert _observed(_basal_days(3), within=(D0 + DAY, D0 + 3 * DAY)) == expected
    assert _observed(_basal_days(3), within=(D0 + DAY + 1, D0 + 3 * DAY)) == ()
    assert _observed(_basal_days(1)) == ()
    assert _observed(_basal_days(1, last_open=False)) == expected
    assert _observed([]) == ()


def test_equal_neighbouring_rates_are_one_entry_and_unknown_durations_run_to_the_next() -> None:
    segments = [
        (D0, -1, 1.0, True),
        (D0 + 6 * HOUR, -1, 1.0, True),  # a segment restarted at the same rate
        (D0 + 12 * HOUR, 12 * HOUR, 1.5, True),
        (D0 + DAY, -1, 1.0, True),
    ]
    assert _observed(segments) == (ScheduleEntry(0, 1.0), ScheduleEntry(720, 1.5))


# -- changes -----------------------------------------------------------------------------------------


def test_changes_field_by_field() -> None:
    first = parse_pump_settings(PAYLOAD, D0)
    changed = copy.deepcopy(PAYLOAD)
    changed["active_schedule"] = "Weekend"
    changed["basal_schedules"]["Standard"][1]["rate_u_h"] = 1.0
    changed["basal_schedules"]["Weekend"] = [
        {"start_min": 0, "rate_u_h": 0.7},
        {"start_min": 360, "rate_u_h": 0.9},
    ]
    changed["basal_schedules"]["Sick day"] = [{"start_min": 0, "rate_u_h": 1.5}]
    changed["carb_ratios"] = [{"start_min": 0, "g_per_u": 8.0}, {"start_min": 690, "g_per_u": 10.0}]
    changed["sensitivities"] = []
    changed["targets"][0]["high_mgdl"] = 140.0
    changed["max_bolus_u"] = 12.5
    changed["max_basal_u_h"] = None
    second = parse_pump_settings(changed, D0 + 3 * DAY)
    changes = settings_changes([second, first])  # any order
    assert {c.local_ms for c in changes} == {D0 + 3 * DAY}
    assert [str(c) for c in changes] == [
        "active basal schedule: Standard → Weekend",
        'basal schedule "Sick day": not set → 00:00 1.5 U/h',
        'basal schedule "Standard" from 03:00: 0.95 U/h → 1 U/h',
        'basal schedule "Weekend" from 06:00: no entry → 0.9 U/h',
        "carb ratio from 11:00: 10 g/U → no entry",
        "carb ratio from 11:30: no entry → 10 g/U",
        "sensitivities: 00:00 45 mg/dL/U, 22:00 55 mg/dL/U → not set",
        "target from 00:00: 100–120 mg/dL → 100–140 mg/dL",
        "max bolus: 10 U → 12.5 U",
        "max basal: 3 U/h → not set",
    ]
    mmol = settings_changes([first, second], glucose_unit="mmol/L")
    assert "target from 00:00: 5.6–6.7 mmol/L → 5.6–7.8 mmol/L" in [str(c) for c in mmol]
    assert "sensitivities: 00:00 2.5 mmol/L/U, 22:00 3.1 mmol/L/U → not set" in [str(c) for c in mmol]
    assert settings_changes([first]) == []
    assert settings_changes([]) == []


def test_repeated_identical_snapshots_merge() -> None:
    first = parse_pump_settings(PAYLOAD, D0)
    again = parse_pump_settings(PAYLOAD, D0 + DAY)
    other = parse_pump_settings({**PAYLOAD, "max_bolus_u": 8.0}, D0 + 2 * DAY)
    last = parse_pump_settings({**PAYLOAD, "max_bolus_u": 8.0}, D0 + 5 * DAY)
    merged = merge_unchanged([last, other, again, first])
    assert [(s.local_ms, s.first_local_ms, s.last_local_ms) for s in merged] == [
        (D0, D0, D0 + DAY),
        (D0 + 2 * DAY, D0 + 2 * DAY, D0 + 5 * DAY),
    ]
    assert [str(c) for c in settings_changes(merged)] == ["max bolus: 10 U → 8 U"]
