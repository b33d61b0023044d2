"""Analytics benchmarks (issue 3), run by ``make bench`` through ``benchmarks/run.py``.

* a cohort of 1,000 patients × 14 days of 5-minute readings (4.03 M readings, synthetic: baseline,
  circadian swing, three meals a day, nocturnal dips, AR(1) noise, whole mg/dL clipped to 40–400):
  core metrics and bands for all of them at once, and MAGE for all of them;
* the same core metrics with a peer, Tidepool's ``tidepool-data-science-metrics`` 0.1.1, installed
  in a scratch virtual environment (``benchmarks/.peers``) and run on the same cohort in the same run;
* one patient × 90 days: every number of the stats document from its arrays;
* a clinic's triage of 10,000 patients from the daily aggregates (14 days against the 14 before),
  in SQLite.

Each figure is the best of three runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from glucoshare.accounts.models import Patient
from glucoshare.analytics.insulin import empty_basal, empty_doses
from glucoshare.analytics.mage import mage_many
from glucoshare.analytics.metrics import cohort_metrics
from glucoshare.analytics.ranges import target_range
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.sharing.models import Clinic, Share
from glucoshare.sharing.patient_list import clinic_patients
from glucoshare.summaries.data import CgmArrays, TherapyArrays
from glucoshare.summaries.models import DailySummary
from glucoshare.summaries.service import population, refresh_periods
from glucoshare.summaries.stats import Period, compute_stats
from glucoshare.vault.keyfile import load_or_create

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
PEERS = HERE / ".peers"
PEER_PACKAGE = "tidepool-data-science-metrics==0.1.1"
DAY_MS = 86_400_000
STEP_MS = 300_000
START_MS = 1_735_689_600_000  # 2025-01-01T00:00Z

TARGETS = {
    "cohort_core": 0.15,
    "cohort_mage": 2.0,
    "patient_stats": 0.020,
    "triage": 0.3,
    "clinic_list": 0.3,
}


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One benchmark figure."""

    key: str
    description: str
    seconds: float
    target: float | None
    note: str = ""


def synthetic_cohort(patients: int, days: int, seed: int = 42) -> np.ndarray:
    """``patients × (days × 288)`` CGM readings in whole mg/dL (research/metrics.md §4's generator)."""
    rng = np.random.default_rng(seed)
    points = days * 288
    minutes = np.arange(points) * 5 % 1440
    base = rng.normal(140, 20, (patients, 1))
    circadian = 15 * np.sin(2 * np.pi * (minutes - 300) / 1440)
    meals = np.zeros(points)
    for meal in (7 * 60, 12 * 60 + 30, 19 * 60):
        after = (minutes - meal) % 1440
        meals += np.where(after < 180, 60 * np.sin(np.pi * after / 180), 0)
    dips = np.where((minutes > 120) & (minutes < 240), -25, 0)
    noise = np.zeros((patients, points))
    shocks = rng.normal(0, 6, (patients, points))
    for k in range(1, points):
        noise[:, k] = 0.9 * noise[:, k - 1] + shocks[:, k]
    scale = rng.uniform(0.6, 1.4, (patients, 1))
    values = base + scale * (circadian + meals + dips) + 2 * noise
    return np.clip(np.round(values), 40, 400)


def best_of(runs: int, work: Callable[[], object]) -> float:
    """The shortest of ``runs`` timings of ``work`` (seconds)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def _peer_python() -> Path | None:
    python = PEERS / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        installed = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                PEER_PACKAGE,
                f"numpy=={np.__version__}",
            ],
            check=False,
            capture_output=True,
        )
        if installed.returncode != 0:
            return None
    return python


_PEER_SCRIPT = """
import sys, time, numpy as np
from tidepool_data_science_metrics.common import common
from tidepool_data_science_metrics.glucose import glucose
cohort = np.load(sys.argv[1])
best = float("inf")
for _ in range(3):
    start = time.perf_counter()
    for row in cohort:
        common.mean(row); common.std_deviation(row); common.coefficient_of_variation(row)
        glucose.glucose_management_index(row)
        glucose.percent_values_lt_54(row); glucose.percent_values_lt_70(row)
        glucose.percent_values_ge_70_le_180(row); glucose.percent_values_gt_180(row)
        glucose.percent_values_gt_250(row)
    best = min(best, time.perf_counter() - start)
