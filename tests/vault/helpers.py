"""Shared by the vault tests: a patient, their account and an upload, all carrying canary strings."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.accounts.users import add_user, enable_totp, validate_user
from glucoshare.config import Settings
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from tests.conftest import table_snapshot
from tests.ingest.helpers import profile

PATIENT_NAME = "Quillon Vexhammer"
PATIENT_EMAIL = "zebulon.vexhammer-canary@example.org"
PATIENT_BIRTHDATE = dt.date(1937, 8, 29)
USER_NAME = "Ottoline Brakspear"
USER_EMAIL = "ottoline.brakspear-canary@example.org"
FILE_NAME = "Clarity_Export_Vexhammer_Quillon_canary-file.csv"


def small_timeline(seed: int = 5) -> Timeline:
    """One simulated day whose export names the canary patient."""
    return simulate(
        profile(seed=seed, name=PATIENT_NAME, email=PATIENT_EMAIL, birthdate=PATIENT_BIRTHDATE),
        start=dt.date(2025, 5, 1),
        days=1,
    )


def clarity(timeline: Timeline, name: str = FILE_NAME) -> IncomingFile:
    """The timeline as a Dexcom Clarity export called ``name``."""
    return IncomingFile(name, write_clarity(timeline).data)


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """What :func:`populate` stored, with the secrets that must never appear in plain form."""

    patient_id: str
    user_id: str
    upload_id: str
    sha256: str
    totp_secret: str

    def canaries(self) -> dict[str, bytes]:
        """Each identifying value as the bytes that must not be found."""
        return {
            "patient name": PATIENT_NAME.encode(),
            "patient surname": b"Vexhammer",
            "patient e-mail": PATIENT_EMAIL.encode(),
            "patient e-mail, local part": b"zebulon",
            "birth date": PATIENT_BIRTHDATE.isoformat().encode(),
            "user name": USER_NAME.encode(),
            "user e-mail": USER_EMAIL.encode(),
            "user e-mail, local part": b"ottoline",
            "totp secret": self.totp_secret.encode(),
            "file name": FILE_NAME.encode(),
            "file name, part": b"canary-file",
        }


def populate(session: Session, settings: Settings, timeline: Timeline) -> Stored:
    """A patient with their own account (TOTP enabled) and one imported file."""
    user = add_user(session, validate_user(email=USER_EMAIL, name=USER_NAME, role="patient"))
    totp = enable_totp(session, user)
    patient = add_patient(
        session,
        validate_patient(
            email=PATIENT_EMAIL, name=PATIENT_NAME, birthdate=PATIENT_BIRTHDATE, timezone="Europe/Berlin"
        ),
    )
    patient.user_id = user.id
    session.flush()
    upload = import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=clarity(timeline),
        timezone=None,
        actor="test",
    )
    return Stored(patient.id, user.id, upload.id, upload.sha256, totp.secret)


def add_other_patient(session: Session, email: str, name: str) -> Patient:
    """A second patient, without an account."""
    return add_patient(session, validate_patient(email=email, name=name, timezone="UTC"))


def as_bytes(value: object) -> bytes:
    """A raw column value as bytes, whatever the driver returned."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def leaks(rows: Iterable[bytes], canaries: dict[str, bytes]) -> list[str]:
    """The canaries found in any of ``rows`` (case-insensitive)."""
    blobs = [r.lower() for r in rows]
    return [label for label, canary in canaries.items() if any(canary.lower() in blob for blob in blobs)]


def database_values(engine: Engine) -> list[bytes]:
    """Every value of every row of every table, as bytes."""
    return [as_bytes(v) for rows in table_snapshot(engine).values() for row in rows for v in row]


def reload(session: Session, stored: Stored) -> tuple[Patient, User]:
    """The patient and the user of ``stored`` as ``session`` reads them."""
    patient = session.get(Patient, stored.patient_id)
    user = session.get(User, stored.user_id)
    assert patient is not None
    assert user is not None
    return patient, user
