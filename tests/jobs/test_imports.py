"""Background imports: queued with their files sealed, run once by a worker (PostgreSQL) or in the
request (SQLite), and never half-stored, even when the worker is killed mid-import."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.jobs.schemas import RETRY_STALLED
from glucoshare.jobs.service import defer
from glucoshare.records.models import Record, Upload
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.web.app import create_app
from tests.ingest.helpers import profile
from tests.queue import run_queued_jobs
from tests.web.conftest import BASE_URL, Person, clarity_bytes, make_person

POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _uploads(engine: Engine, patient_id: str) -> tuple[int, int]:
    with session_scope(engine) as session:
        uploads = session.scalar(
            select(func.count()).select_from(Upload).where(Upload.patient_id == patient_id)
        )
        records = session.scalar(select(func.count()).select_from(Record))
    return int(uploads or 0), int(records or 0)


def _queue(client: TestClient, person: Person, name: str, data: bytes) -> dict[str, object]:
    answer = client.post(
        f"/v1/patients/{person.patient_id}/imports", headers=person.headers, files={"files": (name, data)}
    )
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def _status(client: TestClient, person: Person, import_id: object) -> dict[str, object]:
    answer = client.get(f"/v1/patients/{person.patient_id}/imports/{import_id}", headers=person.headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@POSTGRESQL
def test_a_queued_import_is_stored_by_the_worker_exactly_as_a_direct_one(
    engine: Engine, settings: Settings
) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    name, data = clarity_bytes(seed=4, days=3)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        queued = _queue(client, kim, name, data)
        assert queued["state"] == "queued"
        assert queued["uploads"] is None
        assert _uploads(engine, str(kim.patient_id))[0] == 0  # nothing before the worker runs
        with engine.connect() as conn:  # the waiting files are sealed, not kept in clear
            sealed = conn.execute(text("SELECT files_sealed FROM import_requests")).scalar_one()
        assert data[:200] not in sealed

        run_queued_jobs(engine, settings)

        done = _status(client, kim, queued["id"])
        again = client.post(  # the same file directly: every record is already there, once
            f"/v1/patients/{kim.patient_id}/uploads", headers=kim.headers, files={"files": (name, data)}
        )
    assert done["state"] == "done"
    (upload,) = done["uploads"]  # type: ignore[misc]
    (repeat,) = again.json()
    assert upload["file"] == name
    assert upload["new"] > 0
    assert (upload["counts"], upload["new"], upload["first"], upload["last"]) == (
        repeat["counts"],
        repeat["duplicates"],
        repeat["first"],
        repeat["last"],
    )
    assert repeat["new"] == 0
    with engine.connect() as conn:
        files_left = conn.execute(text("SELECT files_sealed FROM import_requests")).scalar_one()
    assert files_left is None  # dropped once imported: the upload keeps its raw file


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_refused_file_ends_the_import_failed_with_its_error_and_nothing_stored(
    engine: Engine, settings: Settings
) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        queued = _queue(client, kim, "notes.csv", b"Date,Note\n2026-01-01,hello\n")
        run_queued_jobs(engine, settings)
        failed = _status(client, kim, queued["id"])
    assert failed["state"] == "failed"
    assert failed["uploads"] is None
    error = failed["error"]
    assert isinstance(error, dict)
    assert error["code"] == "unrecognised_format"
    assert "notes.csv" in error["message"]
    assert _uploads(engine, str(kim.patient_id)) == (0, 0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_runs_the_import_before_it_answers(engine: Engine, settings: Settings) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    name, data = clarity_bytes(seed=5)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        queued = _queue(client, kim, name, data)
    assert queued["state"] == "done"
    assert len(queued["uploads"]) == 1  # type: ignore[arg-type]
    assert _uploads(engine, str(kim.patient_id))[0] == 1


def test_another_patients_import_is_not_found(engine: Engine, settings: Settings) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    eve = make_person(engine, "eve@example.org", "patient", patient=True)
    name, data = clarity_bytes(seed=6)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        queued = _queue(client, kim, name, data)
        as_eve = client.get(f"/v1/patients/{eve.patient_id}/imports/{queued['id']}", headers=eve.headers)
        of_kim = client.get(f"/v1/patients/{kim.patient_id}/imports/{queued['id']}", headers=eve.headers)
    assert as_eve.status_code == 404
    assert of_kim.status_code == 404


KILLS = 20


@POSTGRESQL
def test_a_worker_killed_at_20_random_points_of_a_large_import_never_leaves_part_of_it(
    engine: Engine, settings: Settings
) -> None:
    """SIGKILL of `glucoshare worker` while it imports: nothing of the file is visible until the
    import is whole; the rerun after each kill starts from the sealed files; counts are exact."""
    export = write_clarity(simulate(profile(seed=11), start=dt.date(2025, 1, 1), days=90))
    same_size = write_clarity(simulate(profile(seed=12), start=dt.date(2025, 1, 1), days=90))
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    ada = make_person(engine, "ada@example.org", "patient", patient=True)
    env = {
        **os.environ,
        "GLUCOSHARE_DATABASE_URL": settings.effective_database_url,
        "GLUCOSHARE_DATA_DIR": str(settings.data_dir),
    }
    exe = Path(sys.executable).with_name("glucoshare")
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        # How long such an import runs: Ada's, of another file of the same size, uninterrupted.
        reference = _queue(client, ada, same_size.file_name, same_size.data)
        began, ended = _run_worker(exe, env, engine, reference["id"], kill_after=None)
        assert _status(client, ada, reference["id"])["state"] == "done"
        duration = ended - began
        baseline = _uploads(engine, str(ada.patient_id))

        queued = _queue(client, kim, export.file_name, export.data)
        rng = random.Random(20261206)
        kills = 0
        while kills < KILLS:
            point = rng.uniform(0.0, 0.85 * duration)
            _run_worker(exe, env, engine, queued["id"], kill_after=point)
            state = _status(client, kim, queued["id"])["state"]
            uploads, records = _uploads(engine, str(kim.patient_id))
            if state == "done":  # the kill came after the commit: the import is whole
                break
            kills += 1
            assert state == "running", (point, state)
            assert (uploads, records) == (0, baseline[1]), (
                f"part of the import is visible after a kill at {point:.2f}s"
            )
            _put_back_stalled(engine, settings)
        run_queued_jobs(engine, settings)
        finished = _status(client, kim, queued["id"])
        again = client.post(  # the same file directly: every record is there, exactly once
            f"/v1/patients/{kim.patient_id}/uploads",
            headers=kim.headers,
            files={"files": (export.file_name, export.data)},
        )
    assert kills >= KILLS * 3 // 4, f"only {kills} kills landed inside the import"
    assert finished["state"] == "done"
    (upload,) = finished["uploads"]  # type: ignore[misc]
    (repeat,) = again.json()
    assert upload["duplicates"] == 0
    assert (repeat["new"], repeat["duplicates"]) == (0, upload["new"])
    assert _uploads(engine, str(kim.patient_id)) == (2, baseline[1] + upload["new"])


def _run_worker(
    exe: Path, env: dict[str, str], engine: Engine, import_id: object, *, kill_after: float | None
) -> tuple[float, float]:
    """Start a worker; once the import runs, kill it after ``kill_after`` seconds (``None``: let it
    finish). Returns when the import was seen running and when it was seen done (or killed)."""
    worker = subprocess.Popen(
        [str(exe), "worker", "--once", "--concurrency", "1"], env=env, stderr=subprocess.DEVNULL
    )
    began = None
    ended = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                state = conn.execute(
                    text("SELECT state FROM import_requests WHERE id = :id"), {"id": import_id}
                ).scalar_one()
            if state in {"running", "done"} and began is None:
                began = time.monotonic()
            if state == "done" and ended is None:
                ended = time.monotonic()
            if began is not None and kill_after is not None and time.monotonic() - began >= kill_after:
                worker.send_signal(signal.SIGKILL)
                break
            if worker.poll() is not None:
                break
            time.sleep(0.02)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert began is not None, "the worker never started the import"
    return began, ended if ended is not None else time.monotonic()


def _put_back_stalled(engine: Engine, settings: Settings) -> None:
    """A minute later (simulated): the dead worker's heartbeat is old, and the periodic task that
    hands its jobs to other workers runs."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '10 minutes'"))
    with session_scope(engine) as session:
        defer(session, RETRY_STALLED, timestamp=int(time.time()))
    del settings
