"""The database connection lost in the middle of a request, and an SQLite database locked by another process.

PostgreSQL: while an upload (HTTP) or an import (command line) writes its records, the test ends
the victim's server sessions with ``pg_terminate_backend``. The client gets a clean error (HTTP
``503`` in the one JSON error shape with ``Retry-After``; exit code 1 and one line on stderr), no
traceback or SQL anywhere (answer or server log), nothing is stored, and the next request succeeds
on a fresh connection.

SQLite: another process holds the write lock longer than the busy timeout; the same clean error.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from starlette.requests import Request

from glucoshare.config import Settings
from glucoshare.db.session import create_db_engine
from glucoshare.web.deps import refresh_after
from tests.faults.checks import VICTIM_APPLICATION, assert_sound, holdings, raw_leftovers, wait_for_victims
from tests.faults.conftest import new_patient
from tests.faults.harness import ForkServer, Running
from tests.faults.serving import UploadRequest, free_port, serve_command, upload_token, wait_until_serving

PATIENT = "lost.connection@example.org"
LEAKS = ("Traceback", "SELECT", "INSERT", "COPY", "sqlalchemy", "psycopg", "sqlite3", "[SQL", "records")
"""Nothing of these may reach a client or the server's log: code, SQL, table names."""

LOCK_TIMEOUT_S = 1
"""The busy timeout of the victims of the lock tests (SQLite URL ``?timeout=``), instead of 30 s."""


def terminate_while_writing(engine: Engine, victim: Running, timeout: float = 60) -> None:
    """Once the victim writes records (its transaction is mid-import), end its database sessions."""
    writing = text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
        "AND state IN ('active', 'idle in transaction') "
        "AND (query ILIKE 'COPY records_incoming%' OR query ILIKE '%INSERT INTO records%')"
    )
    terminate = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = :name"
    )
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while not conn.execute(writing, {"name": VICTIM_APPLICATION}).scalar():
            conn.rollback()
            assert victim.poll() is None, "the victim ended before it wrote records"
            assert time.monotonic() < deadline, "the victim did not write records in time"
            time.sleep(0.01)
        assert conn.execute(terminate, {"name": VICTIM_APPLICATION}).scalar()
        conn.commit()


def assert_clean(words: str) -> None:
    """No code, SQL or table name in ``words``."""
    for leak in LEAKS:
        assert leak not in words, f"{leak!r} leaked: {words[:2000]}"


@contextmanager
def serving(forks: ForkServer, env: dict[str, str], port: int, log: Path) -> Iterator[Running]:
    """``glucoshare serve`` (forked) answering on ``port`` until the block ends; its log in ``log``."""
    server = forks.start(serve_command(port), env, log.with_suffix(".out"), log)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server)
        yield server
    finally:
        server.kill()
        server.wait(30)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_lost_during_an_upload_answers_503_and_the_next_request_succeeds(
    engine: Engine,
    settings: Settings,
    victim_env: dict[str, str],
    forks: ForkServer,
    upload_export: Path,
    tmp_path: Path,
) -> None:
    patient = new_patient(engine, PATIENT)
    headers = upload_token(engine, patient)
    reader = upload_token(engine, patient, "read")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    before = holdings(engine, patient)
    log = tmp_path / "serve.err"
    with serving(forks, victim_env, port, log) as server:
        request = UploadRequest(base, patient, headers, upload_export).start()
        terminate_while_writing(engine, server)
        answer = request.finish()
        assert answer is not None
        assert answer.status_code == httpx.codes.SERVICE_UNAVAILABLE, answer.text
        assert answer.json() == {
            "error": {
                "code": "database_unavailable",
                "message": answer.json()["error"]["message"],
                "status": 503,
            }
        }
        assert int(answer.headers["Retry-After"]) > 0
        assert "nothing was stored" in answer.json()["error"]["message"]
        assert_clean(answer.text)
        assert holdings(engine, patient) == before
        assert raw_leftovers(engine, patient) == []

        # The pool hands out no dead connection: the next requests succeed.
        listed = httpx.get(f"{base}/v1/patients/{patient}/uploads", headers=reader, timeout=30)
        assert listed.status_code == httpx.codes.OK, listed.text
        assert listed.json() == []
        retried = UploadRequest(base, patient, headers, upload_export).start().finish()
        assert retried is not None
        assert retried.status_code == httpx.codes.CREATED, retried.text
        assert holdings(engine, patient).records == retried.json()[0]["new"] > 30_000
    assert_clean(log.read_text())
    assert_sound(engine)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_lost_during_an_import_exits_1_with_one_line(
    engine: Engine,
    settings: Settings,
    victim_env: dict[str, str],
    forks: ForkServer,
    import_export: Path,
    tmp_path: Path,
) -> None:
    patient = new_patient(engine, PATIENT)
    before = holdings(engine, patient)
    out, err = tmp_path / "import.out", tmp_path / "import.err"
    victim = forks.start(
        ["glucoshare", "import", str(import_export), "--patient", PATIENT, "--json"], victim_env, out, err
    )
    terminate_while_writing(engine, victim)
    assert victim.wait(60) == 1
    assert out.read_text() == ""
    lines = err.read_text().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "database" in lines[0] and "nothing was stored" in lines[0], (
        lines
    )
    assert_clean(lines[0])
    wait_for_victims(engine)
    assert holdings(engine, patient) == before
    assert raw_leftovers(engine, patient) == []
    assert_sound(engine)


