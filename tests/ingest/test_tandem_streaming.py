"""Tandem Source files read a chunk at a time give what the same files read whole give.

A CGM, BG or Basal-doses file without quotes is read :data:`~glucoshare.ingest.tandem_source._CHUNK_ROWS`
rows at a time, and each stream's records are handed over while its rows ascend; a stream that stops
ascending is checked at the end and, if the records handed over came out at other instants, the file
is read again (:class:`~glucoshare.ingest.base.Restart`). A quote anywhere in a file makes it read
whole, the way every file was read before: the tests compare the two readings of the same rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.ingest import tandem_source
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import inspect_file
from glucoshare.ingest.tandem_source import TandemSourceImporter
from glucoshare.uploader.plan import Source, prepare, read_records
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

SOURCE = TandemSourceImporter()
CGM_HEADER = "Device Type,Serial Number,Description,Event Date Time,Readings (mg/dL)"
MOBI = "Tandem Mobi™ System"


def chunks_of(rows: int) -> contextlib.AbstractContextManager[None]:
    """Tandem files read ``rows`` rows at a time."""
    return streaming.chunks_of(tandem_source, rows)


def _whole(text: str) -> str:
    """The same rows with the header's first name quoted: a file with a quote is read whole."""
    first, _, rest = text.partition(",")
    return f'"{first}",{rest}'


def _read(text: str, name: str = "X_1_01Jan2026_0000-CGM.csv") -> Outcome:
    return streaming.read(SOURCE, text, name)


def _both(text: str, *, chunk: int) -> tuple[Outcome, Outcome]:
    with chunks_of(chunk):
        return _read(text), _read(_whole(text))


