"""An account's profile: read it, change it (name, birth date, time zone, units, target range)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from glucoshare.accounts.access import own_patient
from glucoshare.accounts.errors import InvalidPatientError
from glucoshare.accounts.models import User
from glucoshare.accounts.schemas import PatientOut, ProfileOut, ProfileUpdate
from glucoshare.accounts.users import user_out
from glucoshare.analytics.ranges import target_range


def profile(session: Session, user: User) -> ProfileOut:
    """The account and, for a patient's own account, their patient profile and target range."""
    patient = own_patient(session, user)
    if patient is None:
        return ProfileOut(user=user_out(user), patient=None)
    return ProfileOut(
        user=user_out(user),
        patient=PatientOut.model_validate(patient),
        target_scheme=patient.target_scheme,
        target_low_mgdl=patient.target_low_mgdl,
        target_high_mgdl=patient.target_high_mgdl,
    )


def update_profile(session: Session, user: User, changes: ProfileUpdate) -> ProfileOut:
    """Apply ``changes``; patient-only fields need a patient's own account."""
    patient = own_patient(session, user)
    fields = changes.model_dump(exclude_unset=True)
    patient_fields = set(fields) - {"name"}
    if patient_fields and patient is None:
        msg = f"{', '.join(sorted(patient_fields))}: only a patient's own account has these"
        raise InvalidPatientError(msg)
    if changes.name is not None:
        user.name = changes.name
        if patient is not None:
            patient.name = changes.name
    if patient is not None:
        scheme = fields.get("target_scheme", patient.target_scheme)
        low = fields.get("target_low_mgdl", patient.target_low_mgdl)
        high = fields.get("target_high_mgdl", patient.target_high_mgdl)
        if scheme != "custom":
            low = high = None
        try:
            target_range(scheme, low, high)
        except ValueError as exc:
            raise InvalidPatientError(str(exc)) from exc
        patient.target_scheme, patient.target_low_mgdl, patient.target_high_mgdl = scheme, low, high
        if "birthdate" in fields:
            patient.birthdate = changes.birthdate
        if changes.timezone is not None:
            patient.timezone = changes.timezone
        if changes.display_units is not None:
            patient.display_units = changes.display_units
    session.flush()
    return profile(session, user)
