"""Sign-up with e-mail verification (patients and care partners; clinicians are invited by a clinic).

Signing up answers the same whether the address is new or already has an account (ASVS 5.0 6.3.8,
no enumeration): a new address gets its account and a verification link valid for
:data:`LINK_LIFETIME`; an address that already has an account gets a notice instead ("someone tried
to sign up with your address"), and nothing else changes. Only the link token's SHA-256 is stored;
the link works once. A patient's account comes with their patient record.

Services flush but never commit; messages leave only after the transaction commits.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import InvalidUserError, WeakPasswordError
from glucoshare.accounts.links import digest, new_token, public_url
from glucoshare.accounts.models import EmailVerification, Patient, User
from glucoshare.accounts.passwords import PasswordRejectedError, check_password
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.accounts.users import add_user, validate_user
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.errors import UnauthenticatedError
from glucoshare.mail.service import Mail, queue_mail
from glucoshare.vault.service import lookup_hash

LINK_LIFETIME = dt.timedelta(hours=24)
SIGN_UP_ROLES = ("patient", "carepartner")


class VerificationLinkInvalidError(UnauthenticatedError):
    """The verification link is unknown, used or expired."""

    code = "verification_link_invalid"


def sign_up(
    session: Session,
    settings: Settings,
    *,
    email: str,
    name: str,
    password: str,
    role: str = "patient",
    timezone: str = "UTC",
    display_units: str = "mg/dL",
    now: dt.datetime | None = None,
) -> None:
    """Create an unverified account and send its verification link (module notes for the rules).

    Malformed fields and a password that breaks the rules are refused (they say nothing about the
    address); an existing address gets a notice by e-mail and the same silent success.
    """
    if role not in SIGN_UP_ROLES:
        msg = f"role: one of {', '.join(SIGN_UP_ROLES)} (clinicians are invited by their clinic)"
        raise InvalidUserError(msg)
    data = validate_user(email=email, name=name, role=role)
    patient_data = validate_patient(email=email, name=name, timezone=timezone, display_units=display_units)
    try:
        check_password(password, second_factor=False, email=data.email, name=data.name)
    except PasswordRejectedError as exc:
        raise WeakPasswordError(str(exc)) from None
    existing = session.scalar(select(User).where(User.email_lookup == lookup_hash(session, data.email)))
    if existing is not None:
        queue_mail(session, settings, _notice(existing, settings))
        return
    user = add_user(session, data, password)
    # A patient record a clinic already made for this address is linked by invitation, not here.
    clinic_made = (
        session.scalar(select(Patient.id).where(Patient.email_lookup == lookup_hash(session, data.email)))
        is not None
    )
    if role == "patient" and not clinic_made:
        patient = add_patient(session, patient_data)
        patient.user_id = user.id
    token, token_digest = new_token()
    moment = dt.datetime.now(dt.UTC) if now is None else now
    session.add(
        EmailVerification(token_sha256=token_digest, user_id=user.id, expires_at=moment + LINK_LIFETIME)
    )
    session.flush()
    link = public_url(settings, f"verify-email/{token}")
    queue_mail(
        session,
        settings,
        Mail(
            to=user.email,
            subject="Confirm your e-mail address for Glucoshare",
            body=(
                f"Hello {user.name},\n\nWelcome to Glucoshare. Please confirm your e-mail address by "
                f"opening this link within 24 hours:\n\n{link}\n\n"
                "If you did not sign up, ignore this message and no account will be used.\n"
            ),
        ),
    )
    record_event(
        session, actor=f"user:{user.id}", action=AuditTag.USER_CREATE, target=user.id, details={"role": role}
    )


def _notice(user: User, settings: Settings) -> Mail:
    return Mail(
        to=user.email,
        subject="Someone tried to sign up to Glucoshare with your address",
        body=(
            f"Hello {user.name},\n\nSomeone tried to create a Glucoshare account with this e-mail "
            "address, which already has one. If it was you, sign in, or reset your password at "
            f"{public_url(settings, 'reset-password')}. If not, nothing has changed and you "
            "need not do anything.\n"
        ),
    )


def verify_email(session: Session, *, token: str, now: dt.datetime | None = None) -> User:
    """Confirm the address of the account a verification link belongs to."""
    moment = dt.datetime.now(dt.UTC) if now is None else now
    link = session.scalar(select(EmailVerification).where(EmailVerification.token_sha256 == digest(token)))
    if link is None or link.used_at is not None or moment >= link.expires_at:
        msg = "this confirmation link is not valid any more; ask for a new one"
        raise VerificationLinkInvalidError(msg)
    user = session.get(User, link.user_id)
    if user is None:  # pragma: no cover - cascades delete links with their account
        raise VerificationLinkInvalidError("this confirmation link is not valid any more; ask for a new one")
    link.used_at = moment
    user.email_verified_at = moment
    record_event(session, actor=f"user:{user.id}", action=AuditTag.USER_EMAIL_VERIFIED, target=user.id)
    session.flush()
    return user
