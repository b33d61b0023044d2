"""Shared by the tests of importers that hand records over while they read (a chunk at a time).

Such an importer must give what the same file read whole gives, whatever the order of its rows
around a daylight-saving change; these build the rows and compare the two readings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.ingest.base import Importer, ParseContext, Restart, SourceText, each_record
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files
from glucoshare.records.models import Record, Upload

ZONE = "Europe/Berlin"
SPRING = dt.datetime(2025, 3, 30)  # Europe/Berlin skips 02:00-03:00
AUTUMN = dt.datetime(2025, 10, 26)  # and repeats 02:00-03:00
SUMMER = dt.datetime(2025, 6, 1)
ORDERS = ("as written", "reversed", "halves swapped", "pairs swapped", "one moved to the end")


@contextlib.contextmanager
def chunks_of(module: ModuleType, rows: int) -> Iterator[None]:
    """``module`` reads ``rows`` rows at a time (small, so that a small file spans many chunks)."""
    before = module._CHUNK_ROWS
    module._CHUNK_ROWS = rows
    try:
        yield
    finally:
        module._CHUNK_ROWS = before


def times_from(start: dt.datetime, count: int, step_min: int = 5) -> list[dt.datetime]:
    """``count`` wall times from ``start``, ``step_min`` minutes apart."""
    return [start + dt.timedelta(minutes=step_min * at) for at in range(count)]


def reorder(times: list[dt.datetime], order: str, at: int) -> list[dt.datetime]:
    """``times`` in one of :data:`ORDERS` (``at``: which one is moved to the end)."""
    if order == "reversed":
        return times[::-1]
    if order == "halves swapped":
        return times[len(times) // 2 :] + times[: len(times) // 2]
    if order == "pairs swapped":
        out = list(times)
        for i in range(0, len(out) - 1, 2):
            out[i], out[i + 1] = out[i + 1], out[i]
        return out
    if order == "one moved to the end" and times:
        at %= len(times)
        return times[:at] + times[at + 1 :] + [times[at]]
    return times


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one reading of a file gave: its records (those that stand), rejections, devices, counts."""

    records: list[str]
    rejected: list[tuple[int, str]]
    devices: dict[str, Any]
    skipped: int
    repeated: int
    restarted: bool

    def standing(self) -> Outcome:
        """The outcome without whether the file was read again (what a consumer is left with)."""
        return dataclasses.replace(self, restarted=False)


def read(importer: Importer, text: str, name: str) -> Outcome:
    """Parse ``text`` in :data:`ZONE` and say what came out."""
    ctx = ParseContext(ZONE)
    result = importer.parse(SourceText(name, text, "utf-8"), ctx)
    items = list(result.records)
    return Outcome(
        records=sorted(repr(dataclasses.astuple(record)) for record in each_record(items)),
        rejected=sorted((row.line, row.reason) for row in result.rejected),
        devices=dict(result.devices),
        skipped=ctx.skipped_hour_records,
        repeated=ctx.repeated_hour_records,
        restarted=any(isinstance(item, Restart) for item in items),
    )


@dataclasses.dataclass(frozen=True)
class Run:
    """One import of a file: its bytes, the chunk size its importer reads, and whether it forks."""

    data: bytes
    chunk: int
    in_child: bool


def stored(engine: Engine, settings: Settings, module: ModuleType, name: str, runs: list[Run]) -> list[Any]:
    """Import ``name`` once per run, each for a new patient (rolled back after); what each stored.

    Per run: the upload's counts, new records, first and last time, warnings, and the stored rows
    (instant, offset, value, line) in time order.
    """
    out: list[Any] = []
    with Session(engine, expire_on_commit=False) as session:
        for run in runs:
            patient = add_patient(session, validate_patient(email="p@example.org", name="P", timezone=ZONE))
            with chunks_of(module, run.chunk):
                (upload,) = import_files(
                    session,
                    settings=settings.model_copy(
                        update={"parse_process_min_chars": 0 if run.in_child else 10**15}
                    ),
                    patient=patient,
                    files=[IncomingFile(name, run.data)],
                    timezone=None,
                    actor="test",
                )
            seq = session.scalar(select(Upload.seq).where(Upload.id == upload.id))
            rows = session.execute(
                select(Record.time_ms, Record.utc_offset_min, Record.value, Record.source_line)
                .where(Record.upload_seq == seq)
                .order_by(Record.time_ms, Record.source_line)
            ).all()
            out.append((upload.counts, upload.new, upload.first, upload.last, upload.warnings, rows))
            session.rollback()
    return out


@st.composite
def times_around_a_change(
    draw: st.DrawFn, steps_min: Sequence[int], *, newest_first: bool = False
) -> list[dt.datetime]:
    """Wall times every one of ``steps_min`` minutes near a daylight-saving change (or none).

    In one of :data:`ORDERS`; with ``newest_first``, perhaps reversed before that (as Glooko writes).
    """
    start = draw(st.sampled_from([SPRING, AUTUMN, SUMMER]))
    offset_min = draw(st.integers(min_value=-300, max_value=240))
    times = times_from(
        start + dt.timedelta(minutes=offset_min),
        draw(st.integers(min_value=1, max_value=60)),
        draw(st.sampled_from(steps_min)),
    )
    if newest_first and draw(st.booleans()):
        times = times[::-1]
    return reorder(times, draw(st.sampled_from(ORDERS)), draw(st.integers(min_value=0, max_value=59)))


CHUNKS = st.integers(min_value=1, max_value=9)
"""Chunk sizes small enough that a few dozen rows span many chunks."""
EVERY_NTH = st.integers(min_value=0, max_value=60)
"""Which rows belong to a second device: every n-th (0: none)."""


def second_device(at: int, every_nth: int) -> bool:
    """Whether row ``at`` belongs to the second device (:data:`EVERY_NTH`)."""
    return bool(every_nth) and at % every_nth == 0