def _stamp(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S")


def _cgm(rows: list[tuple[str, str, str, str]]) -> str:
    """A CGM file of ``(serial, description, stamp, value)`` rows ("" serial and stamp: a blank line)."""
    lines = [CGM_HEADER]
    for serial, description, stamp, value in rows:
        lines.append(f"{MOBI},{serial},{description},{stamp},{value}" if serial or stamp else "")
    return "\n".join(lines) + "\n"


def test_an_ascending_file_is_handed_over_as_it_is_read_and_never_read_again() -> None:
    walls = times_from(SPRING - dt.timedelta(hours=3), 100)  # through the skipped hour
    streamed, whole = _both(_cgm([("111", "EGV", _stamp(at), str(100 + at.minute)) for at in walls]), chunk=7)
    assert streamed == whole
    assert not streamed.restarted
    # The twelve rows in the skipped hour, and those after it while the device clock lagged on.
    assert streamed.skipped > 12


def test_the_repeated_hour_read_in_chunks_is_read_as_whole() -> None:
    first = times_from(AUTUMN + dt.timedelta(hours=1), 24)  # 01:00 to 02:55, the first pass
    second = times_from(AUTUMN + dt.timedelta(hours=2), 24)  # 02:00 to 03:55, the second pass
    rows = [("111", "EGV", _stamp(at), "120") for at in [*first, *second]]
    streamed, whole = _both(_cgm(rows), chunk=5)
    assert streamed == whole
    assert not streamed.restarted
    assert streamed.repeated == 24


def test_a_stream_that_stops_ascending_keeps_what_it_handed_over_when_that_holds() -> None:
    later = times_from(dt.datetime(2025, 6, 2), 30)
    earlier = times_from(dt.datetime(2025, 6, 1), 30)  # written after: the stream is sorted by wall time
    rows = [("111", "EGV", _stamp(at), "130") for at in [*later, *earlier]]
    streamed, whole = _both(_cgm(rows), chunk=8)
    assert streamed == whole
    assert not streamed.restarted


def test_a_file_is_read_again_when_a_lagging_clock_reaches_what_was_handed_over() -> None:
    # The rows after the skipped hour come first; the rows through it come after them. Sorted by
    # wall time, the device clock that had not moved forward lags on into the rows handed over
    # first, so they were resolved wrongly and the file is read again.
    after = times_from(SPRING + dt.timedelta(hours=3), 20)
    through = times_from(SPRING + dt.timedelta(hours=1), 24)  # 01:00 to 02:55: twelve rows in the gap
    rows = [("111", "EGV", _stamp(at), "140") for at in [*after, *through]]
    streamed, whole = _both(_cgm(rows), chunk=6)
    assert streamed.restarted
    assert streamed.standing() == whole


def test_several_pumps_unreadable_rows_and_blank_lines_in_chunks() -> None:
    walls = times_from(dt.datetime(2025, 3, 29, 22), 60)
    rows: list[tuple[str, str, str, str]] = []
    for at, wall in enumerate(walls):
        serial = "222" if at % 7 == 3 else "111"
        value = {5: "Low", 6: "High", 9: "", 11: "abc", 13: "-4", 17: "401"}.get(at, str(90 + at))
        stamp = {8: "", 12: "not a time", 14: wall.strftime("%m/%d/%Y %I:%M %p")}.get(at, _stamp(wall))
        description = {4: "BG", 10: "", 15: "Calibration"}.get(at, "EGV")
        rows.append((serial, description, stamp, value))
        if at % 13 == 0:
            rows.append(("", "", "", ""))
    rows.append(("  ", "EGV", _stamp(walls[-1]), "100"))  # no serial
    streamed, whole = _both(_cgm(rows), chunk=4)
    assert streamed == whole
    assert len(streamed.devices) == 2
    assert streamed.rejected


@settings(max_examples=150, deadline=None)
@given(times=times_around_a_change([1, 5, 20, 61]), chunk=CHUNKS, every_nth=EVERY_NTH)
def test_streamed_and_whole_readings_agree(times: list[dt.datetime], chunk: int, every_nth: int) -> None:
    """Any order of rows around a daylight-saving change: the same records, rejections and counts."""
    rows = [
        ("222" if second_device(at, every_nth) else "111", "EGV", _stamp(wall), str(60 + at))
        for at, wall in enumerate(times)
    ]
    streamed, whole = _both(_cgm(rows), chunk=chunk)
    assert streamed.standing() == whole


def test_an_import_that_reads_a_file_again_stores_it_once(engine: Engine, settings: Settings) -> None:
    """What the first reading stored is deleted; the upload is what the whole reading stores."""
    text = _read_again_file()
    data, whole_data = text.encode(), _whole(text).encode()
    here, child, whole = streaming.stored(
        engine,
        settings,
        tandem_source,
        "X_1_01Jan2026_0000-CGM.csv",
        [Run(data, 6, in_child=False), Run(data, 6, in_child=True), Run(whole_data, 6, in_child=False)],
    )
    assert len(here[5]) == 44
    assert here == whole
    assert child == whole


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_a_year_of_simulated_readings_in_chunks(chunk: int) -> None:
    walls = (
        times_from(dt.datetime(2025, 1, 1), 2 * 288, 5) + times_from(SPRING, 288) + times_from(AUTUMN, 288)
    )
    rows = [("111", "EGV", _stamp(wall), str(70 + at % 200)) for at, wall in enumerate(walls)]
    streamed, whole = _both(_cgm(rows), chunk=chunk)
    assert streamed == whole


def _read_again_file() -> str:
    """A CGM file whose first reading is withdrawn (see the test above)."""
    after = times_from(SPRING + dt.timedelta(hours=3), 20)
    through = times_from(SPRING + dt.timedelta(hours=1), 24)
    return _cgm([("111", "EGV", _stamp(at), str(100 + at.minute)) for at in [*after, *through]])


def test_an_inspection_counts_a_file_read_again_once(settings: Settings) -> None:
    text = _read_again_file()
    with chunks_of(6):
        seen = [
            inspect_file(settings, IncomingFile("X_1_01Jan2026_0000-CGM.csv", data.encode()), timezone=ZONE)
            for data in (text, _whole(text))
        ]
    assert seen[0] == seen[1]
    assert seen[0].records == 44


def test_the_uploader_plans_a_file_read_again_once(settings: Settings) -> None:
    text = _read_again_file()
    plans = []
    with chunks_of(6):
        for data in (text, _whole(text)):
            incoming = IncomingFile("X_1_01Jan2026_0000-CGM.csv", data.encode())
            (prepared,) = prepare(settings, Source("X.csv", [incoming])).files
            plan = read_records(prepared, timezone=ZONE)
            plans.append((plan.records, [(d.key, d.count) for d in plan.devices], plan.rejected_rows))
    assert plans[0] == plans[1]
    assert plans[0][0] == 44


DOSES_HEADER = "Device Type,Serial Number,Event Date Time,Commanded Basal Dose (units of insulin)"


def _doses(rows: list[tuple[str, str, str]]) -> str:
    """A Basal-doses file of ``(serial, stamp, dose)`` rows ("" serial and stamp: a blank line)."""
    lines = [DOSES_HEADER]
    for serial, stamp, dose in rows:
        lines.append(f"{MOBI},{serial},{stamp},{dose}" if serial or stamp else "")
    return "\n".join(lines) + "\n"


def test_doses_are_handed_over_in_chunks_with_the_segments_of_a_whole_reading() -> None:
    walls = times_from(SPRING - dt.timedelta(hours=2), 80) + times_from(
        SPRING + dt.timedelta(hours=12), 10, 11
    )
    rows = [("111", _stamp(wall), f"{0.02 + at % 9 / 100:.3f}") for at, wall in enumerate(walls)]
    rows[20] = ("111", _stamp(walls[20]), "5")  # 60 U/h over its five minutes: rejected
    rows[30] = ("111", _stamp(walls[30]), "")
    rows.insert(41, ("111", _stamp(walls[40]), "0.03"))  # two doses at one instant
    streamed, whole = _both(_doses(rows), chunk=7)
    assert streamed == whole
    assert not streamed.restarted
    assert len(streamed.rejected) == 2


def test_a_dose_written_out_of_order_within_what_was_handed_over_reads_the_file_again() -> None:
    walls = times_from(dt.datetime(2025, 6, 1), 12, 10)
    late = dt.datetime(2025, 6, 1, 0, 5)  # between the first two doses, which went with their segments
    rows = [("111", _stamp(wall), "0.05") for wall in [*walls, late]]
    streamed, whole = _both(_doses(rows), chunk=4)
    assert streamed.restarted
    assert streamed.standing() == whole


@settings(max_examples=150, deadline=None)
@given(
    times=times_around_a_change([0, 1, 5, 11, 61]),
    chunk=CHUNKS,
    every_nth=EVERY_NTH,
    doses=st.lists(st.sampled_from(["0.05", "0.1", "0", "4.5", "", "x", "-1"]), min_size=60, max_size=60),
)
def test_streamed_and_whole_doses_agree(
    times: list[dt.datetime], chunk: int, every_nth: int, doses: list[str]
) -> None:
    """Any order of doses around a daylight-saving change: the same records, rejections and counts."""
    rows = [
        ("222" if second_device(at, every_nth) else "111", _stamp(wall), doses[at])
        for at, wall in enumerate(times)
    ]
    streamed, whole = _both(_doses(rows), chunk=chunk)
    assert streamed.standing() == whole
