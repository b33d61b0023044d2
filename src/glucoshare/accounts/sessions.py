"""Server-side sessions and API tokens. Services flush but never commit.

Sessions (ASVS 5.0 §7; HIPAA §164.312(a)(2)(iii) automatic logoff): an opaque random token of 256
bits is handed to the client once and only its SHA-256 is stored. A session ends after 30 minutes
without a request (idle) and 12 hours after sign-in (absolute), when revoked, and when the password
or the second factor changes (every other session of the account ends).

API tokens (for apps and uploaders) are scoped to one patient and one kind (``upload``, ``read``,
``nightscout``), shown once, stored as digests, revocable, and record when they were last used. A
``nightscout`` token comes with an API secret for the clients that only know Nightscout's
``api-secret`` header.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from glucoshare.accounts.links import digest, new_token
from glucoshare.accounts.models import ApiToken, AuthSession, Patient, User
from glucoshare.accounts.roles import UnknownRoleError, check_roles
from glucoshare.errors import InputError, NotFoundError, UnauthenticatedError

IDLE_TIMEOUT = dt.timedelta(minutes=30)
ABSOLUTE_TIMEOUT = dt.timedelta(hours=12)
TOKEN_KINDS = ("upload", "read", "nightscout")
TOKEN_USE_RESOLUTION = dt.timedelta(minutes=1)
"""How precisely a token's last use is kept (it is written at most once per this interval)."""
API_TOKEN_PREFIX = "gs_"  # noqa: S105 - a prefix that makes a leaked token recognisable, not a secret


class SessionExpiredError(UnauthenticatedError):
    """The session token is unknown, revoked or expired."""

    code = "session_expired"


class InvalidTokenError(UnauthenticatedError):
    """The API token or secret is unknown or revoked."""

    code = "invalid_token"


class InvalidTokenKindError(InputError):
    """An API token kind that does not exist."""

    code = "invalid_token_kind"


class SessionNotFoundError(NotFoundError):
    """No such session of this account."""

    code = "session_not_found"


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _now(now: dt.datetime | None) -> dt.datetime:
    return dt.datetime.now(dt.UTC) if now is None else now


def start_session(
    session: Session,
    user: User,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[str, AuthSession]:
    """A new session for ``user``: the token to hand to the client (once) and the stored row."""
    moment = _now(now)
    token, token_digest = new_token()
    row = AuthSession(
        token_sha256=token_digest,
        user_id=user.id,
        created_at=moment,
        last_seen_at=moment,
        expires_at=moment + ABSOLUTE_TIMEOUT,
        ip=ip,
        user_agent=None if user_agent is None else user_agent[:300],
    )
    session.add(row)
    session.flush()
    return token, row


def resume_session(
    session: Session, token: str, *, now: dt.datetime | None = None
) -> tuple[User, AuthSession]:
    """The account behind a session token; extends the idle window. Expired sessions are revoked."""
    moment = _now(now)
    row = session.scalar(select(AuthSession).where(AuthSession.token_sha256 == digest(token)))
    if row is None or row.revoked_at is not None:
        msg = "the session has ended; sign in again"
        raise SessionExpiredError(msg)
    if moment >= row.expires_at or moment - row.last_seen_at >= IDLE_TIMEOUT:
        row.revoked_at = moment
        session.flush()
        msg = "the session has ended; sign in again"
        raise SessionExpiredError(msg)
    row.last_seen_at = moment
    user = session.get(User, row.user_id)
    if user is None:  # pragma: no cover - cascades delete sessions with their account
        raise SessionExpiredError("the session has ended; sign in again")
    session.flush()
    return user, row


def active_sessions(session: Session, user: User, *, now: dt.datetime | None = None) -> list[AuthSession]:
    """The account's sessions that have not ended, newest first."""
    moment = _now(now)
    rows = session.scalars(
        select(AuthSession)
        .where(
            AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > moment
        )
        .order_by(AuthSession.created_at.desc())
    )
    return [row for row in rows if moment - row.last_seen_at < IDLE_TIMEOUT]


def end_session(session: Session, user: User, session_id: str, *, now: dt.datetime | None = None) -> None:
    """Revoke one of the account's sessions."""
    row = session.get(AuthSession, session_id)
    if row is None or row.user_id != user.id:
        msg = "no such session"
        raise SessionNotFoundError(msg)
    row.revoked_at = row.revoked_at or _now(now)
    session.flush()


def end_other_sessions(
    session: Session, user: User, *, keep: str | None = None, now: dt.datetime | None = None
) -> int:
    """Revoke every session of the account but ``keep`` (after a password or second-factor change)."""
    query = update(AuthSession).where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(AuthSession.id != keep)
    result = session.execute(query.values(revoked_at=_now(now)))
    session.flush()
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True, slots=True)
class NewApiToken:
    """A token as created: the values are shown once, then only their digests exist."""

    id: str
    kind: str
    token: str
    api_secret: str | None


