"""The parse in a child process (``ingest.parse_process``) stores exactly what a parse here stores.

Every layout Glucoshare reads is imported twice in one transaction, rolled back in between: parsed
in this process, then parsed in a forked child while this process stores. Records (with their
provenance), devices, uploads and the import's report must be the same. Refusals must be the
same too, and leave the database as it was; a child that dies or hangs fails the import. On
PostgreSQL every import parses in this process (``ingest.service._parser``): there the same tests
prove that no child is started.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.devices.models import Device
from glucoshare.errors import GlucoshareError
from glucoshare.export.rows import record_row
from glucoshare.ingest import parse_process
from glucoshare.ingest.base import (
    DeviceInfo,
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    SourceText,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.parse_process import ParseAhead, ParseProcessError, ParseTask
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files
from glucoshare.records.models import Upload
from glucoshare.records.service import iter_records, note_place
from glucoshare.records.vocabulary import RecordType
from glucoshare.vault.service import open_mapping
from tests.fuzz.seeds import LAYOUTS, ZONE, layout
from tests.ingest.helpers import committed_upload, refused_unchanged
from tests.kept import kept_places, raw_place

HERE = 10**12
"""``parse_process_min_chars`` that keeps every parse in this process."""


def _files(name: str) -> tuple[list[IncomingFile], list[str | None]]:
    """What a person gives ``glucoshare import`` for a layout: one file, a zip or a folder's files."""
    seed = layout(name)
    if seed.kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for member in seed.members:
                archive.writestr(member.name, member.data)
        return [IncomingFile(seed.container, buffer.getvalue())], [None]
    if seed.kind == "folder":
        return [IncomingFile(m.name, m.data) for m in seed.members], [seed.container] * len(seed.members)
    return [IncomingFile(m.name, m.data) for m in seed.members], [None]


def _stored(session: Session, patient: Patient) -> dict[str, Any]:
    """Everything an import left for the patient, without ids (which differ between two runs)."""
    session.flush()
    uploads = list(session.scalars(select(Upload).where(Upload.patient_id == patient.id)))
    files = {upload.seq: upload.file_name for upload in uploads}  # the name is sealed: read per row
    # The raw files kept are those of the uploads: a member left out (no records) keeps none.
    kept = kept_places(session, patient.id)
    assert kept == {raw_place(patient.id, upload.sha256) for upload in uploads}
    records = []
    for record, device in iter_records(session, patient.id):
        payload = None
        if record.type == RecordType.NOTE:
            payload = open_mapping(session, patient.id, record.payload, note_place(patient.id))
        row = record_row(record, device, None, payload)
        row["upload"] = files[record.upload_seq]
        del row["id"], row["upload_id"]
        records.append(row)
    devices = [
        (d.manufacturer, d.model, d.serial, d.source_rank, sorted((i.kind, i.value) for i in d.identifiers))
        for d in session.scalars(select(Device).where(Device.patient_id == patient.id).order_by(Device.seq))
    ]
    return {
        "records": sorted(records, key=repr),
        "devices": devices,
        "kept": sorted(place.replace(patient.id, "<patient>") for place in kept),
    }


def _report(uploads: list[Any]) -> list[dict[str, Any]]:
    return [u.model_dump(exclude={"id", "created_at", "patient_id"}) for u in uploads]


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The child processes started (their ids), counted on :class:`ParseAhead` itself."""
    started: list[int] = []
    enter = ParseAhead.__enter__

    def counted(self: ParseAhead) -> ParseAhead:
        entered = enter(self)
        started.append(self.pid)
        return entered

    monkeypatch.setattr(ParseAhead, "__enter__", counted)
    return started


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_parse_in_a_child_stores_what_a_parse_here_stores(
    name: str, engine: Engine, settings: Settings, forks: list[int]
) -> None:
    files, containers = _files(name)
    outcomes = []
    with Session(engine, expire_on_commit=False) as session:
        for min_chars in (HERE, 0):
            patient = add_patient(session, validate_patient(email="p@example.org", name="P", timezone=ZONE))
            uploads = import_files(
                session,
                settings=settings.model_copy(update={"parse_process_min_chars": min_chars}),
                patient=patient,
                files=files,
                containers=containers,
                timezone=None,
                actor="test",
            )
            outcomes.append((_report(uploads), _stored(session, patient)))
            session.rollback()
    assert len(forks) == _forks_on(engine), "the second import did not parse where it should"
    (here_report, here_stored), (child_report, child_stored) = outcomes
    assert here_stored["records"], "the layout's seed stored no records"
    assert child_report == here_report
    assert child_stored == here_stored
    for pid in forks:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped


def _forks_on(engine: Engine) -> int:
    """How many children an import that pays for one starts: one on SQLite, none on PostgreSQL."""
    return 1 if engine.dialect.name == "sqlite" else 0


def _clarity() -> IncomingFile:
    seed = layout("dexcom_clarity").members[0]
    return IncomingFile(seed.name, seed.data)


def _damaged_clarity() -> tuple[IncomingFile, int]:
    """The Clarity seed with a stray carriage return in a row in the middle; and that row's line."""
    lines = _clarity().data.decode().split("\n")
    at = len(lines) // 2
    cut = lines[at].index(",")
    lines[at] = lines[at][:cut] + "\r" + lines[at][cut:]
    return IncomingFile("damaged.csv", "\n".join(lines).encode()), at + 1


