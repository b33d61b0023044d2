"""A canary patient whose identifying data, secrets and glucose rows must never appear in a log line
or, unencrypted, in the bytes the database keeps on disk (issue 4; HIPAA 164.312(a)(2)(iv))."""

from __future__ import annotations

import datetime as dt
import io
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.web.logging import RedactQuery, SafeTracebacks
from tests.ingest.helpers import profile

NAME = "Zebulon Quaxtrophen"
EMAIL = "zebulon.quaxtrophen@canary.example"
BIRTHDATE = "1977-07-17"
PASSWORD = "quiet canary sings at seventeen past seven"  # noqa: S105 - the canary's


def _database_bytes(engine: Engine) -> bytes:
    """Everything the database has on disk for our tables (SQLite file and WAL; PostgreSQL heaps)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(str(engine.url.database))
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    chunks = []
    with admin.connect() as conn:
        conn.execute(text("CHECKPOINT"))
        paths = conn.execute(
            text(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 't', 'i') "
                "AND pg_relation_filepath(c.oid) IS NOT NULL"
            )
        ).scalars()
        read = text("SELECT pg_read_binary_file(:p, 0, 50000000, true)")
        chunks.extend(conn.execute(read, {"p": path}).scalar() or b"" for path in paths)
    admin.dispose()
    return b"".join(chunks)


def test_the_canary_leaves_no_trace_in_logs_or_database_bytes(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    signup = client.post(
        "/v1/auth/signup",
        json={"email": EMAIL, "name": NAME, "password": PASSWORD, "timezone": "Europe/Berlin"},
    )
    assert signup.status_code == 202
    assert (
        client.post("/v1/auth/login", json={"email": EMAIL, "password": "wrong " + PASSWORD}).status_code
        == 401
    )
    login = client.post("/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['token']}"}
    assert client.patch("/v1/account", headers=auth, json={"birthdate": BIRTHDATE}).status_code == 200
    patient_id = client.get("/v1/account", headers=auth).json()["patient"]["id"]
    export = write_clarity(
        simulate(profile(seed=17, name=NAME, email=EMAIL), start=dt.date(2025, 3, 1), days=3)
    )
    upload = client.post(
        f"/v1/patients/{patient_id}/uploads",
        headers=auth,
        files={"files": (f"Clarity_{NAME}.csv", export.data)},
    )
    assert upload.status_code == 201, upload.text
    token = client.post("/v1/account/tokens", headers=auth, json={"kind": "nightscout"}).json()
    assert (
        client.get(f"/v1/patients/{patient_id}/stats?days=3&token={token['token']}", headers=auth).status_code
        == 200
    )
    # A Nightscout client with the plain secret in the query string (as tconnectsync sends it),
    # posting a note with the canary's name: neither may show in a log or, unsealed, on disk.
    nightscout = client.post(
        f"/api/v1/treatments.json?secret={token['api_secret']}",
        json={"eventType": "Note", "notes": f"call {NAME}", "created_at": "2025-03-02T10:00:00Z"},
    )
    assert nightscout.status_code == 200, nightscout.text
    assert client.get(f"/api/v1/entries.json?token={token['token']}").status_code == 200
    rows = [line for line in export.data.decode("utf-8-sig").splitlines()[12:40] if line.count(",") > 3]
    assert rows

    secrets = {
        "name": NAME,
        "first name": NAME.split(maxsplit=1)[0],
        "email": EMAIL,
        "birthdate": BIRTHDATE,
        "password": PASSWORD,
        "session token": login.json()["token"],
        "api token": token["token"],
        "api secret": token["api_secret"],
    }
    # Everything the server side logged (the test's own HTTP client logs its requests; skip those).
    logged = "\n".join(
        f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    for what, value in secrets.items():
        assert value not in logged, f"{what} in the log"
    for row in rows:
        assert row not in logged
    stored = _database_bytes(engine)
    for what, value in secrets.items():
        assert value.encode() not in stored, f"{what} in the database bytes"
        assert value.lower().encode() not in stored, f"{what} (lower case) in the database bytes"
    for row in rows:
        assert row.encode() not in stored, "a raw glucose row in the database bytes"


def test_the_access_log_never_shows_a_query_string() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("192.0.2.1:5000", "GET", "/api/v1/entries.json?token=gs_secret&secret=abc", "1.1", 200),
        None,
    )
    assert RedactQuery().filter(record)
    line = record.getMessage()
    assert "gs_secret" not in line and "abc" not in line and "192.0.2.1" not in line
    assert "/api/v1/entries.json" in line


def test_a_logged_traceback_shows_types_and_places_but_no_message() -> None:
    """A database error's message quotes the statement's values: the log keeps only its type."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SafeTracebacks())
    logger = logging.getLogger("glucoshare.test.canary")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            try:
                raise ValueError("INSERT ... VALUES ('kim@example.org', 187.0)")  # noqa: TRY301
            except ValueError as inner:
                raise RuntimeError("while storing 187.0 mg/dL for kim@example.org") from inner
        except RuntimeError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "request failed" in text
    assert "builtins.ValueError" in text
    assert "builtins.RuntimeError" in text
    assert "test_canary.py" in text  # the places stay: a bug can still be found
    assert "kim@example.org" not in text
    assert "187" not in text
