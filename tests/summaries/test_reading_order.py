"""Readings at the same instant on two devices come back in one order on both databases.

The stats, the AGP and every figure summed over readings must not depend on the engine: a restore
from PostgreSQL into SQLite gives back the same rows, and so must give the same figures to the
last digit. Readings at one instant are ordered by record id (the order they were stored in).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.devices.service import resolve_device
from glucoshare.records.service import RecordWriter
from glucoshare.reports.data import load_period_records
from glucoshare.summaries.data import load_cgm
from tests.records.helpers import bare_upload

START = 1_700_000_000_000
STEP = 300_000


def _readings(session: Session) -> str:
    """Two sensors worn at once (readings at the same instants), the second device's stored first."""
    patient = add_patient(session, validate_patient(email="two@example.org", name="Two", timezone="UTC"))
    first = resolve_device(session, patient_id=patient.id, manufacturer="Acme", model="M", serial="S1")
    second = resolve_device(session, patient_id=patient.id, manufacturer="Acme", model="M", serial="S2")
    upload = bare_upload(session, patient.id)
    writer = RecordWriter(session)
    for device, base in ((second.seq, 200.0), (first.seq, 100.0)):  # lower ids for the higher device
        writer.write(
            [
                (
                    device,
                    upload.seq,
                    "cbg",
                    "sensor",
                    START + i * STEP,
                    0,
                    base + i,
                    base + i,
                    "mg/dL",
                    i + 2,
                    "sensor",
                )
                for i in range(12)
            ]
        )
    return patient.id


def test_readings_at_one_instant_come_in_the_order_they_were_stored(session: Session) -> None:
    patient_id = _readings(session)
    cgm = load_cgm(session, patient_id, "UTC", START, START + 12 * STEP)
    assert cgm.mgdl.tolist() == [value for i in range(12) for value in (200.0 + i, 100.0 + i)]


def test_the_report_reads_them_in_the_same_order(session: Session) -> None:
    patient_id = _readings(session)
    records = load_period_records(session, patient_id, "UTC", START, START + 12 * STEP)
    assert records.cgm[1].tolist() == [value for i in range(12) for value in (200.0 + i, 100.0 + i)]
