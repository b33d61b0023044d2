"""Zip archives and folders: members imported one by one, and every hostile archive refused unchanged."""

from __future__ import annotations

import datetime as dt
import io
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.errors import InputError
from glucoshare.ingest.archives import MAX_RATIO, ArchiveLimits, expand_archive, is_archive
from glucoshare.ingest.errors import (
    ArchiveRefusedError,
    FileTooLargeError,
    MalformedFileError,
    NoRecordsError,
    UnknownFormatError,
)
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file, import_files, inspect_file
from glucoshare.records.models import Upload
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.libreview import write_libreview
from tests.ingest.helpers import profile, refused_unchanged
from tests.kept import kept_places

LIMITS = ArchiveLimits(max_members=50, max_member_bytes=10_000_000, max_total_bytes=20_000_000)


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    return simulate(profile(seed=31), start=dt.date(2025, 6, 1), days=3)


def _zip(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


def _info(name: str, *, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2025, 6, 1, 12, 0, 0))
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _mark_encrypted(data: bytes) -> bytes:
    """Set the "encrypted" bit in the local and central headers (zipfile cannot write encryption)."""
    out = bytearray(data)
    local, central = out.find(b"PK\x03\x04"), out.find(b"PK\x01\x02")
    out[local + 6] |= 0x1
    out[central + 8] |= 0x1
    return bytes(out)


def _patient(session: Session, email: str = "zip@example.org") -> Patient:
    return add_patient(session, validate_patient(email=email, name="Z", timezone="Europe/Berlin"))


def _import(session: Session, settings: Settings, patient: Patient, *files: IncomingFile) -> list:  # type: ignore[type-arg]
    return import_files(session, settings=settings, patient=patient, files=files, timezone=None, actor="test")


# --- the archive reader on its own ---------------------------------------------------------------


def test_members_come_back_named_inside_the_archive_and_junk_is_left_out() -> None:
    data = _zip(
        [
            ("Insulin data/bolus_data_1.csv", b"a,b\n"),
            ("__MACOSX/Insulin data/._bolus_data_1.csv", b"\x00\x05junk"),
            ("folder/.DS_Store", b"\x00junk"),
            ("folder/", b""),
            ("cgm_data_1.csv", b"c,d\n"),
        ]
    )
    assert is_archive(data)
    members = expand_archive("export.zip", data, LIMITS)
    assert [(m.name, m.data) for m in members] == [
        ("export.zip/Insulin data/bolus_data_1.csv", b"a,b\n"),
        ("export.zip/cgm_data_1.csv", b"c,d\n"),
    ]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../../etc/cron.d/evil.csv", "climbs out"),
        ("ok/../../evil.csv", "climbs out"),
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/evil.csv", "absolute path"),
        ("..\\..\\evil.csv", "backslash"),
        ("evil\x07.csv", "control character"),
    ],
)
def test_paths_that_could_escape_are_refused(name: str, words: str) -> None:
    data = _zip([("fine.csv", b"x\n"), (_info(name), b"x\n")])
    with pytest.raises(ArchiveRefusedError, match=words):
        expand_archive("export.zip", data, LIMITS)


def test_links_special_files_and_encrypted_members_are_refused() -> None:
    link = _zip([(_info("cgm.csv", mode=stat.S_IFLNK | 0o777), b"/etc/passwd")])
    with pytest.raises(ArchiveRefusedError, match="symbolic link"):
        expand_archive("export.zip", link, LIMITS)
    fifo = _zip([(_info("cgm.csv", mode=stat.S_IFIFO | 0o644), b"")])
    with pytest.raises(ArchiveRefusedError, match="not a regular file"):
        expand_archive("export.zip", fifo, LIMITS)
    locked = _mark_encrypted(_zip([("cgm.csv", b"secret")]))
    with pytest.raises(ArchiveRefusedError, match="encrypted"):
        expand_archive("export.zip", locked, LIMITS)


def test_a_zip_bomb_is_refused_before_it_is_inflated() -> None:
    bomb = _zip([("cgm_data_1.csv", bytes(8_000_000))])  # ~8 kB packed, 1000:1
    assert len(bomb) * MAX_RATIO < 8_000_000
    with pytest.raises(ArchiveRefusedError, match="zip bomb"):
        expand_archive("export.zip", bomb, LIMITS)


