"""Device identity across uploads: serials and identifiers (transmitter ids) keep a device with one patient."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.devices.errors import DeviceOwnedByAnotherPatientError
from glucoshare.devices.models import Device, DeviceIdentifier
from glucoshare.devices.service import resolve_device


def _patient(session: Session, email: str) -> Patient:
    return add_patient(session, validate_patient(email=email, name="P"))


def _dexcom(session: Session, patient: Patient, model: str, *identifiers: tuple[str, str]) -> Device:
    return resolve_device(
        session,
        patient_id=patient.id,
        manufacturer="Dexcom",
        model=model,
        serial=None,
        identifiers=identifiers,
    )


def _identifiers(session: Session) -> list[tuple[int, str, str]]:
    rows = session.execute(select(DeviceIdentifier.device_seq, DeviceIdentifier.kind, DeviceIdentifier.value))
    return sorted((row[0], row[1], row[2]) for row in rows)


def test_identifiers_are_recorded_once_whatever_their_number(session: Session) -> None:
    patient = _patient(session, "a@example.org")
    transmitters = [("dexcom_transmitter", f"8G{n:04d}") for n in range(1203)]
    wanted = [*transmitters, ("receiver", "PG1"), ("receiver", "8G0001")]
    device = _dexcom(session, patient, "G6", *wanted)
    assert _dexcom(session, patient, "G6", *wanted[::-1]).seq == device.seq
    assert _identifiers(session) == sorted((device.seq, kind, value) for kind, value in wanted)


def test_an_identifier_of_another_patients_device_refuses(session: Session) -> None:
    first, second = _patient(session, "a@example.org"), _patient(session, "b@example.org")
    _dexcom(session, first, "G6", ("dexcom_transmitter", "8GABCD"))
    with pytest.raises(
        DeviceOwnedByAnotherPatientError, match="dexcom_transmitter 8GABCD belongs to another"
    ):
        _dexcom(session, second, "G6", ("dexcom_transmitter", "8GABCE"), ("dexcom_transmitter", "8GABCD"))


def test_an_identifier_on_another_device_of_the_same_patient_stays_there(session: Session) -> None:
    patient = _patient(session, "a@example.org")
    g6 = _dexcom(session, patient, "G6", ("dexcom_transmitter", "8GABCD"))
    g7 = _dexcom(session, patient, "G7", ("dexcom_transmitter", "8GABCD"), ("dexcom_transmitter", "DX1234"))
    assert _identifiers(session) == sorted(
        [(g6.seq, "dexcom_transmitter", "8GABCD"), (g7.seq, "dexcom_transmitter", "DX1234")]
    )
