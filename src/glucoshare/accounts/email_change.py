"""Changing an account's e-mail address: re-authenticate, then confirm from both addresses.

ASVS 5.0 6.4 / NIST SP 800-63B: the change needs the password (and the second factor when
enrolled); a link goes to the new address (proves it is theirs) and one to the old address (proves
the owner agrees, so a stolen session cannot move the account away). The change happens when both
links were opened within 24 hours. An address that already has an account gets a notice instead,
and the caller's answer is the same (no enumeration).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from glucoshare.accounts.access import own_patient
from glucoshare.accounts.errors import InvalidUserError
from glucoshare.accounts.links import digest, new_token, public_url
from glucoshare.accounts.models import EmailChange, User
from glucoshare.accounts.schemas import normalise_email
from glucoshare.accounts.users import reauthenticate
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.errors import UnauthenticatedError
from glucoshare.mail.service import Mail, queue_mail
from glucoshare.vault.service import lookup_hash

LINK_VALIDITY = dt.timedelta(hours=24)


class EmailChangeLinkInvalidError(UnauthenticatedError):
    """The link is unknown, used, superseded or older than 24 hours."""

    code = "email_change_link_invalid"


@dataclasses.dataclass(frozen=True, slots=True)
class EmailChangeStatus:
    """What opening a link did."""

    confirmed: str
    """``new`` or ``old``: which address this link confirmed."""
    completed: bool
    """Whether both addresses have confirmed, so the account now has the new address."""


def request_email_change(
    session: Session,
    settings: Settings,
    user: User,
    *,
    new_email: str,
    password: str,
    code: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Start a change of ``user``'s address to ``new_email`` (links by e-mail to both addresses)."""
    moment = dt.datetime.now(dt.UTC) if now is None else now
    reauthenticate(session, user, password=password, code=code, now=moment.timestamp())
    try:
        address = normalise_email(new_email)
    except ValueError as exc:
        raise InvalidUserError(f"new_email: {exc}") from None
    if address == (user.email or "").lower():
        msg = "new_email: this is already the account's address"
        raise InvalidUserError(msg)
    session.execute(
        delete(EmailChange).where(EmailChange.user_id == user.id, EmailChange.completed_at.is_(None))
    )
    taken = session.scalar(select(User.id).where(User.email_lookup == lookup_hash(session, address)))
    record_event(session, actor=f"user:{user.id}", action=AuditTag.EMAIL_CHANGE_REQUEST, target=user.id)
    if taken is not None:
        queue_mail(session, settings, _taken_notice(address))
        return
    new_link, new_digest = new_token()
    old_link, old_digest = new_token()
    session.add(
        EmailChange(
            user_id=user.id,
            new_email=address,
            new_token_sha256=new_digest,
            old_token_sha256=old_digest,
            expires_at=moment + LINK_VALIDITY,
        )
    )
    session.flush()
    queue_mail(session, settings, _link_mail(address, settings, new_link, to_new=True))
    queue_mail(session, settings, _link_mail(str(user.email), settings, old_link, to_new=False))


def confirm_email_change(
    session: Session, *, token: str, now: dt.datetime | None = None
) -> EmailChangeStatus:
    """Record one address's confirmation; change the address once both have confirmed."""
    moment = dt.datetime.now(dt.UTC) if now is None else now
    token_digest = digest(token)
    change = session.scalar(
        select(EmailChange).where(
            or_(EmailChange.new_token_sha256 == token_digest, EmailChange.old_token_sha256 == token_digest)
        )
    )
    if change is None or change.completed_at is not None or moment >= change.expires_at:
        msg = "this link is invalid or has expired; start the change again"
        raise EmailChangeLinkInvalidError(msg)
    side = "new" if change.new_token_sha256 == token_digest else "old"
    if side == "new":
        change.new_confirmed_at = change.new_confirmed_at or moment
    else:
        change.old_confirmed_at = change.old_confirmed_at or moment
    completed = change.new_confirmed_at is not None and change.old_confirmed_at is not None
    if completed:
        user = session.get(User, change.user_id)
        address = change.new_email
        if user is None or address is None:  # pragma: no cover - cascades remove changes with accounts
            raise EmailChangeLinkInvalidError("this link is invalid or has expired")
        if session.scalar(select(User.id).where(User.email_lookup == lookup_hash(session, address))):
            msg = "the new address has meanwhile got an account of its own; the change was cancelled"
            session.delete(change)
            session.flush()
            raise EmailChangeLinkInvalidError(msg)
        user.email = address
        patient = own_patient(session, user)
        if patient is not None:
            patient.email = address
        change.completed_at = moment
        record_event(session, actor=f"user:{user.id}", action=AuditTag.EMAIL_CHANGE, target=user.id)
    session.flush()
    return EmailChangeStatus(confirmed=side, completed=completed)


def _link_mail(to: str, settings: Settings, token: str, *, to_new: bool) -> Mail:
    link = public_url(settings, f"/account/email/confirm?token={token}")
    if to_new:
        why = "Someone asked to move a Glucoshare account to this address. If it was you, confirm it"
    else:
        why = (
            "Someone asked to move your Glucoshare account to another e-mail address. If it was you, "
            "confirm it from this address too; if not, ignore this mail, change your password and "
            "nothing will change"
        )
    return Mail(
        to=to,
        subject="Confirm the new e-mail address of your Glucoshare account",
        body=f"Hello,\n\n{why}:\n\n{link}\n\nThe link works once, within 24 hours.\n",
    )


def _taken_notice(to: str) -> Mail:
    return Mail(
        to=to,
        subject="Your Glucoshare account",
        body=(
            "Hello,\n\nSomeone asked to move another Glucoshare account to this address, which "
            "already has an account, so nothing was changed. If this was you, sign in with this "
            "address instead.\n"
        ),
    )
