"""What a restore (or a backup) refuses: exit code 2, one line on stderr, and nothing changed anywhere."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from glucoshare.backup.format import manifest_seal
from glucoshare.vault.keyfile import load_or_create, read_key_file
from tests.backup.conftest import Source, data_files, restore_target
from tests.backup.world import Install, run, run_json
from tests.conftest import table_snapshot

RECORDS = "tables/records.jsonl"


@pytest.fixture
def target(database_url: str, tmp_path: Path, sqlite_source: Source) -> Install:
    """A migrated, empty database (each engine) with the backup's key file."""
    return restore_target(database_url, tmp_path / "target", sqlite_source.install.key_file)


@pytest.fixture
def backup(sqlite_source: Source, tmp_path: Path) -> Path:
    """A copy of the SQLite installation's backup, for a test to spoil."""
    copy = tmp_path / "copy.glucoshare-backup"
    shutil.copyfile(sqlite_source.backup, copy)
    return copy


def _everything(install: Install) -> tuple[object, ...]:
    engine = create_engine(install.url)
    try:
        rows = table_snapshot(engine)
    finally:
        engine.dispose()
    return rows, data_files(install), install.key_file.read_bytes() if install.key_file.exists() else None


def refused(install: Install, backup: Path, *messages: str) -> str:
    """Restore ``backup`` into ``install``: refused with exit code 2 and one line, nothing changed."""
    before = _everything(install)
    code, out, err = run(install, "restore", str(backup))
    assert code == 2, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    assert any(message in err for message in messages), err
    assert _everything(install) == before
    return err


def _member_data_offset(path: Path, member: str) -> tuple[int, int]:
    """Where a member's (compressed) bytes start in the file, and how many there are."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    with path.open("rb") as handle:
        handle.seek(info.header_offset + 26)
        name_length = int.from_bytes(handle.read(2), "little")
        extra_length = int.from_bytes(handle.read(2), "little")
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _rewrite(path: Path, change: Callable[[str, bytes], bytes]) -> None:
    """Write the archive again, each member's bytes passed through ``change`` (a valid zip again)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, change(info.filename, data))