@pytest.mark.parametrize("where", ["header", "middle"])
def test_a_refusal_in_the_child_is_the_refusal_a_parse_here_makes(
    where: str, engine: Engine, settings: Settings, forks: list[int]
) -> None:
    if where == "header":
        text = _clarity().data.decode()
        incoming = IncomingFile("bad-unit.csv", text.replace("mg/dL", "mg/XX", 1).encode())
        match = "line 1: unknown glucose unit"
    else:
        incoming, line = _damaged_clarity()
        match = f"damaged.csv: line {line}: a field holds a stray line break"
    patient = committed_upload(engine, settings, _libreview())
    messages = []
    for min_chars in (HERE, 0):
        error = refused_unchanged(
            engine,
            settings.model_copy(update={"parse_process_min_chars": min_chars}),
            patient.id,
            [incoming],
            MalformedFileError,
            match=match,
        )
        messages.append(error.message)
    assert len(forks) == _forks_on(engine)
    assert messages[0] == messages[1]


def _libreview() -> IncomingFile:
    seed = layout("libreview").members[0]
    return IncomingFile(seed.name, seed.data)


# -- the child process itself ------------------------------------------------------------------------


@dataclasses.dataclass
class _Scripted:
    """An importer whose records are a script: records of one device, and what happens after each."""

    steps: list[str]
    marker: Path | None = None
    """Where the step ``touch`` leaves a file (it is seen from the test's process)."""
    format: ClassVar[str] = "scripted"
    label: ClassVar[str] = "Scripted test importer"

    def detect(self, head: list[str]) -> bool:  # noqa: ARG002 - never detected: given directly
        return False

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:  # noqa: ARG002 - no file
        device = DeviceInfo("Maker", "first model", None)
        result = ParseResult(records=iter(()), devices={"d": device}, primary_device="d")
        result.records = self._records(result, device)
        return result

    def _records(self, result: ParseResult, device: DeviceInfo) -> Iterator[ParsedItem]:
        for line, step in enumerate(self.steps, start=1):
            if step == "record":
                yield ParsedRecord("cbg", "sensor", 1_700_000_000_000 + line, 60, line, "d", 100.0 + line)
            elif step == "rename":  # what Clarity does when a later row names the model
                device.model = "later model"
                device.identifiers.add(("serial", "S1"))
            elif step == "block":  # a whole file's readings as one block
                rows = np.arange(10_000, dtype=np.int64)
                yield ReadingBlock(
                    "cbg",
                    "sensor",
                    "d",
                    "mg/dL",
                    1_700_000_000_000 + rows * 300_000,
                    np.full(rows.size, 60),
                    100.0 + rows % 50,
                    100.0 + rows % 50,
                    rows + 2,
                )
            elif step == "touch" and self.marker is not None:
                self.marker.touch()
            elif step == "die":
                os._exit(3)
            elif step == "hang":
                time.sleep(30)
            elif step == "bug":
                msg = "an importer's bug"
                raise ValueError(msg)
        result.notes.append("a note")


def _task(*steps: str, marker: Path | None = None) -> ParseTask:
    return ParseTask(SourceText("f.csv", "x\n", "utf-8"), _Scripted(list(steps), marker), ())