def test_forged_sizes_do_not_get_past_the_limits() -> None:
    """The archive's own size fields say 10 bytes; the member inflates to 3 MB and is stopped."""
    data = bytearray(_zip([("cgm.csv", b"0123456789" * 300_000)]))
    small = ArchiveLimits(max_members=5, max_member_bytes=1_000_000, max_total_bytes=2_000_000)
    real = 3_000_000
    forged = (10).to_bytes(4, "little")
    data = data.replace(real.to_bytes(4, "little"), forged)
    with pytest.raises((FileTooLargeError, ArchiveRefusedError)):
        expand_archive("export.zip", bytes(data), small)


def test_member_total_and_count_limits() -> None:
    small = ArchiveLimits(max_members=3, max_member_bytes=1000, max_total_bytes=1500)
    with pytest.raises(FileTooLargeError, match="GLUCOSHARE_MAX_UPLOAD_BYTES"):
        expand_archive("export.zip", _zip([("a.csv", b"1" * 1001)]), small)
    with pytest.raises(FileTooLargeError, match="GLUCOSHARE_MAX_UNPACKED_BYTES"):
        expand_archive("export.zip", _zip([("a.csv", b"1" * 900), ("b.csv", b"2" * 900)]), small)
    with pytest.raises(ArchiveRefusedError, match="GLUCOSHARE_MAX_ARCHIVE_MEMBERS"):
        expand_archive("export.zip", _zip([(f"{n}.csv", b"1") for n in range(4)]), small)


def test_nested_archives_duplicates_and_damage_are_refused() -> None:
    inner = _zip([("cgm.csv", b"x\n")])
    with pytest.raises(ArchiveRefusedError, match="archive inside the archive"):
        expand_archive("export.zip", _zip([("inner.zip", inner)]), LIMITS)
    with pytest.warns(UserWarning, match="Duplicate name"):
        twice = _zip([("cgm.csv", b"x\n"), ("cgm.csv", b"y\n")])
    with pytest.raises(ArchiveRefusedError, match="appears twice"):
        expand_archive("export.zip", twice, LIMITS)
    good = _zip([("cgm.csv", b"glucose readings, " * 200)])
    with pytest.raises(ArchiveRefusedError, match="damaged"):
        expand_archive("export.zip", good[: len(good) // 2], LIMITS)
    corrupt = bytearray(good)
    corrupt[60] ^= 0xFF  # inside the deflated data: the CRC no longer matches
    with pytest.raises(ArchiveRefusedError, match="damaged"):
        expand_archive("export.zip", bytes(corrupt), LIMITS)


def test_a_damaged_lzma_member_is_refused() -> None:
    # Found by the fuzzer (tests/fuzz): the lzma decompressor raises LZMAError, which is neither an
    # OSError nor a ValueError; it escaped as an unhandled error.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_LZMA) as zf:
        zf.writestr("cgm.csv", b"glucose readings, " * 200)
    damaged = bytearray(buffer.getvalue())
    damaged[30 + len("cgm.csv") + 9] ^= 0xFF  # the first byte of the compressed stream
    with pytest.raises(ArchiveRefusedError, match=r"cgm\.csv cannot be read .*damaged"):
        expand_archive("export.zip", bytes(damaged), LIMITS)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=400), st.integers(0, 399), st.integers(1, 255))
def test_mutated_archives_never_raise_anything_but_input_errors(payload: bytes, at: int, flip: int) -> None:
    data = bytearray(_zip([("cgm_data_1.csv", payload + b"\n"), ("b/notes.csv", payload)]))
    data[at % len(data)] ^= flip
    try:
        members = expand_archive("export.zip", bytes(data), LIMITS)
    except InputError:
        return
    assert all(m.name.startswith("export.zip/") and ".." not in m.name for m in members)


# --- archives through the import service, on both databases --------------------------------------


