"""A plain Glooko CGM member read column by column gives exactly what reading it row by row gives.

A member without quotes, with one row per line and the same cells on every line, is cut into
columns with NumPy (:mod:`glucoshare.ingest.plain_columns`); any other is read row by row. These
tests read the same members both ways and compare everything that comes out: the records in the
order they are handed over, the rejected rows and their reasons, the devices in the order they were
met, the daylight-saving counts, and the error a member is refused with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from glucoshare.errors import InputError
from glucoshare.ingest import glooko
from glucoshare.ingest.base import ParseContext, SourceText, each_record
from glucoshare.ingest.glooko import GlookoImporter
from tests.ingest import streaming

ZONE = "Europe/Berlin"
META = "Name:Test Person,Date Range:2025-01-01 - 2025-12-31"
CGM_HEADER = "Timestamp,CGM Glucose Value (mg/dl),Serial Number"
AUTUMN_NIGHT = dt.datetime(2025, 10, 26, 1, 30)  # Europe/Berlin repeats 02:00-03:00 that night
FORMATS = ("%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M", "%m/%d/%Y %I:%M %p", "%Y-%m-%d %H:%M:%S")
ODD_STAMPS = (
    "2025-13-45 10:00",  # no such date
    "2025-01-01 25:00",  # no such time
    "2025-01-01",  # a date alone
    "2025-01-01T10:00",  # ISO with a T
    "",  # blank
    "soon",
    "2025-01-01  10:00",  # two spaces
    "2025-01-01 10:00 ",  # a space after
    " 2025-01-01 10:00",  # a space before
    "31/01/2025 10:00",  # day first with '/': refused
)
VALUES = ("148.0", "148", "72", "Low", "HIGH", "niedrig", "", "-5", "0", "abc", "39", "401", " 120 ", "5.5.5")
SERIALS = ("Dexcom G6", "Dexcom G6 ", "G7-4711", "", "Omnipod 5")


@dataclasses.dataclass(frozen=True)
class Reading:
    """What a parse gave, or the error it raised."""

    records: list[str]
    rejected: list[tuple[int, str]]
    devices: list[tuple[str, Any]]
    counts: tuple[int, int]
    error: str | None = None
    by_columns: bool = dataclasses.field(default=False, compare=False)


def _read(text: str, *, plain: bool, chunk: int) -> Reading:
    ctx = ParseContext(ZONE)
    with streaming.chunks_of(glooko, chunk), _plain(allowed=plain) as used:
        try:
            result = GlookoImporter().parse(SourceText("cgm_data_1.csv", text, "utf-8"), ctx)
            items = list(result.records)
        except InputError as exc:
            return Reading([], [], [], (0, 0), f"{type(exc).__name__}: {exc.message}", any(used))
    return Reading(
        [repr(dataclasses.astuple(record)) for record in each_record(items)],
        [(row.line, row.reason) for row in result.rejected],
        list(result.devices.items()),
        (ctx.skipped_hour_records, ctx.repeated_hour_records),
        by_columns=any(used),
    )


@contextlib.contextmanager
def _plain(*, allowed: bool) -> Iterator[list[bool]]:
    """Allow the column-by-column reading or not; lists, per member, whether it was taken."""
    before = glooko._FileReader._plain_cgm_rows
    taken: list[bool] = []

    def plain_cgm_rows(reader: glooko._FileReader, by_key: dict[str, Any]) -> Any:
        found = before(reader, by_key) if allowed else None
        taken.append(found is not None)
        return found

    glooko._FileReader._plain_cgm_rows = plain_cgm_rows  # type: ignore[method-assign]
    try:
        yield taken
    finally:
        glooko._FileReader._plain_cgm_rows = before  # type: ignore[method-assign]


def _member(rows: list[tuple[str, str, str]], *, newline: str, final: bool) -> str:
    lines = [META, CGM_HEADER, *(",".join(cells) for cells in rows)]
    return newline.join(lines) + (newline if final else "")


def _both_agree(text: str, chunk: int) -> Reading:
    by_columns = _read(text, plain=True, chunk=chunk)
    by_rows = _read(text, plain=False, chunk=chunk)
    assert by_columns == by_rows
    return by_columns


@st.composite
def members(draw: st.DrawFn) -> str:
    """A CGM member: readings every few minutes, some cells odd, in some order."""
    count = draw(st.integers(min_value=1, max_value=40))
    start = draw(st.sampled_from([dt.datetime(2025, 6, 1, 8), AUTUMN_NIGHT, dt.datetime(2025, 3, 30, 1, 40)]))
    layout = draw(st.sampled_from(FORMATS))
    step = draw(st.sampled_from([1, 5, 15]))
    serials = draw(st.lists(st.sampled_from(SERIALS), min_size=1, max_size=3))
    odd = draw(st.sampled_from([0, 0, 10, 40]))  # one row in this many has an odd stamp (0: none)
    rows = []
    for n in range(count):
        stamp = (start + dt.timedelta(minutes=step * n)).strftime(layout)
        if odd and draw(st.integers(min_value=1, max_value=odd)) == 1:
            stamp = draw(st.sampled_from(ODD_STAMPS))
        value = draw(st.sampled_from(VALUES)) if draw(st.booleans()) else str(40 + (n * 37) % 360)
        rows.append((stamp, value, serials[n % len(serials)]))
    order = draw(st.sampled_from(["newest first", "oldest first", "shuffled"]))
    if order == "newest first":
        rows.reverse()
    elif order == "shuffled":
        rows = draw(st.permutations(rows))
    return _member(rows, newline=draw(st.sampled_from(["\n", "\r\n"])), final=draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(text=members(), chunk=st.integers(min_value=1, max_value=9))
def test_reading_by_columns_gives_what_reading_by_rows_gives(text: str, chunk: int) -> None:
    reading = _both_agree(text, chunk)
    event("read by columns" if reading.by_columns else "read by rows")


def test_a_year_written_newest_first_is_read_by_columns() -> None:
    start = dt.datetime(2025, 1, 1)
    rows = [
        ((start + dt.timedelta(minutes=5 * n)).strftime("%Y-%m-%d %H:%M"), f"{40 + n % 360}.0", "Dexcom G6")
        for n in range(365 * 288)
    ][::-1]
    text = _member(rows, newline="\r\n", final=False)
    reading = _read(text, plain=True, chunk=4096)
    assert reading.by_columns
    assert len(reading.records) == len(rows)
    assert reading == _read(text, plain=False, chunk=4096)


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([("2025-06-01 08:00", '"5,5"', "G7")], "a quote"),
        ([("2025-06-01 08:00", "120", "G7", "extra")], "a row with a cell too many"),
        ([("2025-06-01 08:00", "120")], "a row with a cell too few"),
        ([("2025-06-01T08:00", "120", "G7")], "a stamp with a T"),
        ([("", "120", "G7")], "a blank stamp"),
    ],
)
def test_a_member_that_is_not_plain_is_read_row_by_row(rows: list[tuple[str, ...]], why: str) -> None:
    good = [("2025-06-01 07:55", "118", "G7"), ("2025-06-01 07:50", "117", "G7")]
    text = _member([*rows, *good], newline="\n", final=True)  # type: ignore[list-item]
    assert not _both_agree(text, 3).by_columns, why


def test_a_date_only_day_first_reading_refuses_the_member_naming_the_same_line() -> None:
    rows = [
        ("06/01/2025 08:00", "120", "G7"),
        ("31/05/2025 08:00", "121", "G7"),
        ("05/30/2025 08:00", "1", "G7"),
    ]
    reading = _both_agree(_member(rows, newline="\n", final=False), 2)
    assert reading.error is not None
    assert "line 4" in reading.error


def _lines(count: int) -> Iterator[tuple[str, str, str]]:
    start = dt.datetime(2025, 6, 1)
    for n in range(count):
        yield (start + dt.timedelta(minutes=5 * n)).strftime("%Y-%m-%d %H:%M"), str(100 + n), "G7"


def test_rejected_rows_come_in_file_order_with_their_reasons() -> None:
    rows = list(_lines(6))[::-1]
    rows[1] = (rows[1][0], "abc", "G7")
    rows[3] = ("2025-06-01 99:99", "120", "G7")
    rows[4] = (rows[4][0], "", "G7")
    reading = _both_agree(_member(rows, newline="\r\n", final=True), 2)
    assert reading.rejected == [
        (4, "CGM glucose value is not a number"),
        (6, glooko._BAD_TIMESTAMP),
        (7, "CGM row without a glucose value"),
    ]
    assert len(reading.records) == 3