def test_a_record_crosses_the_pipe_with_every_field() -> None:
    record = ParsedRecord(
        "bolus", "dual", 1_750_000_000_000, 120, 7, "pump", 2.5, 2.5, "U", 1_800_000, "high",
        {"name": "x", "parts": [1, 2]}, "normal",
    )  # fmt: skip
    back = pickle.loads(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own bytes
    assert back == record
    assert type(back) is ParsedRecord
    assert pickle.loads(pickle.dumps(ParsedRecord("cbg", "sensor", 0, 0, 2, "d"))) == ParsedRecord(  # noqa: S301
        "cbg", "sensor", 0, 0, 2, "d"
    )


def test_a_device_is_sent_as_it_was_at_its_first_record_and_at_the_end() -> None:
    with ParseAhead([_task("record", "rename", "record")], ZONE) as ahead:
        result, counts = ahead.parse(0)
        items = iter(result.records)
        first = next(items)
        assert isinstance(first, ParsedRecord)
        assert result.devices["d"].model == "first model"  # what the import identifies it by
        assert [r.line for r in items] == [3]  # type: ignore[union-attr]
        assert result.devices["d"] == DeviceInfo("Maker", "later model", None, {("serial", "S1")})
        assert result.notes == ["a note"]
        assert result.primary_device == "d"
        assert (counts.skipped_hour_records, counts.repeated_hour_records) == (0, 0)


def test_a_whole_file_block_arrives_in_pieces_that_add_up_to_it() -> None:
    with ParseAhead([_task("record", "block", "record")], ZONE) as ahead:
        result, _ = ahead.parse(0)
        items = list(result.records)
    blocks = [item for item in items if isinstance(item, ReadingBlock)]
    assert [len(b) for b in blocks] == [4096, 4096, 1808]
    assert [type(item) for item in items] == [ParsedRecord, *[ReadingBlock] * 3, ParsedRecord]
    rows = np.arange(10_000, dtype=np.int64)
    joined = {
        field: np.concatenate([getattr(b, field) for b in blocks])
        for field in ("time_ms", "utc_offset_min", "value", "orig_value", "line")
    }
    assert (joined["time_ms"] == 1_700_000_000_000 + rows * 300_000).all()
    assert (joined["value"] == 100.0 + rows % 50).all()
    assert (joined["line"] == rows + 2).all()
    assert {(b.type, b.subtype, b.device, b.orig_unit, b.duration_ms) for b in blocks} == {
        ("cbg", "sensor", "d", "mg/dL", None)
    }


def test_the_child_parses_the_next_file_while_a_large_one_waits_to_be_stored(tmp_path: Path) -> None:
    """Frames the pipe cannot take yet wait in the child, which goes on to the next file."""
    marker = tmp_path / "second file parsed"
    large = _task(*["block"] * 30)  # 300,000 readings: about 12 MB of frames, the pipe holds 1 MiB
    with ParseAhead([large, _task("touch", "record", marker=marker)], ZONE) as ahead:
        first, _ = ahead.parse(0)
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:  # nothing of the first file read yet
            time.sleep(0.01)
        assert marker.exists()
        blocks = list(first.records)
        second, _ = ahead.parse(1)
        records = list(second.records)
    assert sum(len(block) for block in blocks if isinstance(block, ReadingBlock)) == 300_000
    lines = np.concatenate([block.line for block in blocks if isinstance(block, ReadingBlock)])
    assert (lines == np.tile(np.arange(10_000) + 2, 30)).all()  # all of them, in order
    assert [(r.line, r.value) for r in records if isinstance(r, ParsedRecord)] == [(2, 102.0)]


def test_files_are_parsed_in_order_and_an_unread_rest_is_skipped() -> None:
    tasks = [_task("record", "record"), _task("record", "record", "record")]
    with ParseAhead(tasks, ZONE) as ahead:
        first, _ = ahead.parse(0)
        next(iter(first.records))  # one of two records read; the rest is left
        second, _ = ahead.parse(1)
        assert [r.line for r in second.records] == [1, 2, 3]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("die", r"ended before it had finished \(exit status 3\)"),
        ("bug", r"parsing failed in the parse process \(ValueError\)"),
    ],
)
def test_a_child_that_dies_or_fails_fails_the_parse(step: str, message: str) -> None:
    with ParseAhead([_task("record", step, "record")], ZONE) as ahead:
        pid = ahead.pid
        with pytest.raises(ParseProcessError, match=message):  # what the child sent first may be lost
            result, _ = ahead.parse(0)
            list(result.records)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_child_that_sends_nothing_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_process, "SILENCE_LIMIT_S", 0.5)
    started = time.monotonic()
    with ParseAhead([_task("hang")], ZONE) as ahead:
        pid = ahead.pid
        result, _ = ahead.parse(0)
        with pytest.raises(ParseProcessError, match=r"sent nothing for 0\.5 s; it was stopped"):
            list(result.records)
    assert time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_leaving_early_stops_and_reaps_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_process, "_FRAME_WEIGHT", 1)  # each record sent as it is made
    with ParseAhead([_task("record", "hang")], ZONE) as ahead:
        pid = ahead.pid
        result, _ = ahead.parse(0)
        next(iter(result.records))
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_an_import_that_fails_in_the_child_changes_nothing(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = committed_upload(engine, settings, _libreview())

    def dying(task: ParseTask, zone: str, writer: Any) -> None:
        os._exit(5)

    monkeypatch.setattr(parse_process, "_parse_one", dying)
    forced = settings.model_copy(update={"parse_process_min_chars": 0})
    if engine.dialect.name != "sqlite":  # parsed here: the dying child is never started
        with session_scope(engine) as session:
            owner = session.get(Patient, patient.id)
            assert owner is not None
            uploads = import_files(
                session, settings=forced, patient=owner, files=[_clarity()], timezone=None, actor="test"
            )
        assert uploads[0].new > 0
        return
    error = refused_unchanged(
        engine,
        forced,
        patient.id,
        [_clarity()],
        ParseProcessError,  # type: ignore[type-var]
        match=r"exit status 5",
    )
    assert isinstance(error, GlucoshareError)
    assert error.http_status == 500
