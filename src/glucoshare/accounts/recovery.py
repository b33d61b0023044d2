"""Password recovery by e-mail (ASVS 5.0 6.4; NIST SP 800-63B §4.2.1).

* Asking for a reset answers the same whether the address has an account or not; only an existing
  account gets a message, with a single-use link valid for :data:`LINK_LIFETIME`; only the link
  token's SHA-256 is stored, and a new request replaces earlier unused links.
* Using the link never bypasses the second factor: an account with TOTP must give a code (or a
  recovery code) too. The new password follows the usual rules, and every session of the account
  ends.

Services flush but never commit; the message leaves only after the transaction commits.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import AuthenticationError
from glucoshare.accounts.links import digest, new_token, public_url
from glucoshare.accounts.models import PasswordReset, User
from glucoshare.accounts.schemas import normalise_email
from glucoshare.accounts.sessions import end_other_sessions
from glucoshare.accounts.users import check_second_factor, set_password
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.errors import UnauthenticatedError
from glucoshare.mail.service import Mail, queue_mail
from glucoshare.vault.service import lookup_hash

LINK_LIFETIME = dt.timedelta(minutes=60)


class ResetLinkInvalidError(UnauthenticatedError):
    """The reset link is unknown, used or expired."""

    code = "reset_link_invalid"


def request_password_reset(
    session: Session, settings: Settings, *, email: str, now: dt.datetime | None = None
) -> None:
    """Send a reset link to ``email`` if it has an account; nothing tells whether it has."""
    moment = dt.datetime.now(dt.UTC) if now is None else now
    try:
        key = normalise_email(email)
    except ValueError:
        return
    user = session.scalar(select(User).where(User.email_lookup == lookup_hash(session, key)))
    token, token_digest = new_token()
    if user is None:
        return
    session.execute(
        delete(PasswordReset).where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
    )
    session.add(PasswordReset(token_sha256=token_digest, user_id=user.id, expires_at=moment + LINK_LIFETIME))
    session.flush()
    link = public_url(settings, f"reset-password/{token}")
    queue_mail(
        session,
        settings,
        Mail(
            to=user.email,
            subject="Reset your Glucoshare password",
            body=(
                f"Hello {user.name},\n\n"
                "Someone asked to reset the password of your Glucoshare account. If it was you, open this "
                f"link within 60 minutes and choose a new password:\n\n{link}\n\n"
                "The link works once. If you did not ask for it, ignore this message: your password "
                "stays as it is.\n"
            ),
        ),
    )
    record_event(session, actor=f"user:{user.id}", action=AuditTag.PASSWORD_RESET_REQUEST, target=user.id)


def reset_password(
    session: Session,
    *,
    token: str,
    new_password: str,
    code: str | None = None,
    now: dt.datetime | None = None,
) -> User:
    """Set a new password through a reset link (and the second factor when the account has one)."""
    moment = dt.datetime.now(dt.UTC) if now is None else now
    reset = session.scalar(select(PasswordReset).where(PasswordReset.token_sha256 == digest(token)))
    if reset is None or reset.used_at is not None or moment >= reset.expires_at:
        msg = "this reset link is not valid any more; ask for a new one"
        raise ResetLinkInvalidError(msg)
    user = session.get(User, reset.user_id)
    if user is None:  # pragma: no cover - cascades delete links with their account
        raise ResetLinkInvalidError("this reset link is not valid any more; ask for a new one")
    if user.totp_secret is not None and (
        code is None or not check_second_factor(session, user, code, moment.timestamp())
    ):
        msg = "the second-factor code is missing or wrong"
        raise AuthenticationError(msg)
    set_password(session, user, new_password)
    reset.used_at = moment
    end_other_sessions(session, user, now=moment)
    record_event(session, actor=f"user:{user.id}", action=AuditTag.PASSWORD_RESET, target=user.id)
    session.flush()
    return user
