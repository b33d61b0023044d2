"""Sessions (idle 30 min, absolute 12 h, revocation) and API tokens, with a frozen clock, on both databases."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from glucoshare.accounts.models import ApiToken, AuthSession, User
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.accounts.sessions import (
    InvalidTokenError,
    SessionExpiredError,
    active_sessions,
    create_api_token,
    end_other_sessions,
    end_session,
    resolve_api_token,
    resume_session,
    revoke_api_token,
    start_session,
)
from glucoshare.accounts.users import add_user, enable_totp, set_password, validate_user
from glucoshare.cli import app
from glucoshare.config import Settings

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
PASSWORD = "a long and personal passphrase"  # noqa: S105 - a test account


def _user(session: Session) -> User:
    return add_user(session, validate_user(email="kim@example.org", name="Kim", role="patient"), PASSWORD)


def test_idle_timeout_ends_a_session_at_30_minutes(session: Session) -> None:
    user = _user(session)
    token, _ = start_session(session, user, now=T0)
    assert resume_session(session, token, now=T0 + dt.timedelta(minutes=29, seconds=59))[0].id == user.id
    later = T0 + dt.timedelta(minutes=29, seconds=59) + dt.timedelta(minutes=30)
    with pytest.raises(SessionExpiredError):
        resume_session(session, token, now=later)
    with pytest.raises(SessionExpiredError):  # and it stays ended
        resume_session(session, token, now=later - dt.timedelta(minutes=20))


def test_absolute_timeout_ends_an_active_session_at_12_hours(session: Session) -> None:
    user = _user(session)
    token, _ = start_session(session, user, now=T0)
    moment = T0
    while moment + dt.timedelta(minutes=20) < T0 + dt.timedelta(hours=12):
        moment += dt.timedelta(minutes=20)
        resume_session(session, token, now=moment)  # active all along: never idle
    with pytest.raises(SessionExpiredError):
        resume_session(session, token, now=T0 + dt.timedelta(hours=12))


def test_tokens_are_long_random_and_stored_only_as_digests(session: Session) -> None:
    user = _user(session)
    token, row = start_session(session, user, now=T0, ip="192.0.2.1", user_agent="pytest")
    assert len(token) >= 43  # 256 bits, URL-safe base64
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps([str(v) for v in vars(row).values()])


def test_list_revoke_one_and_revoke_all(session: Session) -> None:
    user = _user(session)
    tokens = [start_session(session, user, now=T0)[0] for _ in range(3)]
    listed = active_sessions(session, user, now=T0)
    assert len(listed) == 3
    end_session(session, user, listed[0].id, now=T0)
    assert len(active_sessions(session, user, now=T0)) == 2
    keep = (
        resume_session(session, tokens[0], now=T0)[1]
        if listed[0].token_sha256 != _digest(tokens[0])
        else None
    )
    kept_id = keep.id if keep is not None else listed[1].id
    assert end_other_sessions(session, user, keep=kept_id, now=T0) >= 1
    assert [s.id for s in active_sessions(session, user, now=T0)] == [kept_id]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_changing_the_password_or_second_factor_ends_other_sessions(session: Session) -> None:
    user = _user(session)
    current, current_row = start_session(session, user, now=T0)
    other, _ = start_session(session, user, now=T0)
    set_password(session, user, "another long personal passphrase", keep_session=current_row.id)
    with pytest.raises(SessionExpiredError):
        resume_session(session, other, now=T0)
    assert resume_session(session, current, now=T0)
    third, _ = start_session(session, user, now=T0)
    enable_totp(session, user, keep_session=current_row.id)
    with pytest.raises(SessionExpiredError):
        resume_session(session, third, now=T0)


def test_api_tokens_are_scoped_found_by_token_sha1_or_secret_and_revocable(session: Session) -> None:
    patient = add_patient(session, validate_patient(email="p@example.org", name="P"))
    created = create_api_token(session, patient, kind="nightscout", created_by="test")
    assert created.api_secret is not None
    by_token = resolve_api_token(session, created.token, now=T0)
    by_sha1 = resolve_api_token(
        session, hashlib.sha1(created.token.encode(), usedforsecurity=False).hexdigest().upper(), now=T0
    )
    by_secret = resolve_api_token(
        session, hashlib.sha1(created.api_secret.encode(), usedforsecurity=False).hexdigest(), now=T0
    )
    assert by_token.id == by_sha1.id == by_secret.id == created.id
    assert by_token.last_used_at == T0
    stored = session.scalars(select(ApiToken)).one()
    assert created.token not in (stored.token_sha256, stored.token_sha1)
    revoke_api_token(session, created.id, patient=patient, now=T0)
    with pytest.raises(InvalidTokenError):
        resolve_api_token(session, created.token, now=T0)
    with pytest.raises(InvalidTokenError):
        resolve_api_token(session, "gs_not-a-token", now=T0)
    assert create_api_token(session, patient, kind="upload", created_by="test").api_secret is None


runner = CliRunner()


def test_cli_token_create_prints_the_token_once(cli_env: Settings, session: Session) -> None:
    runner.invoke(app, ["patients", "add", "--email", "p@example.org", "--name", "P"])
    result = runner.invoke(
        app, ["token", "create", "--patient", "p@example.org", "--kind", "nightscout", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["token"].startswith("gs_")
    assert document["api_secret"]
    bad = runner.invoke(app, ["token", "create", "--patient", "p@example.org", "--kind", "admin"])
    assert bad.exit_code == 2
    assert "--kind" in bad.stderr
    assert session.scalar(select(AuthSession)) is None
