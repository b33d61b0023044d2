"""PostgreSQL's own disk fills up: the test database lives in a tablespace on a small tmpfs.

PostgreSQL answers a write that finds no room with SQLSTATE ``53100`` (``disk_full``). An import
must then end with exit code 1 and one line (``error: the database server's disk is full; nothing
was stored``), an HTTP upload with ``507 storage_full``; the database holds exactly what it held
before, and once there is room the same import stores every record.

The tablespace's folder must belong to the server's operating-system user, so the test needs
PostgreSQL on this machine (its ``postgres`` user) and root to mount and hand over the tmpfs. It is
skipped otherwise, with the reason, unless ``GLUCOSHARE_TEST_REQUIRE_TMPFS=1`` (continuous
integration), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, make_url, text

from glucoshare.config import Settings
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine
from glucoshare.vault.keyfile import load_or_create
from glucoshare.web.app import create_app
from tests.conftest import DEFAULT_POSTGRES, table_snapshot
from tests.faults.checks import Outcome, assert_sound
from tests.faults.conftest import environment_of, import_with_cli, new_patient, upload_over_http
from tests.faults.disk import REQUIRE_TMPFS, leave_free, small_disk
from tests.faults.harness import ForkServer
from tests.faults.serving import upload_token

PATIENT = "full.tablespace@example.org"
DISK_MB = 64
"""The tmpfs: room for the migrated schema (about 10 MB) and the import (about 15 MB)."""
FULL = "error: the database server's disk is full; nothing was stored"
SERVER_USER = "postgres"


def _cannot(reason: str) -> None:
    if os.environ.get(REQUIRE_TMPFS) == "1":
        pytest.fail(f"{reason} ({REQUIRE_TMPFS}=1)")
    pytest.skip(reason)


@pytest.fixture
def postgres_on_small_disk(tmp_path: Path) -> Iterator[tuple[Path, Settings, Engine]]:
    """A database whose tablespace is a tmpfs of ``DISK_MB`` MB: disk, settings, engine."""
    try:
        shutil.chown(tmp_path, SERVER_USER)  # only to learn whether the user exists and we may
        shutil.chown(tmp_path, os.getuid())
    except (LookupError, PermissionError) as exc:
        _cannot(f"cannot hand a folder to PostgreSQL's user {SERVER_USER!r} ({type(exc).__name__})")
    # tmp_path's parents are private to this user: the server must reach the tablespace's folder.
    outer = Path(tempfile.mkdtemp(prefix="glucoshare-tablespace-"))
    outer.chmod(0o711)
    name = f"glucoshare_full_{uuid.uuid4().hex[:8]}"
    server = make_url(os.environ.get("GLUCOSHARE_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with small_disk(outer / "disk", DISK_MB) as disk:
            disk.chmod(0o711)
            space = disk / "pg"
            space.mkdir(mode=0o700)
            shutil.chown(space, SERVER_USER, SERVER_USER)
            try:
                with admin.connect() as conn:
                    conn.execute(text(f"CREATE TABLESPACE \"{name}\" LOCATION '{space}'"))
            except Exception as exc:  # noqa: BLE001 - a server elsewhere, or no right to make one
                _cannot(f"PostgreSQL cannot make a tablespace on the tmpfs ({type(exc).__name__})")
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}" TABLESPACE "{name}"'))
                url = server.set(database=name).render_as_string(hide_password=False)
                settings = Settings(database_url=url, data_dir=tmp_path / "data")
                engine = create_db_engine(url, keyring=load_or_create(settings.effective_secret_key_file))
                try:
                    upgrade(engine)
                    yield disk, settings, engine
                finally:
                    engine.dispose()
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    conn.execute(text(f'DROP TABLESPACE IF EXISTS "{name}"'))
    finally:
        admin.dispose()
        shutil.rmtree(outer, ignore_errors=True)


def test_a_full_tablespace_refuses_an_import_and_an_upload_and_keeps_the_database(
    postgres_on_small_disk: tuple[Path, Settings, Engine],
    forks: ForkServer,
    upload_export: Path,
    tmp_path: Path,
) -> None:
    disk, settings, engine = postgres_on_small_disk
    env = environment_of(settings)
    patient = new_patient(engine, PATIENT)
    headers = upload_token(engine, patient)
    before = table_snapshot(engine)

    leave_free(disk, 0)
    code, out, err = import_with_cli(forks, env, upload_export, PATIENT, tmp_path)
    assert (code, out, err.splitlines()) == (1, "", [FULL])
    assert_sound(engine)
    assert table_snapshot(engine) == before

    with TestClient(create_app(settings, engine), base_url="https://testserver") as client:
        answer = upload_over_http(client, patient, headers, upload_export)
    assert answer.status_code == httpx.codes.INSUFFICIENT_STORAGE, answer.text
    assert answer.json() == {
        "error": {"code": "storage_full", "message": FULL.removeprefix("error: "), "status": 507}
    }
    assert_sound(engine)
    before_rows = table_snapshot(engine)
    assert {k: v for k, v in before_rows.items() if k != "api_tokens"} == {
        k: v for k, v in before.items() if k != "api_tokens"
    }  # the token's last use may be noted (an update in place) or not

    (disk / "filler").unlink()
    code, out, err = import_with_cli(forks, env, upload_export, PATIENT, tmp_path)
    assert code == 0, err
    assert Outcome.of_json(out).new > 30_000
    assert_sound(engine)
