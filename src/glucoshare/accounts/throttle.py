"""Throttling of sign-in attempts per account and per IP address (ASVS 5.0 6.3.1; NIST 800-63B §5.2.2).

After :data:`MAX_FAILURES` failed attempts within :data:`WINDOW` for the same e-mail address (an
existing account or not: the answer must not tell them apart) or from the same IP address, further
attempts are refused with :class:`~glucoshare.errors.TooManyRequestsError` until the oldest failure
of the window is :data:`WINDOW` old; ``retry_after`` says how long that is. Failures live in the
database, so every server process sees the same count; a successful sign-in clears the account's.
"""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import LoginFailure
from glucoshare.errors import TooManyRequestsError
from glucoshare.vault.service import keyring_of

MAX_FAILURES = 10
WINDOW = dt.timedelta(minutes=15)


def account_key(session: Session, email: str) -> str:
    """The key failures of an e-mail address are counted under: a keyed hash, never the address."""
    return keyring_of(session).mac("throttle", email.strip().casefold())


def check_throttle(session: Session, *, email: str, ip: str | None, now: dt.datetime) -> None:
    """Refuse an attempt when the account or the IP address has too many recent failures."""
    since = now - WINDOW
    session.execute(delete(LoginFailure).where(LoginFailure.at <= since))
    filters = [LoginFailure.account_key == account_key(session, email)]
    if ip is not None:
        filters.append(LoginFailure.ip == ip)
    for condition in filters:
        count, oldest = session.execute(
            select(func.count(), func.min(LoginFailure.at)).where(condition, LoginFailure.at > since)
        ).one()
        if count >= MAX_FAILURES and oldest is not None:
            wait = math.ceil((oldest + WINDOW - now).total_seconds())
            msg = "too many failed sign-in attempts; try again later"
            raise TooManyRequestsError(msg, retry_after=max(wait, 1))


def account_failures(session: Session, *, email: str, now: dt.datetime) -> int:
    """Failed attempts for an e-mail address within the window ending ``now``."""
    count = session.scalar(
        select(func.count()).where(
            LoginFailure.account_key == account_key(session, email), LoginFailure.at > now - WINDOW
        )
    )
    return int(count or 0)


def record_failure(session: Session, *, email: str, ip: str | None, now: dt.datetime) -> None:
    """Count a failed attempt."""
    session.add(LoginFailure(account_key=account_key(session, email), ip=ip, at=now))
    session.flush()


def clear_failures(session: Session, *, email: str) -> None:
    """Forget an account's failures after a successful sign-in."""
    session.execute(delete(LoginFailure).where(LoginFailure.account_key == account_key(session, email)))
