"""What the fault tests share: a large simulated export, the victim's environment, a fork server."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.vault.keyfile import load_or_create
from tests.conftest import scratch_postgres_database
from tests.faults.checks import VICTIM_APPLICATION
from tests.faults.harness import ForkServer, fault_seed, fork_server
from tests.ingest.helpers import profile

IMPORT_EXPORT_DAYS = 240
"""Eight months of Dexcom G6 readings (about 69,000 records, 4.7 MB) for the command line: an import
commits after about 0.8 s on SQLite and 1.6 s on PostgreSQL here (2 cores)."""

UPLOAD_EXPORT_DAYS = 120
"""Four months (about 35,000 records, 2.3 MB) for the server, whose uploads take longer (multipart
body, the summaries refreshed within the request) and whose every kill costs a restart."""


def base_environment() -> dict[str, str]:
    """The test's environment without Glucoshare's settings (each victim gets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GLUCOSHARE_")}


def _clarity_export(folder: Path, days: int) -> Path:
    export = write_clarity(simulate(profile(seed=23), start=dt.date(2024, 1, 1), days=days))
    path = folder / f"clarity-{days}-days.csv"
    path.write_bytes(export.data)
    return path


@pytest.fixture(scope="session")
def import_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A large simulated Dexcom Clarity export for the command line (written once per test session)."""
    return _clarity_export(tmp_path_factory.mktemp("exports"), IMPORT_EXPORT_DAYS)


@pytest.fixture(scope="session")
def upload_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A large simulated Dexcom Clarity export for the server (written once per test session)."""
    return _clarity_export(tmp_path_factory.mktemp("exports"), UPLOAD_EXPORT_DAYS)


@pytest.fixture(scope="session")
def forks() -> Iterator[ForkServer]:
    """``glucoshare`` in children forked after its imports (see ``forkserver.py``)."""
    with fork_server("glucoshare", base_environment()) as server:
        yield server


def environment_of(settings: Settings) -> dict[str, str]:
    """The environment of a ``glucoshare`` process on these settings' database and data directory."""
    return {
        **base_environment(),
        "GLUCOSHARE_DATABASE_URL": settings.effective_database_url,
        "GLUCOSHARE_DATA_DIR": str(settings.data_dir),
        "GLUCOSHARE_SECRET_KEY_FILE": str(settings.effective_secret_key_file),
        "PGAPPNAME": VICTIM_APPLICATION,
    }


@pytest.fixture
def victim_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``glucoshare`` process under test: the test's database and data directory."""
    return environment_of(settings)


@dataclasses.dataclass(frozen=True)
class Installation:
    """A second, empty installation on the same engine as the test's (its own database and keys)."""

    settings: Settings
    engine: Engine

    @property
    def env(self) -> dict[str, str]:
        """The environment of a ``glucoshare`` process on this installation."""
        return environment_of(self.settings)


@pytest.fixture
def reference(database_url: str, sqlite_template: Path, tmp_path: Path) -> Iterator[Installation]:
    """An installation where a file is imported without interruption: the outcome to expect, and its duration.

    A database of its own, because the same export cannot be imported for two patients of one
    database (its transmitter belongs to one patient).
    """
    data = tmp_path / "reference"
    with contextlib.ExitStack() as stack:
        if database_url.startswith("sqlite"):
            data.mkdir()
            shutil.copyfile(sqlite_template, data / "glucoshare.db")
            url = f"sqlite:///{data / 'glucoshare.db'}"
        else:
            url = stack.enter_context(scratch_postgres_database("glucoshare_fault_reference"))
        settings = Settings(database_url=url, data_dir=data)
        engine = create_db_engine(url, keyring=load_or_create(settings.effective_secret_key_file))
        stack.callback(engine.dispose)
        upgrade(engine)
        yield Installation(settings, engine)


@pytest.fixture
def seed() -> int:
    """This test's seed for its random kill moments (printed; ``GLUCOSHARE_FAULT_SEED`` repeats it)."""
    chosen = fault_seed()
    print(f"fault seed {chosen} (GLUCOSHARE_FAULT_SEED={chosen} repeats these kill moments)")  # noqa: T201
    return chosen


def new_patient(engine: Engine, email: str) -> str:
    """A patient (Europe/Berlin) with this e-mail address; their id."""
    with session_scope(engine) as session:
        patient = add_patient(
            session, validate_patient(email=email, name="Fault Test", timezone="Europe/Berlin")
        )
        return patient.id


def import_with_cli(
    forks: ForkServer, env: dict[str, str], path: Path, patient: str, scratch: Path, timeout: float = 180
) -> tuple[int, str, str]:
    """Run ``glucoshare import PATH --patient PATIENT --json`` (forked): exit code, stdout, stderr."""
    out, err = scratch / "import.out", scratch / "import.err"
    run = forks.start(["glucoshare", "import", str(path), "--patient", patient, "--json"], env, out, err)
    return run.wait(timeout), out.read_text(), err.read_text()


def upload_over_http(
    client: TestClient, patient_id: str, headers: dict[str, str], path: Path
) -> httpx.Response:
    """``POST /v1/patients/{id}/uploads`` of the CSV export at ``path`` under ``headers``."""
    return client.post(
        f"/v1/patients/{patient_id}/uploads",
        headers=headers,
        files={"files": (path.name, path.read_bytes(), "text/csv")},
    )
