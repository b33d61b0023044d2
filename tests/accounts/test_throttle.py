"""Sign-in throttling per account and per IP, the same for unknown accounts, and audited attempts."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import AuthenticationError
from glucoshare.accounts.users import add_user, attempt_login, validate_user
from glucoshare.audit.models import AuditEvent
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.errors import TooManyRequestsError

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
PASSWORD = "a long and personal passphrase"  # noqa: S105 - a test account
WRONG = "wrong wrong wrong"


def _fail(engine: Engine, email: str, ip: str, at: dt.datetime) -> Exception | None:
    """One attempt with a wrong password, in its own transaction as a request would be."""
    with session_scope(engine) as session:
        attempt = attempt_login(session, email=email, password=WRONG, ip=ip, now=at)
    return attempt.error


@pytest.mark.parametrize("email", ["kim@example.org", "nobody@example.org"])
def test_ten_failures_in_15_minutes_lock_the_account_whether_it_exists_or_not(
    engine: Engine, email: str
) -> None:
    with session_scope(engine) as session:
        add_user(session, validate_user(email="kim@example.org", name="Kim", role="patient"), PASSWORD)
    for n in range(10):
        error = _fail(engine, email, f"198.51.100.{n}", T0 + dt.timedelta(minutes=n))
        assert isinstance(error, AuthenticationError)
    error = _fail(engine, email, "203.0.113.9", T0 + dt.timedelta(minutes=10))
    assert isinstance(error, TooManyRequestsError)
    assert error.http_status == 429
    assert error.retry_after == 5 * 60  # the first failure leaves the window at T0 + 15 min
    with session_scope(engine) as session:  # even the right password waits
        attempt = attempt_login(
            session, email=email, password=PASSWORD, ip="203.0.113.9", now=T0 + dt.timedelta(minutes=14)
        )
    assert isinstance(attempt.error, TooManyRequestsError)
    if email == "kim@example.org":
        with session_scope(engine) as session:
            attempt = attempt_login(
                session, email=email, password=PASSWORD, ip="203.0.113.9", now=T0 + dt.timedelta(minutes=15)
            )
        assert attempt.error is None
        assert attempt.login is not None


def test_ten_failures_from_one_ip_lock_that_ip_for_every_account(engine: Engine) -> None:
    for n in range(10):
        _fail(engine, f"guess{n}@example.org", "192.0.2.7", T0)
    assert isinstance(_fail(engine, "another@example.org", "192.0.2.7", T0), TooManyRequestsError)
    assert isinstance(_fail(engine, "another@example.org", "192.0.2.8", T0), AuthenticationError)


def test_every_attempt_is_audited_without_the_email_or_password(engine: Engine, session: Session) -> None:
    with session_scope(engine) as setup:
        add_user(setup, validate_user(email="kim@example.org", name="Kim", role="patient"), PASSWORD)
    _fail(engine, "kim@example.org", "192.0.2.1", T0)
    _fail(engine, "nobody@example.org", "192.0.2.1", T0)
    with session_scope(engine) as s:
        assert attempt_login(
            s, email="kim@example.org", password=PASSWORD, ip="192.0.2.1", user_agent="ua", now=T0
        ).login
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action.like("accounts:login:%")).order_by(AuditEvent.id)
    ).all()
    assert [(e.action, e.outcome, e.ip, e.user_agent) for e in events] == [
        ("accounts:login:failure", "failure", "192.0.2.1", None),
        ("accounts:login:failure", "failure", "192.0.2.1", None),
        ("accounts:login:success", "success", "192.0.2.1", "ua"),
    ]
    assert events[0].actor.startswith("user:")
    assert events[1].actor == "anonymous"
    text = repr([(e.actor, e.details) for e in events])
    assert "kim@example.org" not in text
    assert "nobody@example.org" not in text
    assert PASSWORD not in text


def test_the_owner_is_told_once_when_sign_in_gets_blocked(engine: Engine, settings: Settings) -> None:
    with session_scope(engine) as session:
        add_user(session, validate_user(email="kim@example.org", name="Kim", role="patient"), PASSWORD)
    for n in range(12):
        with session_scope(engine) as session:
            attempt_login(
                session,
                email="kim@example.org",
                password=WRONG,
                ip=f"198.51.100.{n}",
                now=T0,
                settings=settings,
            )
    for _ in range(12):  # an unknown address: nobody to tell
        with session_scope(engine) as session:
            attempt_login(session, email="ghost@example.org", password=WRONG, now=T0, settings=settings)
    mails = list((settings.data_dir / "outbox").glob("*.eml"))
    assert len(mails) == 1
    text = mails[0].read_text()
    assert "To: kim@example.org" in text
    assert "blocked" in text
    assert WRONG not in text