def create_api_token(
    session: Session,
    patient: Patient,
    *,
    kind: str,
    created_by: str,
    roles: Sequence[str] | None = None,
) -> NewApiToken:
    """A new token of ``kind`` for the patient (with an API secret for ``nightscout``).

    ``roles`` (Nightscout roles, :mod:`glucoshare.accounts.roles`) narrow or widen what the token
    may do through the Nightscout API; ``None``: the roles of its kind.
    """
    if kind not in TOKEN_KINDS:
        msg = f"--kind must be one of {', '.join(TOKEN_KINDS)}"
        raise InvalidTokenKindError(msg)
    chosen: list[str] | None = None
    if roles:
        try:
            chosen = check_roles(roles)
        except UnknownRoleError as exc:
            raise InvalidTokenKindError(str(exc)) from None
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(24)
    secret = secrets.token_urlsafe(24) if kind == "nightscout" else None
    row = ApiToken(
        patient_id=patient.id,
        kind=kind,
        token_sha256=digest(token),
        token_sha1=_sha1(token),
        secret_sha1=None if secret is None else _sha1(secret),
        created_by=created_by,
        roles=chosen,
    )
    session.add(row)
    session.flush()
    return NewApiToken(id=row.id, kind=kind, token=token, api_secret=secret)


def list_api_tokens(session: Session, patient: Patient) -> list[ApiToken]:
    """The patient's API tokens, revoked ones included, newest first (rows hold digests, never values)."""
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.patient_id == patient.id).order_by(ApiToken.created_at.desc())
        )
    )


def resolve_api_token(session: Session, presented: str, *, now: dt.datetime | None = None) -> ApiToken:
    """The token behind a credential; records the use.

    The credential is the token itself, its SHA-1 (as Nightscout clients send it), or the SHA-1 of
    a Nightscout API secret. Unknown or revoked: :class:`InvalidTokenError`.
    """
    value = presented.strip()
    hexdigest = value.lower()
    row = session.scalar(
        select(ApiToken).where(
            or_(
                ApiToken.token_sha256 == digest(value),
                ApiToken.token_sha1 == hexdigest,
                ApiToken.secret_sha1 == hexdigest,
            )
        )
    )
    if row is None or row.revoked_at is not None:
        msg = "unknown or revoked token"
        raise InvalidTokenError(msg)
    moment = _now(now)
    if row.last_used_at is None or moment - row.last_used_at >= TOKEN_USE_RESOLUTION:
        row.last_used_at = moment  # an uploader calls every few seconds: one write a minute is enough
        session.flush()
    return row


def revoke_api_token(
    session: Session, token_id: str, *, patient: Patient, now: dt.datetime | None = None
) -> None:
    """Revoke one of the patient's tokens at once."""
    row = session.get(ApiToken, token_id)
    if row is None or row.patient_id != patient.id:
        msg = "no such token"
        raise NotFoundError(msg)
    row.revoked_at = row.revoked_at or _now(now)
    session.flush()
