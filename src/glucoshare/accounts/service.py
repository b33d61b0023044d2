"""Patients: add, find and list. Services flush but never commit."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pydantic
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import InvalidPatientError, PatientExistsError, PatientNotFoundError
from glucoshare.accounts.models import Patient
from glucoshare.accounts.schemas import PatientCreate
from glucoshare.vault.service import lookup_hash, open_value, preload_data_keys


def _first_error(exc: pydantic.ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def validate_patient(**fields: object) -> PatientCreate:
    """Validate raw fields into a :class:`PatientCreate`, raising :class:`InvalidPatientError`."""
    try:
        return PatientCreate.model_validate(fields)
    except pydantic.ValidationError as exc:
        raise InvalidPatientError(_first_error(exc)) from exc


def add_patient(session: Session, data: PatientCreate) -> Patient:
    """Add a patient; e-mail addresses are unique (case-insensitive)."""
    exists = session.scalar(
        select(Patient.id).where(Patient.email_lookup == lookup_hash(session, data.email))
    )
    if exists is not None:
        msg = "a patient with this e-mail address already exists"
        raise PatientExistsError(msg)
    patient = Patient(
        email=data.email,
        name=data.name,
        birthdate=data.birthdate,
        timezone=data.timezone,
        display_units=data.display_units,
    )
    session.add(patient)
    session.flush()
    return patient


def get_patient(session: Session, ref: str) -> Patient:
    """Find a patient by e-mail address (any case) or by id."""
    key = ref.strip()
    patient = session.scalar(select(Patient).where(Patient.email_lookup == lookup_hash(session, key)))
    if patient is None:
        patient = session.get(Patient, key)
    if patient is None:
        msg = "no patient with this e-mail address or id"
        raise PatientNotFoundError(msg)
    return patient


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who a patient is (opened from the sealed columns)."""

    email: str
    name: str
    birthdate: dt.date | None


def patient_identities(session: Session, patient_ids: list[str]) -> dict[str, Identity]:
    """E-mail address, name and birth date of many patients at once (data keys unwrapped in bulk)."""
    preload_data_keys(session, patient_ids)
    table = Patient.__tablename__
    found: dict[str, Identity] = {}
    for start in range(0, len(patient_ids), 500):
        chunk = patient_ids[start : start + 500]
        rows = session.execute(
            select(Patient.id, Patient.email_sealed, Patient.name_sealed, Patient.birthdate_sealed).where(
                Patient.id.in_(chunk)
            )
        )
        for patient_id, email, name, birthdate in rows:
            born = None
            if birthdate is not None:
                opened = open_value(session, patient_id, birthdate, f"{table}.birthdate_sealed:{patient_id}")
                born = dt.date.fromisoformat(opened.decode())
            found[patient_id] = Identity(
                email=open_value(session, patient_id, email, f"{table}.email_sealed:{patient_id}").decode(),
                name=open_value(session, patient_id, name, f"{table}.name_sealed:{patient_id}").decode(),
                birthdate=born,
            )
    return found


def patient_names(session: Session, patient_ids: list[str]) -> dict[str, str]:
    """The names of many patients at once (data keys unwrapped in bulk), for lists and search."""
    preload_data_keys(session, patient_ids)
    names: dict[str, str] = {}
    for start in range(0, len(patient_ids), 500):
        chunk = patient_ids[start : start + 500]
        for patient_id, sealed in session.execute(
            select(Patient.id, Patient.name_sealed).where(Patient.id.in_(chunk))
        ):
            place = f"{Patient.__tablename__}.name_sealed:{patient_id}"
            names[patient_id] = open_value(session, patient_id, sealed, place).decode()
    return names


def patient_emails(session: Session, patient_ids: list[str]) -> dict[str, str]:
    """The e-mail addresses of many patients at once (their data keys unwrapped in bulk)."""
    preload_data_keys(session, patient_ids)
    emails: dict[str, str] = {}
    for start in range(0, len(patient_ids), 500):
        chunk = patient_ids[start : start + 500]
        for patient_id, sealed in session.execute(
            select(Patient.id, Patient.email_sealed).where(Patient.id.in_(chunk))
        ):
            place = f"{Patient.__tablename__}.email_sealed:{patient_id}"
            emails[patient_id] = open_value(session, patient_id, sealed, place).decode()
    return emails


def list_patients(session: Session) -> list[Patient]:
    """Every patient, ordered by e-mail address."""
    return sorted(session.scalars(select(Patient)), key=lambda p: p.email or "")
