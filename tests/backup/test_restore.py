"""Back up a clinic's installation and restore it on both engines and across them: every row, file and figure."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from glucoshare.audit.tags import AuditTag
from glucoshare.db.models import Base
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.ingest.service import read_raw
from glucoshare.records.models import Upload
from glucoshare.vault.keyfile import read_key_file
from tests.backup.conftest import Source, data_files, fresh_database, opened, payload, restore_target
from tests.backup.world import Install, dump, patient_stats, run, run_json

AUDIT = "audit_events"
AUDIT_COLUMNS = [c.name for c in Base.metadata.tables[AUDIT].columns]


def field(event: tuple[object, ...], name: str) -> Any:
    """One column of an audit event as :func:`dump` returns it."""
    return event[AUDIT_COLUMNS.index(name)]


def _source(request: pytest.FixtureRequest, kind: str) -> Source:
    source: Source = request.getfixturevalue(f"{kind}_source")
    return source


def _raw_files(install: Install) -> dict[str, bytes | None]:
    """Every upload's raw bytes, opened as the application opens them (sealed with the patient's key)."""
    engine = create_db_engine(install.url, keyring=read_key_file(install.key_file))
    try:
        with session_scope(engine) as session:
            uploads = session.scalars(select(Upload).where(Upload.state == "file")).all()
            return {upload.id: read_raw(session, upload) for upload in uploads}
    finally:
        engine.dispose()


def test_the_world_fills_every_table(sqlite_source: Source) -> None:
    empty = {name for name, rows in sqlite_source.rows.items() if not rows}
    assert empty <= {"summary_backlog"}, empty
    assert {t.name for t in Base.metadata.sorted_tables} == set(sqlite_source.rows)
    place = [c.name for c in Base.metadata.tables["sealed_files"].columns].index("place")
    kept = {str(row[place]).split(":")[0] for row in sqlite_source.rows["sealed_files"]}
    assert kept == {"raw", "pending"}  # raw uploads and a clinic's held upload are rows


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_backup_is_one_private_encrypted_file(request: pytest.FixtureRequest, kind: str) -> None:
    source = _source(request, kind)
    assert stat.S_IMODE(source.backup.stat().st_mode) == 0o600
    report = source.report
    assert report["path"] == str(source.backup.resolve())
    assert report["bytes"] == source.backup.stat().st_size
    assert report["counts"] == {name: len(rows) for name, rows in source.rows.items()}
    assert report["tables"] == len(Base.metadata.sorted_tables)
    assert report["source_engine"] == kind
    key = read_key_file(source.install.key_file)
    assert report["master_key_id"] == key.primary.id
    with zipfile.ZipFile(source.backup) as archive:
        names = archive.namelist()
        header = json.loads(archive.read("header.json"))
        stored = {info.filename: info.compress_type for info in archive.infolist()}
    checked = opened(source.backup, source.install.key_file)
    manifest = json.loads(checked.manifest.model_dump_json())
    assert names[:2] == ["glucoshare-backup.txt", "header.json"]
    assert names[-1] == "manifest"
    assert names[2:-1] == [f"parts/{n:06d}" for n in range(1, len(names) - 2)]
    assert set(stored.values()) == {zipfile.ZIP_STORED}  # compressed before encryption
    assert (header["version"], header["kdf"], header["cipher"]) == (2, "HKDF-SHA256", "AES-256-GCM STREAM")
    assert header["master_key"]["id"] == key.primary.id
    assert [t["name"] for t in manifest["tables"]] == [t.name for t in Base.metadata.sorted_tables]
    assert manifest["audit"]["events"] == len(source.rows[AUDIT])
    assert manifest["audit"]["head"] == field(source.rows[AUDIT][-1], "hash")
    assert manifest["audit"]["intact"] is True
    assert not any(name.endswith("master.key") for name in names)
    assert key.primary.key.hex() not in source.backup.read_bytes().hex()
    # No health data or identity in what is printed or in the manifest and header.
    for text in (json.dumps(report), json.dumps(manifest), json.dumps(header)):
        assert source.world.patient_email not in text
        assert "demo" not in text.lower()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_no_value_or_table_name_is_readable_in_the_backup(request: pytest.FixtureRequest, kind: str) -> None:
    """What the rows and manifest hold in clear (the test can fail) is nowhere in the file's bytes."""
    source = _source(request, kind)
    checked = opened(source.backup, source.install.key_file)
    members = [entry.member for entry in checked.manifest.tables] + ["manifest"]
    plain = b"".join(payload(source.backup, checked, member) for member in members)
    sentinels = [
        b"BACKUP01",  # a device serial
        b"xDrip-DexcomG6",  # a Nightscout entry's device
        b",120.0,",  # a glucose reading as its row holds it
        source.report["audit_head"].encode(),
        *(table.name.encode() for table in Base.metadata.sorted_tables),
    ]
    assert [sentinel for sentinel in sentinels if sentinel not in plain] == []
    stored = source.backup.read_bytes()
    assert [sentinel for sentinel in sentinels if sentinel in stored] == []


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_backup_is_audited_after_the_snapshot(request: pytest.FixtureRequest, kind: str) -> None:
    source = _source(request, kind)
    now = dump(source.install.url)[AUDIT]
    before = source.rows[AUDIT]
    assert now[: len(before)] == before
    created = [e for e in now[len(before) :] if field(e, "action") == AuditTag.BACKUP_CREATE]
    assert len(created) == 1
    (event,) = created
    assert field(event, "patient_id") is None
    assert field(event, "target") == source.report["backup_id"]
    assert field(event, "details")["rows"] == sum(source.report["counts"].values())
    assert run(source.install, "audit", "verify")[0] == 0


