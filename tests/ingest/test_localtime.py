"""Local wall time → UTC through daylight-saving changes."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.ingest.localtime import LocalClock

NY = zoneinfo.ZoneInfo("America/New_York")


def _walls(start: dt.datetime, minutes: int, count: int) -> list[dt.datetime]:
    return [start + dt.timedelta(minutes=minutes * i) for i in range(count)]


def _wall(utc_ms: int, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(utc_ms / 1000, tz=tz).replace(tzinfo=None)


def test_fall_back_repeated_hour_is_resolved_by_order() -> None:
    clock = LocalClock(NY)
    walls = _walls(dt.datetime(2025, 11, 2, 0, 30), 10, 9)  # 00:30 .. 01:50 (first pass)
    walls += _walls(dt.datetime(2025, 11, 2, 1, 0), 10, 6)  # 01:00 .. 01:50 again (second pass)
    walls += _walls(dt.datetime(2025, 11, 2, 2, 0), 10, 3)
    instants = [clock.resolve(w)[0] for w in walls]
    assert all(b - a == 600_000 for a, b in zip(instants, instants[1:], strict=False))
    assert clock.ambiguous == 12


def test_fall_back_with_a_device_clock_needs_no_order() -> None:
    utc_start = dt.datetime(2025, 11, 2, 4, 0, tzinfo=dt.UTC)  # 00:00 EDT
    samples = [utc_start + dt.timedelta(minutes=5 * i) for i in range(60)]
    rows = [(_wall(int(s.timestamp() * 1000), NY), 1000 + 300 * i) for i, s in enumerate(samples)]
    rows.sort(key=lambda r: r[0])  # sorted by wall time: the two passes interleave
    clock = LocalClock(NY)
    resolved = sorted(clock.resolve(wall, float(tx))[0] for wall, tx in rows)
    assert resolved == [int(s.timestamp() * 1000) for s in samples]


def test_spring_forward_skipped_hour_keeps_every_record() -> None:
    # A device whose clock was not put forward: 02:00..02:50 do not exist in New York that night.
    clock = LocalClock(NY)
    walls = _walls(dt.datetime(2025, 3, 9, 1, 30), 10, 12)  # 01:30 .. 03:20 on the device's clock
    walls += _walls(dt.datetime(2025, 3, 9, 4, 30), 10, 3)  # clock put forward at 08:30 UTC
    resolved = [clock.resolve(w) for w in walls]
    instants = [r[0] for r in resolved]
    assert all(b - a == 600_000 for a, b in zip(instants, instants[1:], strict=False))
    assert [r[1] for r in resolved[:12]] == [-300] * 12  # the device still on standard time
    assert [r[1] for r in resolved[12:]] == [-240] * 3
    assert clock.skipped_hour == 9


def test_spring_forward_on_time_needs_no_lag() -> None:
    clock = LocalClock(NY)
    walls = _walls(dt.datetime(2025, 3, 9, 1, 30), 10, 3) + _walls(dt.datetime(2025, 3, 9, 3, 0), 10, 3)
    instants = [clock.resolve(w)[0] for w in walls]
    assert all(b - a == 600_000 for a, b in zip(instants, instants[1:], strict=False))
    assert clock.skipped_hour == 0


def test_small_backward_jitter_does_not_switch_pass() -> None:
    clock = LocalClock(NY)
    first = clock.resolve(dt.datetime(2025, 11, 2, 1, 20, 30))
    second = clock.resolve(dt.datetime(2025, 11, 2, 1, 20, 10))  # 20 s earlier: log jitter
    assert first[1] == second[1] == -240


@given(
    st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2037, 12, 31)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
    ),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]),
)
def test_ordinary_times_match_zoneinfo(wall: dt.datetime, name: str) -> None:
    tz = zoneinfo.ZoneInfo(name)
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    clock = LocalClock(tz)
    utc_ms, offset = clock.resolve(wall)
    if first.utcoffset() == second.utcoffset():
        assert utc_ms == round(first.timestamp() * 1000)
        assert offset * 60 == first.utcoffset().total_seconds()  # type: ignore[union-attr]


_DST_EVES = [  # 22:00 on the day before a change
    dt.datetime(2025, 3, 8, 22),
    dt.datetime(2025, 11, 1, 22),
    dt.datetime(2025, 3, 29, 22),
    dt.datetime(2025, 10, 25, 22),
    dt.datetime(2025, 4, 5, 22),
]


@given(
    name=st.sampled_from(["America/New_York", "Europe/Berlin", "UTC", "Australia/Lord_Howe"]),
    start=st.sampled_from([dt.datetime(2025, 1, 20), *_DST_EVES]),
    steps=st.lists(st.integers(-90, 200), min_size=1, max_size=80),
    blocks=st.lists(st.integers(1, 20), min_size=1, max_size=6),
    device_clock=st.sampled_from(["none", "some", "all"]),
    shown_by=st.sampled_from(["zone", "steps"]),
)
def test_resolving_many_equals_resolving_one_by_one(
    name: str,
    start: dt.datetime,
    steps: list[int],
    blocks: list[int],
    device_clock: str,
    shown_by: str,
) -> None:
    """The vectorised path gives the same instants and leaves the clock in the same state.

    Wall times are either what a clock set to the zone shows for instants ``steps`` minutes apart
    (so the repeated and skipped hours appear as a device shows them), or ``steps`` applied to the
    wall time directly (any order, any gap).
    """
    tz = zoneinfo.ZoneInfo(name)
    epoch = dt.datetime(1970, 1, 1)
    instant = start.replace(tzinfo=tz).timestamp()
    walls, seconds = [], []
    wall = int((start - epoch).total_seconds() * 1000)
    for step in steps:
        if shown_by == "zone":
            instant += abs(step) * 60 + 60
            shown = dt.datetime.fromtimestamp(instant, tz).replace(tzinfo=None)
            walls.append(int((shown - epoch).total_seconds() * 1000))
        else:
            wall += step * 60_000
            walls.append(wall)
        seconds.append(instant - 1_700_000_000)
    ticks = [
        seconds[i] if device_clock == "all" or (device_clock == "some" and i % 3) else None
        for i in range(len(walls))
    ]
    one_by_one = LocalClock(tz)
    expected = [one_by_one.resolve_ms(w, t) for w, t in zip(walls, ticks, strict=True)]
    many = LocalClock(tz)
    got: list[tuple[int, int]] = []
    at = 0
    for size in [*blocks, len(walls)]:  # the rest in one last block
        chunk = walls[at : at + size]
        if chunk:
            instants, offsets = many.resolve_many(
                np.array(chunk, np.int64), lambda i, base=at: ticks[base + i]
            )
            got += zip(instants.tolist(), offsets.tolist(), strict=True)
        at += size
    assert got == expected
    assert (many.ambiguous, many.skipped_hour) == (one_by_one.ambiguous, one_by_one.skipped_hour)
    for probe in (walls[-1] + 5 * 60_000, walls[-1] - 50 * 60_000):
        tick = None if ticks[-1] is None else ticks[-1] + 300.0
        assert many.resolve_ms(probe, tick) == one_by_one.resolve_ms(probe, tick)


def test_a_block_before_the_repeated_hour_hands_its_device_clock_on() -> None:
    """The second pass of the repeated hour is told by the anchor the previous block left."""
    utc = [dt.datetime(2025, 11, 2, 3, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=10 * i) for i in range(6)]
    utc.append(dt.datetime(2025, 11, 2, 6, 30, tzinfo=dt.UTC))  # 01:30 EST: the second pass
    walls = [_ms(_wall(int(u.timestamp() * 1000), NY)) for u in utc]
    ticks = [u.timestamp() - 1_700_000_000 for u in utc]
    clock = LocalClock(NY)
    first, _ = clock.resolve_many(np.array(walls[:6], np.int64), lambda i: ticks[i])  # 23:00-23:50 EDT
    second, offsets = clock.resolve_many(np.array(walls[6:], np.int64), lambda i: ticks[6 + i])
    assert first.tolist() + second.tolist() == [int(u.timestamp() * 1000) for u in utc]
    assert offsets.tolist() == [-300]


def _ms(wall: dt.datetime) -> int:
    return int((wall - dt.datetime(1970, 1, 1)).total_seconds() * 1000)


def test_a_device_clock_that_stays_behind_keeps_lagging_into_the_next_day() -> None:
    """A device never put forward at spring-forward: the next day's block must keep the lag too."""
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    start = dt.datetime(2025, 3, 29, 22, 0, tzinfo=dt.UTC)  # 23:00 CET
    walls = [_ms(start.replace(tzinfo=None) + dt.timedelta(minutes=30 * i, hours=1)) for i in range(80)]
    one_by_one = LocalClock(berlin)
    expected = [one_by_one.resolve_ms(w) for w in walls]
    first_next_day = next(i for i, w in enumerate(walls) if w >= _ms(dt.datetime(2025, 3, 31)))
    many = LocalClock(berlin)
    got: list[tuple[int, int]] = []
    for chunk in (walls[:first_next_day], walls[first_next_day:]):
        instants, offsets = many.resolve_many(np.array(chunk, np.int64))
        got += zip(instants.tolist(), offsets.tolist(), strict=True)
    assert got == expected
    assert [b[0] - a[0] for a, b in itertools.pairwise(got)] == [1_800_000] * (len(walls) - 1)