print(best)
"""


def _peer_core_seconds(cohort_file: Path) -> float | None:
    python = _peer_python()
    if python is None:
        return None
    out = subprocess.run(
        [str(python), "-c", _PEER_SCRIPT, str(cohort_file)], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip())


def _cohort_measurements(runs: int) -> list[Measurement]:
    DATA.mkdir(exist_ok=True)
    cohort = synthetic_cohort(1000, 14)
    patients, points = cohort.shape
    flat = cohort.reshape(-1)
    counts = np.full(patients, points, np.int64)
    times = np.tile(START_MS + np.arange(points, dtype=np.int64) * STEP_MS, patients)
    core = best_of(runs, lambda: cohort_metrics(flat, counts))
    mage = best_of(runs, lambda: mage_many(times, flat, counts))
    cohort_file = DATA / "cohort_1000x14d.npy"
    np.save(cohort_file, cohort)
    peer = _peer_core_seconds(cohort_file)
    size = f"{patients:,} patients × 14 days, {flat.size:,} readings"
    return [
        Measurement("cohort_core", f"core metrics and bands, {size}", core, TARGETS["cohort_core"]),
        Measurement(
            "peer_core",
            f"the same with {PEER_PACKAGE} (peer, scratch venv)",
            peer if peer is not None else float("nan"),
            None,
            "not installed" if peer is None else f"{peer / core:.0f}× our time",
        ),
        Measurement("cohort_mage", f"MAGE (iglu's algorithm), {size}", mage, TARGETS["cohort_mage"]),
    ]


def _patient_measurement(runs: int) -> Measurement:
    values = synthetic_cohort(1, 90, seed=7)[0]
    utc = START_MS + np.arange(values.size, dtype=np.int64) * STEP_MS
    cgm = CgmArrays(utc, utc + 3_600_000, values, np.full(values.size, np.nan))
    empty = empty_doses()
    boluses = type(empty)(utc[::96], np.full(utc[::96].size, 4.0))
    therapy = TherapyArrays(
        basal=empty_basal(),
        boluses=boluses,
        rapid_pen=empty,
        long_pen=type(empty)(utc[::288], np.full(utc[::288].size, 20.0)),
        wizard_carbs=type(empty)(utc[::96], np.full(utc[::96].size, 50.0)),
        food_carbs=empty,
        site_changes=np.empty(0, np.int64),
    )
    period = Period(dt.date(2025, 1, 1), dt.date(2025, 3, 31), int(utc[0]), int(utc[-1]) + STEP_MS)

    def work() -> object:
        return compute_stats(
            patient="bench@example.org",
            timezone="Europe/Berlin",
            display_units="mg/dL",
            target=target_range("standard"),
            period=period,
            cgm=cgm,
            therapy=therapy,
            latest_ms=int(utc[-1]),
        )

    work()  # first call imports and warms caches, as in a running server
    return Measurement(
        "patient_stats",
        f"every number of the stats document, 1 patient × 90 days ({values.size:,} readings)",
        best_of(runs, work),
        TARGETS["patient_stats"],
    )


def _triage_measurement(runs: int) -> list[Measurement]:
    patients, days = 10_000, 28
    rng = np.random.default_rng(3)
    today = (dt.datetime.now(dt.UTC).date() - dt.date(1970, 1, 1)).days
    with tempfile.TemporaryDirectory() as folder:
        engine = create_db_engine(
            f"sqlite:///{folder}/triage.db", keyring=load_or_create(Path(folder) / "master.key")
        )
        upgrade(engine)
        with session_scope(engine) as session:
            ids = [f"{n:032x}" for n in range(patients)]
            session.add_all(  # names and addresses are sealed with each patient's own data key
                Patient(
                    id=i,
                    email=f"p{n}@example.org",
                    name=f"Patient {n:05d}",
                    birthdate=dt.date(1950, 1, 1) + dt.timedelta(days=n),
                    timezone="UTC",
                    display_units="mg/dL",
                )
                for n, i in enumerate(ids)
            )
            session.flush()
            clinic = Clinic(
                name="Bench Clinic", details={}, share_code="BNCH-BNCH-BNCH", patient_tags=["pump"]
            )
            session.add(clinic)
            session.flush()
            clinic_id = clinic.id
            for n, i in enumerate(ids):
                share = Share(
                    patient_id=i,
                    clinic_id=clinic_id,
                    permissions=["view", "upload", "note"],
                    tags=["pump"] if n % 3 == 0 else [],
                    created_by="benchmark",
                )
                share.mrn = f"M{n:06d}"
                session.add(share)
            session.flush()
            rows = []
            for patient_id in ids:
                shares = rng.dirichlet([1, 2, 40, 12, 3], size=days)
                for k in range(days):
                    counts = np.round(shares[k] * 288).astype(int)
                    n = int(counts.sum())
                    rows.append(
                        {
                            "patient_id": patient_id,
                            "day": today - k,
                            "readings": n,
                            "interval_min": 5,
                            "very_low": int(counts[0]),
                            "low": int(counts[1]),
                            "in_range": int(counts[2]),
                            "high": int(counts[3]),
                            "very_high": int(counts[4]),
                            "tight": int(counts[2]) // 2,
                            "extreme_high": 0,
                            "sum_mgdl": 150.0 * n,
                            "sum_sq_mgdl": 150.0 * 150.0 * n + 1600.0 * n,
                            "last_ms": (today - k) * DAY_MS + 86_000_000,
                        }
                    )
            session.execute(sa.insert(DailySummary), rows)
            for patient_id in ids:  # what refreshing after each patient's import keeps up to date
                refresh_periods(session, patient_id)

        def work() -> object:
            with session_scope(engine) as session:
                return population(session, days=14)

        def document() -> object:
            with session_scope(engine) as session:
                return population(session, days=14).out().model_dump_json()

        def clinic_list() -> object:
            with session_scope(engine) as session:
                clinic = session.get(Clinic, clinic_id)
                if clinic is None:
                    raise RuntimeError("clinic missing")
                listing = clinic_patients(
                    session, clinic, days=14, search="patient 0", tag="pump", sort="time_in_range", limit=50
                )
                if not listing.total:
                    raise RuntimeError("nothing listed")
                return listing.model_dump_json()

        seconds = best_of(runs, work)
        whole = best_of(runs, document)
        listing = best_of(runs, clinic_list)
        engine.dispose()
    return [
        Measurement(
            "triage",
            f"triage of {patients:,} patients (figures, categories, order; "
            f"{patients * days:,} daily aggregates) in SQLite",
            seconds,
            TARGETS["triage"],
        ),
        Measurement(
            "clinic_list",
            f"a clinic's patient list of {patients:,} patients: every name opened and searched, MRNs "
            "matched by keyed hash, filtered by tag, sorted by time in range, first page of 50 as JSON",
            listing,
            TARGETS["clinic_list"],
        ),
        Measurement(
            "triage_document",
            f"the same with the JSON document of all {patients:,} patients",
            whole,
            None,
            "(a page shows 50 at a time)",
        ),
    ]


def run(runs: int = 3) -> list[Measurement]:
    """Every analytics measurement."""
    measurements = _cohort_measurements(runs)
    measurements.append(_patient_measurement(runs))
    measurements.extend(_triage_measurement(runs))
    for m in measurements:
        print(m.key, json.dumps({"seconds": m.seconds, "target": m.target}), file=sys.stderr)
    return measurements


def measurement_table(title: str, intro: str, measurements: list[Measurement]) -> list[str]:
    """A BENCHMARKS.md section: a title, a paragraph and one table row per measurement."""
    lines = [f"## {title}", "", intro, "", "| measurement | seconds | target | |", "|---|---:|---:|---|"]
    for m in measurements:
        target = "" if m.target is None else f"≤ {m.target:g}"
        verdict = m.note if m.target is None else ("met" if m.seconds <= m.target else "NOT met")
        seconds = "—" if np.isnan(m.seconds) else f"{m.seconds:.3f}"
        lines.append(f"| {m.description} | {seconds} | {target} | {verdict} |")
    return [*lines, ""]


def report_lines(measurements: list[Measurement]) -> list[str]:
    """The BENCHMARKS.md section."""
    intro = (
        "Wall time of the computation only (data generation excluded), best of three, single "
        "process. Cohort inputs are synthetic (`benchmarks/analytics.py`). The peer runs in a "
        "scratch virtual environment in the same run, on the same cohort."
    )
    return measurement_table("Analytics", intro, measurements)
