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
from tests.backup.conftest import Source, data_files, fresh_database, restore_target
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
            return {upload.id: read_raw(session, install.settings, upload) for upload in uploads}
    finally:
        engine.dispose()


def test_the_world_fills_every_table(sqlite_source: Source) -> None:
    empty = {name for name, rows in sqlite_source.rows.items() if not rows}
    assert empty <= {"summary_backlog"}, empty
    assert {t.name for t in Base.metadata.sorted_tables} == set(sqlite_source.rows)
    assert {path.split("/")[0] for path in sqlite_source.files} == {"uploads", "pending"}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_backup_is_one_private_file_with_a_sealed_manifest(
    request: pytest.FixtureRequest, kind: str
) -> None:
    source = _source(request, kind)
    assert stat.S_IMODE(source.backup.stat().st_mode) == 0o600
    report = source.report
    assert report["path"] == str(source.backup.resolve())
    assert report["bytes"] == source.backup.stat().st_size
    assert report["counts"] == {name: len(rows) for name, rows in source.rows.items()}
    assert report["tables"] == len(Base.metadata.sorted_tables)
    assert report["files"] == len(source.files)
    assert report["missing_files"] == 0
    assert report["source_engine"] == kind
    with zipfile.ZipFile(source.backup) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert names[0] == "glucoshare-backup.txt"
    assert names[-2:] == ["manifest.json", "manifest.hmac"]
    assert [t["name"] for t in manifest["tables"]] == [t.name for t in Base.metadata.sorted_tables]
    assert manifest["audit"]["events"] == len(source.rows[AUDIT])
    assert manifest["audit"]["head"] == field(source.rows[AUDIT][-1], "hash")
    assert manifest["audit"]["intact"] is True
    assert not any(name.endswith("master.key") for name in names)
    key = read_key_file(source.install.key_file)
    assert key.primary.key.hex() not in source.backup.read_bytes().hex()
    # No health data or identity in what is printed or in the manifest.
    for text in (json.dumps(report), json.dumps(manifest)):
        assert source.world.patient_email not in text
        assert "demo" not in text.lower()


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

        assert data_files(target) == source.files
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
