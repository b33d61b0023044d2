"""Fill a database with simulated demo patients: their vendor exports are written and imported.

Running it again adds nothing (every record is a duplicate of what is stored), which makes
``make run`` safe to repeat.
"""

from __future__ import annotations

import datetime as dt
import secrets

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import PatientNotFoundError, UserNotFoundError
from glucoshare.accounts.models import RecoveryCode, User
from glucoshare.accounts.schemas import PatientOut
from glucoshare.accounts.service import add_patient, get_patient, validate_patient
from glucoshare.accounts.totp import recovery_digest
from glucoshare.accounts.users import add_user, enable_totp, get_user, set_password, validate_user
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.files import private_directory, private_file
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.schemas import PatientOverviewOut, UploadOut
from glucoshare.records.summary import patient_overview
from glucoshare.sharing.models import Clinic
from glucoshare.sharing.schemas import ClinicCreate
from glucoshare.sharing.service import add_member, create_clinic, grant, grants_of, share_with_clinic
from glucoshare.simulator.demo import demo_patients


class DemoPatientOut(BaseModel):
    """One demo patient after the demo ran: who, what was imported, and their overview."""

    patient: PatientOut
    uploads: list[UploadOut]
    overview: PatientOverviewOut


def seed_demo(
    session: Session, *, settings: Settings, count: int, today: dt.date, actor: str
) -> list[DemoPatientOut]:
    """Create (or find) ``count`` demo patients and import their devices' exports.

    The exports are also written under ``$GLUCOSHARE_DATA_DIR/demo`` to try by hand. Returns each
    patient's uploads and overview.
    """
    results = []
    for person in demo_patients(count, end=today):
        profile = person.profile
        try:
            patient = get_patient(session, profile.email)
        except PatientNotFoundError:
            patient = add_patient(
                session,
                validate_patient(
                    email=profile.email,
                    name=profile.name,
                    birthdate=profile.birthdate,
                    timezone=profile.timezone,
                    display_units=profile.units,
                ),
            )
            record_event(
                session, actor=actor, action=AuditTag.PATIENT_CREATE, patient_id=patient.id, target=patient.id
            )
        folder = private_directory(settings.data_dir / "demo" / patient.id)
        uploads = []
        for export in person.exports:
            private_file(folder / export.file_name).write_bytes(export.data)
            uploads.append(
                import_file(
                    session,
                    settings=settings,
                    patient=patient,
                    incoming=IncomingFile(export.file_name, export.data),
                    timezone=None,
                    actor=actor,
                )
            )
        overview = patient_overview(session, patient.id)
        record_event(
            session,
            actor=actor,
            action=AuditTag.RECORDS_READ,
            patient_id=patient.id,
            details={"view": "overview"},
        )
        results.append(
            DemoPatientOut(patient=PatientOut.model_validate(patient), uploads=uploads, overview=overview)
        )
    return results


DEMO_CLINIC = "Demo Diabetes Clinic"
DEMO_CLINICIANS = (
    ("clinician@demo.glucoshare.example", "Dr. Amara Demo", "admin"),
    ("nurse@demo.glucoshare.example", "Nurse Jonas Demo", "member"),
)
DEMO_CARE_PARTNER = ("carer@demo.glucoshare.example", "Sam Carer")
LOGINS_FILE = "logins.json"


class DemoLoginOut(BaseModel):
    """One demo account to sign in with."""

    email: str
    name: str
    role: str
    totp_secret: str | None = None
    """Clinicians sign in with a second factor: add this secret to an authenticator app…"""
    recovery_codes: list[str] = []
    """…or use one of these single-use codes."""


class DemoLoginsOut(BaseModel):
    """The demo accounts: one shared password, and who may sign in."""

    password: str
    clinic: str
    clinic_share_code: str
    accounts: list[DemoLoginOut]


