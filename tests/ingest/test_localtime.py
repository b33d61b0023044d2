"""Local wall time → UTC through daylight-saving changes."""

from __future__ import annotations

import datetime as dt
import zoneinfo

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
