"""Shared by the report tests: simulated patients, PDF text through poppler, and the rendered pictures."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from tests.ingest.helpers import profile, store_export

REQUIRE_POPPLER = os.environ.get("GLUCOSHARE_TEST_REQUIRE_POPPLER") == "1"
ARTIFACTS = Path(os.environ.get("GLUCOSHARE_TEST_ARTIFACTS", "build/test-artifacts")) / "reports"
START = dt.date(2026, 3, 2)
"""A Monday."""


def poppler(tool: str = "pdftotext") -> str:
    """The path of a poppler-utils tool; skip (or fail under CI) without poppler-utils."""
    found = shutil.which(tool)
    if found and shutil.which("pdftoppm"):
        return found
    reason = "poppler-utils (pdftotext, pdftoppm) is not installed: `apt-get install poppler-utils`"
    if REQUIRE_POPPLER:
        pytest.fail(reason + " (GLUCOSHARE_TEST_REQUIRE_POPPLER=1)")
    pytest.skip(reason)


def pdf_text(pdf: bytes, tmp_path: Path, *, layout: bool = False) -> str:
    """The text of a PDF as poppler's ``pdftotext`` extracts it."""
    tool = poppler()
    source = tmp_path / "report.pdf"
    source.write_bytes(pdf)
    command = [tool, *(["-layout"] if layout else []), str(source), "-"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def pdf_pages(pdf: bytes, tmp_path: Path) -> int:
    """The page count of a PDF (``pdfinfo``)."""
    tool = poppler("pdfinfo")
    source = tmp_path / "pages.pdf"
    source.write_bytes(pdf)
    info = subprocess.run([tool, str(source)], check=True, capture_output=True, text=True).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def keep_picture(pdf: bytes, name: str, tmp_path: Path) -> Path:
    """Render the PDF's first page as a PNG test artifact (``build/test-artifacts/reports/NAME.png``)."""
    tool = poppler("pdftoppm")
    source = tmp_path / f"{name}.pdf"
    source.write_bytes(pdf)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = ARTIFACTS / name
    subprocess.run(
        [tool, "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(source), str(stem)],
        check=True,
    )
    picture = stem.with_suffix(".png")
    assert picture.stat().st_size > 10_000
    return picture


def cgm_patient(
    session: Session,
    settings: Settings,
    *,
    days: int = 15,
    units: str = "mg/dL",
    email: str = "ada@example.org",
) -> Patient:
    """A patient with ``days`` days of simulated Dexcom CGM data (MDI therapy, meals, doses)."""
    patient = add_patient(
        session,
        validate_patient(
            email=email,
            name="Ada Example",
            birthdate=dt.date(1984, 2, 29),
            timezone="Europe/Berlin",
            display_units=units,
        ),
    )
    import_cgm(session, settings, patient, days=days, units=units)
    return patient


def import_cgm(
    session: Session, settings: Settings, patient: Patient, *, days: int = 15, units: str = "mg/dL"
) -> None:
    """Import ``days`` days of a simulated Dexcom Clarity export for ``patient``."""
    timeline = simulate(
        profile(seed=11, units=units, email=patient.email, name=patient.name), start=START, days=days
    )
    export = write_clarity(timeline)
    store_export(session, settings, patient, export)


def pump_patient(session: Session, settings: Settings, *, days: int = 15) -> Patient:
    """A patient with a simulated Medtronic pump and sensor (CareLink export: basal, boluses, calculator)."""
    timeline = simulate(
        profile(seed=5, therapy="pump", cgm="guardian4", email="pump@example.org", name="Pat Pump"),
        start=START,
        days=days,
    )
    patient = add_patient(
        session,
        validate_patient(
            email="pump@example.org", name="Pat Pump", birthdate=dt.date(1975, 7, 1), timezone="Europe/Berlin"
        ),
    )
    export = write_carelink(timeline)
    store_export(session, settings, patient, export, timezone="Europe/Berlin")
    return patient
