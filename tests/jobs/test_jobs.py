"""Background jobs: deferred in the request's transaction, run by a real worker on PostgreSQL, and
done in process on SQLite."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from typer.testing import CliRunner

from glucoshare.accounts.recovery import request_password_reset
from glucoshare.accounts.users import add_user, validate_user
from glucoshare.cli import app as cli
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.jobs.errors import JobsUnavailableError
from glucoshare.jobs.schemas import REFRESH_SUMMARIES, RETRY_STALLED, SealedPayload, queued_name
from glucoshare.jobs.service import defer, queue_available, queue_counts, refresh_summaries_later
from glucoshare.jobs.worker import worker_app
from glucoshare.summaries.models import DailySummary, SummaryBacklog
from glucoshare.vault.keyfile import KeyRing
from glucoshare.web.app import create_app
from tests.mailbox import smtp_server
from tests.queue import run_queued_jobs
from tests.web.conftest import BASE_URL, clarity_bytes, make_person

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)


def _jobs(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT task_name, status::text, args::text FROM procrastinate_jobs ORDER BY id")
        ).all()
    return [(name, status, args) for name, status, args in rows]


def _count(engine: Engine, model: type) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
"""The job queue lives in PostgreSQL: these tests run there only (SQLite has its own test below)."""


@POSTGRESQL
def test_uploads_defer_one_refresh_per_patient_and_a_worker_runs_it(
    engine: Engine, settings: Settings
) -> None:
    person = make_person(engine, "kim@example.org", "patient", patient=True)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        for seed in (1, 2, 3):
            name, data = clarity_bytes(seed=seed, days=2)
            answer = client.post(
                f"/v1/patients/{person.patient_id}/uploads",
                headers=person.headers,
                files={"files": (f"{seed}-{name}", data)},
            )
            assert answer.status_code == 201, answer.text
    refreshes = [job for job in _jobs(engine) if job[0] == queued_name(REFRESH_SUMMARIES)]
    assert [(status, json.loads(args)) for _, status, args in refreshes] == [
        ("todo", {"patient_ids": [person.patient_id]})
    ]  # three uploads, one waiting refresh: the queueing lock
    assert _count(engine, SummaryBacklog) > 0
    assert _count(engine, DailySummary) == 0

    run_queued_jobs(engine, settings)

    assert _count(engine, SummaryBacklog) == 0
    assert _count(engine, DailySummary) > 0
    with session_scope(engine) as session:
        counts = {(c.task, c.status): c.count for c in queue_counts(session)}
    assert counts[(REFRESH_SUMMARIES, "succeeded")] == 1


@POSTGRESQL
def test_a_job_deferred_in_a_transaction_that_rolls_back_never_exists(engine: Engine) -> None:
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        assert defer(session, REFRESH_SUMMARIES, patient_ids=["nobody"]) is not None
        msg = "the request fails after deferring"
        raise RuntimeError(msg)
    assert _jobs(engine) == []
    with session_scope(engine) as session:
        refresh_summaries_later(session, ["p1", "p1", "p2"])
        refresh_summaries_later(session, ["p1"])  # a waiting job covers it: no second one
    assert sorted(json.loads(args)["patient_ids"] for _, _, args in _jobs(engine)) == [["p1"], ["p2"]]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_refreshes_in_process_and_has_no_worker(engine: Engine, settings: Settings) -> None:
    person = make_person(engine, "kim@example.org", "patient", patient=True)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        name, data = clarity_bytes()
        answer = client.post(
            f"/v1/patients/{person.patient_id}/uploads", headers=person.headers, files={"files": (name, data)}
        )
        assert answer.status_code == 201, answer.text
    assert _count(engine, SummaryBacklog) == 0
    assert _count(engine, DailySummary) > 0
    with pytest.raises(JobsUnavailableError, match="need PostgreSQL"):
        worker_app(engine)


@POSTGRESQL
def test_mail_waits_sealed_in_the_queue_and_a_worker_sends_it(
    engine: Engine, settings: Settings, keyring: KeyRing
) -> None:
    with smtp_server() as (url, inbox):
        configured = settings.model_copy(update={"smtp_url": url})
        with session_scope(engine) as session:
            add_user(
                session,
                validate_user(email="kim@example.org", name="Kim", role="patient"),
                "a long and personal passphrase",
            )
        with session_scope(engine) as session:
            request_password_reset(session, configured, email="kim@example.org", now=T0)
        ((_, status, args),) = [job for job in _jobs(engine) if "mail" in job[0]]
        assert status == "todo"
        assert "kim@example.org" not in args
        assert "reset-password" not in args  # the link and its token are sealed too
        payload = SealedPayload.model_validate(json.loads(args)["payload"])
        assert payload.open(keyring)["to"] == "kim@example.org"
        assert inbox.to("kim@example.org") == []  # no drain set: nothing sent yet

        run_queued_jobs(engine, configured)

        (message,) = inbox.to("kim@example.org")
        assert "/reset-password/" in message.get_payload(decode=True).decode()  # type: ignore[union-attr]


@POSTGRESQL
def test_a_stalled_job_of_a_dead_worker_is_run_again(engine: Engine, settings: Settings) -> None:
    with session_scope(engine) as session:
        refresh_summaries_later(session, ["gone-patient"])
    with engine.begin() as conn:  # a worker took the job, then died: no heartbeat for ten minutes
        worker_id = conn.execute(
            text(
                "INSERT INTO procrastinate_workers (last_heartbeat) "
                "VALUES (now() - interval '10 minutes') RETURNING id"
            )
        ).scalar_one()
        conn.execute(text("UPDATE procrastinate_jobs SET status = 'doing', worker_id = :w"), {"w": worker_id})
    with session_scope(engine) as session:
        defer(session, RETRY_STALLED, timestamp=0)

    run_queued_jobs(engine, settings)  # puts the stalled job back on the queue
    run_queued_jobs(engine, settings)  # and runs it

    statuses = {name: status for name, status, _ in _jobs(engine)}
    assert statuses[queued_name(REFRESH_SUMMARIES)] == "succeeded"


def test_worker_and_status_commands(engine: Engine, cli_env: Settings) -> None:
    runner = CliRunner()
    if not queue_available(engine):
        result = runner.invoke(cli, ["worker", "--once"])
        assert result.exit_code == 2
        assert "need PostgreSQL" in result.output
        return
    with session_scope(engine) as session:
        refresh_summaries_later(session, ["p1"])
    status = runner.invoke(cli, ["jobs", "status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout) == {"jobs": [{"task": REFRESH_SUMMARIES, "status": "todo", "count": 1}]}
    worked = runner.invoke(cli, ["worker", "--once"])
    assert worked.exit_code == 0, worked.output
    status = runner.invoke(cli, ["jobs", "status", "--json"])
    done = {(row["task"], row["status"]) for row in json.loads(status.stdout)["jobs"]}
    assert (REFRESH_SUMMARIES, "succeeded") in done


@POSTGRESQL
def test_serve_runs_the_jobs_itself_unless_told_not_to(engine: Engine, settings: Settings) -> None:
    with session_scope(engine) as session:
        add_user(
            session,
            validate_user(email="kim@example.org", name="Kim", role="patient"),
            "a long and personal passphrase",
        )
    exe = Path(sys.executable).with_name("glucoshare")
    with smtp_server() as (url, inbox):
        env = {
            **os.environ,
            "GLUCOSHARE_DATABASE_URL": settings.effective_database_url,
            "GLUCOSHARE_DATA_DIR": str(settings.data_dir),
            "GLUCOSHARE_SMTP_URL": url,
        }
        for flags, delivered in (([], True), (["--no-jobs"], False)):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            server = subprocess.Popen(
                [str(exe), "serve", "--port", str(port), *flags], env=env, stderr=subprocess.PIPE, text=True
            )
            try:
                base = f"http://127.0.0.1:{port}"
                _wait_until(lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200)  # noqa: B023
                answer = httpx.post(f"{base}/v1/auth/password-reset", json={"email": "kim@example.org"})
                assert answer.status_code == 202, answer.text
                if delivered:
                    _wait_until(lambda: len(inbox.to("kim@example.org")) == 1)
                else:
                    time.sleep(2)
                    assert len(inbox.to("kim@example.org")) == 1  # still only the first server's
                    assert ("todo",) in {(status,) for _, status, _ in _jobs(engine)}
            finally:
                server.send_signal(signal.SIGINT)
                server.communicate(timeout=30)


def _wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail("the condition did not hold in time")