def seed_demo_accounts(
    session: Session, *, settings: Settings, patients: list[PatientOut], actor: str
) -> DemoLoginsOut:
    """Accounts for the demo patients, a demo clinic with two clinicians and a care partner.

    Every demo patient shares with the clinic, and the first one with the care partner. The demo
    password and the clinicians' second factors are made once and kept, owner-only, in
    ``$GLUCOSHARE_DATA_DIR/demo/logins.json``, so running the demo again prints the same logins.
    Meant for a demo database only: anyone who reads that file can sign in.
    """
    folder = private_directory(settings.data_dir / "demo")
    stored = folder / LOGINS_FILE
    if stored.exists():
        known = DemoLoginsOut.model_validate_json(stored.read_text(encoding="utf-8"))
        if all(_exists(session, a.email) for a in known.accounts):
            return known.model_copy(
                update={
                    "accounts": [
                        a.model_copy(update={"recovery_codes": _unused(session, a.email, a.recovery_codes)})
                        for a in known.accounts
                    ]
                }
            )
    password = f"demo-{secrets.token_urlsafe(12)}"
    accounts: list[DemoLoginOut] = []
    clinicians: list[tuple[User, str]] = []
    for email, name, member_role in DEMO_CLINICIANS:
        user = _account(session, email, name, "clinician", password)
        enrolment = enable_totp(session, user)
        clinicians.append((user, member_role))
        accounts.append(
            DemoLoginOut(
                email=email,
                name=name,
                role=f"clinician ({member_role})",
                totp_secret=enrolment.secret,
                recovery_codes=enrolment.recovery_codes,
            )
        )
    clinic = session.scalar(select(Clinic).where(Clinic.name == DEMO_CLINIC))
    if clinic is None:
        clinic = create_clinic(session, ClinicCreate(name=DEMO_CLINIC), founder=clinicians[0][0], actor=actor)
    for user, member_role in clinicians:
        add_member(session, clinic, user, member_role, actor=actor)
    carer = _account(session, DEMO_CARE_PARTNER[0], DEMO_CARE_PARTNER[1], "carepartner", password)
    accounts.append(DemoLoginOut(email=carer.email or "", name=carer.name, role="care partner"))
    for at, out in enumerate(patients):
        patient = get_patient(session, out.id)
        user = _account(session, out.email, out.name, "patient", password)
        patient.user_id = user.id
        accounts.append(DemoLoginOut(email=out.email, name=out.name, role="patient"))
        if not any(share.clinic_id == clinic.id for share in grants_of(session, patient)):
            share_with_clinic(session, patient, clinic.share_code, None, actor=actor)
        if at == 0 and not any(share.user_id == carer.id for share in grants_of(session, patient)):
            grant(session, patient, user=carer, permissions=["view"], actor=actor)
    session.flush()
    logins = DemoLoginsOut(
        password=password, clinic=clinic.name, clinic_share_code=clinic.share_code, accounts=accounts
    )
    private_file(stored).write_text(logins.model_dump_json(indent=2), encoding="utf-8")
    return logins


def _unused(session: Session, email: str, codes: list[str]) -> list[str]:
    """The recovery codes of ``email`` that were not used yet (each works once)."""
    user = get_user(session, email)
    open_digests = set(
        session.scalars(
            select(RecoveryCode.digest).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
    )
    return [code for code in codes if recovery_digest(code) in open_digests]


def _exists(session: Session, email: str) -> bool:
    try:
        get_user(session, email)
    except UserNotFoundError:
        return False
    return True


def _account(session: Session, email: str, name: str, role: str, password: str) -> User:
    """The demo account of ``email`` (made, or found and given the demo password)."""
    try:
        user = get_user(session, email)
    except UserNotFoundError:
        user = add_user(session, validate_user(email=email, name=name, role=role))
    user.email_verified_at = user.email_verified_at or dt.datetime.now(dt.UTC)
    set_password(session, user, password)
    return user
