"""The same sensor by two routes is counted once; two sensors worn at once are both counted (both DBs)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.analytics.coverage import one_per_slot, sampling_interval
from glucoshare.config import Settings
from glucoshare.export.fhir import load_readings
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files, remove_upload
from glucoshare.reports.data import load_period_records
from glucoshare.simulator import simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.glooko import GlookoOptions, write_glooko
from glucoshare.simulator.writers.libreview import write_libreview
from glucoshare.summaries.data import load_cgm
from glucoshare.summaries.service import resolve_period
from tests.ingest.helpers import profile

ZONE = "Europe/Berlin"


@pytest.fixture(scope="module")
def dexcom() -> Timeline:
    return simulate(profile(seed=41, cgm="dexcom_g6", therapy="mdi"), start=dt.date(2025, 3, 3), days=4)


@pytest.fixture(scope="module")
def libre() -> Timeline:
    return simulate(profile(seed=42, cgm="libre3", therapy="mdi"), start=dt.date(2025, 3, 3), days=4)


def _patient(session: Session, email: str) -> Patient:
    return add_patient(session, validate_patient(email=email, name="P", timezone=ZONE))


def _import(session: Session, settings: Settings, patient: Patient, *exports: WrittenExport) -> list[str]:
    uploads = import_files(
        session,
        settings=settings,
        patient=patient,
        files=[IncomingFile(e.file_name, e.data) for e in exports],
        timezone=None,
        actor="test",
    )
    return [u.id for u in uploads]


def _cgm(session: Session, patient: Patient) -> tuple[np.ndarray, np.ndarray]:
    period = resolve_period(session, patient, days=6)
    cgm = load_cgm(session, patient.id, ZONE, period.start_ms, period.end_ms)
    return cgm.utc_ms, cgm.mgdl


def _glooko(timeline: Timeline) -> WrittenExport:
    return write_glooko(timeline, GlookoOptions(cgm_serial="Dexcom G6", empty_files=False))


def _sensor_times(export: WrittenExport) -> np.ndarray:
    return np.array(sorted(e.utc_ms for e in export.expected if e.type == "cbg" and e.subtype == "sensor"))


def test_a_sensor_in_clarity_and_glooko_is_counted_once_and_clarity_wins(
    session: Session, settings: Settings, dexcom: Timeline
) -> None:
    clarity, glooko = write_clarity(dexcom), _glooko(dexcom)
    patient = _patient(session, "both@example.org")
    _import(session, settings, patient, glooko)  # the aggregator first: the maker's export still wins
    (clarity_upload,) = _import(session, settings, patient, clarity)
    expected = _sensor_times(clarity)
    times, _ = _cgm(session, patient)
    assert len(expected) > 1000
    np.testing.assert_array_equal(times, expected)  # Clarity's instants (seconds), not Glooko's minutes
    period = resolve_period(session, patient, days=6)
    slots = one_per_slot(expected, sampling_interval(expected))
    assert len(load_readings(session, patient.id, period)) == len(slots)
    drawn = load_period_records(session, patient.id, ZONE, period.start_ms, period.end_ms)
    assert len(drawn.cgm[0]) == len(expected)
    remove_upload(session, settings=settings, upload_id=clarity_upload, actor="test")
    times_after, _ = _cgm(session, patient)
    assert len(times_after) == len(_sensor_times(glooko))  # Glooko's copy of every reading counts again
    assert (times_after % 60_000 == 0).all()


def test_two_sensors_worn_at_once_are_both_counted(
    session: Session, settings: Settings, dexcom: Timeline, libre: Timeline
) -> None:
    clarity, libreview = write_clarity(dexcom), write_libreview(libre)
    patient = _patient(session, "two@example.org")
    _import(session, settings, patient, clarity, libreview)
    times, _ = _cgm(session, patient)
    assert len(times) == len(_sensor_times(clarity)) + len(_sensor_times(libreview))
