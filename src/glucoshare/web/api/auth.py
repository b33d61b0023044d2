"""``/v1/auth``: sign in and out, sign up, verify an address, reset a password, confirm an e-mail change."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from glucoshare.accounts.email_change import confirm_email_change
from glucoshare.accounts.recovery import request_password_reset, reset_password
from glucoshare.accounts.schemas import UserOut
from glucoshare.accounts.sessions import end_session, start_session
from glucoshare.accounts.signup import sign_up, verify_email
from glucoshare.accounts.users import attempt_login, user_out
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.errors import GlucoshareError, UnauthenticatedError
from glucoshare.sharing.service import claim_account
from glucoshare.web.api.schemas import (
    Accepted,
    EmailChangeOut,
    EmailIn,
    LoginIn,
    LoginOut,
    ResetConfirmIn,
    SignUpIn,
    TokenIn,
)
from glucoshare.web.deps import (
    Caller,
    clear_session_cookie,
    client_ip,
    csrf_token,
    set_session_cookie,
    settings_of,
    unit_of_work,
)

router = APIRouter(prefix="/v1/auth", tags=["authentication"])

_ERRORS: dict[int | str, dict[str, object]] = {401: {"description": "Wrong credentials"}}


@router.post(
    "/login",
    responses={**_ERRORS, 429: {"description": "Too many attempts; see Retry-After"}},
)
def login(body: LoginIn, request: Request, response: Response) -> LoginOut:
    """Sign in with e-mail, password and (when enrolled) a TOTP or recovery code.

    Every failure answers ``401`` alike, for unknown accounts too; ten failures within 15 minutes
    for an account or an address answer ``429`` with ``Retry-After``.
    """
    agent = request.headers.get("user-agent")
    error: GlucoshareError | None = None
    with unit_of_work(request) as session:
        attempt = attempt_login(
            session,
            email=body.email,
            password=body.password,
            code=body.totp,
            ip=client_ip(request),
            user_agent=agent,
            settings=settings_of(request),
        )
        if attempt.login is None:
            error = attempt.error
        else:
            token, row = start_session(session, attempt.login.user, ip=client_ip(request), user_agent=agent)
            out = LoginOut(
                token=token,
                csrf_token=csrf_token(request, token),
                expires_at=row.expires_at,
                user=user_out(attempt.login.user),
                must_enrol_second_factor=attempt.login.must_enrol_second_factor,
            )
    if error is not None:  # raised after the commit: the failure is counted and audited
        raise error
    set_session_cookie(response, token)
    return out


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
def logout(caller: Caller, request: Request) -> Response:
    """End the current session (bearer token, or cookie with its CSRF token); app tokens have none."""
    if caller.user is None or caller.session_id is None:
        msg = "not signed in"
        raise UnauthenticatedError(msg)
    with unit_of_work(request) as session:
        end_session(session, caller.user, caller.session_id)
        record_event(session, actor=caller.actor, action=AuditTag.LOGOUT, target=caller.session_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(response)
    return response


@router.post("/signup", status_code=status.HTTP_202_ACCEPTED)
def signup(body: SignUpIn, request: Request) -> Accepted:
    """Create a patient or care-partner account; a verification link goes to the address.

    The answer is the same whether or not the address already has an account (that owner gets a
    notice instead).
    """
    with unit_of_work(request) as session:
        sign_up(
            session,
            settings_of(request),
            email=body.email,
            name=body.name,
            password=body.password,
            role=body.role,
            timezone=body.timezone,
            display_units=body.display_units,
        )
    return Accepted(detail="check your e-mail to finish signing up")


@router.post("/verify-email", responses=_ERRORS)
def verify(body: TokenIn, request: Request) -> UserOut:
    """Confirm an address with the link from the sign-up mail (once, within 24 hours)."""
    with unit_of_work(request) as session:
        return user_out(verify_email(session, token=body.token))


@router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED)
def password_reset(body: EmailIn, request: Request) -> Accepted:
    """Send a reset link (valid 60 minutes) if the address has an account; the answer never says."""
    with unit_of_work(request) as session:
        request_password_reset(session, settings_of(request), email=body.email)
    return Accepted(detail="if the address has an account, a link to reset its password is on its way")


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS)
def password_reset_confirm(body: ResetConfirmIn, request: Request) -> Response:
    """Set a new password from a reset link; the second factor is still required; every session ends."""
    with unit_of_work(request) as session:
        reset_password(session, token=body.token, new_password=body.password, code=body.totp)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/email-change/confirm", responses=_ERRORS)
def email_change_confirm(body: TokenIn, request: Request) -> EmailChangeOut:
    """Open one of the two links of an e-mail change; the address changes once both are opened."""
    with unit_of_work(request) as session:
        result = confirm_email_change(session, token=body.token)
    return EmailChangeOut(confirmed="new" if result.confirmed == "new" else "old", completed=result.completed)


class ClaimIn(BaseModel):
    """Take over a clinic-created account: the link's token, the birth date and a new password."""

    token: str = Field(min_length=1, max_length=200)
    birthdate: dt.date
    password: str = Field(min_length=1, max_length=1024)


@router.post("/claim", responses=_ERRORS)
def claim(body: ClaimIn, request: Request) -> UserOut:
    """Claim the account a clinic created: the birth date must match; the clinic keeps its access."""
    with unit_of_work(request) as session:
        return user_out(
            claim_account(session, token=body.token, birthdate=body.birthdate, password=body.password)
        )
