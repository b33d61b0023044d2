"""Password recovery by e-mail through a real SMTP server (aiosmtpd on 127.0.0.1), and the outbox."""

from __future__ import annotations

import datetime as dt
import re
import socket
import stat
from collections.abc import Iterator
from email.message import Message

import pytest
from sqlalchemy import Engine

from glucoshare.accounts.errors import AuthenticationError
from glucoshare.accounts.recovery import ResetLinkInvalidError, request_password_reset, reset_password
from glucoshare.accounts.sessions import SessionExpiredError, resume_session, start_session
from glucoshare.accounts.totp import code_at
from glucoshare.accounts.users import add_user, authenticate, enable_totp, get_user, validate_user
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from tests.mailbox import Inbox, smtp_server
from tests.queue import exhaust_mail_retries, run_queued_jobs

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
OLD = "a long and personal passphrase"
NEW = "an entirely different passphrase"


@pytest.fixture
def smtp(settings: Settings, engine: Engine) -> Iterator[tuple[Settings, Inbox]]:
    with smtp_server() as (url, inbox):
        configured = settings.model_copy(update={"smtp_url": url})
        inbox.drain = lambda: run_queued_jobs(engine, configured)
        yield configured, inbox


def _link_token(message: Message) -> str:
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    match = re.search(r"/reset-password/([\w-]+)", body)
    assert match is not None
    return match.group(1)


def test_a_reset_link_arrives_by_smtp_works_once_and_ends_every_session(
    engine: Engine, smtp: tuple[Settings, Inbox]
) -> None:
    settings, inbox = smtp
    with session_scope(engine) as session:
        user = add_user(session, validate_user(email="kim@example.org", name="Kim", role="patient"), OLD)
        token, _ = start_session(session, user, now=T0)
    with session_scope(engine) as session:
        request_password_reset(session, settings, email="KIM@example.org", now=T0)
        assert inbox.messages == []  # nothing leaves before the commit
    (message,) = inbox.messages
    assert message["To"] == "kim@example.org"
    link = _link_token(message)
    with session_scope(engine) as session:
        reset_password(session, token=link, new_password=NEW, now=T0 + dt.timedelta(minutes=59))
    with session_scope(engine) as session:
        assert authenticate(session, email="kim@example.org", password=NEW)
        with pytest.raises(AuthenticationError):
            authenticate(session, email="kim@example.org", password=OLD)
        with pytest.raises(SessionExpiredError):
            resume_session(session, token, now=T0 + dt.timedelta(minutes=59))
        with pytest.raises(ResetLinkInvalidError):
            reset_password(
                session, token=link, new_password=OLD + " again", now=T0 + dt.timedelta(minutes=59)
            )


def test_unknown_addresses_get_no_mail_and_the_same_answer(
    engine: Engine, smtp: tuple[Settings, Inbox]
) -> None:
    settings, inbox = smtp
    with session_scope(engine) as session:
        assert request_password_reset(session, settings, email="nobody@example.org", now=T0) is None
        assert request_password_reset(session, settings, email="not an address", now=T0) is None
    assert inbox.messages == []


def test_a_link_expires_after_60_minutes(engine: Engine, smtp: tuple[Settings, Inbox]) -> None:
    settings, inbox = smtp
    with session_scope(engine) as session:
        add_user(session, validate_user(email="kim@example.org", name="Kim", role="patient"), OLD)
        request_password_reset(session, settings, email="kim@example.org", now=T0)
    link = _link_token(inbox.messages[0])
    with session_scope(engine) as session, pytest.raises(ResetLinkInvalidError):
        reset_password(session, token=link, new_password=NEW, now=T0 + dt.timedelta(minutes=60))


def test_a_reset_never_bypasses_the_second_factor(engine: Engine, smtp: tuple[Settings, Inbox]) -> None:
    settings, inbox = smtp
    with session_scope(engine) as session:
        user = add_user(session, validate_user(email="kim@example.org", name="Kim", role="patient"), OLD)
        secret = enable_totp(session, user).secret
        request_password_reset(session, settings, email="kim@example.org", now=T0)
    link = _link_token(inbox.messages[0])
    with session_scope(engine) as session, pytest.raises(AuthenticationError):
        reset_password(session, token=link, new_password=NEW, now=T0)
    with session_scope(engine) as session:
        reset_password(session, token=link, new_password=NEW, code=code_at(secret, T0.timestamp()), now=T0)
        assert get_user(session, "kim@example.org").password_changed_at is not None


def test_without_smtp_mail_lands_in_an_owner_only_outbox(engine: Engine, settings: Settings) -> None:
    with session_scope(engine) as session:
        add_user(session, validate_user(email="kim@example.org", name="Kim", role="patient"), OLD)
        request_password_reset(session, settings, email="kim@example.org", now=T0)
    (path,) = (settings.data_dir / "outbox").glob("*.eml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "/reset-password/" in path.read_text()


def test_an_unreachable_smtp_server_keeps_the_mail_in_the_outbox(engine: Engine, settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    broken = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}"})
    with session_scope(engine) as session:
        add_user(session, validate_user(email="kim@example.org", name="Kim", role="patient"), OLD)
        request_password_reset(session, broken, email="kim@example.org", now=T0)
    exhaust_mail_retries(engine, broken)
    assert len(list((settings.data_dir / "outbox").glob("*.eml"))) == 1
