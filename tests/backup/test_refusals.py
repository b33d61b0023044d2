"""What a restore (or a backup) refuses: exit code 2, one line on stderr, and nothing changed anywhere."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from glucoshare.backup.errors import BackupDamagedError, StreamDamagedError
from glucoshare.backup.format import MIN_CHUNK_BYTES
from glucoshare.backup.service import restore_backup
from glucoshare.backup.stream import PREFIX_BYTES, TAG_BYTES
from glucoshare.db.models import Base
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.errors import UnreadableFileError
from glucoshare.vault.keyfile import (
    load_or_create,
    only_primary,
    read_key_file,
    with_new_primary,
    write_key_file,
)
from tests.backup.conftest import (
    Source,
    backup_with_chunks,
    data_files,
    member_of,
    opened,
    restore_target,
)
from tests.backup.world import Install, run, run_json
from tests.conftest import table_snapshot

RECORDS = "records"
CHUNK = MIN_CHUNK_BYTES
SEALED_CHUNK = CHUNK + TAG_BYTES


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
    """Where a member's (stored, encrypted) bytes start in the file, and how many there are."""
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
    """Write the archive again, each member's stored bytes passed through ``change`` (a valid zip again).

    Zip CRCs are made anew: only the encryption can tell a change.
    """
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, change(info.filename, data))


