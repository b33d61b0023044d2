"""What every route shares: settings, the unit of work, and who the caller is.

A caller authenticates with ``Authorization: Bearer`` (a session token from ``POST /v1/auth/login``
or an app's API token) or with the session cookie a browser got at sign-in. Cookie-authenticated
requests that change something must carry the session's CSRF token in ``X-CSRF-Token``
(synchroniser token, OWASP CSRF cheat sheet) and must not come from another site.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Response, UploadFile
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from glucoshare.accounts.access import Permission, Principal, own_patient
from glucoshare.accounts.errors import PatientNotFoundError
from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.sessions import (
    ABSOLUTE_TIMEOUT,
    API_TOKEN_PREFIX,
    InvalidTokenError,
    resolve_api_token,
    resume_session,
)
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.db.base import ID_LENGTH
from glucoshare.db.errors import DatabaseFaultError
from glucoshare.db.session import session_scope
from glucoshare.errors import PermissionDeniedError, UnauthenticatedError
from glucoshare.ingest.errors import FileTooLargeError
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.jobs.service import refresh_summaries_later
from glucoshare.sharing.access import patient_access
from glucoshare.vault.service import bound_keyring

SESSION_COOKIE = "gs_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

LOG = logging.getLogger(__name__)


class CsrfError(PermissionDeniedError):
    """A cookie-authenticated change without the session's CSRF token, or from another site."""

    code = "csrf_failed"


def set_session_cookie(response: Response, token: str) -> None:
    """The browser's session: ``Secure``, ``HttpOnly``, ``SameSite=Lax``, ending with the session."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ABSOLUTE_TIMEOUT.total_seconds()),
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response) -> None:
    """Tell the browser to forget its session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")


def settings_of(request: Request) -> Settings:
    """The settings of the application serving ``request``."""
    settings: Settings = request.app.state.settings
    return settings


@contextlib.contextmanager
def unit_of_work(request: Request) -> Iterator[Session]:
    """One transaction for (part of) a request: committed when the block succeeds."""
    with session_scope(request.app.state.engine) as session:
        yield session


def csrf_token(request: Request, session_token: str) -> str:
    """The CSRF token that belongs to a session (a keyed hash of its token; nothing stored)."""
    ring = bound_keyring(request.app.state.engine)
    if ring is None:  # pragma: no cover - the app factory always binds the key ring
        raise UnauthenticatedError("the server has no master key")
    return ring.mac("csrf", session_token)


def client_ip(request: Request) -> str | None:
    """The client's IP address as the server saw it."""
    return request.client.host if request.client else None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _check_csrf(request: Request, token: str) -> None:
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        msg = "a change to your account cannot come from another site"
        raise CsrfError(msg)
    presented = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(presented.encode(), csrf_token(request, token).encode()):
        msg = f"the {CSRF_HEADER} header is missing or wrong; reload the page and try again"
        raise CsrfError(msg)


def authenticate(request: Request) -> Principal:
    """Identify the caller (session or API token); raise ``401`` when there is no valid credential."""
    bearer = _bearer(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if bearer is None and cookie is None:
        msg = "sign in first: send Authorization: Bearer TOKEN"
        raise UnauthenticatedError(msg)
    with unit_of_work(request) as session:
        if bearer is not None and bearer.startswith(API_TOKEN_PREFIX):
            with contextlib.suppress(InvalidTokenError):  # a session token may start alike
                return Principal(user=None, token=resolve_api_token(session, bearer))
        session_token = bearer if bearer is not None else str(cookie)
        if bearer is None:
            _check_csrf(request, session_token)
        user, row = resume_session(session, session_token)
        return Principal(
            user=user,
            session_id=row.id,
            must_enrol_second_factor=user.role == "clinician" and not user.has_second_factor,
        )


Caller = Annotated[Principal, Depends(authenticate)]
"""The authenticated caller of a route."""


def reach_patient(
    request: Request, session: Session, caller: Principal, patient_id: str, need: Permission
) -> Patient:
    """The patient, when ``caller`` may ``need`` their data; else ``404`` and an audited denial.

    The denial is stored in a transaction of its own (the request's rolls back with the error), in
    the patient's own access log when the patient exists.
    """
    try:
        return patient_access(session, caller, patient_id, need)
    except PatientNotFoundError:
        with unit_of_work(request) as audit:
            exists = len(patient_id) <= ID_LENGTH and audit.get(Patient, patient_id) is not None
            record_event(
                audit,
                actor=caller.actor,
                action=AuditTag.ACCESS_DENIED,
                patient_id=patient_id if exists else None,
                target=patient_id[:64],
                details={"need": need},
                outcome="denied",
            )
        raise


def current_user(session: Session, principal: Principal, *, enrolling: bool = False) -> User:
    """The signed-in person, loaded in ``session`` (so that changes to them are stored)."""
    person = principal.person(enrolling=enrolling)
    user = session.get(User, person.id)
    if user is None:  # the account was deleted while the session was in flight
        msg = "the session has ended; sign in again"
        raise UnauthenticatedError(msg)
    return user


def own_patient_of(session: Session, principal: Principal, refusal: str) -> Patient:
    """The signed-in patient's own patient record; ``404`` with ``refusal`` for other accounts."""
    patient = own_patient(session, current_user(session, principal))
    if patient is None:
        raise PatientNotFoundError(refusal)
    return patient


def read_uploads(files: list[UploadFile], limit: int) -> list[IncomingFile]:
    """The uploaded files' bytes; a file larger than ``limit`` bytes is refused (``413``)."""
    incoming = []
    for upload in files:
        data = upload.file.read(limit + 1)
        if len(data) > limit:
            msg = f"{upload.filename}: larger than the limit of {limit:,} bytes"
            raise FileTooLargeError(msg)
        incoming.append(IncomingFile(upload.filename or "upload", data))
    return incoming


def refresh_after(request: Request, patient_ids: list[str] | None) -> None:
    """Bring the patients' summaries up to date after the request's data has committed.

    The data is stored and its span is in the summary backlog already: should this second step
    fail (a database fault), readers and the workers refresh the backlog later, so the request
    still succeeds and only a warning is logged.
    """
    try:
        with unit_of_work(request) as session:
            refresh_summaries_later(session, patient_ids)
    except (SQLAlchemyError, DatabaseFaultError) as exc:
        LOG.warning("summaries left in the backlog after a fault (%s)", type(exc).__name__)
