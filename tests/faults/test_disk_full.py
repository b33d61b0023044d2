"""A disk that is really full: a small tmpfs holds the database and the data directory.

An import that does not fit is refused with exit code 1 and one line ("the disk is full; nothing
was stored"), an HTTP upload with ``507`` in the one JSON error shape; the database still opens,
passes its integrity check and holds exactly what it held before, and no file is left behind.
Once there is room again, the same import succeeds. Kept raw files are database rows, so a full
data directory (the database elsewhere, on either engine) stops no import; the mail outbox lives
there, and a mail that cannot be written is answered with ``507``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.db.session import create_db_engine
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.vault.keyfile import load_or_create
from glucoshare.web.app import create_app
from tests.conftest import table_snapshot
from tests.faults.checks import Outcome, assert_sound, data_dir_files
from tests.faults.conftest import environment_of, import_with_cli, new_patient, upload_over_http
from tests.faults.disk import leave_free, small_disk
from tests.faults.harness import ForkServer
from tests.faults.serving import upload_token
from tests.ingest.helpers import profile
from tests.web.conftest import make_person

PATIENT = "full.disk@example.org"
DISK_MB = 24
STEP = 384 * 1024
"""Free space grows by this much from none until the import fits (about 2 MB for the upload
export on SQLite: its records and then its sealed raw file go into the write-ahead log; the database
file grows later, at the checkpoint after the commit), so that the disk fills up at every stage of
the import."""
FULL = "error: the disk is full; nothing was stored"
SQLITE_FILES = ("glucoshare.db-wal", "glucoshare.db-shm")
"""Files SQLite keeps beside the database, whose size changes with any write."""


def _files(data: Path) -> list[str]:
    return [name for name in data_dir_files(data) if not name.endswith(SQLITE_FILES)]


@pytest.fixture
def month_export(tmp_path: Path) -> Path:
    """A small export (two weeks, another CGM) that is stored before the disk fills up."""
    export = write_clarity(simulate(profile(seed=5), start=dt.date(2023, 6, 1), days=14))
    path = tmp_path / "two-weeks.csv"
    path.write_bytes(export.data)
    return path


@pytest.fixture
def sqlite_on_small_disk(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[Path, Settings, Engine]]:
    """A tmpfs of ``DISK_MB`` holding an SQLite database and the data directory: disk, settings, engine."""
    with small_disk(tmp_path / "disk", DISK_MB) as disk:
        data = disk / "data"
        data.mkdir()
        shutil.copyfile(sqlite_template, data / "glucoshare.db")
        settings = Settings(database_url=f"sqlite:///{data / 'glucoshare.db'}", data_dir=data)
        engine = create_db_engine(
            settings.effective_database_url, keyring=load_or_create(settings.effective_secret_key_file)
        )
        try:
            yield disk, settings, engine
        finally:
            engine.dispose()


def test_a_full_disk_refuses_an_sqlite_import_and_upload_and_keeps_the_database(
    sqlite_on_small_disk: tuple[Path, Settings, Engine],
    forks: ForkServer,
    upload_export: Path,
    month_export: Path,
    tmp_path: Path,
) -> None:
    disk, settings, engine = sqlite_on_small_disk
    env = environment_of(settings)
    patient = new_patient(engine, PATIENT)
    headers = upload_token(engine, patient)
    code, _, err = import_with_cli(forks, env, month_export, PATIENT, tmp_path)
    assert code == 0, err
    before = table_snapshot(engine)
    files = _files(settings.data_dir)

    refused = 0
    while True:
        free = refused * STEP
        leave_free(disk, free)
        code, out, err = import_with_cli(forks, env, upload_export, PATIENT, tmp_path)
        if code == 0:
            break
        assert (code, out, err.splitlines()) == (1, "", [FULL]), f"{free} bytes free"
        assert_sound(engine)
        assert table_snapshot(engine) == before, f"{free} bytes free"
        assert _files(settings.data_dir) == files, f"{free} bytes free"
        refused += 1
    print(f"refused with 0 to {(refused - 1) * STEP:,} bytes free; imported with {free:,}")  # noqa: T201
    assert refused >= 4
    assert Outcome.of_json(out).new > 30_000
    assert_sound(engine)
    before = table_snapshot(engine)
    files = _files(settings.data_dir)

    leave_free(disk, 0)
    with TestClient(create_app(settings, engine), base_url="https://testserver") as client:
        answer = upload_over_http(client, patient, headers, month_export)
    assert answer.status_code == httpx.codes.INSUFFICIENT_STORAGE, answer.text
    assert answer.json() == {
        "error": {"code": "storage_full", "message": FULL.removeprefix("error: "), "status": 507}
    }
    assert_sound(engine)
    assert table_snapshot(engine) == before
    assert _files(settings.data_dir) == files


def test_a_full_data_directory_stops_no_import_and_refuses_the_outbox(
    engine: Engine,
    settings: Settings,
    forks: ForkServer,
    upload_export: Path,
    tmp_path: Path,
) -> None:
    """Kept raw files are rows: imports need no room in the data directory; the mail outbox does."""
    patient = new_patient(engine, PATIENT)
    headers = upload_token(engine, patient)
    person = make_person(engine, "reset.me@example.org", "patient")
    with small_disk(tmp_path / "disk", 4) as disk:
        # The database where it was (SQLite file or PostgreSQL), the data directory on the small disk.
        on_disk = settings.model_copy(
            update={"data_dir": disk, "secret_key_file": settings.effective_secret_key_file}
        )
        env = environment_of(on_disk)
        leave_free(disk, 0)

        code, out, err = import_with_cli(forks, env, upload_export, PATIENT, tmp_path)
        assert code == 0, err
        imported = Outcome.of_json(out)
        assert imported.new > 0
        assert data_dir_files(disk) == ["filler"]

        with TestClient(create_app(on_disk, engine), base_url="https://testserver") as client:
            answer = upload_over_http(client, patient, headers, upload_export)
            assert answer.status_code == httpx.codes.CREATED, answer.text
            assert answer.json()[0]["new"] == 0  # the same file again: every record a duplicate
            assert data_dir_files(disk) == ["filler"]

            # A mail goes to the outbox once its change is committed: the change stays, the
            # answer says the disk is full (and not that nothing was stored).
            reset = client.post("/v1/auth/password-reset", json={"email": person.email})
            assert reset.status_code == httpx.codes.INSUFFICIENT_STORAGE, reset.text
            assert reset.json()["error"]["message"] == "the disk is full"
            assert data_dir_files(disk) == ["filler"]
        assert_sound(engine)
