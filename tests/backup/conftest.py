"""Source installations, built once per test session, fresh databases to restore into, and backups opened."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glucoshare.backup.service import CheckedBackup, check_backup, write_backup
from glucoshare.backup.snapshot import snapshot_session
from glucoshare.db.session import create_db_engine
from glucoshare.vault.keyfile import read_key_file
from tests.backup.world import Dump, Install, World, build_world, dump, patient_stats, run_json
from tests.conftest import scratch_postgres_database


@dataclasses.dataclass(frozen=True)
class Source:
    """A filled installation and a backup of it."""

    install: Install
    world: World
    backup: Path
    report: dict[str, Any]
    """What ``glucoshare backup --json`` printed."""
    rows: Dump
    """Every row just before the backup."""
    stats: tuple[Any, Any]


def data_files(install: Install) -> dict[str, bytes]:
    """The files of an installation's data folder but its key file and SQLite database, by path.

    Kept raw files are database rows: a backup or restore writes nothing else to the folder.
    """
    if not install.data_dir.exists():
        return {}
    skipped = {install.key_file.resolve()}
    return {
        str(p.relative_to(install.data_dir)): p.read_bytes()
        for p in install.data_dir.rglob("*")
        if p.is_file() and p.resolve() not in skipped and not p.name.startswith("glucoshare.db")
    }


def _source(url: str, folder: Path) -> Source:
    install = Install(url, folder / "data", folder / "data" / "master.key")
    world = build_world(install, folder)
    rows = dump(url)
    backup = folder / "backups" / "nightly.glucoshare-backup"
    report = run_json(install, "backup", "--out", str(backup))
    return Source(install, world, backup, report, rows, patient_stats(install, world))


@pytest.fixture(scope="session")
def sqlite_source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """An SQLite installation with a clinic's data, and its backup."""
    folder = tmp_path_factory.mktemp("sqlite_source")
    return _source(f"sqlite:///{folder / 'data' / 'glucoshare.db'}", folder)


@pytest.fixture(scope="session")
def postgresql_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """A PostgreSQL installation with a clinic's data, and its backup."""
    with scratch_postgres_database("glucoshare_backup_source") as url:
        yield _source(url, tmp_path_factory.mktemp("postgresql_source"))


@contextlib.contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a database that does not exist yet (SQLite) or exists without a schema (PostgreSQL)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'new' / 'glucoshare.db'}"
        return
    with scratch_postgres_database("glucoshare_backup_target") as url:
        yield url


def restore_target(url: str, folder: Path, key_file: Path) -> Install:
    """A new installation on ``url`` given a copy of the key file kept with the backup."""
    target = Install(url, folder / "restored", folder / "restored" / "master.key")
    target.data_dir.mkdir(parents=True)
    shutil.copy2(key_file, target.key_file)
    return target


def opened(backup: Path, key_file: Path) -> CheckedBackup:
    """A backup checked and opened with ``key_file``, as a restore opens it: its manifest and cipher."""
    return check_backup(backup, read_key_file(key_file))


def member_of(backup: CheckedBackup, table: str) -> str:
    """The name of the (opaque) member that holds ``table``."""
    return next(entry.member for entry in backup.manifest.tables if entry.name == table)


def payload(backup: Path, checked: CheckedBackup, member: str) -> bytes:
    """The decrypted, decompressed payload of one member."""
    with zipfile.ZipFile(backup) as archive, checked.cipher.open(archive, member) as stream:
        return stream.read()


def backup_with_chunks(install: Install, out: Path, chunk_bytes: int) -> Path:
    """A backup of ``install`` written by the service with chunks of ``chunk_bytes`` (members of many chunks)."""
    engine = create_db_engine(install.url, keyring=read_key_file(install.key_file))
    try:
        with out.open("wb") as sink, snapshot_session(engine) as snapshot:
            write_backup(snapshot, sink, chunk_bytes=chunk_bytes)
    finally:
        engine.dispose()
    return out