def _first_raw_file(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return next(name for name in archive.namelist() if name.startswith("files/uploads/"))


def test_a_database_that_holds_data_is_refused(target: Install, backup: Path) -> None:
    run_json(target, "patients", "add", "--email", "someone@example.org", "--name", "Some One")
    refused(target, backup, "not empty")


@pytest.mark.parametrize(
    "member", [RECORDS, "tables/audit_events.jsonl", "files/uploads/", "manifest.json", "manifest.hmac"]
)
def test_a_changed_byte_is_refused(target: Install, backup: Path, member: str) -> None:
    name = _first_raw_file(backup) if member == "files/uploads/" else member
    start, size = _member_data_offset(backup, name)
    _flip(backup, start + size // 2)
    refused(target, backup, "damaged", "changed after")


def _changed_records(backup: Path) -> bytes:
    """The records stream with one glucose value changed."""
    with zipfile.ZipFile(backup) as archive:
        records = archive.read(RECORDS)
    changed = records.replace(b",120.0,", b",121.0,", 1)
    assert changed != records
    return changed


def test_a_changed_row_in_a_valid_archive_is_refused(target: Install, backup: Path) -> None:
    changed = _changed_records(backup)

    def change(name: str, data: bytes) -> bytes:
        return changed if name == RECORDS else data

    _rewrite(backup, change)
    err = refused(target, backup, "does not match its SHA-256")
    assert "records" in err


def test_a_changed_row_with_its_manifest_made_to_fit_is_refused(target: Install, backup: Path) -> None:
    """Without the key file nobody can reseal the manifest: the change shows even with new hashes."""
    changed = _changed_records(backup)

    def change(name: str, data: bytes) -> bytes:
        if name == RECORDS:
            return changed
        if name == "manifest.json":
            manifest = json.loads(data)
            entry = next(t for t in manifest["tables"] if t["name"] == "records")
            entry["sha256"] = hashlib.sha256(changed).hexdigest()
            return json.dumps(manifest, indent=2).encode()
        return data

    _rewrite(backup, change)
    refused(target, backup, "manifest was changed")


@pytest.mark.parametrize("cut", ["half", "directory", "tail"])
def test_a_truncated_backup_is_refused(target: Install, backup: Path, cut: str) -> None:
    size = backup.stat().st_size
    with zipfile.ZipFile(backup) as archive:
        directory = archive.start_dir
    keep = {"half": size // 2, "directory": directory, "tail": size - 10}[cut]
    with backup.open("r+b") as handle:
        handle.truncate(keep)
    refused(target, backup, "truncated", "damaged")


def test_another_key_file_is_refused(target: Install, backup: Path) -> None:
    target.key_file.unlink()
    load_or_create(target.key_file)
    err = refused(target, backup, "not the one this backup was made with")
    assert "GLUCOSHARE_SECRET_KEY_FILE" in err


def test_a_missing_key_file_is_refused_and_not_made(target: Install, backup: Path) -> None:
    target.key_file.unlink()
    refused(target, backup, "no master key file")
    assert not target.key_file.exists()


@pytest.fixture
def not_backups(tmp_path: Path) -> dict[str, Path]:
    """Files that are not Glucoshare backups: noise, an empty file, another zip, and no file at all."""
    folder = tmp_path / "others"
    folder.mkdir()
    noise = folder / "noise.bin"
    noise.write_bytes(os.urandom(50_000))
    empty = folder / "empty"
    empty.write_bytes(b"")
    other_zip = folder / "export.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readings.csv", "time,glucose\n2025-01-01 08:00,120\n")
    return {"noise": noise, "empty": empty, "zip": other_zip, "missing": folder / "nothing-here"}


@pytest.mark.parametrize("kind", ["noise", "empty", "zip", "missing"])
def test_a_file_that_is_no_backup_is_refused(
    target: Install, not_backups: dict[str, Path], kind: str
) -> None:
    refused(target, not_backups[kind], "not a Glucoshare backup", "no such file")


def _reseal(backup: Path, key_file: Path, **changes: str) -> None:
    ring = read_key_file(key_file)
    with zipfile.ZipFile(backup) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    manifest.update(changes)
    document = json.dumps(manifest, indent=2)

    def change(name: str, data: bytes) -> bytes:
        if name == "manifest.json":
            return document.encode()
        if name == "manifest.hmac":
            return (manifest_seal(ring, document) + "\n").encode()
        return data

    _rewrite(backup, change)


def test_a_backup_of_a_newer_schema_is_refused(target: Install, backup: Path) -> None:
    _reseal(backup, target.key_file, revision="9999", glucoshare_version="9.0.0")
    err = refused(target, backup, "newer than this Glucoshare")
    assert "restore it with Glucoshare 9.0.0 or later" in err


def test_a_backup_of_an_older_schema_is_refused_with_the_way_forward(target: Install, backup: Path) -> None:
    _reseal(backup, target.key_file, revision="0015", glucoshare_version="0.0.9")
    err = refused(target, backup, "older than this Glucoshare")
    assert "restore it with Glucoshare 0.0.9, then upgrade" in err


def test_another_file_in_the_data_folder_is_refused(target: Install, backup: Path) -> None:
    name = _first_raw_file(backup)
    squatter = target.data_dir / name.removeprefix("files/")
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"something else")
    refused(target, backup, "already holds another")


@pytest.mark.parametrize("kind", ["tampered", "noise", "newer"])
def test_a_refusal_does_not_create_a_database(
    sqlite_source: Source, backup: Path, tmp_path: Path, not_backups: dict[str, Path], kind: str
) -> None:
    target = restore_target(
        f"sqlite:///{tmp_path / 'new' / 'glucoshare.db'}", tmp_path / "t", sqlite_source.install.key_file
    )
    if kind == "tampered":
        start, size = _member_data_offset(backup, RECORDS)
        _flip(backup, start + size // 2)
    elif kind == "newer":
        _reseal(backup, target.key_file, revision="9999")
    code, _, err = run(target, "restore", str(not_backups["noise"] if kind == "noise" else backup))
    assert code == 2, err
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in target.data_dir.iterdir()) == ["master.key"]


def test_a_backup_goes_nowhere_it_should_not(sqlite_source: Source, tmp_path: Path) -> None:
    install = sqlite_source.install
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    database = install.url.removeprefix("sqlite:///")
    for out, message in [
        (tmp_path, "is a folder"),
        (blocker / "backup.zip", "cannot be written"),
        (Path(database), "is the database or the master key file"),
        (install.key_file, "is the database or the master key file"),
    ]:
        code, stdout, err = run(install, "backup", "--out", str(out), "--json")
        assert code == 2, err
        assert stdout == ""
        assert len(err.strip().splitlines()) == 1, err
        assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_postgresql_database_that_does_not_exist_is_refused(
    postgres_database: str, sqlite_source: Source, tmp_path: Path
) -> None:
    missing = make_url(postgres_database).set(database="glucoshare_backup_never_created")
    target = restore_target(
        missing.render_as_string(hide_password=False), tmp_path / "t", sqlite_source.install.key_file
    )
    code, out, err = run(target, "restore", str(sqlite_source.backup))
    assert code == 2, err
    assert out == ""
    assert "the database cannot be reached" in err
    assert len(err.strip().splitlines()) == 1


def test_the_database_file_is_protected_whatever_its_url_adds(sqlite_source: Source) -> None:
    """``sqlite:///PATH?timeout=5`` names the same file: a backup must not be written over it."""
    install = dataclasses.replace(sqlite_source.install, url=sqlite_source.install.url + "?timeout=5")
    database = Path(sqlite_source.install.url.removeprefix("sqlite:///"))
    before = database.read_bytes()
    code, stdout, err = run(install, "backup", "--out", str(database), "--json")
    assert code == 2, err
    assert stdout == ""
    assert "is the database or the master key file" in err
    assert database.read_bytes() == before