def test_an_archive_is_imported_member_by_member_as_one_batch(
    session: Session, settings: Settings, timeline: Timeline
) -> None:
    clarity, libre = write_clarity(timeline), write_libreview(timeline)
    data = _zip(
        [
            ("exports/clarity.csv", clarity.data),
            ("exports/libre.csv", libre.data),
            ("README.txt", b"Exported by hand for my clinic.\n"),
            ("report.pdf", b"%PDF-1.4\n\x00\x01\x02binary"),
        ]
    )
    patient = _patient(session)
    uploads = _import(session, settings, patient, IncomingFile("my export.zip", data))
    assert [(u.file, u.format) for u in uploads] == [
        ("my export.zip/exports/clarity.csv", "dexcom_clarity"),
        ("my export.zip/exports/libre.csv", "libreview"),
    ]
    assert uploads[0].new == len(clarity.expected)
    note = uploads[0].warnings[-1]
    assert "2 files of my export.zip were not imported" in note
    assert "README.txt (unrecognised format)" in note
    assert "report.pdf (" in note
    batches = set(session.scalars(select(Upload.batch_id).where(Upload.patient_id == patient.id)))
    assert len(batches) == 1
    assert None not in batches
    again = _import(session, settings, patient, IncomingFile("my export.zip", data))
    assert [u.new for u in again] == [0, 0]


def test_a_member_without_records_is_left_out(
    session: Session, settings: Settings, timeline: Timeline
) -> None:
    clarity = write_clarity(timeline)
    empty = write_clarity(timeline.window(0, 1))
    data = _zip([("a.csv", clarity.data), ("b.csv", empty.data)])
    uploads = _import(session, settings, _patient(session), IncomingFile("x.zip", data))
    assert [u.file for u in uploads] == ["x.zip/a.csv"]
    assert "b.csv (no records)" in uploads[0].warnings[-1]
    assert session.scalar(select(Upload.id).where(Upload.file_name == "x.zip/b.csv")) is None


def test_inspection_reads_an_archive(settings: Settings, timeline: Timeline) -> None:
    data = _zip([("a.csv", write_clarity(timeline).data), ("notes.txt", b"hello\n")])
    found = inspect_file(settings, IncomingFile("x.zip", data), timezone="Europe/Berlin")
    assert found.format == "dexcom_clarity"
    assert found.primary is not None
    assert found.primary.manufacturer == "Dexcom"
    assert found.records == len(write_clarity(timeline).expected)


