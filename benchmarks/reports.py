"""Report benchmarks: the AGP report as PDF for 14 and for 90 days of CGM data, server side.

Measured from the database to the PDF bytes (load the readings, compute every figure, build the
view, render HTML and print it with WeasyPrint), after one warm-up report, as in a running server
that has loaded its fonts.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

from analytics import Measurement, best_of, measurement_table
from glucoshare.accounts.service import add_patient, get_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.reports.render import render_html, render_pdf
from glucoshare.reports.service import build_report
from glucoshare.reports.views import Report
from glucoshare.simulator import PatientProfile, simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.summaries.service import resolve_period
from glucoshare.vault.keyfile import load_or_create

TARGETS = {"agp_pdf_14": 1.5, "agp_pdf_90": 3.0}


def run(runs: int = 3) -> list[Measurement]:
    """Every report measurement."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        settings = Settings(database_url=f"sqlite:///{root}/reports.db", data_dir=root / "data")
        engine = create_db_engine(
            settings.effective_database_url, keyring=load_or_create(root / "master.key")
        )
        upgrade(engine)
        profile = PatientProfile(
            name="Bench Person",
            email="bench@example.org",
            birthdate=dt.date(1980, 1, 1),
            timezone="Europe/Berlin",
            therapy="mdi",
            cgm="dexcom_g6",
            units="mg/dL",
            control=0.4,
            seed=3,
        )
        export = write_clarity(simulate(profile, start=dt.date(2026, 1, 1), days=91))
        with session_scope(engine) as session:
            patient = add_patient(
                session, validate_patient(email=profile.email, name=profile.name, timezone=profile.timezone)
            )
            import_file(
                session,
                settings=settings,
                patient=patient,
                incoming=IncomingFile(export.file_name, export.data),
                timezone=None,
                actor="bench",
            )
            patient_id = patient.id

        def agp_report(days: int) -> Report:
            with session_scope(engine) as session:
                person = get_patient(session, patient_id)
                period = resolve_period(session, person, days=days)
                return build_report(session, person, "agp", period, actor="bench", output="pdf")

        def agp_pdf(days: int) -> bytes:
            return render_pdf(agp_report(days))

        def agp_html(days: int) -> str:
            return render_html(agp_report(days))

        agp_pdf(14)  # warm-up: WeasyPrint loads Pango and its fonts once per process
        measurements = [
            Measurement(
                "agp_pdf_14",
                "AGP report as PDF, 14 days of 5-minute CGM data (database to PDF bytes)",
                best_of(runs, lambda: agp_pdf(14)),
                TARGETS["agp_pdf_14"],
            ),
            Measurement(
                "agp_pdf_90",
                "AGP report as PDF, 90 days of 5-minute CGM data (database to PDF bytes)",
                best_of(runs, lambda: agp_pdf(90)),
                TARGETS["agp_pdf_90"],
            ),
            Measurement(
                "agp_html_90",
                "the same report as the web app's HTML page, 90 days",
                best_of(runs, lambda: agp_html(90)),
                None,
                "(no target)",
            ),
        ]
        engine.dispose()
    for m in measurements:
        print(m.key, f"{m.seconds:.3f}", file=sys.stderr)
    return measurements


def report_lines(measurements: list[Measurement]) -> list[str]:
    """The BENCHMARKS.md section."""
    intro = (
        "Wall time from the database to the finished document, best of three, after one warm-up "
        "report (a running server has loaded WeasyPrint's fonts). Input: 91 simulated days of one "
        "Dexcom G6 in SQLite (`benchmarks/reports.py`)."
    )
    return [
        *measurement_table("Reports", intro, measurements),
        "Targets (issue 6): the AGP PDF for 14 days ≤ 1.5 s; for 90 days ≤ 3 s.",
    ]


if __name__ == "__main__":
    for line in report_lines(run()):
        print(line)
