"""Accounts that sign in: add, find, set a password, enrol a second factor, authenticate.

Services flush but never commit. Rules: :mod:`glucoshare.accounts.passwords` (NIST SP 800-63B rev
4) and :mod:`glucoshare.accounts.totp` (RFC 6238). Authentication answers every failure (unknown
account, no password, wrong password, missing, wrong or replayed code) with the same
:class:`~glucoshare.accounts.errors.AuthenticationError` after the same work, so nothing tells
whether an account exists (ASVS 5.0 6.3.8).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pydantic
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import (
    AuthenticationError,
    InvalidSecondFactorError,
    InvalidUserError,
    SecondFactorMandatoryError,
    UserExistsError,
    UserNotFoundError,
    WeakPasswordError,
)
from glucoshare.accounts.models import RecoveryCode, User
from glucoshare.accounts.passwords import (
    PasswordRejectedError,
    check_password,
    hash_password,
    verify_password,
)
from glucoshare.accounts.qr import qr_svg
from glucoshare.accounts.schemas import TotpEnrolmentOut, TotpStartOut, UserCreate, UserOut, normalise_email
from glucoshare.accounts.sessions import end_other_sessions
from glucoshare.accounts.throttle import (
    MAX_FAILURES,
    WINDOW,
    account_failures,
    check_throttle,
    clear_failures,
    record_failure,
)
from glucoshare.accounts.totp import (
    accepted_step,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    recovery_digest,
)
from glucoshare.audit.context import Origin
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.errors import GlucoshareError, TooManyRequestsError
from glucoshare.mail.service import Mail, queue_mail
from glucoshare.vault.service import lookup_hash

_FAILED = "wrong e-mail address, password or second-factor code"


def validate_user(**fields: object) -> UserCreate:
    """Validate raw fields into a :class:`UserCreate`, raising :class:`InvalidUserError`."""
    try:
        return UserCreate.model_validate(fields)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise InvalidUserError(f"{field}: {str(err['msg']).removeprefix('Value error, ')}") from exc


def user_out(user: User) -> UserOut:
    """The public view of an account."""
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        has_password=user.password_hash is not None,
        has_second_factor=user.has_second_factor,
        email_verified=user.email_verified_at is not None,
        created_at=user.created_at,
    )


def add_user(session: Session, data: UserCreate, password: str | None = None) -> User:
    """Add an account (one per e-mail address); with ``password``, checked and stored hashed."""
    if (
        session.scalar(select(User.id).where(User.email_lookup == lookup_hash(session, data.email)))
        is not None
    ):
        msg = "an account with this e-mail address already exists"
        raise UserExistsError(msg)
    user = User(email=data.email, name=data.name, role=data.role)
    if password is not None:
        _store_password(user, password)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, ref: str) -> User:
    """Find an account by e-mail address (any case) or id."""
    key = ref.strip()
    user = session.scalar(select(User).where(User.email_lookup == lookup_hash(session, key)))
    if user is None:
        user = session.get(User, key)
    if user is None:
        msg = "no account with this e-mail address or id"
        raise UserNotFoundError(msg)
    return user


def _store_password(user: User, password: str) -> None:
    try:
        checked = check_password(
            password, second_factor=user.has_second_factor, email=user.email, name=user.name
        )
    except PasswordRejectedError as exc:
        raise WeakPasswordError(str(exc)) from None
    user.password_hash = hash_password(checked)
    user.password_changed_at = dt.datetime.now(dt.UTC)


def set_password(session: Session, user: User, password: str, *, keep_session: str | None = None) -> None:
    """Set a new password (rules of :mod:`.passwords`); every other session of the account ends."""
    _store_password(user, password)
    end_other_sessions(session, user, keep=keep_session)
    session.flush()


def enable_totp(session: Session, user: User, *, keep_session: str | None = None) -> TotpEnrolmentOut:
    """Give the account a new TOTP secret and ten new recovery codes (replacing any old ones).

    Every other session of the account ends.
    """
    return _install_totp(session, user, new_secret(), None, keep_session)


def _install_totp(
    session: Session, user: User, secret: str, step: int | None, keep_session: str | None
) -> TotpEnrolmentOut:
    """Make ``secret`` the account's TOTP secret with ten new recovery codes; other sessions end."""
    codes = new_recovery_codes()
    user.totp_secret = secret
    user.totp_last_step = step
    session.query(RecoveryCode).filter(RecoveryCode.user_id == user.id).delete()
    session.add_all(RecoveryCode(user_id=user.id, digest=recovery_digest(code)) for code in codes)
    end_other_sessions(session, user, keep=keep_session)
    session.flush()
    return TotpEnrolmentOut(
        secret=secret, uri=provisioning_uri(secret, user.email or user.id), recovery_codes=codes
    )


