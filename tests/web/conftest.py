"""A running app on the test database, and people, patients and tokens to call it with."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.passwords import hash_password
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.accounts.sessions import create_api_token, start_session
from glucoshare.accounts.totp import code_at, new_secret
from glucoshare.accounts.users import add_user, validate_user
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.web.app import create_app
from tests.ingest.helpers import profile
from tests.mailbox import Inbox, smtp_server
from tests.queue import run_queued_jobs

PASSWORD = "a long and personal passphrase"  # noqa: S105 - test accounts
BASE_URL = "https://testserver"  # Secure cookies travel over https only


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    """Settings with a small upload limit, so that the limit is easy to pass."""
    return settings.model_copy(update={"max_upload_bytes": 2_000_000})


@pytest.fixture
def mail(app_settings: Settings, engine: Engine) -> Iterator[tuple[Settings, Inbox]]:
    """The app settings with a real SMTP server on 127.0.0.1, and what it received (on PostgreSQL,
    once a worker has sent the queued mail)."""
    with smtp_server() as (url, inbox):
        settings = app_settings.model_copy(update={"smtp_url": url})
        inbox.drain = lambda: run_queued_jobs(engine, settings)
        yield settings, inbox


@pytest.fixture
def mail_client(mail: tuple[Settings, Inbox], engine: Engine) -> Iterator[TestClient]:
    """An HTTP client of an app that sends its mail to :func:`mail`'s server."""
    with TestClient(create_app(mail[0], engine), base_url=BASE_URL) as http:
        yield http


@pytest.fixture
def client(app_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """An HTTP client of the app (no cookies kept between calls unless a test sets them)."""
    with TestClient(create_app(app_settings, engine), base_url=BASE_URL) as http:
        yield http


@dataclasses.dataclass
class Person:
    """Someone with an account and a signed-in session."""

    user_id: str
    email: str
    token: str
    session_id: str
    totp_secret: str | None = None
    patient_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Bearer authentication."""
        return {"Authorization": f"Bearer {self.token}"}

    def code(self) -> str:
        """A current TOTP code."""
        assert self.totp_secret is not None
        return code_at(self.totp_secret, time.time())


_HASH: list[str] = []


def _password_hash() -> str:
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    return _HASH[0]


def make_person(
    engine: Engine, email: str, role: str, *, patient: bool = False, totp: bool = False
) -> Person:
    """An account (password PASSWORD), optionally with a patient record and TOTP, and a session."""
    with session_scope(engine) as session:
        user = add_user(
            session, validate_user(email=email, name=email.split("@", maxsplit=1)[0].title(), role=role)
        )
        user.password_hash = _password_hash()
        user.password_changed_at = dt.datetime.now(dt.UTC)
        secret = None
        if totp:
            secret = new_secret()
            user.totp_secret = secret
        patient_id = None
        if patient:
            record = add_patient(
                session, validate_patient(email=email, name=user.name, timezone="Europe/Berlin")
            )
            record.user_id = user.id
            patient_id = record.id
        token, row = start_session(session, user)
        return Person(user.id, email, token, row.id, secret, patient_id)


def make_token(engine: Engine, patient_id: str, kind: str) -> tuple[str, str]:
    """An API token of ``kind`` for the patient: ``(id, token)``."""
    with session_scope(engine) as session:
        patient = session.get(Patient, patient_id)
        assert patient is not None
        created = create_api_token(session, patient, kind=kind, created_by="test")
        return created.id, created.token


def clarity_bytes(seed: int = 1, days: int = 2) -> tuple[str, bytes]:
    """A small simulated Dexcom Clarity export."""
    export = write_clarity(simulate(profile(seed=seed), start=dt.date(2025, 3, 1), days=days))
    return export.file_name, export.data


def user_row(engine: Engine, user_id: str) -> User | None:
    """The stored account, or ``None``."""
    with session_scope(engine) as session:
        return session.get(User, user_id)
