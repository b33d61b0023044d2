"""Patients: add, find and list. Services flush but never commit."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pydantic
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import InvalidPatientError, PatientExistsError, PatientNotFoundError
from glucoshare.accounts.models import Patient
from glucoshare.accounts.schemas import PatientCreate
from glucoshare.vault.sealed import Sealed
from glucoshare.vault.service import lookup_hash, preload_data_keys


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


def _open_many(
    session: Session, patient_ids: list[str], *fields: Sealed[Any]
) -> Iterator[tuple[str, list[Any]]]:
    """The given sealed fields of many patients, 500 per query, their data keys unwrapped in bulk."""
    preload_data_keys(session, patient_ids)
    columns = [getattr(Patient, field.column) for field in fields]
    for start in range(0, len(patient_ids), 500):
        chunk = patient_ids[start : start + 500]
        for patient_id, *sealed in session.execute(select(Patient.id, *columns).where(Patient.id.in_(chunk))):
            yield (
                patient_id,
                [
                    f.open_column(session, patient_id, patient_id, v)
                    for f, v in zip(fields, sealed, strict=True)
                ],
            )


def patient_identities(session: Session, patient_ids: list[str]) -> dict[str, Identity]:
    """E-mail address, name and birth date of many patients at once (data keys unwrapped in bulk)."""
    return {
        patient_id: Identity(email=email, name=name, birthdate=born)
        for patient_id, (email, name, born) in _open_many(
            session, patient_ids, Patient.email, Patient.name, Patient.birthdate
        )
    }


def patient_emails(session: Session, patient_ids: list[str]) -> dict[str, str]:
    """The e-mail addresses of many patients at once (their data keys unwrapped in bulk)."""
    return {patient_id: email for patient_id, (email,) in _open_many(session, patient_ids, Patient.email)}


def list_patients(session: Session) -> list[Patient]:
    """Every patient, ordered by e-mail address."""
    return sorted(session.scalars(select(Patient)), key=lambda p: p.email or "")
