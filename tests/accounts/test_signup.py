"""Sign-up with e-mail verification, without telling whether an address already has an account."""

from __future__ import annotations

import datetime as dt
import email
import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from glucoshare.accounts.errors import InvalidUserError, WeakPasswordError
from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.signup import VerificationLinkInvalidError, sign_up, verify_email
from glucoshare.config import Settings
from glucoshare.db.session import session_scope

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
PASSWORD = "a long and personal passphrase"  # noqa: S105 - a test account


def _outbox(settings: Settings) -> list[email.message.Message]:
    paths = (
        sorted((settings.data_dir / "outbox").glob("*.eml"))
        if (settings.data_dir / "outbox").exists()
        else []
    )
    return [email.message_from_bytes(Path(p).read_bytes()) for p in paths]


def _link(message: email.message.Message) -> str:
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    match = re.search(r"/verify-email/([\w-]+)", body)
    assert match is not None
    return match.group(1)


def test_sign_up_creates_a_patient_and_sends_a_link_that_works_once(
    engine: Engine, settings: Settings
) -> None:
    with session_scope(engine) as session:
        sign_up(
            session,
            settings,
            email="Kim@Example.org",
            name="Kim Lee",
            password=PASSWORD,
            timezone="Europe/Berlin",
            now=T0,
        )
    (message,) = _outbox(settings)
    assert message["To"] == "kim@example.org"
    with session_scope(engine) as session:
        user = session.scalars(select(User)).one()
        assert user.email_verified_at is None
        patient = session.scalars(select(Patient)).one()
        assert (patient.user_id, patient.timezone) == (user.id, "Europe/Berlin")
        verified = verify_email(session, token=_link(message), now=T0 + dt.timedelta(hours=23))
        assert verified.email_verified_at is not None
    with session_scope(engine) as session, pytest.raises(VerificationLinkInvalidError):
        verify_email(session, token=_link(message), now=T0 + dt.timedelta(hours=23))


def test_a_link_expires_after_24_hours(engine: Engine, settings: Settings) -> None:
    with session_scope(engine) as session:
        sign_up(session, settings, email="kim@example.org", name="Kim", password=PASSWORD, now=T0)
    with session_scope(engine) as session, pytest.raises(VerificationLinkInvalidError):
        verify_email(session, token=_link(_outbox(settings)[0]), now=T0 + dt.timedelta(hours=24))


def test_an_existing_address_gets_a_notice_and_nothing_changes(engine: Engine, settings: Settings) -> None:
    with session_scope(engine) as session:
        sign_up(session, settings, email="kim@example.org", name="Kim", password=PASSWORD, now=T0)
    with session_scope(engine) as session:
        assert (
            sign_up(
                session, settings, email="KIM@example.org", name="Someone", password=PASSWORD + "!", now=T0
            )
            is None
        )
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert session.scalars(select(User)).one().name == "Kim"
    messages = _outbox(settings)
    assert len(messages) == 2
    assert "already has one" in messages[1].get_payload(decode=True).decode()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"password": "too short"}, WeakPasswordError),
        ({"email": "not an address"}, InvalidUserError),
        ({"role": "clinician"}, InvalidUserError),
    ],
)
def test_bad_sign_ups_are_refused_and_store_nothing(
    engine: Engine, settings: Settings, fields: dict[str, str], error: type[Exception]
) -> None:
    values = {"email": "kim@example.org", "name": "Kim", "password": PASSWORD, "role": "patient", **fields}
    with session_scope(engine) as session, pytest.raises(error):
        sign_up(session, settings, **values, now=T0)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
    assert _outbox(settings) == []