def _refusals(timeline: Timeline) -> list[tuple[str, Callable[[], bytes], type[InputError], str]]:
    clarity = write_clarity(timeline).data
    broken = clarity[: len(clarity) // 2]  # a truncated member refuses the whole archive
    return [
        (
            "traversal",
            lambda: _zip([("a.csv", clarity), (_info("../b.csv"), clarity)]),
            ArchiveRefusedError,
            "..",
        ),
        (
            "bomb",
            lambda: _zip([("a.csv", clarity), ("b.csv", bytes(8_000_000))]),
            ArchiveRefusedError,
            "bomb",
        ),
        ("nothing known", lambda: _zip([("a.txt", b"hello\n")]), UnknownFormatError, "none of its 1 files"),
        (
            "all empty",
            lambda: _zip([("a.csv", write_clarity(timeline.window(0, 1)).data)]),
            NoRecordsError,
            "none of its files holds records",
        ),
        (
            "truncated member",
            lambda: _zip([("a.csv", clarity), ("b.csv", broken)]),
            MalformedFileError,
            "b.csv",
        ),
        ("damaged", lambda: _zip([("a.csv", clarity)])[:300], ArchiveRefusedError, "damaged"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_a_refused_archive_changes_nothing(
    engine: Engine, settings: Settings, timeline: Timeline, case: int
) -> None:
    label, build, error, words = _refusals(timeline)[case]
    with session_scope(engine) as session:
        patient_id = _patient(session).id
    refused_unchanged(
        engine, settings, patient_id, [IncomingFile(f"{label}.zip", build())], error, match=words
    )
    assert kept_places(engine) == set()


@pytest.mark.parametrize(
    "members",
    [[], [("__MACOSX/._a.csv", b"\x00\x05"), ("folder/.DS_Store", b"\x00")], [("folder/", b"")]],
    ids=["empty", "system-files-only", "folder-only"],
)
def test_an_archive_without_files_is_refused(
    engine: Engine, settings: Settings, members: list[tuple[str, bytes]]
) -> None:
    # Found by the fuzzer (tests/fuzz): an archive with no file in it (or only the operating
    # system's own, left out silently) was "imported" without an upload and without an error.
    with session_scope(engine) as session:
        patient_id = _patient(session).id
    refused_unchanged(
        engine, settings, patient_id, [IncomingFile("e.zip", _zip(members))], NoRecordsError, match="no files"
    )
    with pytest.raises(NoRecordsError, match=r"^e\.zip: the archive holds no files"):
        inspect_file(settings, IncomingFile("e.zip", _zip(members)), timezone="UTC")


def test_import_file_points_archives_to_the_batch_import(session: Session, settings: Settings) -> None:
    with pytest.raises(ArchiveRefusedError, match="imported together"):
        import_file(
            session,
            settings=settings,
            patient=_patient(session),
            incoming=IncomingFile("x.zip", _zip([("a.csv", b"x\n")])),
            timezone=None,
            actor="test",
        )


def test_folders_share_the_rules_of_archives(
    session: Session, settings: Settings, timeline: Timeline
) -> None:
    clarity = write_clarity(timeline)
    files = [IncomingFile("export/a.csv", clarity.data), IncomingFile("export/notes.txt", b"hi\n")]
    uploads = import_files(
        session,
        settings=settings,
        patient=_patient(session),
        files=files,
        containers=["export", "export"],
        timezone=None,
        actor="test",
    )
    assert [u.file for u in uploads] == ["export/a.csv"]
    assert "notes.txt (unrecognised format)" in uploads[0].warnings[-1]


def test_a_plain_file_of_unknown_format_is_still_refused(session: Session, settings: Settings) -> None:
    with pytest.raises(UnknownFormatError):
        _import(session, settings, _patient(session), IncomingFile("notes.txt", b"hello\n"))


def test_settings_limit_archives(
    session: Session, settings: Settings, timeline: Timeline, tmp_path: Path
) -> None:
    small = settings.model_copy(update={"max_archive_members": 1})
    data = _zip([("a.csv", write_clarity(timeline).data), ("b.csv", b"x\n")])
    with pytest.raises(ArchiveRefusedError, match="more than the limit of 1"):
        _import(session, small, _patient(session), IncomingFile("x.zip", data))


def test_of_several_files_one_without_records_is_left_out(
    session: Session, settings: Settings, timeline: Timeline
) -> None:
    clarity, empty = write_clarity(timeline), write_clarity(timeline.window(0, 1))
    files = [IncomingFile("a.csv", clarity.data), IncomingFile("b.csv", empty.data)]
    uploads = _import(session, settings, _patient(session), *files)
    assert [u.file for u in uploads] == ["a.csv"]
    assert uploads[0].warnings[-1].startswith("1 file was not imported: b.csv (no records")
    with pytest.raises(NoRecordsError, match="none of the files holds records"):
        _import(
            session,
            settings,
            _patient(session, "other@example.org"),
            files[1],
            IncomingFile("c.csv", empty.data),
        )


def test_a_faulty_detector_does_not_block_the_other_formats(
    monkeypatch: pytest.MonkeyPatch, timeline: Timeline, caplog: pytest.LogCaptureFixture
) -> None:
    from glucoshare.ingest import registry  # noqa: PLC0415
    from glucoshare.ingest.base import SourceText  # noqa: PLC0415

    class Broken:
        format = "aaa_broken"
        label = "a plugin that raises"

        def detect(self, head: list[str]) -> bool:
            raise ValueError(head[0])

    loaded = registry.importers()
    monkeypatch.setattr(registry, "importers", lambda: (Broken(), *loaded))
    text = write_clarity(timeline).data.decode("utf-8-sig")
    found = registry.detect_format(SourceText("a.csv", text, "utf-8"))
    assert found.format == "dexcom_clarity"
    assert "aaa_broken failed to inspect a file (ValueError)" in caplog.text
    assert "Index" not in caplog.text  # the file's content never reaches the log