def _locked_url(settings: Settings) -> str:
    return (
        make_url(settings.effective_database_url)
        .update_query_dict({"timeout": str(LOCK_TIMEOUT_S)})
        .render_as_string(hide_password=False)
    )


@contextmanager
def write_locked(database: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock (``BEGIN EXCLUSIVE``) for the block."""
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_locked_sqlite_database_gives_a_clean_error(
    engine: Engine,
    settings: Settings,
    victim_env: dict[str, str],
    forks: ForkServer,
    import_export: Path,
    tmp_path: Path,
) -> None:
    patient = new_patient(engine, PATIENT)
    headers = upload_token(engine, patient, "read")
    env = {**victim_env, "GLUCOSHARE_DATABASE_URL": _locked_url(settings)}
    database = Path(str(make_url(settings.effective_database_url).database))
    before = holdings(engine, patient)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.err"
    with serving(forks, env, port, log):
        with write_locked(database):
            out, err = tmp_path / "import.out", tmp_path / "import.err"
            victim = forks.start(
                ["glucoshare", "import", str(import_export), "--patient", PATIENT, "--json"], env, out, err
            )
            assert victim.wait(60) == 1
            assert out.read_text() == ""
            lines = err.read_text().splitlines()
            assert len(lines) == 1, lines
            assert (
                lines[0].startswith("error: ") and "locked" in lines[0] and "nothing was stored" in lines[0]
            ), lines
            assert_clean(lines[0])

            # Listing uploads is audited (a write): it waits for the lock, then answers 503.
            answer = httpx.get(f"{base}/v1/patients/{patient}/uploads", headers=headers, timeout=30)
            assert answer.status_code == httpx.codes.SERVICE_UNAVAILABLE, answer.text
            assert answer.json()["error"]["code"] == "database_unavailable"
            assert int(answer.headers["Retry-After"]) > 0
            assert_clean(answer.text)
        # The lock gone, the same server answers.
        listed = httpx.get(f"{base}/v1/patients/{patient}/uploads", headers=headers, timeout=30)
        assert listed.status_code == httpx.codes.OK, listed.text
    assert holdings(engine, patient) == before
    assert_clean(log.read_text())
    assert_sound(engine)


def test_a_fault_after_the_data_committed_does_not_fail_the_request(caplog: pytest.LogCaptureFixture) -> None:
    """The summary refresh after an upload runs in a second transaction: when the database is gone
    by then, the upload is stored all the same (its span waits in the backlog), so the request
    must not answer that nothing was stored."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    gone = create_db_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/none")
    request = Request({"type": "http", "app": SimpleNamespace(state=SimpleNamespace(engine=gone))})
    try:
        with caplog.at_level(logging.WARNING, logger="glucoshare.web.deps"):
            refresh_after(request, ["some-patient"])
    finally:
        gone.dispose()
    assert "summaries left in the backlog after a fault (DatabaseUnavailableError)" in caplog.text
