"""Fill a database with simulated demo patients: their vendor exports are written and imported.

Running it again adds nothing (every record is a duplicate of what is stored), which makes
``make run`` safe to repeat.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel
from sqlalchemy.orm import Session

from glucoshare.accounts.errors import PatientNotFoundError
from glucoshare.accounts.schemas import PatientOut
from glucoshare.accounts.service import add_patient, get_patient, validate_patient
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.files import private_directory, private_file
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.records.schemas import PatientOverviewOut, UploadOut
from glucoshare.records.summary import patient_overview
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
