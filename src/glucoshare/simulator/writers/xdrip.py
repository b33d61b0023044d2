"""Write a simulated timeline as an xDrip+ CSV export in SiDiary format (research/formats.md §10).

The app writes ``DAY;TIME;UDT_CGMS;BG_LEVEL;CH_GR;BOLUS;REMARK`` and then three blocks, each in
time order: every CGM reading (``dd.MM.yyyy;HH:mm;<mg/dL>;;;;``, the value clamped to 39–400 as
xDrip+ clamps it and rounded half up), every calibration (``;<mg/dL>;;;``), every treatment
(``;;<carbs>;<insulin>;<remark>``, numbers as Android's ``%g`` writes them). Times are the phone's
wall time without seconds, LF line ends, no BOM. What is written, from the timeline:

* CGM readings → UDT_CGMS; ``fingerstick`` events → BG_LEVEL (the app's calibrations);
* ``carbs`` → CH_GR; ``pen_rapid``, ``pen_long`` and pump ``bolus`` doses → BOLUS;
* ``exercise`` and ``health`` events → REMARK (a note).

:class:`XDripOptions` lists the variants. The expected records are what an importer reads back:
times floored to the minute, the first CGM reading of a minute only (later ones of the same
minute are left out by the reader), LOW/HIGH annotated. A row in the hour repeated at a
fall-back change is written only where its block's order lets a reader place it in the right
pass; one that no reader could place (a treatment in the second pass with none in the first) is
left out of the file.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import io
import math
import zipfile
import zoneinfo

from glucoshare.ingest.localtime import LocalClock, wall_ms
from glucoshare.simulator.timeline import Event, Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

HEADER = "DAY;TIME;UDT_CGMS;BG_LEVEL;CH_GR;BOLUS;REMARK"
OLD_HEADER = "DAY;TIME;UDT_CGMS"
LOW_MGDL = 39
HIGH_MGDL = 400
MINUTE_MS = 60_000
COMBINE_WITHIN_MS = 15 * MINUTE_MS
DUPLICATE_EVERY = 40


@dataclasses.dataclass(frozen=True, slots=True)
class XDripOptions:
    """Variants of the xDrip+ export."""

    old_header: bool = False
    """The 3-column header of very old versions (``DAY;TIME;UDT_CGMS``): CGM rows only."""
    crlf: bool = False
    """CRLF line ends (the file re-saved on Windows)."""
    duplicates: bool = False
    """Every 40th CGM row written twice (the phone's database held the reading twice)."""
    combine_treatments: bool = False
    """A dose within 15 minutes after a meal goes into the meal's row (one treatment with carbs
    and insulin, as the app's bolus wizard saves it), at the meal's time."""
    tricky_remarks: bool = False
    """Remarks with ``;`` and a line break (written ``||``, as the app does)."""
    zipped: bool = False
    """The ``exportCSV<stamp>.zip`` the app writes, holding ``export<stamp>.csv``."""


def _round_half_up(value: float) -> int:
    """Java's ``Math.round``."""
    return math.floor(value + 0.5)


def _number(value: float) -> str:
    """A number as Android's SQLite cursor turns a REAL into text (C's ``%g``)."""
    return f"{value:g}"


class _Stream:
    """One block of the file: its rows and expected records, placed as a reader's clock places them."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.clock = LocalClock(zoneinfo.ZoneInfo(timeline.profile.timezone))
        self.rows: list[str] = []
        self.expected: list[ExpectedRecord] = []

    def stamp(self, minute_ms: int) -> tuple[str, int]:
        """``dd.MM.yyyy;HH:mm`` of an instant (already floored to the minute) and its wall time."""
        local = self.timeline.local(minute_ms)
        return local.strftime("%d.%m.%Y;%H:%M"), wall_ms(local)

    def place(self, minute_ms: int) -> str | None:
        """The row's date and time when a reader resolves them to ``minute_ms``, else ``None``.

        The reader's clock is advanced only by rows that are written.
        """
        text, wall = self.stamp(minute_ms)
        trial = copy.copy(self.clock)
        if trial.resolve_ms(wall)[0] != minute_ms:
            return None
        self.clock = trial
        return text


def _cgm(timeline: Timeline, opts: XDripOptions) -> _Stream:
    stream = _Stream(timeline)
    last: int | None = None
    for index, (utc_ms, mgdl) in enumerate(
        zip(timeline.cgm_ms.tolist(), timeline.cgm_mgdl.tolist(), strict=True)
    ):
        minute = utc_ms // MINUTE_MS * MINUTE_MS
        value = _round_half_up(min(HIGH_MGDL, max(LOW_MGDL, mgdl)))
        if minute == last:  # a later reading of the same minute: written, left out by the reader
            text, wall = stream.stamp(minute)
            stream.clock.resolve_ms(wall)
            stream.rows.append(f"{text};{value}")
            continue
        text_or_none = stream.place(minute)
        if text_or_none is None:
            continue
        last = minute
        annotation = "low" if value <= LOW_MGDL else "high" if value >= HIGH_MGDL else None
        stream.expected.append(ExpectedRecord("cbg", "sensor", minute, float(value), annotation))
        stream.rows.append(f"{text_or_none};{value}")
        if opts.duplicates and index % DUPLICATE_EVERY == DUPLICATE_EVERY - 1:  # the same row again
            stream.clock.resolve_ms(stream.stamp(minute)[1])
            stream.rows.append(f"{text_or_none};{value}")
    return stream


def _calibrations(timeline: Timeline) -> _Stream:
    stream = _Stream(timeline)
    for event in timeline.of_kind("fingerstick"):
        if event.value is None:
            continue
        minute = event.utc_ms // MINUTE_MS * MINUTE_MS
        text = stream.place(minute)
        if text is None:
            continue
        value = _round_half_up(event.value)
        stream.rows.append(f"{text};;{value};;;")
        stream.expected.append(ExpectedRecord("smbg", "calibration", minute, float(value)))
    return stream


def _remark(event: Event, tricky: bool) -> str:
    if event.kind == "exercise":
        minutes = (event.duration_s or 0) // 60
        text = f"Exercise: {event.subtype}, {minutes} min"
    else:
        text = event.text or "Health"
    if tricky:
        text = f"{text}; felt fine||checked later"
    return text


def _treatments(timeline: Timeline, opts: XDripOptions) -> _Stream:
    stream = _Stream(timeline)
    doses = [e for e in timeline.of_kind("pen_rapid", "pen_long", "bolus") if e.value]
    events = [e for e in timeline.of_kind("carbs", "exercise", "health") if e.kind != "carbs" or e.value]
    rows: list[tuple[int, str, float | None, float | None, str]] = []  # minute, kind, carbs, insulin, remark
    taken: set[int] = set()
    for event in events:
        minute = event.utc_ms // MINUTE_MS * MINUTE_MS
        if event.kind != "carbs":
            rows.append((minute, event.kind, None, None, _remark(event, opts.tricky_remarks)))
            continue
        insulin = None
        if opts.combine_treatments:
            for at, dose in enumerate(doses):
                if at not in taken and 0 <= dose.utc_ms - event.utc_ms <= COMBINE_WITHIN_MS:
                    taken.add(at)
                    insulin = dose.value
                    break
        rows.append((minute, "carbs", event.value, insulin, ""))
    for at, dose in enumerate(doses):
        if at not in taken:
            rows.append((dose.utc_ms // MINUTE_MS * MINUTE_MS, "dose", None, dose.value, ""))
    rows.sort(key=lambda row: (row[0], row[1]))
    for minute, _kind, carbs, insulin, remark in rows:
        text = stream.place(minute)
        if text is None:
            continue
        carbs_text = _number(carbs) if carbs else ""
        insulin_text = _number(insulin) if insulin else ""
        written = remark.replace("\n", "||")
        stream.rows.append(f"{text};;;{carbs_text};{insulin_text};{written}")
        if carbs:
            stream.expected.append(ExpectedRecord("food", "", minute, float(carbs_text)))
        if insulin:
            stream.expected.append(ExpectedRecord("insulin", "unknown", minute, float(insulin_text)))
        if remark:
            stream.expected.append(ExpectedRecord("note", "", minute, None))
    return stream


def write_xdrip(timeline: Timeline, options: XDripOptions | None = None) -> WrittenExport:
    """Write ``timeline`` as an xDrip+ CSV export; returns the bytes and the records they hold."""
    opts = options or XDripOptions()
    cgm = _cgm(timeline, opts)
    blocks = [cgm]
    if opts.old_header:
        lines = [OLD_HEADER, *cgm.rows]
    else:
        blocks += [_calibrations(timeline), _treatments(timeline, opts)]
        lines = [HEADER, *(f"{row};;;;" for row in cgm.rows)]
        lines += [row for block in blocks[1:] for row in block.rows]
    end = "\r\n" if opts.crlf else "\n"
    data = end.join(lines).encode("utf-8") + end.encode()
    expected = [record for block in blocks for record in block.expected]
    exported = dt.datetime.fromtimestamp(timeline.end_ms / 1000, tz=timeline.tz)
    stamp = exported.strftime("%Y%m%d-%H%M%S")
    name = f"export{stamp}.csv"
    if opts.zipped:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, data)
        return WrittenExport(f"exportCSV{stamp}.zip", buffer.getvalue(), expected)
    return WrittenExport(name, data, expected)
