"""The one permission service: whether a caller may reach a patient's data, and for what.

* The patient's own account may do everything.
* An app token acts for its patient within its scope (:data:`~glucoshare.accounts.access.TOKEN_SCOPES`).
* A care partner may do what their share grants (``view``, ``upload``, ``manage_devices``, ``note``).
* A member of a clinic may do what the clinic's share grants; a clinic that created an account still
  unclaimed by its patient (``custodian``) may do everything, ``manage`` included.

Anyone else gets :class:`~glucoshare.accounts.errors.PatientNotFoundError`, exactly as for a patient
that does not exist (CONTRACT.md: ``404``), so no one learns whom Glucoshare holds. Revoking a share
takes effect on the very next request: nothing is cached.
"""

from __future__ import annotations

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from glucoshare.accounts.access import TOKEN_SCOPES, Permission, Principal
from glucoshare.accounts.errors import PatientNotFoundError
from glucoshare.accounts.models import Patient
from glucoshare.sharing.models import ClinicMember, Share

SHARE_PERMISSIONS: tuple[Permission, ...] = ("view", "upload", "manage_devices", "note")
"""What a share can grant (``manage`` stays with the patient, or a custodial clinic)."""


def _member_clinics(principal: Principal) -> Select[str]:
    assert principal.user is not None  # noqa: S101 - callers check
    return select(ClinicMember.clinic_id).where(ClinicMember.user_id == principal.user.id)


def active_shares(session: Session, principal: Principal, patient_id: str) -> list[Share]:
    """The shares of ``patient_id`` through which the signed-in ``principal`` reaches them."""
    if principal.user is None or principal.must_enrol_second_factor:
        return []
    query = select(Share).where(
        Share.patient_id == patient_id,
        Share.revoked_at.is_(None),
        or_(Share.user_id == principal.user.id, Share.clinic_id.in_(_member_clinics(principal))),
    )
    return list(session.scalars(query))


def permissions_of(session: Session, principal: Principal, patient: Patient) -> frozenset[Permission]:
    """Everything ``principal`` may do with ``patient``'s data (empty: no access at all)."""
    if principal.token is not None:
        if principal.token.patient_id != patient.id:
            return frozenset()
        return TOKEN_SCOPES.get(principal.token.kind, frozenset())
    if principal.user is None or principal.must_enrol_second_factor:
        return frozenset()
    if patient.user_id == principal.user.id:
        return frozenset({*SHARE_PERMISSIONS, "manage"})
    granted: set[Permission] = set()
    for share in active_shares(session, principal, patient.id):
        if share.custodian and patient.user_id is None:
            granted.update((*SHARE_PERMISSIONS, "manage"))
        granted.update(p for p in SHARE_PERMISSIONS if p in share.permissions)
    return frozenset(granted)


def patient_access(session: Session, principal: Principal, patient_id: str, need: Permission) -> Patient:
    """The patient ``patient_id`` if ``principal`` may ``need`` their data; else not found (404)."""
    patient = session.get(Patient, patient_id)
    if patient is not None and need in permissions_of(session, principal, patient):
        return patient
    msg = "no patient with this id"
    raise PatientNotFoundError(msg)


def accessible_patients(session: Session, principal: Principal) -> list[Patient]:
    """Every patient whose data ``principal`` may view (their own, and shared with them)."""
    if principal.token is not None:
        patient = session.get(Patient, principal.token.patient_id)
        if patient is None or "view" not in TOKEN_SCOPES.get(principal.token.kind, frozenset()):
            return []
        return [patient]
    if principal.user is None or principal.must_enrol_second_factor:
        return []
    shared = (
        select(Share.patient_id)
        .where(
            Share.revoked_at.is_(None),
            or_(Share.user_id == principal.user.id, Share.clinic_id.in_(_member_clinics(principal))),
        )
        .scalar_subquery()
    )
    query = select(Patient).where(or_(Patient.user_id == principal.user.id, Patient.id.in_(shared)))
    return [p for p in session.scalars(query) if "view" in permissions_of(session, principal, p)]