def _stored(path: Path, member: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(member)


def test_a_database_that_holds_data_is_refused(target: Install, backup: Path) -> None:
    run_json(target, "patients", "add", "--email", "someone@example.org", "--name", "Some One")
    refused(target, backup, "not empty")


@pytest.mark.parametrize("table", [RECORDS, "audit_events", "devices"])
def test_a_changed_byte_in_a_table_is_refused(target: Install, backup: Path, table: str) -> None:
    member = member_of(opened(backup, target.key_file), table)
    start, size = _member_data_offset(backup, member)
    _flip(backup, start + size // 2)
    err = refused(target, backup, "the backup is damaged or was altered")
    # A one-chunk member: the zip's CRC, checked as its last byte is read, tells first.
    assert f"member {member} (table {table}) chunk 0 fails the zip's checksum" in err


def test_a_changed_byte_in_the_manifest_is_refused(target: Install, backup: Path) -> None:
    start, size = _member_data_offset(backup, "manifest")
    _flip(backup, start + size // 2)
    refused(target, backup, "the backup is damaged or was altered: member manifest chunk 0")


def test_a_changed_header_is_refused(target: Install, backup: Path) -> None:
    """The header is clear but bound to the backup key: another salt, and nothing opens."""
    header = json.loads(_stored(backup, "header.json"))
    salt = bytearray(base64.b64decode(header["salt"]))
    salt[0] ^= 0x01
    header["salt"] = base64.b64encode(bytes(salt)).decode()

    def change(name: str, data: bytes) -> bytes:
        return json.dumps(header, indent=2).encode() if name == "header.json" else data

    _rewrite(backup, change)
    refused(target, backup, "member manifest chunk 0 fails authentication")


def test_a_changed_byte_in_a_valid_archive_is_refused(target: Install, backup: Path) -> None:
    """With the zip's CRCs made anew, the encryption still tells: the chunk fails authentication."""
    member = member_of(opened(backup, target.key_file), RECORDS)

    def change(name: str, data: bytes) -> bytes:
        if name != member:
            return data
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x40
        return bytes(flipped)

    _rewrite(backup, change)
    refused(target, backup, f"member {member} (table records) chunk 0 fails authentication")


@pytest.fixture
def chunked(sqlite_source: Source, tmp_path: Path) -> tuple[Path, str, int]:
    """A backup of the SQLite installation in chunks of 1 KiB: its path, the records member, its chunks."""
    path = backup_with_chunks(sqlite_source.install, tmp_path / "chunked.glucoshare-backup", CHUNK)
    member = member_of(opened(path, sqlite_source.install.key_file), RECORDS)
    _, size = _member_data_offset(path, member)
    chunks = -(-(size - PREFIX_BYTES) // SEALED_CHUNK)
    assert chunks >= 4, "the records member should span several chunks"
    return path, member, chunks


def _chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    body = data[PREFIX_BYTES:]
    return data[:PREFIX_BYTES], [body[i : i + SEALED_CHUNK] for i in range(0, len(body), SEALED_CHUNK)]


def test_a_bit_flip_in_an_inner_chunk_fails_its_authentication(
    target: Install, chunked: tuple[Path, str, int]
) -> None:
    path, member, _ = chunked
    start, _ = _member_data_offset(path, member)
    _flip(path, start + PREFIX_BYTES + 2 * SEALED_CHUNK + 100)  # in chunk 2, the zip's CRC is not reached
    refused(
        target, path, f"damaged or was altered: member {member} (table records) chunk 2 fails authentication"
    )


def test_two_chunks_swapped_are_refused(target: Install, chunked: tuple[Path, str, int]) -> None:
    path, member, _ = chunked

    def change(name: str, data: bytes) -> bytes:
        if name != member:
            return data
        prefix, chunks = _chunks(data)
        chunks[1], chunks[2] = chunks[2], chunks[1]
        return prefix + b"".join(chunks)

    _rewrite(path, change)
    refused(target, path, f"member {member} (table records) chunk 1 fails authentication")


def test_a_member_cut_at_a_chunk_boundary_is_refused(target: Install, chunked: tuple[Path, str, int]) -> None:
    path, member, chunks = chunked

    def change(name: str, data: bytes) -> bytes:
        return data[: PREFIX_BYTES + (chunks - 1) * SEALED_CHUNK] if name == member else data

    _rewrite(path, change)
    refused(target, path, f"member {member} (table records) chunk {chunks - 1} is missing")


def test_members_swapped_within_a_backup_are_refused(target: Install, backup: Path) -> None:
    checked = opened(backup, target.key_file)
    first, second = member_of(checked, "patients"), member_of(checked, RECORDS)
    swap = {first: _stored(backup, second), second: _stored(backup, first)}

    def change(name: str, stored: bytes) -> bytes:
        return swap.get(name, stored)

    _rewrite(backup, change)
    refused(target, backup, f"member {first} (table patients) chunk 0 fails authentication")


@pytest.mark.parametrize("what", [RECORDS, "manifest"])
def test_a_member_of_another_backup_with_the_same_key_is_refused(
    target: Install, backup: Path, sqlite_source: Source, tmp_path: Path, what: str
) -> None:
    """Every backup has a key of its own (a new salt): a member moved between backups does not open."""
    other = backup_with_chunks(sqlite_source.install, tmp_path / "other.glucoshare-backup", 1 << 20)
    if what == "manifest":
        name = "manifest"
    else:
        name = member_of(opened(backup, target.key_file), what)
        assert member_of(opened(other, target.key_file), what) == name  # the same place in both
    moved = _stored(other, name)

    def change(current: str, stored: bytes) -> bytes:
        return moved if current == name else stored

    _rewrite(backup, change)
    described = name if what == "manifest" else f"{name} (table {what})"
    refused(target, backup, f"member {described} chunk 0 fails authentication")


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


def test_a_key_file_rotated_since_restores_with_the_retired_key(target: Install, backup: Path) -> None:
    """The backup key derives from the master key in force when it was made; a restore finds it by id."""
    ring = read_key_file(target.key_file)
    rotated = with_new_primary(ring)
    write_key_file(target.key_file, rotated)
    restored = run_json(target, "restore", str(backup))
    assert restored["counts"]["records"] > 0
    assert run(target, "audit", "verify")[0] == 0


def test_a_key_file_without_the_backups_master_key_is_refused(target: Install, backup: Path) -> None:
    ring = read_key_file(target.key_file)
    write_key_file(target.key_file, only_primary(with_new_primary(ring)))
    err = refused(target, backup, "not the one this backup was made with")
    assert f"it needs {ring.primary.id}" in err


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
    """Change the manifest as only the holder of the key file can: decrypted, changed, encrypted again."""
    checked = opened(backup, key_file)
    manifest = checked.manifest.model_copy(update=changes)
    with zipfile.ZipFile(backup) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(backup, "w") as archive:
        for name, data in members:
            if name != "manifest":
                archive.writestr(name, data)
        with checked.cipher.create(archive, "manifest") as out:
            out.write(manifest.model_dump_json(indent=2).encode())


def test_a_backup_of_a_newer_schema_is_refused(target: Install, backup: Path) -> None:
    _reseal(backup, target.key_file, revision="9999", glucoshare_version="9.0.0")
    err = refused(target, backup, "newer than this Glucoshare")
    assert "restore it with Glucoshare 9.0.0 or later" in err


def test_a_backup_of_an_older_schema_is_refused_with_the_way_forward(target: Install, backup: Path) -> None:
    _reseal(backup, target.key_file, revision="0015", glucoshare_version="0.0.9")
    err = refused(target, backup, "older than this Glucoshare")
    assert "restore it with Glucoshare 0.0.9, then upgrade" in err


def test_a_backup_of_the_older_unencrypted_format_is_refused(target: Install, tmp_path: Path) -> None:
    """Format 1 (clear tables, a sealed manifest) is refused with the version that restores it."""
    old = tmp_path / "format-1.glucoshare-backup"
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr("glucoshare-backup.txt", "glucoshare-backup 1\nA Glucoshare backup.\n")
        archive.writestr("tables/records.jsonl", "[1,120.0]\n")
        archive.writestr(
            "manifest.json", json.dumps({"format": "glucoshare-backup", "glucoshare_version": "0.1.0"})
        )
        archive.writestr("manifest.hmac", "00\n")
    err = refused(target, old, "made by an older Glucoshare (0.1.0)")
    assert "restores format 2 only: restore it with the Glucoshare version that made it" in err


def test_a_backup_of_a_newer_format_is_refused(target: Install, tmp_path: Path) -> None:
    newer = tmp_path / "format-3.glucoshare-backup"
    with zipfile.ZipFile(newer, "w") as archive:
        archive.writestr("glucoshare-backup.txt", "glucoshare-backup 3\nA Glucoshare backup.\n")
    refused(target, newer, "made by a newer Glucoshare")


def test_damage_is_reported_as_an_unreadable_file() -> None:
    assert issubclass(StreamDamagedError, BackupDamagedError)
    assert issubclass(BackupDamagedError, UnreadableFileError)


def test_a_restore_that_fails_midway_leaves_the_database_empty(
    target: Install, backup: Path, sqlite_source: Source
) -> None:
    """Checked whole, then changed under the restore (a late table): the one transaction stores nothing."""
    checked = opened(backup, target.key_file)
    counts = checked.manifest.counts
    tables = [t.name for t in Base.metadata.sorted_tables if counts[t.name]]
    late = tables[-1]
    assert tables.index(late) > 2  # tables before it are inserted first
    start, size = _member_data_offset(backup, member_of(checked, late))
    _flip(backup, start + size // 2)
    engine = create_db_engine(target.url, keyring=read_key_file(target.key_file))
    try:
        with pytest.raises(BackupDamagedError, match=f"table {late}"), session_scope(engine) as session:
            restore_backup(session, backup, checked)
        with session_scope(engine) as session:
            rows = {
                t.name: session.scalar(select(func.count()).select_from(t))
                for t in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()
    assert set(rows.values()) == {0}
    assert data_files(target) == {}


@pytest.mark.parametrize("kind", ["tampered", "noise", "newer"])
def test_a_refusal_does_not_create_a_database(
    sqlite_source: Source, backup: Path, tmp_path: Path, not_backups: dict[str, Path], kind: str
) -> None:
    target = restore_target(
        f"sqlite:///{tmp_path / 'new' / 'glucoshare.db'}", tmp_path / "t", sqlite_source.install.key_file
    )
    if kind == "tampered":
        start, size = _member_data_offset(backup, member_of(opened(backup, target.key_file), RECORDS))
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