@pytest.mark.parametrize("target_kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("source_kind", ["sqlite", "postgresql"])
def test_a_restore_gives_back_every_row_file_and_figure(
    request: pytest.FixtureRequest, source_kind: str, target_kind: str, tmp_path: Path
) -> None:
    source = _source(request, source_kind)
    with fresh_database(target_kind, tmp_path) as url:
        target = restore_target(url, tmp_path, source.install.key_file)
        restored = run_json(target, "restore", str(source.backup))
        assert restored["counts"] == source.report["counts"]
        assert (restored["source_engine"], restored["target_engine"]) == (source_kind, target_kind)
        assert restored["backup_id"] == source.report["backup_id"]

        rows = dump(url)
        events = rows.pop(AUDIT)
        assert rows == {name: table for name, table in source.rows.items() if name != AUDIT}
        assert events[:-1] == source.rows[AUDIT]
        last = events[-1]
        assert field(last, "action") == AuditTag.BACKUP_RESTORE
        assert field(last, "target") == source.report["backup_id"]
        assert field(last, "prev_hash") == field(source.rows[AUDIT][-1], "hash")
        assert restored["audit_events"] == len(events)
        code, out, err = run(target, "audit", "verify")
        assert code == 0, err
        assert f"({len(events)} events)" in out

        assert data_files(target) == {}  # nothing but the database: kept files are rows
        assert _raw_files(target) == _raw_files(source.install)
        assert all(raw for raw in _raw_files(target).values())
        assert patient_stats(target, source.world) == source.stats


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_new_rows_after_a_restore_take_keys_after_the_restored_ones(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    source = _source(request, "sqlite")
    with fresh_database(kind, tmp_path) as url:
        target = restore_target(url, tmp_path, source.install.key_file)
        run_json(target, "restore", str(source.backup))
        added = run_json(target, "patients", "add", "--email", "later@example.org", "--name", "Later Patient")
        assert added["email"] == "later@example.org"
        events = dump(url)[AUDIT]
        assert [field(e, "id") for e in events] == sorted({field(e, "id") for e in events})
        assert (
            field(events[-1], "id") == len(source.rows[AUDIT]) + 2
        )  # the restore's event, then the new patient's
        assert run(target, "audit", "verify")[0] == 0


def test_a_restore_into_a_migrated_empty_database(
    sqlite_source: Source, database_url: str, tmp_path: Path
) -> None:
    target = restore_target(database_url, tmp_path, sqlite_source.install.key_file)
    restored = run_json(target, "restore", str(sqlite_source.backup))
    assert restored["counts"] == sqlite_source.report["counts"]
    rows = dump(database_url)
    assert rows["records"] == sqlite_source.rows["records"]
    assert rows[AUDIT][:-1] == sqlite_source.rows[AUDIT]
    assert run(target, "audit", "verify")[0] == 0
