"""Source installations, built once per test session, and fresh databases to restore into."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
    files: dict[str, bytes]
    stats: tuple[Any, Any]


def data_files(install: Install) -> dict[str, bytes]:
    """The raw and held files of an installation, by path in its data folder."""
    found = {}
    for folder in ("uploads", "pending"):
        root = install.data_dir / folder
        if root.exists():
            found |= {
                str(p.relative_to(install.data_dir)): p.read_bytes() for p in root.rglob("*") if p.is_file()
            }
    return found


def _source(url: str, folder: Path) -> Source:
    install = Install(url, folder / "data", folder / "data" / "master.key")
    world = build_world(install, folder)
    rows = dump(url)
    backup = folder / "backups" / "nightly.glucoshare-backup"
    report = run_json(install, "backup", "--out", str(backup))
    return Source(install, world, backup, report, rows, data_files(install), patient_stats(install, world))


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