def reauthenticate(
    session: Session, user: User, *, password: str, code: str | None, now: float | None = None
) -> None:
    """Check the password, and the second factor when enrolled, again (before a change that matters)."""
    moment = time.time() if now is None else now
    if not verify_password(user.password_hash, password).ok or (
        user.totp_secret is not None
        and (code is None or not check_second_factor(session, user, code, moment))
    ):
        msg = "wrong password or second-factor code"
        raise AuthenticationError(msg)


def change_password(
    session: Session, user: User, *, current: str, new: str, keep_session: str | None = None
) -> None:
    """Replace the password after checking the current one; every other session ends."""
    if not verify_password(user.password_hash, current).ok:
        msg = "the current password is wrong"
        raise AuthenticationError(msg)
    set_password(session, user, new, keep_session=keep_session)


def start_totp_enrolment(user: User) -> TotpStartOut:
    """A new TOTP secret for the account to confirm (nothing changes until it is confirmed)."""
    secret = new_secret()
    uri = provisioning_uri(secret, user.email or user.id)
    return TotpStartOut(secret=secret, uri=uri, qr_svg=qr_svg(uri))


def confirm_totp_enrolment(
    session: Session,
    user: User,
    *,
    secret: str,
    code: str,
    now: float | None = None,
    keep_session: str | None = None,
) -> TotpEnrolmentOut:
    """Enable TOTP with ``secret`` once a code from the authenticator app proves it was scanned.

    Replaces any earlier second factor and its recovery codes; every other session ends.
    """
    moment = time.time() if now is None else now
    step = accepted_step(secret, code, now=moment, last_step=None)
    if step is None:
        msg = "the code does not match: check the time on your phone and try the next code"
        raise InvalidSecondFactorError(msg)
    return _install_totp(session, user, secret, step, keep_session)


def disable_totp(
    session: Session,
    user: User,
    *,
    password: str,
    code: str,
    now: float | None = None,
    keep_session: str | None = None,
) -> None:
    """Turn the second factor off (password and a current code required; never for clinicians)."""
    if user.role == "clinician":
        msg = "clinicians must keep a second factor"
        raise SecondFactorMandatoryError(msg)
    moment = time.time() if now is None else now
    if (
        not verify_password(user.password_hash, password).ok
        or user.totp_secret is None
        or not check_second_factor(session, user, code, moment)
    ):
        raise AuthenticationError(_FAILED)
    user.totp_secret = None
    user.totp_last_step = None
    session.query(RecoveryCode).filter(RecoveryCode.user_id == user.id).delete()
    end_other_sessions(session, user, keep=keep_session)
    session.flush()


@dataclasses.dataclass(frozen=True, slots=True)
class Login:
    """A successful authentication."""

    user: User
    must_enrol_second_factor: bool
    """A clinician without a second factor: they must enrol one before anything else."""


