"""Who is asking, and which patient's data they may reach.

A :class:`Principal` is a signed-in person (a session) or an app (an API token). Access to a
patient's data is granted to the patient's own account and to the patient's API tokens within their
scope. Anyone else gets :class:`~glucoshare.accounts.errors.PatientNotFoundError`, exactly as for a
patient that does not exist (CONTRACT.md: 404), so no one learns whom Glucoshare holds.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import PatientNotFoundError
from glucoshare.accounts.models import ApiToken, Patient, User
from glucoshare.errors import PermissionDeniedError

Permission = Literal["read", "upload", "manage"]
"""``read`` data and reports, ``upload`` data, ``manage`` the patient's account and tokens."""

TOKEN_SCOPES: dict[str, frozenset[Permission]] = {
    "read": frozenset({"read"}),
    "upload": frozenset({"upload"}),
    "nightscout": frozenset({"read", "upload"}),
}


class PersonRequiredError(PermissionDeniedError):
    """An API token was used for something only a signed-in person may do."""

    code = "person_required"


class SecondFactorRequiredError(PermissionDeniedError):
    """A clinician signed in without a second factor: they must enrol one first."""

    code = "second_factor_required"


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    user: User | None
    token: ApiToken | None = None
    session_id: str | None = None
    must_enrol_second_factor: bool = False

    @property
    def actor(self) -> str:
        """How the audit trail names the caller (ids only, never an address)."""
        if self.user is not None:
            return f"user:{self.user.id}"
        if self.token is not None:
            return f"token:{self.token.id}"
        return "anonymous"

    def person(self, *, enrolling: bool = False) -> User:
        """The signed-in person; API tokens and clinicians without a second factor are refused.

        ``enrolling`` allows the second-factor enrolment itself.
        """
        if self.user is None:
            msg = "this needs a signed-in person, not an app token"
            raise PersonRequiredError(msg)
        if self.must_enrol_second_factor and not enrolling:
            msg = "clinicians must set up a second factor before anything else"
            raise SecondFactorRequiredError(msg)
        return self.user


def own_patient(session: Session, user: User) -> Patient | None:
    """The patient record of a patient's own account."""
    return session.scalar(select(Patient).where(Patient.user_id == user.id))


def patient_access(session: Session, principal: Principal, patient_id: str, need: Permission) -> Patient:
    """The patient ``patient_id`` if ``principal`` may ``need`` their data; else not found (404)."""
    patient = session.get(Patient, patient_id)
    if patient is not None and _allowed(principal, patient, need):
        return patient
    msg = "no patient with this id"
    raise PatientNotFoundError(msg)


def _allowed(principal: Principal, patient: Patient, need: Permission) -> bool:
    if principal.token is not None:
        return principal.token.patient_id == patient.id and need in TOKEN_SCOPES.get(
            principal.token.kind, frozenset()
        )
    if principal.user is None or principal.must_enrol_second_factor:
        return False
    return patient.user_id == principal.user.id


def accessible_patients(session: Session, principal: Principal) -> list[Patient]:
    """Every patient whose data ``principal`` may read."""
    if principal.token is not None:
        patient = session.get(Patient, principal.token.patient_id)
        return [patient] if patient is not None and "read" in TOKEN_SCOPES[principal.token.kind] else []
    if principal.user is None or principal.must_enrol_second_factor:
        return []
    own = own_patient(session, principal.user)
    return [own] if own is not None else []
