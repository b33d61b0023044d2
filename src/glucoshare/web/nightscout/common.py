"""What the Nightscout API's versions share.

The key ring, the bearer credential, and running a request with its authenticated caller in one
transaction, a refused permission being audited.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.errors import InternalError
from glucoshare.nightscout.access import NightscoutCaller
from glucoshare.nightscout.errors import RoleMissingError
from glucoshare.vault.keyfile import KeyRing
from glucoshare.vault.service import bound_keyring
from glucoshare.web.deps import unit_of_work


def keyring(request: Request) -> KeyRing:
    """The master key ring of the app serving ``request`` (JWTs are signed with a key from it)."""
    ring = bound_keyring(request.app.state.engine)
    if ring is None:  # pragma: no cover - the app factory always binds the key ring
        msg = "the server has no master key"
        raise InternalError(msg)
    return ring


def bearer_of(request: Request) -> str | None:
    """The value of an ``Authorization: Bearer`` header, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def run_authorised(
    request: Request,
    caller_of: Callable[[Session], NightscoutCaller],
    work: Callable[[Session, NightscoutCaller], Response],
    *,
    api: str,
) -> Response:
    """Run ``work`` in one transaction with the caller ``caller_of`` finds.

    A refused permission (:class:`RoleMissingError`) is recorded in the patient's access log, in
    a transaction of its own (the request's rolls back with the error), and raised again.
    """
    denied: tuple[str, str, str] | None = None
    try:
        with unit_of_work(request) as session:
            caller = caller_of(session)
            try:
                return work(session, caller)
            except RoleMissingError as exc:
                denied = (caller.actor, caller.patient.id, exc.message)
                raise
    except RoleMissingError:
        if denied is not None:
            actor, patient_id, reason = denied
            with unit_of_work(request) as session:
                record_event(
                    session,
                    actor=actor,
                    action=AuditTag.ACCESS_DENIED,
                    patient_id=patient_id,
                    target="nightscout",
                    details={"need": reason[-60:], "api": api},
                    outcome="denied",
                )
        raise


def audit_read(session: Session, caller: NightscoutCaller, what: str, documents: int, *, api: str) -> None:
    """Record that ``caller`` read ``documents`` documents of ``what`` (a collection) of its patient."""
    record_event(
        session,
        actor=caller.actor,
        action=AuditTag.RECORDS_READ,
        patient_id=caller.patient.id,
        target=f"nightscout:{what}",
        details={"api": api, "documents": documents},
    )