def authenticate(
    session: Session,
    *,
    email: str,
    password: str,
    code: str | None = None,
    now: float | None = None,
) -> Login:
    """Check an e-mail address, a password and (when enrolled) a TOTP or recovery code.

    Raises :class:`AuthenticationError` for every failure alike. A password hash made with weaker
    parameters is replaced; a used TOTP step or recovery code cannot be used again.
    """
    moment = time.time() if now is None else now
    try:
        key = normalise_email(email)
    except ValueError:
        key = None
    user = (
        session.scalar(select(User).where(User.email_lookup == lookup_hash(session, key)))
        if key is not None
        else None
    )
    verification = verify_password(None if user is None else user.password_hash, password)
    if user is None or not verification.ok:
        raise AuthenticationError(_FAILED)
    if user.totp_secret is not None and (
        code is None or not check_second_factor(session, user, code, moment)
    ):
        raise AuthenticationError(_FAILED)
    if verification.needs_rehash:
        user.password_hash = hash_password(password)
    session.flush()
    return Login(user=user, must_enrol_second_factor=user.role == "clinician" and user.totp_secret is None)


def check_second_factor(session: Session, user: User, code: str, now: float) -> bool:
    """Accept a TOTP code (once per step) or an unused recovery code of ``user`` (then used up)."""
    assert user.totp_secret is not None  # noqa: S101 - checked by the caller
    step = accepted_step(user.totp_secret, code, now=now, last_step=user.totp_last_step)
    if step is not None:
        user.totp_last_step = step
        return True
    used = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.digest == recovery_digest(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=dt.datetime.now(dt.UTC))
    )
    return bool(used.rowcount)  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True, slots=True)
class LoginAttempt:
    """The outcome of a sign-in attempt: a login, or the error to answer with.

    Returned rather than raised so that the caller commits the attempt's traces (the failure count
    and the audit event) before it answers with the error.
    """

    login: Login | None
    error: GlucoshareError | None


def attempt_login(
    session: Session,
    *,
    email: str,
    password: str,
    code: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> LoginAttempt:
    """Throttle, authenticate and audit one sign-in attempt (see :mod:`.throttle`).

    With ``settings``, the owner of an existing account is told by e-mail when its sign-in is
    blocked after too many failed attempts (once per block).
    """
    moment = dt.datetime.now(dt.UTC) if now is None else now
    where = Origin(ip=ip, user_agent=user_agent)
    try:
        check_throttle(session, email=email, ip=ip, now=moment)
    except TooManyRequestsError as exc:
        record_event(
            session,
            actor="anonymous",
            action=AuditTag.LOGIN_FAILURE,
            origin=where,
            outcome="denied",
        )
        return LoginAttempt(login=None, error=exc)
    try:
        login = authenticate(session, email=email, password=password, code=code, now=moment.timestamp())
    except AuthenticationError as exc:
        record_failure(session, email=email, ip=ip, now=moment)
        owner = session.scalar(select(User).where(User.email_lookup == lookup_hash(session, email)))
        known = None if owner is None else owner.id
        if (
            owner is not None
            and settings is not None
            and account_failures(session, email=email, now=moment) == MAX_FAILURES
        ):
            queue_mail(session, settings, _blocked_notice(owner))
        record_event(
            session,
            actor=f"user:{known}" if known else "anonymous",
            action=AuditTag.LOGIN_FAILURE,
            origin=where,
            outcome="failure",
        )
        return LoginAttempt(login=None, error=exc)
    clear_failures(session, email=email)
    record_event(
        session,
        actor=f"user:{login.user.id}",
        action=AuditTag.LOGIN_SUCCESS,
        origin=where,
    )
    return LoginAttempt(login=login, error=None)


def _blocked_notice(user: User) -> Mail:
    return Mail(
        to=user.email,
        subject="Sign-in to your Glucoshare account was blocked for 15 minutes",
        body=(
            f"Hello {user.name},\n\nThere were {MAX_FAILURES} failed attempts to sign in to your "
            f"Glucoshare account within {int(WINDOW.total_seconds() // 60)} minutes, so signing in is "
            "blocked for a while. If this was not you, someone may be guessing your password: "
            "choose a new one and turn on the second factor if you have not yet.\n"
        ),
    )
