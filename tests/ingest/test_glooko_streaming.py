"""Glooko CGM readings handed over a chunk at a time give what the member read whole gives.

Readings on days without a daylight-saving change go as soon as their chunk of rows is read
(:data:`~glucoshare.ingest.glooko._CHUNK_ROWS`); the others, and any that a lagging device clock
reaches (then all of them again, after a :class:`~glucoshare.ingest.base.Restart`), at the end. With
a chunk larger than the file every reading goes at the end, as before: the tests compare the two.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.ingest import glooko
from glucoshare.ingest.base import ParseContext, ReadingBlock, SourceText
from glucoshare.ingest.glooko import GlookoImporter, _whole_lines
from tests.ingest import streaming
from tests.ingest.streaming import (
    AUTUMN,
    CHUNKS,
    EVERY_NTH,
    SPRING,
    ZONE,
    Outcome,
    Run,
    second_device,
    times_around_a_change,
    times_from,
)

IMPORTER = GlookoImporter()
META = "Name:Test Person,Date Range:2025-01-01 - 2025-12-31"
CGM_HEADER = "Timestamp,CGM Glucose Value (mg/dl),Serial Number"
WHOLE = 10**9


def _cgm(rows: list[tuple[dt.datetime | str, str, str]]) -> str:
    """A CGM member of ``(wall time or stamp text, value, serial)`` rows, as Glooko writes it."""
    lines = [META, CGM_HEADER]
    for when, value, serial in rows:
        stamp = when.strftime("%Y-%m-%d %H:%M") if isinstance(when, dt.datetime) else when
        lines.append(f"{stamp},{value},{serial}")
    return "\r\n".join(lines)


def _both(text: str, *, chunk: int) -> tuple[Outcome, Outcome]:
    """The member read in chunks of ``chunk`` rows, and whole; each from its end (oldest first)."""
    readings = []
    for rows in (chunk, WHOLE):
        with streaming.chunks_of(glooko, rows):
            readings.append(streaming.read(IMPORTER, text, "cgm_data_1.csv"))
    return readings[0], readings[1]


def _forwards(text: str, *, chunk: int) -> Outcome:
    """The member read in chunks from its first row, as a file that cannot be read from its end is."""
    backwards = glooko._FileReader._backwards
    glooko._FileReader._backwards = lambda _self, *_rows: False  # type: ignore[method-assign]
    try:
        with streaming.chunks_of(glooko, chunk):
            return streaming.read(IMPORTER, text, "cgm_data_1.csv")
    finally:
        glooko._FileReader._backwards = backwards  # type: ignore[method-assign]


def test_a_year_newest_first_goes_in_chunks_without_reading_again() -> None:
    # Hourly, as a device whose clock follows the changes writes them: no hour skipped stays, the
    # repeated hour comes twice.
    zone = zoneinfo.ZoneInfo(ZONE)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    times = [(start + dt.timedelta(hours=n)).astimezone(zone).replace(tzinfo=None) for n in range(365 * 24)]
    text = _cgm([(at, str(60 + n % 300), "Dexcom G6") for n, at in enumerate(times[::-1])])
    streamed, whole = _both(text, chunk=500)
    assert streamed == whole
    assert not streamed.restarted
    assert streamed.repeated == 2  # 02:00 and 02:00 again on the autumn day, hourly


def test_readings_of_a_clock_lagging_after_spring_forward_go_again() -> None:
    # Every five minutes from the evening before the change to the morning after the next, the
    # device clock never put forward: the readings of the next day lag too, and went first.
    times = times_from(SPRING - dt.timedelta(hours=2), 12 * 32)[::-1]
    text = _cgm([(at, "120", "Dexcom G6") for at in times])
    streamed, whole = _both(text, chunk=10)
    assert streamed.restarted
    assert streamed.standing() == whole
    assert whole.skipped > 12


def test_limits_words_and_unreadable_rows_in_chunks() -> None:
    times = times_from(AUTUMN - dt.timedelta(hours=5), 150)[::-1]
    rows: list[tuple[dt.datetime | str, str, str]] = []
    for n, at in enumerate(times):
        value = {3: "LO", 4: "HI", 5: "401", 6: "39", 7: "", 8: "abc", 9: "0"}.get(n % 25, str(80 + n % 90))
        stamp: dt.datetime | str = {11: "", 12: "31.02.2025 10:00", 13: at.strftime("%m/%d/%Y %H:%M")}.get(
            n % 25, at
        )
        rows.append((stamp, value, "FreeStyle Libre" if n % 17 == 0 else "Dexcom G6"))
    streamed, whole = _both(_cgm(rows), chunk=7)
    assert streamed == whole
    assert _forwards(_cgm(rows), chunk=7) == whole
    assert streamed.rejected
    assert len(streamed.devices) == 2


@settings(max_examples=150, deadline=None)
@given(times=times_around_a_change([1, 5, 20, 61], newest_first=True), chunk=CHUNKS, every_nth=EVERY_NTH)
def test_streamed_and_whole_readings_agree(times: list[dt.datetime], chunk: int, every_nth: int) -> None:
    """Any order of rows around a daylight-saving change: the same records, rejections and counts."""
    rows: list[tuple[dt.datetime | str, str, str]] = [
        (at, str(50 + n), "Eversense" if second_device(n, every_nth) else "Dexcom G6")
        for n, at in enumerate(times)
    ]
    streamed, whole = _both(_cgm(rows), chunk=chunk)
    assert streamed.standing() == whole
    assert _forwards(_cgm(rows), chunk=chunk).standing() == whole


def test_an_import_of_readings_that_go_again_stores_them_once(engine: Engine, settings: Settings) -> None:
    times = times_from(SPRING - dt.timedelta(hours=2), 12 * 32)[::-1]
    data = _cgm([(at, str(100 + at.minute), "Dexcom G6") for at in times]).encode()
    here, child, whole = streaming.stored(
        engine,
        settings,
        glooko,
        "cgm_data_1.csv",
        [Run(data, 10, in_child=False), Run(data, 10, in_child=True), Run(data, WHOLE, in_child=False)],
    )
    assert len(here[5]) == len(times)
    assert here == whole
    assert child == whole


def _block_times(text: str, *, chunk: int) -> list[int]:
    """The instants of the readings blocks in the order the importer hands them over."""
    with streaming.chunks_of(glooko, chunk):
        result = IMPORTER.parse(SourceText("cgm_data_1.csv", text, "utf-8"), ParseContext(ZONE))
        return [t for item in result.records if isinstance(item, ReadingBlock) for t in item.time_ms.tolist()]


def test_a_member_written_newest_first_is_handed_over_oldest_first() -> None:
    """Read from its end, chunk by chunk: the store appends each reading after the one before."""
    times = times_from(SPRING + dt.timedelta(days=2), 500)
    newest_first = _block_times(_cgm([(at, "120", "Dexcom G6") for at in times[::-1]]), chunk=64)
    assert len(newest_first) == 500
    assert np.all(np.diff(newest_first) > 0)
    # A file written oldest first (re-sorted by hand) is read from its start: oldest first too.
    assert _block_times(_cgm([(at, "120", "Dexcom G6") for at in times]), chunk=64) == newest_first


def test_a_member_with_a_line_break_inside_quotes_is_read_from_its_start() -> None:
    times = times_from(AUTUMN + dt.timedelta(days=2), 40)[::-1]
    rows: list[tuple[dt.datetime | str, str, str]] = [(at, "120", "Dexcom G6") for at in times]
    rows[5] = (times[5], "121", '"Dexcom\r\nG6"')  # a serial cell over two lines
    text = _cgm(rows)
    assert not _whole_lines(text)
    outcome = streaming.read(IMPORTER, text, "cgm_data_1.csv")
    assert len(outcome.records) == 40
    assert _forwards(text, chunk=7) == outcome


_CELLS = st.text(alphabet='ab,;"\r\n 1\u00e9', max_size=6)


@given(
    rows=st.lists(st.lists(_CELLS, min_size=1, max_size=4), min_size=1, max_size=12),
    tail=st.sampled_from(["", '"', '"x', "\n"]),
)
def test_whole_lines_is_true_exactly_when_each_line_is_one_row(rows: list[list[str]], tail: str) -> None:
    """:func:`_whole_lines` against the csv module reading the lines as an importer does.

    Only ``"\\n"`` ends a line (:meth:`SourceText.lines`); a ``"\\r"`` inside quotes is part of its cell.
    """
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    text = buffer.getvalue() + tail
    lines = list(SourceText("t.csv", text, "utf-8").lines())
    try:
        per_line = sum(1 for _ in csv.reader(lines, strict=True)) == len(lines)
    except csv.Error:  # the text ends inside quotes
        per_line = False
    assert _whole_lines(text) == per_line
