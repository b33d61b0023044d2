"""Population and load benchmark (issue 10, point 5) on PostgreSQL.

1. **Inputs.** N simulated patients × D days, written in their vendors' layouts
   (``glucoshare.simulator``): Dexcom Clarity (45 %), LibreView (20 %), Tandem Source zip (20 %),
   Glooko zip with an Omnipod 5 (10 %) and CareLink 780G (5 %); every CGM reads every 5 minutes.
   Kept in ``benchmarks/.data/population`` between runs (made again for another end date).
2. **Build.** A scratch database migrated with ``glucoshare.db.migrate.upgrade``; a clinic with ten
   clinicians (second factor enrolled) and N patient accounts made through the services, as
   ``glucoshare demo`` does, each sharing with the clinic (MRN, tags). Every patient's file goes
   through ``ingest.service.import_files``, the service of ``glucoshare import``, one transaction
   per patient, in ``--workers`` processes at once (as an operator loads with a few parallel
   imports): wall time, records/s, patients/min. Then the daily aggregates are brought up to date
   (``summaries.service.refresh_outdated``, the same workers) and the database is vacuumed and
   analysed, as autovacuum would after a bulk load.
3. **Latency.** p50/p99 of repeated calls: the clinic's triage (``summaries.service.population``)
   and patient list (``sharing.patient_list.clinic_patients``), one patient's stats document and
   AGP report as PDF, each at the service level (database to document) and through HTTP from a
   live ``glucoshare serve`` process (the JSON list, the clinic's HTML page, the stats, the PDF).
4. **Storage** per patient-year: ``pg_total_relation_size`` of every table (heap, TOAST, indexes),
   and the raw files kept beside the database.
5. **Hot queries.** Every SELECT a 90-day stats document and a clinic list run, captured as the
   services send them and EXPLAINed (ANALYZE, BUFFERS), beside the same statements in a database
   that holds only that patient; the import's ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` of
   5,000 staged readings (all already stored, and all new); and a whole 90-day import into the big
   database against an empty one. This is the evidence for the index and partitioning choice.
6. **Load.** ``--servers`` ``glucoshare serve`` processes on the database (and ``--job-workers``
   ``glucoshare worker`` processes for the jobs they defer, when this version has that command),
   and a second process on loopback (``benchmarks/api_load.py``) with ``--clients`` clients for
   ``--seconds`` seconds, each thinking ``--think`` seconds on average between requests, mixing
   uploads (Nightscout entries, upload-API data sets, some retried) and reads (entries, stats, the
   clinic's list, AGP as HTML and PDF). Throughput, p50/p99 per kind, errors; then an exact check:
   every acknowledged reading stored once, none doubled, no request half-stored, and the audit
   chain intact.

Full scale (the defaults; about 30 minutes on 2 cores, 25 when the inputs exist):
``python benchmarks/population.py --out-section build/population.md --json build/population.json``.
Small (development, smoke; under a minute on a quiet machine):
``python benchmarks/population.py --patients 3 --days 2 --clients 4 --seconds 5 --repeat 1``.
``--keep DIR`` keeps the built database (reused by the next run with the same ``--keep``;
``--drop DIR`` drops it); ``--logs DIR`` keeps the servers' logs of the load run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import multiprocessing
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from databases import POSTGRES, scratch_postgres
from sqlalchemy import event

from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.service import add_patient, get_patient, validate_patient
from glucoshare.accounts.sessions import create_api_token, start_session
from glucoshare.accounts.users import add_user, enable_totp, validate_user
from glucoshare.audit.models import AuditEvent
from glucoshare.audit.service import record_event, verify_chain
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.ingest.registry import importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import erase_patient, import_files
from glucoshare.reports.render import render_pdf
from glucoshare.reports.service import build_report
from glucoshare.sharing.models import Clinic, Share
from glucoshare.sharing.patient_list import clinic_patients
from glucoshare.sharing.schemas import ClinicCreate, ClinicPatientUpdate
from glucoshare.sharing.service import add_member, create_clinic, share_with_clinic, update_clinic_patient
from glucoshare.simulator import PatientProfile, simulate
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import CareLinkOptions, write_carelink
from glucoshare.simulator.writers.dexcom_clarity import ClarityOptions, write_clarity
from glucoshare.simulator.writers.glooko import GlookoOptions, write_glooko
from glucoshare.simulator.writers.libreview import LibreViewOptions, write_libreview
from glucoshare.simulator.writers.tandem import TandemSourceOptions, write_tandem_source
from glucoshare.summaries.service import patient_stats, population, refresh_outdated, resolve_period
from glucoshare.vault.keyfile import load_or_create

HERE = Path(__file__).resolve().parent
INPUTS = HERE / ".data" / "population"
ACTOR = "cli:population-benchmark"
KEPT_FILES_TABLE = "sealed_files"
"""The table that keeps the raw uploaded files (counted apart from the records and their indexes)."""
CLINICIANS = 10
MINUTE_MS = 60_000
DAY_MS = 86_400_000

FIRST_NAMES = (
    "Mia", "Noah", "Lena", "Sam", "Aiko", "Omar", "Sofia", "Jonas", "Amara", "Lucas", "Priya", "Elias",
    "Hannah", "Mateo", "Yuki", "Leon", "Zara", "Ivan", "Chloe", "Kwame", "Nora", "Ravi", "Ella", "Tomás",
)  # fmt: skip
LAST_NAMES = (
    "Jensen", "Okafor", "Fischer", "Rivera", "Tanaka", "Haddad", "Rossi", "Berg", "Mensah", "Silva",
    "Sharma", "Novak", "Kim", "Lee", "Andersson", "Kowalski", "Nguyen", "Costa", "Müller", "Dubois",
    "Petrov", "Garcia", "Hansen", "Larsen", "Moreau", "Brown", "Wilson", "Johnson", "Santos", "Ito",
)  # fmt: skip
ZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo")
# (layout, therapy, CGM) of patient n is MIX[n mod 20], interleaved so that a few patients already
# have every layout: Dexcom Clarity 9 in 20, LibreView 4, Tandem Source 4, Glooko 2, CareLink 1.
# Every CGM here reads every 5 minutes. Patient 0 (the one whose latency is measured) is a Clarity MDI.
_CLARITY_G6, _CLARITY_G7 = ("clarity", "mdi", "dexcom_g6"), ("clarity", "mdi", "dexcom_g7")
_LIBRE, _TANDEM = ("libreview", "mdi", "libre3"), ("tandem", "pump", "dexcom_g6")
_GLOOKO, _CARELINK = ("glooko", "pump", "dexcom_g6"), ("carelink", "pump", "guardian4")
MIX = (
    _CLARITY_G6, _LIBRE, _TANDEM, _GLOOKO, _CARELINK, _CLARITY_G7, _LIBRE, _TANDEM, _CLARITY_G6,
    _CLARITY_G7, _LIBRE, _TANDEM, _GLOOKO, _CLARITY_G6, _CLARITY_G7, _LIBRE, _TANDEM, _CLARITY_G6,
    _CLARITY_G7, _CLARITY_G6,
)  # fmt: skip
LAYOUTS = {
    "clarity": "Dexcom Clarity CSV",
    "libreview": "LibreView CSV",
    "tandem": "Tandem Source zip",
    "glooko": "Glooko zip (Omnipod 5)",
    "carelink": "CareLink CSV (780G)",
}
# The order in which clients take roles (35 % Nightscout uploaders, 15 % upload-API apps, 25 %
# followers, 25 % clinicians), interleaved so that a handful of clients already has every role.
ROLES = (
    "ns_uploader", "app_uploader", "clinician", "follower", "ns_uploader", "follower", "clinician",
    "ns_uploader", "app_uploader", "follower", "ns_uploader", "clinician", "follower", "ns_uploader",
    "app_uploader", "clinician", "ns_uploader", "follower", "ns_uploader", "clinician",
)  # fmt: skip


# -- people and their files ---------------------------------------------------------------------


def profile(index: int) -> PatientProfile:
    """The ``index``-th patient of the population (deterministic)."""
    _layout, therapy, cgm = MIX[index % len(MIX)]
    first = FIRST_NAMES[index % len(FIRST_NAMES)]
    last = LAST_NAMES[(index // len(FIRST_NAMES) + 7 * index) % len(LAST_NAMES)]
    return PatientProfile(
        name=f"{first} {last}",
        email=f"patient{index:05d}@population.example",
        birthdate=dt.date(1940 + index % 65, 1 + index % 12, 1 + (7 * index) % 28),
        timezone=ZONES[index % len(ZONES)],
        therapy=therapy,  # type: ignore[arg-type]
        cgm=cgm,  # type: ignore[arg-type]
        units="mmol/L" if index % 7 == 3 else "mg/dL",
        control=0.15 + 0.8 * ((index * 37) % 100) / 100,
        seed=10_000 + index,
    )


def layout(index: int) -> str:
    """The export layout of the ``index``-th patient."""
    return MIX[index % len(MIX)][0]


def export(index: int, *, start: dt.date, days: int) -> WrittenExport:
    """The vendor export of the ``index``-th patient: ``days`` days from ``start`` (local time)."""
    person = profile(index)
    timeline = simulate(person, start=start, days=days)
    kind = layout(index)
    if kind == "clarity":
        return write_clarity(timeline, ClarityOptions(units=person.units, quoted=index % 2 == 0))
    if kind == "libreview":
        return write_libreview(timeline, LibreViewOptions(units=person.units))
    if kind == "tandem":
        return write_tandem_source(
            timeline, TandemSourceOptions(pump="tslim" if index % 2 else "mobi")
        ).zipped()
    if kind == "glooko":
        return write_glooko(timeline, GlookoOptions(serial="Omnipod 5", cgm_serial="Dexcom G6"))
    return write_carelink(timeline, CareLinkOptions())


def _input_path(folder: Path, index: int) -> Path:
    suffix = ".zip" if layout(index) in ("tandem", "glooko") else ".csv"
    return folder / f"{index:05d}-{layout(index)}{suffix}"


def _write_input(index: int, start_iso: str, days: int, folder: str) -> str:
    """Write (or find) the ``index``-th patient's export in ``folder``; its path. Runs in a worker."""
    path = _input_path(Path(folder), index)
    if not path.exists():
        made = export(index, start=dt.date.fromisoformat(start_iso), days=days)
        partial = path.with_suffix(".part")
        partial.write_bytes(made.data)
        partial.rename(path)
    return str(path)


def inputs(
    pool: concurrent.futures.Executor, patients: int, *, days: int, end: dt.date
) -> tuple[list[Path], float, int]:
    """Every patient's export (made by the workers where missing); seconds; files made."""
    start = end - dt.timedelta(days=days)
    folder = INPUTS / f"{end.isoformat()}_{days}d"
    folder.mkdir(parents=True, exist_ok=True)
    for other in INPUTS.iterdir():  # inputs that end on another day are not used again
        if other.is_dir() and not other.name.startswith(end.isoformat()):
            shutil.rmtree(other)
    missing = sum(1 for index in range(patients) if not _input_path(folder, index).exists())
    began = time.perf_counter()
    paths = list(
        pool.map(
            _write_input,
            range(patients),
            [start.isoformat()] * patients,
            [days] * patients,
            [str(folder)] * patients,
            chunksize=4,
        )
    )
    return [Path(p) for p in paths], time.perf_counter() - began, missing


@contextlib.contextmanager
def _pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """Worker processes started afresh (``spawn``: no engine or lock is inherited from this one)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        yield pool


# -- the database -------------------------------------------------------------------------------


@dataclasses.dataclass
class State:
    """A built population: where it lives, who is in it, and what building it measured."""

    url: str
    data_dir: str
    days: int
    end: str
    clinic_id: str
    patient_ids: list[str]
    clinician_ids: list[str]
    build: dict[str, Any] = dataclasses.field(default_factory=dict)


def open_engine(url: str, data_dir: Path) -> tuple[Settings, sa.Engine]:
    """The settings and engine of the population database (its master key in ``data_dir``)."""
    settings = Settings(database_url=url, data_dir=data_dir)
    engine = create_db_engine(url, keyring=load_or_create(settings.effective_secret_key_file))
    return settings, engine


def build_accounts(engine: sa.Engine, patients: int) -> tuple[str, list[str], list[str], float]:
    """The clinic, its clinicians and the patients, made through the services; ids and seconds."""
    began = time.perf_counter()
    with session_scope(engine) as session:
        clinicians = []
        for n in range(CLINICIANS):
            user = add_user(
                session,
                validate_user(
                    email=f"clinician{n}@population.example", name=f"Dr. Load {n}", role="clinician"
                ),
            )
            enable_totp(session, user)
            clinicians.append(user)
        clinic = create_clinic(
            session,
            ClinicCreate(name="Population Clinic", patient_tags=["pump", "pregnancy", "new"]),
            founder=clinicians[0],
            actor=ACTOR,
        )
        for user in clinicians[1:]:
            add_member(session, clinic, user, "member", actor=ACTOR)
        clinic_id, code = clinic.id, clinic.share_code
        clinician_ids = [user.id for user in clinicians]
    patient_ids: list[str] = []
    for first in range(0, patients, 100):  # one transaction per 100 patients
        with session_scope(engine) as session:
            clinic = session.get(Clinic, clinic_id)
            if clinic is None:
                raise RuntimeError("the clinic is missing")
            for index in range(first, min(first + 100, patients)):
                person = profile(index)
                patient = add_patient(
                    session,
                    validate_patient(
                        email=person.email,
                        name=person.name,
                        birthdate=person.birthdate,
                        timezone=person.timezone,
                        display_units=person.units,
                    ),
                )
                record_event(
                    session,
                    actor=ACTOR,
                    action=AuditTag.PATIENT_CREATE,
                    patient_id=patient.id,
                    target=patient.id,
                )
                user = add_user(session, validate_user(email=person.email, name=person.name, role="patient"))
                patient.user_id = user.id
                share = share_with_clinic(session, patient, code, None, actor=ACTOR)
                tags = ["pump"] if person.therapy == "pump" else []
                if index % 17 == 0:
                    tags.append("new")
                update_clinic_patient(
                    session, clinic, share, ClinicPatientUpdate(mrn=f"M{index:07d}", tags=tags), actor=ACTOR
                )
                patient_ids.append(patient.id)
    return clinic_id, patient_ids, clinician_ids, time.perf_counter() - began


_WORKER: dict[str, Any] = {}


def _start_worker(url: str, data_dir: str) -> None:
    settings, engine = open_engine(url, Path(data_dir))
    importers()  # load the importer plugins once, as a running server or worker has
    _WORKER.update(settings=settings, engine=engine)


def _import_one(patient_id: str, path: str) -> dict[str, Any]:
    """Import one patient's export as ``glucoshare import`` does (one transaction). Runs in a worker."""
    settings: Settings = _WORKER["settings"]
    engine: sa.Engine = _WORKER["engine"]
    data = Path(path).read_bytes()
    began = time.perf_counter()
    with session_scope(engine) as session:
        patient = get_patient(session, patient_id)
        uploads = import_files(
            session,
            settings=settings,
            patient=patient,
            files=[IncomingFile(Path(path).name, data)],
            timezone=None,
            actor=ACTOR,
        )
    return {
        "seconds": time.perf_counter() - began,
        "records": sum(sum(u.counts.values()) for u in uploads),
        "new": sum(u.new for u in uploads),
        "cbg": sum(u.counts.get("cbg", 0) for u in uploads),
        "bytes": len(data),
    }


def _refresh_some(patient_ids: list[str]) -> float:
    """Bring some patients' daily aggregates up to date (one transaction). Runs in a worker."""
    began = time.perf_counter()
    with session_scope(_WORKER["engine"]) as session:
        refresh_outdated(session, patient_ids)
    return time.perf_counter() - began


def ingest(pool: concurrent.futures.Executor, state: State, paths: list[Path]) -> dict[str, Any]:
    """Import every patient's file in the workers; then refresh the aggregates the same way."""
    began = time.perf_counter()
    results = list(pool.map(_import_one, state.patient_ids, [str(p) for p in paths]))
    ingest_seconds = time.perf_counter() - began
    chunks = [state.patient_ids[at : at + 10] for at in range(0, len(state.patient_ids), 10)]
    began = time.perf_counter()
    list(pool.map(_refresh_some, chunks))
    refresh_seconds = time.perf_counter() - began
    by_layout: dict[str, dict[str, float]] = {}
    for index, result in enumerate(results):
        entry = by_layout.setdefault(layout(index), {"patients": 0, "records": 0, "cbg": 0, "seconds": 0.0})
        entry["patients"] += 1
        entry["records"] += result["records"]
        entry["cbg"] += result["cbg"]
        entry["seconds"] += result["seconds"]
    records = sum(r["records"] for r in results)
    return {
        "seconds": ingest_seconds,
        "records": records,
        "new": sum(r["new"] for r in results),
        "cbg": sum(r["cbg"] for r in results),
        "input_bytes": sum(r["bytes"] for r in results),
        "file_seconds": [r["seconds"] for r in results],
        "by_layout": by_layout,
        "refresh_seconds": refresh_seconds,
    }


def vacuum_analyze(url: str) -> float:
    """``VACUUM (ANALYZE)`` the whole database, as autovacuum would after a bulk load; seconds."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    began = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(sa.text("VACUUM (ANALYZE)"))
    engine.dispose()
    return time.perf_counter() - began


def build(url: str, data_dir: Path, args: argparse.Namespace) -> State:
    """Make the population in the (empty) database at ``url``; every build figure in ``State.build``."""
    end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    settings, engine = open_engine(url, data_dir)  # makes the master key before the workers read it
    upgrade(engine, data_dir=settings.data_dir)
    with _pool(args.workers, _start_worker, (url, str(data_dir))) as pool:
        log(f"inputs: {args.patients} patients × {args.days} days, ending {end} …")
        paths, input_seconds, made = inputs(pool, args.patients, days=args.days, end=end)
        log(f"inputs ready ({made} made in {input_seconds:.0f} s)")
        clinic_id, patient_ids, clinician_ids, account_seconds = build_accounts(engine, args.patients)
        engine.dispose()
        log(f"accounts: {len(patient_ids)} patients in {account_seconds:.1f} s")
        state = State(
            url=url,
            data_dir=str(data_dir),
            days=args.days,
            end=end.isoformat(),
            clinic_id=clinic_id,
            patient_ids=patient_ids,
            clinician_ids=clinician_ids,
        )
        list(pool.map(_refresh_some, [[]] * args.workers))  # every worker is up and connected
        figures = ingest(pool, state, paths)
    figures["workers"] = args.workers
    log(
        f"ingest: {figures['records']:,} records in {figures['seconds']:.1f} s "
        f"({figures['records'] / figures['seconds']:,.0f}/s); refresh {figures['refresh_seconds']:.1f} s"
    )
    figures["vacuum_seconds"] = vacuum_analyze(url)
    log(f"vacuum analyse: {figures['vacuum_seconds']:.0f} s")
    state.build = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "patients": args.patients,
        "input_seconds": input_seconds,
        "inputs_made": made,
        "account_seconds": account_seconds,
        **figures,
    }
    return state


# -- latency ------------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q ≤ 1) of ``samples``."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed(repeat: int, work: Callable[[], object]) -> list[float]:
    """Seconds of ``repeat`` calls of ``work``, after one warm-up call."""
    work()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        samples.append(time.perf_counter() - began)
    return samples


def _clinic_selection(clinic_id: str) -> Any:  # noqa: ANN401 - an SQL expression
    return sa.select(Share.patient_id).where(Share.clinic_id == clinic_id, Share.revoked_at.is_(None))


def service_latencies(engine: sa.Engine, state: State, repeat: int, patient_id: str) -> list[dict[str, Any]]:
    """Triage, the patient list, one patient's stats and AGP PDF, at the service level."""
    clinic_id = state.clinic_id

    def triage() -> object:
        with session_scope(engine) as session:
            return population(session, patient_ids=_clinic_selection(clinic_id), days=14).out(limit=50)

    def listing(search: str | None = None) -> Callable[[], object]:
        def work() -> object:
            with session_scope(engine) as session:
                clinic = session.get(Clinic, clinic_id)
                if clinic is None:
                    raise RuntimeError("the clinic is missing")
                out = clinic_patients(session, clinic, days=14, search=search, sort="triage", limit=50)
                return out.model_dump_json()

        return work

    def stats(days: int) -> Callable[[], object]:
        def work() -> object:
            with session_scope(engine) as session:
                patient = get_patient(session, patient_id)
                period = resolve_period(session, patient, days=days)
                return patient_stats(session, patient, period, actor=ACTOR).document()

        return work

    def agp_pdf(days: int) -> Callable[[], object]:
        def work() -> object:
            with session_scope(engine) as session:
                patient = get_patient(session, patient_id)
                period = resolve_period(session, patient, days=days)
                report = build_report(session, patient, "agp", period, actor=ACTOR, output="pdf")
            return render_pdf(report)

        return work

    patients = len(state.patient_ids)
    cases: list[tuple[str, Callable[[], object], int]] = [
        (f"clinic triage of {patients:,} patients (`population`, first 50 as a document)", triage, repeat),
        (
            f"clinic patient list of {patients:,} (`clinic_patients`, triage order, page of 50, JSON)",
            listing(),
            repeat,
        ),
        ("the same, searching the names for “an”", listing("an"), repeat),
    ]
    periods = sorted({14, state.days})
    cases += [(f"one patient's stats document, {days} days", stats(days), repeat) for days in periods]
    cases += [
        (
            f"one patient's AGP report as PDF, {days} days (database to PDF bytes)",
            agp_pdf(days),
            max(1, repeat // 2),
        )
        for days in periods
    ]
    return [_row(name, "service", timed(n, work)) for name, work, n in cases]


def _row(name: str, level: str, samples: list[float]) -> dict[str, Any]:
    return {
        "what": name,
        "level": level,
        "n": len(samples),
        "p50": percentile(samples, 0.5),
        "p99": percentile(samples, 0.99),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(state: State, count: int, log_dir: Path, job_workers: int = 0) -> Iterator[list[str]]:
    """``count`` ``glucoshare serve`` processes on the database, each on a free port of 127.0.0.1.

    With ``job_workers``, as many ``glucoshare worker`` processes run the background jobs the
    servers defer (when this version has that command), and the servers are started with
    ``--no-jobs``; without, each server runs jobs in a thread of its own (its default on
    PostgreSQL). Logs: ``serve-N.log``, ``worker-N.log``.
    """
    env = {**os.environ, "GLUCOSHARE_DATABASE_URL": state.url, "GLUCOSHARE_DATA_DIR": state.data_dir}
    processes: list[subprocess.Popen[bytes]] = []
    bases = []

    def start(name: str, *command: str) -> subprocess.Popen[bytes]:
        with (log_dir / f"{name}.log").open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "glucoshare", *command],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        processes.append(process)
        return process

    try:
        workers = job_workers if has_job_worker() else 0
        # As docs/deployment.md deploys them: with worker processes, the servers leave jobs to them.
        quiet = ("--no-jobs",) if workers and serve_has_no_jobs() else ()
        for n in range(count):
            port = _free_port()
            process = start(f"serve-{n}", "serve", "--port", str(port), *quiet)
            bases.append(f"http://127.0.0.1:{port}")
            _wait_healthy(bases[-1], process)
        for n in range(workers):
            start(f"worker-{n}", "worker")
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


def cpu_jiffies() -> tuple[int, int]:
    """The machine's busy and total CPU time so far (``/proc/stat``, clock ticks; zeros elsewhere)."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return 0, 0
    fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and waiting for I/O
    return sum(fields) - idle, sum(fields)


@functools.cache
def serve_has_no_jobs() -> bool:
    """Whether ``glucoshare serve`` takes ``--no-jobs`` (it runs background jobs itself otherwise)."""
    probe = subprocess.run(
        [sys.executable, "-m", "glucoshare", "serve", "--help"], capture_output=True, text=True, check=False
    )
    return "--no-jobs" in probe.stdout


@functools.cache
def has_job_worker() -> bool:
    """Whether this version has ``glucoshare worker`` (background jobs on PostgreSQL)."""
    probe = subprocess.run(
        [sys.executable, "-m", "glucoshare", "worker", "--help"], capture_output=True, check=False
    )
    return probe.returncode == 0


def _wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline or process.poll() is not None:
            msg = "glucoshare serve did not start"
            raise RuntimeError(msg)
        time.sleep(0.2)


def clinician_session(engine: sa.Engine, user_id: str) -> str:
    """A new session of the clinician (as after signing in with the second factor): its token."""
    with session_scope(engine) as session:
        user = session.get(User, user_id)
        if user is None:
            raise RuntimeError("the clinician is missing")
        token, _row = start_session(session, user, user_agent="population-benchmark")
    return token


def http_latencies(
    engine: sa.Engine, state: State, repeat: int, patient_id: str, base: str
) -> list[dict[str, Any]]:
    """The same through HTTP: a live ``glucoshare serve`` at ``base``, a clinician's session, loopback."""
    token = clinician_session(engine, state.clinician_ids[0])
    bearer = {"Authorization": f"Bearer {token}"}
    clinic, patient = state.clinic_id, patient_id
    patients = len(state.patient_ids)
    with httpx.Client(base_url=base, timeout=120) as http:

        def get(path: str, **kwargs: Any) -> Callable[[], object]:  # noqa: ANN401 - httpx's arguments
            def work() -> object:
                answer = http.get(path, **kwargs)
                answer.raise_for_status()
                return answer.content

            return work

        cases: list[tuple[str, Callable[[], object], int]] = [
            (
                f"`GET /v1/clinics/{{id}}/patients` ({patients:,} patients, triage order, page of 50)",
                get(f"/v1/clinics/{clinic}/patients", params={"limit": 50}, headers=bearer),
                repeat,
            ),
            (
                "the same, searching the names for “an”, sorted by name",
                get(
                    f"/v1/clinics/{clinic}/patients", params={"search": "an", "sort": "name"}, headers=bearer
                ),
                repeat,
            ),
            (
                "`GET /clinics/{id}`: the clinic's HTML page (first 100 patients)",
                get(f"/clinics/{clinic}", headers={"Cookie": f"gs_session={token}"}),
                repeat,
            ),
        ]
        periods = sorted({14, state.days})
        cases += [
            (
                f"`GET /v1/patients/{{id}}/stats?days={days}`",
                get(f"/v1/patients/{patient}/stats", params={"days": days}, headers=bearer),
                repeat,
            )
            for days in periods
        ]
        cases += [
            (
                f"`GET /v1/patients/{{id}}/reports/agp?days={days}&format=pdf`",
                get(
                    f"/v1/patients/{patient}/reports/agp",
                    params={"days": days, "format": "pdf"},
                    headers=bearer,
                ),
                max(1, repeat // 2),
            )
            for days in periods
        ]
        return [_row(name, "HTTP", timed(n, work)) for name, work, n in cases]


# -- storage ------------------------------------------------------------------------------------


def storage(engine: sa.Engine, state: State) -> dict[str, Any]:
    """Bytes of every table (heap, TOAST, indexes) and of the raw files; per patient-year."""
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid), "
                "pg_indexes_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 2 DESC"
            )
        ).all()
        rows = []
        for name, total, heap, indexes in tables:
            count = conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            rows.append({"table": name, "rows": count, "total": total, "heap": heap, "indexes": indexes})
        database = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
    raw = sum(r["total"] for r in rows if r["table"] == KEPT_FILES_TABLE)
    patient_years = len(state.patient_ids) * state.days / 365.25
    total = sum(r["total"] for r in rows if r["table"] != KEPT_FILES_TABLE)
    return {
        "tables": rows,
        "total": total,
        "database": database,
        "raw_files": raw,
        "patient_years": patient_years,
        "per_patient_year": total / patient_years,
        "raw_per_patient_year": raw / patient_years,
    }


# -- hot queries --------------------------------------------------------------------------------


@contextlib.contextmanager
def captured(engine: sa.Engine) -> Iterator[list[tuple[str, str, Any]]]:
    """The SELECT statements sent while the block runs: (the glucoshare function, SQL, parameters)."""
    seen: list[tuple[str, str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:  # noqa: ANN401
        if not statement.lstrip().upper().startswith("SELECT") or "pg_advisory" in statement:
            return
        for frame in reversed(traceback.extract_stack()):
            if "/glucoshare/" in frame.filename and "/glucoshare/db/" not in frame.filename:
                module = frame.filename.split("/glucoshare/", 1)[1].removesuffix(".py")
                origin = f"{module.replace('/', '.')}.{frame.name}"
                seen.append((origin, statement, parameters))
                return

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def _plan_nodes(plan: dict[str, Any]) -> list[str]:
    """Node names of a JSON plan, depth first (``Index Scan on records using uq_records_identity``)."""
    name = plan["Node Type"]
    if "Index Name" in plan:
        name += f" using {plan['Index Name']}"
    if "Relation Name" in plan:
        name += f" on {plan['Relation Name']}"
    return [name] + [node for child in plan.get("Plans", []) for node in _plan_nodes(child)]


def explain(engine: sa.Engine, statement: str, parameters: Any) -> dict[str, Any]:  # noqa: ANN401 - DBAPI
    """EXPLAIN (ANALYZE, BUFFERS) of a statement, run twice (the second, warm, is kept); rolled back."""
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for _ in range(2):
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
                (document,) = cursor.fetchone()
        finally:
            cursor.close()
            conn.rollback()
    top = document[0]
    plan = top["Plan"]
    return {
        "ms": top["Execution Time"],
        "planning_ms": top["Planning Time"],
        "rows": plan["Actual Rows"],
        "hit": plan.get("Shared Hit Blocks", 0),
        "read": plan.get("Shared Read Blocks", 0),
        "nodes": _plan_nodes(plan),
    }


def explained_calls(engine: sa.Engine, work: Callable[[], object]) -> list[dict[str, Any]]:
    """Every SELECT ``work`` sends, EXPLAINed once (``calls``: how often ``work`` sent it)."""
    with captured(engine) as seen:
        work()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for origin, statement, parameters in seen:
        key = (statement, json.dumps(parameters, sort_keys=True, default=str))
        if key in out:
            out[key]["calls"] += 1
            continue
        out[key] = {
            "origin": origin,
            "calls": 1,
            "sql": " ".join(statement.split()),
            **explain(engine, statement, parameters),
        }
    return list(out.values())


LATEST_PER_DEVICE = (
    "SELECT r.time_ms, r.value FROM devices d CROSS JOIN LATERAL (SELECT time_ms, value FROM records "
    "WHERE device_seq = d.seq AND type = 'cbg' ORDER BY time_ms DESC LIMIT 1) r "
    "WHERE d.patient_id = %(patient)s ORDER BY r.time_ms DESC LIMIT 1"
)
"""A patient's latest CGM reading found device by device (a backward index scan each), for comparison
with ``summaries.data.latest_cgm``, which reads every reading of the patient's devices and sorts."""


_COLUMNS = (
    "device_seq, upload_seq, type, subtype, time_ms, utc_offset_min, value, orig_value, orig_unit, "
    "source_line, dedup_key, duration_ms, annotation, payload"
)


def explain_insert(engine: sa.Engine, patient_id: str, rows: int = 5000) -> dict[str, dict[str, Any]]:
    """The import's ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` of ``rows`` staged readings.

    Readings of the patient's CGM, staged as the record writer stages them (a temporary table); once
    with readings that are all stored already (a file imported again), once with the same readings
    400 days later (all new). Rolled back.
    """
    insert = (
        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) INSERT INTO records ({_COLUMNS}) "
        f"SELECT {_COLUMNS} FROM records_incoming ON CONFLICT DO NOTHING"
    )
    out = {}
    with engine.connect() as conn:
        device = conn.execute(  # the patient's CGM (the first of their devices with readings)
            sa.text(
                "SELECT d.seq FROM devices d WHERE d.patient_id = :p AND EXISTS "
                "(SELECT 1 FROM records r WHERE r.device_seq = d.seq AND r.type = 'cbg') "
                "ORDER BY d.seq LIMIT 1"
            ),
            {"p": patient_id},
        ).scalar_one()
        conn.execute(
            sa.text(
                "CREATE TEMPORARY TABLE records_incoming ON COMMIT DROP AS "
                f"SELECT {_COLUMNS} FROM records WITH NO DATA"
            )
        )
        conn.execute(
            sa.text(
                f"INSERT INTO records_incoming SELECT {_COLUMNS} FROM records "
                "WHERE device_seq = :d AND type = 'cbg' ORDER BY time_ms LIMIT :n"
            ),
            {"d": device, "n": rows},
        )
        for name in ("stored already", "new"):
            if name == "new":
                conn.execute(
                    sa.text("UPDATE records_incoming SET time_ms = time_ms + :shift"), {"shift": 400 * DAY_MS}
                )
            (document,) = conn.execute(sa.text(insert)).one()
            top = document[0]
            plan = top["Plan"]
            out[name] = {
                "ms": top["Execution Time"],
                "rows": rows,
                "hit": plan.get("Shared Hit Blocks", 0),
                "read": plan.get("Shared Read Blocks", 0),
                "dirtied": plan.get("Shared Dirtied Blocks", 0),
            }
        conn.rollback()
    return out


def btree_depth(url: str) -> int | None:
    """Levels of the records index (``pageinspect``'s ``bt_metap``), when the extension can be made."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
            level = conn.execute(sa.text("SELECT level FROM bt_metap('uq_records_identity')")).scalar_one()
            return int(level) + 1
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def import_seconds(
    engine: sa.Engine, settings: Settings, data: bytes, name: str, timezone: str, *, runs: int = 2
) -> dict[str, Any]:
    """Best of ``runs``: one file imported for a new patient (one transaction, as ``glucoshare import``).

    The patient is erased after each run; the first run also warms this process (plugins, statements).
    """
    best = float("inf")
    records = 0
    for _ in range(runs):
        with session_scope(engine) as session:
            patient = add_patient(
                session,
                validate_patient(
                    email=f"newcomer-{uuid.uuid4().hex[:8]}@population.example",
                    name="New Comer",
                    timezone=timezone,
                ),
            )
            patient_id = patient.id
        began = time.perf_counter()
        with session_scope(engine) as session:
            uploads = import_files(
                session,
                settings=settings,
                patient=get_patient(session, patient_id),
                files=[IncomingFile(name, data)],
                timezone=None,
                actor=ACTOR,
            )
        best = min(best, time.perf_counter() - began)
        records = sum(sum(u.counts.values()) for u in uploads)
        with session_scope(engine) as session:
            erase_patient(session, patient=get_patient(session, patient_id), actor=ACTOR)
    return {"seconds": best, "records": records}


def hot_queries(engine: sa.Engine, settings: Settings, state: State, index: int) -> dict[str, Any]:
    """The plans and timings behind the index and partitioning choice: at scale, and one patient alone."""
    patient_id = state.patient_ids[index]
    days = state.days

    def stats() -> object:
        with session_scope(engine) as session:
            patient = get_patient(session, patient_id)
            return patient_stats(session, patient, resolve_period(session, patient, days=days), actor=ACTOR)

    def listing() -> object:
        with session_scope(engine) as session:
            clinic = session.get(Clinic, state.clinic_id)
            if clinic is None:
                raise RuntimeError("the clinic is missing")
            return clinic_patients(session, clinic, days=14, sort="triage", limit=50)

    stats()  # warm
    out: dict[str, Any] = {
        "stats": explained_calls(engine, stats),
        "clinic_list": explained_calls(engine, listing),
        "insert": explain_insert(engine, patient_id),
        "depth": btree_depth(state.url),
        "latest_per_device": explain(engine, LATEST_PER_DEVICE, {"patient": patient_id}),
    }
    person = profile(index)
    start = dt.date.fromisoformat(state.end) - dt.timedelta(days=days)
    made = export(index, start=start, days=days)
    # A new patient of the same layout (another device): into the big database and into an empty one.
    newcomer = (len(state.patient_ids) // len(MIX) + 1) * len(MIX) + index
    fresh = export(newcomer, start=start, days=days)
    zone = profile(newcomer).timezone
    out["import_big"] = import_seconds(engine, settings, fresh.data, fresh.file_name, zone)
    with scratch_postgres() as url, tempfile.TemporaryDirectory() as folder:
        if url is None:
            return out
        small_settings, small = open_engine(url, Path(folder))
        upgrade(small, data_dir=small_settings.data_dir)
        out["import_small"] = import_seconds(small, small_settings, fresh.data, fresh.file_name, zone)
        with session_scope(small) as session:
            patient = add_patient(
                session, validate_patient(email=person.email, name=person.name, timezone=person.timezone)
            )
            alone = patient.id
            import_files(
                session,
                settings=small_settings,
                patient=patient,
                files=[IncomingFile(made.file_name, made.data)],
                timezone=None,
                actor=ACTOR,
            )
        with session_scope(small) as session:
            refresh_outdated(session)
        vacuum_analyze(url)

        def alone_stats() -> object:
            with session_scope(small) as session:
                patient = get_patient(session, alone)
                return patient_stats(
                    session, patient, resolve_period(session, patient, days=days), actor=ACTOR
                )

        alone_stats()
        out["stats_alone"] = explained_calls(small, alone_stats)
        out["latest_per_device_alone"] = explain(small, LATEST_PER_DEVICE, {"patient": alone})
        out["insert_alone"] = explain_insert(small, alone)
        small.dispose()
    return out


# -- load ---------------------------------------------------------------------------------------


def plan_clients(engine: sa.Engine, state: State, args: argparse.Namespace) -> dict[str, Any]:
    """One entry per client: its role, credential, patient and time slot."""
    now_ms = int(time.time() * 1000)
    start_ms = (now_ms - 2 * DAY_MS) // MINUTE_MS * MINUTE_MS
    order = sorted(state.patient_ids, key=lambda pid: hashlib.sha256(pid.encode()).hexdigest())
    clients = []
    taken = 0
    with session_scope(engine) as session:
        for n in range(args.clients):
            role = ROLES[n % len(ROLES)]
            if role == "clinician":
                user = session.get(User, state.clinician_ids[n % len(state.clinician_ids)])
                if user is None:
                    raise RuntimeError("a clinician is missing")
                token, _row = start_session(session, user, user_agent="population-load")
                clients.append(
                    {
                        "role": role,
                        "token": token,
                        "clinic_id": state.clinic_id,
                        "patients": len(state.patient_ids),
                    }
                )
                continue
            patient_id = order[taken % len(order)]
            slot = taken // len(order)  # clients sharing a patient write at other seconds
            taken += 1
            patient = session.get(Patient, patient_id)
            if patient is None:
                raise RuntimeError("a patient is missing")
            made = create_api_token(session, patient, kind="nightscout", created_by=ACTOR)
            secret = hashlib.sha1((made.api_secret or "").encode(), usedforsecurity=False).hexdigest()
            clients.append(
                {
                    "role": role,
                    "patient_id": patient_id,
                    "token": made.token,
                    "secret": secret,
                    "start_ms": start_ms,
                    "slot": slot % 60,
                }
            )
    return {"clients": clients, "seconds": args.seconds, "think": args.think, "seed": 1}


def _scalar(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar() or 0)


def load(
    engine: sa.Engine, state: State, args: argparse.Namespace, work_dir: Path, bases: list[str]
) -> dict[str, Any]:
    """Run the load generator in a second process against the servers at ``bases``; check every write."""
    plan = plan_clients(engine, state, args)
    base = {
        "records": _scalar(engine, "SELECT coalesce(max(id), 0) FROM records"),
        "documents": _scalar(engine, "SELECT coalesce(max(seq), 0) FROM ns_documents"),
        "events": _scalar(engine, "SELECT coalesce(max(id), 0) FROM audit_events"),
    }
    plan_file, result_file = work_dir / "plan.json", work_dir / "result.json"
    plan["servers"] = bases
    plan_file.write_text(json.dumps(plan))
    log(f"load: {args.clients} clients on {len(bases)} servers for {args.seconds:g} s …")
    machine_before = cpu_jiffies()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, str(HERE / "api_load.py"), "--plan", str(plan_file), "--out", str(result_file)],
        check=True,
        timeout=args.seconds + 300,
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine_after = cpu_jiffies()
    result: dict[str, Any] = json.loads(result_file.read_text())
    busy = machine_after[0] - machine_before[0]
    total = machine_after[1] - machine_before[1]
    checks = verify(engine, base, result)
    return {
        "servers": len(bases),
        "clients": args.clients,
        "think": args.think,
        "roles": {role: sum(1 for c in plan["clients"] if c["role"] == role) for role in set(ROLES)},
        "seconds": result["seconds"],
        "requests": result["requests"],
        "errors": result["errors"],
        "anomalies": result["anomalies"],
        "machine_busy": busy / total if total else float("nan"),
        "generator_cpu_seconds": (children.ru_utime + children.ru_stime)
        - (children_before.ru_utime + children_before.ru_stime),
        "checks": checks,
    }


def server_exceptions(logs: list[Path]) -> dict[str, int]:
    """How often each exception ended a traceback in the servers' logs (its last line, cut at 300)."""
    found: dict[str, int] = {}
    for path in logs:
        lines = path.read_text(errors="replace").splitlines()
        inside = False
        for at, line in enumerate(lines):
            if line.startswith("Traceback"):
                inside = True
            elif inside and line and not line.startswith((" ", "\t", "The above", "During handling")):
                if at + 1 < len(lines) and lines[at + 1].startswith(("Traceback", "The above", "During")):
                    continue  # a chained exception: the last one is what the request died of
                found[line[:300]] = found.get(line[:300], 0) + 1
                inside = False
    return found


def verify(engine: sa.Engine, base: dict[str, int], result: dict[str, Any]) -> dict[str, Any]:
    """Every acknowledged reading stored once; none doubled; no request half-stored; audit chain intact."""
    sent: dict[tuple[str, int], str] = {}
    acked: set[tuple[str, int]] = set()
    for write in result["writes"]:
        for t in write["times"]:
            sent[write["patient_id"], t] = write["route"]
            if write["acked"]:
                acked.add((write["patient_id"], t))
    with engine.connect() as conn:
        stored = {
            (pid, int(t)): int(n)
            for pid, t, n in conn.execute(
                sa.text(
                    "SELECT d.patient_id, r.time_ms, count(*) FROM records r "
                    "JOIN devices d ON d.seq = r.device_seq "
                    "WHERE r.id > :base AND r.type = 'cbg' GROUP BY 1, 2"
                ),
                {"base": base["records"]},
            )
        }
        other = conn.execute(
            sa.text("SELECT count(*) FROM records WHERE id > :base AND type <> 'cbg'"),
            {"base": base["records"]},
        ).scalar_one()
        documents = {
            (pid, int(t)): int(n)
            for pid, t, n in conn.execute(
                sa.text(
                    "SELECT patient_id, time_ms, count(*) FROM ns_documents "
                    "WHERE seq > :base AND collection = 'entries' GROUP BY 1, 2"
                ),
                {"base": base["documents"]},
            )
        }
    with session_scope(engine) as session:
        chain = verify_chain(session)
        events = session.scalar(sa.select(sa.func.count()).where(AuditEvent.id > base["events"])) or 0
    half = 0
    unacked_stored = 0
    for write in result["writes"]:
        if write["acked"]:
            continue
        found = sum(1 for t in write["times"] if (write["patient_id"], t) in stored)
        if 0 < found < len(write["times"]):
            half += 1
        unacked_stored += found
    ns_keys = {key for key, route in sent.items() if route == "nightscout"}
    ns_stored = {key for key in stored if key in ns_keys}
    return {
        "writes": len(result["writes"]),
        "acked_writes": sum(1 for w in result["writes"] if w["acked"]),
        "readings_sent": len(sent),
        "readings_acked": len(acked),
        "records_stored": sum(stored.values()),
        "lost": len(acked - stored.keys()),
        "doubled": sum(1 for n in stored.values() if n > 1),
        "unexpected": len(stored.keys() - sent.keys()) + int(other),
        "half_stored_requests": half,
        "unacked_readings_stored": unacked_stored,
        "documents": sum(documents.values()),
        "documents_doubled": sum(1 for n in documents.values() if n > 1),
        "documents_match_records": documents.keys() == ns_stored,
        "audit_events_added": int(events),
        "audit_events": chain.events,
        "audit_intact": chain.intact,
    }


# -- the report ---------------------------------------------------------------------------------


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[{dt.datetime.now(dt.UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _mb(n: float) -> str:
    return f"{n / 1024 / 1024:,.1f}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if seconds >= 0.1 else f"{seconds * 1000:,.1f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def section(results: dict[str, Any], command: str) -> list[str]:
    """The markdown section of every figure (for BENCHMARKS.md)."""
    b = results["build"]
    patients, days = b["patients"], results["days"]
    lines = [
        "## Population and load (PostgreSQL)",
        "",
        (
            f"Run on {results['when']} with `{command}` (`benchmarks/population.py`; load from "
            "`benchmarks/api_load.py` in a second process on loopback). Inputs are simulated "
            "(`glucoshare.simulator`), written in their vendors' layouts and imported through "
            "`glucoshare.ingest.service.import_files`, the service of `glucoshare import`."
        ),
        "",
    ]
    if patients < 1000 or days < 90:
        lines += [
            f"**Reduced scale: {patients:,} patients × {days} days (issue 10 asks for 1,000 × 90).**",
            "",
        ]
    lines += ["Machine: " + "; ".join(f"{k} {v}" for k, v in results["machine"].items()) + ".", ""]
    # build
    file_seconds = b["file_seconds"]
    rate = b["records"] / b["seconds"]
    lines += [
        "### Build",
        "",
        "| measurement | value |",
        "|---|---:|",
        f"| patients × days | {patients:,} × {days} ({results['build_when']}) |",
        (
            "| accounts made through the services (patient, account, share, MRN and tags), 10 clinicians | "
            f"{b['account_seconds']:.1f} s |"
        ),
        f"| records imported ({b['cbg']:,} CGM readings) | {b['records']:,} |",
        (
            f"| input files (simulated and written beforehand, not timed as ingest) | {patients:,}, "
            f"{_mb(b['input_bytes'])} MB ({b['inputs_made']:,} made in {b['input_seconds']:,.0f} s) |"
        ),
        f"| ingest wall time, {b['workers']} worker processes | {b['seconds']:,.1f} s |",
        f"| ingest rate | {rate:,.0f} records/s, {patients / b['seconds'] * 60:,.1f} patients/min |",
        (
            f"| one patient's import (p50 / p99 of {patients:,}) | {_ms(percentile(file_seconds, 0.5))} / "
            f"{_ms(percentile(file_seconds, 0.99))} ms |"
        ),
        (
            f"| daily aggregates brought up to date (`refresh_outdated`, {b['workers']} workers) | "
            f"{b['refresh_seconds']:,.1f} s ({b['refresh_seconds'] / patients * 1000 * b['workers']:,.0f} ms "
            "per patient and worker) |"
        ),
        f"| `VACUUM (ANALYZE)` after the load | {b['vacuum_seconds']:,.1f} s |",
        "",
        "| layout | patients | records | CGM readings | import s (sum) | records/s per worker |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in sorted(b["by_layout"].items(), key=lambda item: -item[1]["patients"]):
        lines.append(
            f"| {LAYOUTS[name]} | {entry['patients']:,} | {entry['records']:,} | {entry['cbg']:,} | "
            f"{entry['seconds']:,.1f} | {entry['records'] / entry['seconds']:,.0f} |"
        )
    lines += ["", "### Latency", ""]
    lines += [
        (
            "p50 and p99 of repeated calls after one warm-up (nearest rank; with fewer than 100 calls "
            "p99 is the slowest call). Service: from the database to the document in this process. "
            "HTTP: a clinician's session against a live `glucoshare serve` on loopback (the first server "
            "of the load run, before the load starts)."
        ),
        "",
        "| what | level | calls | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {row['what']} | {row['level']} | {row['n']} | {_ms(row['p50'])} | {_ms(row['p99'])} |"
        for row in results["latency"]
    ]
    s = results["storage"]
    lines += [
        "",
        "### Storage",
        "",
        (
            f"{_mb(s['total'])} MB in tables and their indexes (`pg_total_relation_size`, database "
            f"{_mb(s['database'])} MB) for {s['patient_years']:,.1f} patient-years: "
            f"**{_mb(s['per_patient_year'])} MB per patient-year**; the raw files kept with them "
            f"(sealed, as uploaded, in `{KEPT_FILES_TABLE}`) add {_mb(s['raw_per_patient_year'])} MB "
            "per patient-year."
        ),
        "",
        "| table | rows | heap MB | indexes MB | total MB | bytes per row |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in s["tables"]:
        if row["total"] < 1024 * 1024 and row["rows"] < 1000:
            continue
        per_row = f"{row['total'] / row['rows']:,.0f}" if row["rows"] else ""
        lines.append(
            f"| {row['table']} | {row['rows']:,} | {_mb(row['heap'])} | {_mb(row['indexes'])} | "
            f"{_mb(row['total'])} | {per_row} |"
        )
    lines += ["", "(Tables under 1 MB and 1,000 rows left out.)", ""]
    lines += hot_query_lines(results["hot"], results["records"])
    if "load" in results:
        lines += load_lines(results["load"])
    return lines


def hot_query_lines(hot: dict[str, Any], records: int) -> list[str]:
    """The hot queries: plans at scale against a one-patient database, and the partitioning evidence."""
    lines = [
        "### Hot queries, indexes and partitioning",
        "",
        (
            f"Every SELECT of one patient's {hot['days']}-day stats document and of one page of the clinic "
            "list, captured as the services send them and run with `EXPLAIN (ANALYZE, BUFFERS)` (the "
            f"second, warm run), in this database ({records:,} records) and, for the stats, in a database "
            "holding only that patient. Buffers are 8 kB pages."
        ),
        "",
        "| statement (issued by) | rows | ms | buffers | plan | ms, patient alone | buffers alone |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    alone = {item["origin"] + "|" + str(item["rows"]): item for item in hot.get("stats_alone", [])}
    for label, items in (("stats", hot["stats"]), ("list", hot["clinic_list"])):
        for item in sorted(items, key=lambda i: -i["ms"])[:8]:
            other = alone.get(item["origin"] + "|" + str(item["rows"])) if label == "stats" else None
            plan = ", ".join(dict.fromkeys(n for n in item["nodes"] if "Scan" in n)) or item["nodes"][0]
            other_ms = "" if other is None else f"{other['ms']:.2f}"
            other_buffers = "" if other is None else f"{other['hit'] + other['read']:,}"
            calls = f" ×{item['calls']}" if item.get("calls", 1) > 1 else ""
            lines.append(
                f"| {label}: `{item['origin']}`{calls} | {item['rows']:,} | {item['ms']:.2f} | "
                f"{item['hit'] + item['read']:,} | {plan} | {other_ms} | {other_buffers} |"
            )
    latest, latest_alone = hot.get("latest_per_device"), hot.get("latest_per_device_alone")
    if latest:
        plan = ", ".join(dict.fromkeys(n for n in latest["nodes"] if "Scan" in n))
        other_ms = "" if latest_alone is None else f"{latest_alone['ms']:.2f}"
        other_buffers = "" if latest_alone is None else f"{latest_alone['hit'] + latest_alone['read']:,}"
        lines.append(
            f"| (for comparison) the latest reading found device by device, `LATERAL ... ORDER BY time_ms "
            f"DESC LIMIT 1` | {latest['rows']:,} | {latest['ms']:.2f} | {latest['hit'] + latest['read']:,} | "
            f"{plan} | {other_ms} | {other_buffers} |"
        )
    insert, alone_insert = hot["insert"], hot.get("insert_alone", {})
    lines += [
        "",
        (
            "| the import's insert (5,000 staged readings, `ON CONFLICT DO NOTHING`) | ms | buffers "
            "| ms, patient alone |"
        ),
        "|---|---:|---:|---:|",
    ]
    for name, item in insert.items():
        other = alone_insert.get(name)
        other_ms = "" if other is None else f"{other['ms']:.1f}"
        lines.append(f"| readings {name} | {item['ms']:.1f} | {item['hit'] + item['read']:,} | {other_ms} |")
    big, small = hot.get("import_big"), hot.get("import_small")
    if big and small:
        lines += [
            "",
            (
                f"A whole {hot['days']}-day import of one patient ({big['records']:,} records, one "
                f"transaction, best of two): {big['seconds']:.2f} s into this database, "
                f"{small['seconds']:.2f} s into an empty one."
            ),
        ]
    if hot.get("depth"):
        lines += ["", f"The records index (`uq_records_identity`) is {hot['depth']} levels deep."]
    return [*lines, "", *partition_lines(hot, records)]


def partition_lines(hot: dict[str, Any], records: int) -> list[str]:
    """What the plans say about partitioning ``records``: the hot range query, here and the patient alone."""
    big = next((i for i in hot["stats"] if i["origin"].endswith("load_cgm")), None)
    alone = next((i for i in hot.get("stats_alone", []) if i["origin"].endswith("load_cgm")), None)
    if big is None or alone is None:
        return []
    ratio = big["ms"] / alone["ms"] if alone["ms"] else float("nan")
    buffers = big["hit"] + big["read"]
    alone_buffers = alone["hit"] + alone["read"]
    same = ratio <= 2 and buffers <= 2 * max(alone_buffers, 1)
    verdict = (
        "The table's size does not show: the one index (device, type, time) already narrows the "
        "query to this patient's own key range, so partitions by time or by patient would prune nothing "
        "that the index does not skip already. **Partitioning would not make the hot queries faster at "
        "this scale.**"
        if same
        else "The table's size shows in this query: partitioning or a covering index is worth measuring "
        "at this scale."
    )
    return [
        (
            f"Partitioning: one patient's {hot['days']}-day CGM query (`load_cgm`, {big['rows']:,} rows) "
            "takes "
            f"{big['ms']:.2f} ms and {buffers:,} buffers among {records:,} records, against "
            f"{alone['ms']:.2f} ms and {alone_buffers:,} buffers with the patient alone ({ratio:.1f}×). "
            f"{verdict}"
        ),
        "",
    ]


def load_lines(load: dict[str, Any]) -> list[str]:
    """The load run: throughput, latency per kind, errors, and the exact check of every write."""
    requests = load["requests"]
    seconds = load["seconds"]
    c = load["checks"]
    errors = load["errors"]
    roles = ", ".join(f"{n} {role.replace('_', ' ')}s" for role, n in sorted(load["roles"].items()) if n)
    lines = [
        "### Load",
        "",
        (
            f"{load['clients']} clients ({roles}) for {seconds:,.0f} s against {load['servers']} "
            f"`glucoshare serve` processes on the same database (client n uses server n mod "
            f"{load['servers']})"
            + (
                f" with `--no-jobs` and {load['job_workers']} `glucoshare worker` for the jobs they defer, "
                "as docs/deployment.md deploys them"
                if load.get("job_workers")
                else ", each running its background jobs itself"
            )
            + f", think time 0.5–1.5 × {load['think']:g} s between requests. "
            f"{len(requests):,} requests: **{len(requests) / seconds:,.1f} requests/s**. The machine's CPUs "
            f"were {load['machine_busy']:.0%} busy during the run (everything on it, PostgreSQL included); "
            f"the load generator itself used {load['generator_cpu_seconds']:,.1f} CPU seconds."
        ),
        "",
        "| request | count | per s | p50 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    kinds: dict[str, list[float]] = {}
    for kind, _server, _at, latency, _status in requests:
        kinds.setdefault(kind, []).append(latency)
    error_kinds: dict[str, int] = {}
    for error in errors:
        error_kinds[error["kind"]] = error_kinds.get(error["kind"], 0) + 1
    for kind, samples in sorted(kinds.items(), key=lambda item: -len(item[1])):
        lines.append(
            f"| {kind} | {len(samples):,} | {len(samples) / seconds:,.1f} | "
            f"{_ms(percentile(samples, 0.5))} | "
            f"{_ms(percentile(samples, 0.99))} | {_ms(max(samples))} | {error_kinds.get(kind, 0)} |"
        )
    every = [r[3] for r in requests]
    if every:
        lines.append(
            f"| all | {len(every):,} | {len(every) / seconds:,.1f} | {_ms(percentile(every, 0.5))} | "
            f"{_ms(percentile(every, 0.99))} | {_ms(max(every))} | {len(errors)} |"
        )
    by_what: dict[str, int] = {}
    for error in errors:
        by_what[f"{error['kind']} {error['error']}"] = by_what.get(f"{error['kind']} {error['error']}", 0) + 1
    exact = c["lost"] == 0 and c["doubled"] == 0 and c["half_stored_requests"] == 0 and c["unexpected"] == 0
    lines += [
        "",
        (
            f"Writes: {c['writes']:,} requests ({c['acked_writes']:,} acknowledged) carrying "
            f"{c['readings_sent']:,} "
            f"readings, {c['readings_acked']:,} acknowledged; {c['records_stored']:,} records stored; "
            f"{c['documents']:,} Nightscout documents (one per stored Nightscout reading: "
            f"{'yes' if c['documents_match_records'] and not c['documents_doubled'] else 'NO'}). "
            f"Lost {c['lost']}, doubled {c['doubled']}, half-stored requests {c['half_stored_requests']}, "
            f"stored but never sent {c['unexpected']}; readings of unacknowledged requests stored whole: "
            f"{c['unacked_readings_stored']}. Audit chain: {c['audit_events']:,} events "
            f"({c['audit_events_added']:,} during the run), {'intact' if c['audit_intact'] else 'BROKEN'}."
        ),
        "",
        "Targets (issue 10):",
        "",
        f"- zero errors: {len(errors)} errors ({_verdict(not errors)})"
        + (f": {', '.join(f'{n} × {w}' for w, n in sorted(by_what.items()))}" if by_what else "")
        + (
            f"; {load['server_tracebacks']} tracebacks in the servers' logs"
            if load["server_tracebacks"]
            else ""
        ),
        f"- no lost or doubled records: {_verdict(exact and c['documents_match_records'])}",
        f"- retries answered as such (repeated key, nothing new): "
        f"{_verdict(not load['anomalies'])}"
        + (f" ({len(load['anomalies'])} anomalies)" if load["anomalies"] else ""),
        f"- audit chain verifies: {_verdict(c['audit_intact'])}",
        "",
    ]
    return lines


# -- main ---------------------------------------------------------------------------------------


def _machine() -> dict[str, str]:
    try:
        from run import machine  # noqa: PLC0415 - run.py pulls in every other benchmark

        return machine()
    except ImportError:
        return {"Python": sys.version.split()[0], "PostgreSQL": POSTGRES}


def measure(state: State, args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    """Every measurement on a built population."""
    settings, engine = open_engine(state.url, Path(state.data_dir))
    upgrade(engine, data_dir=settings.data_dir)
    index = 0  # the first patient: a Dexcom Clarity file, multiple daily injections
    patient_id = state.patient_ids[index]
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "build_when": state.build.get("when", "?"),
        "days": state.days,
        "build": state.build,
        "machine": _machine(),
    }
    log("storage …")
    results["storage"] = storage(engine, state)
    results["records"] = next(r["rows"] for r in results["storage"]["tables"] if r["table"] == "records")
    log("latency (service) …")
    latency = service_latencies(engine, state, args.repeat, patient_id)
    log("hot queries …")
    results["hot"] = {"days": state.days, **hot_queries(engine, settings, state, index)}
    loading = args.clients > 0 and args.seconds > 0
    servers = args.servers if loading else 1
    workers = args.job_workers if loading and has_job_worker() else 0
    with serving(state, servers, work_dir, workers) as bases:
        log("latency (HTTP) …")
        latency += http_latencies(engine, state, args.repeat, patient_id, bases[0])
        if loading:
            results["load"] = load(engine, state, args, work_dir, bases)
    results["latency"] = latency
    if loading:
        logs = [work_dir / f"serve-{n}.log" for n in range(servers)]
        logs += [work_dir / f"worker-{n}.log" for n in range(workers)]
        exceptions = server_exceptions(logs)
        results["load"].update(
            job_workers=workers, server_tracebacks=sum(exceptions.values()), server_exceptions=exceptions
        )
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for path in logs:
                shutil.copy(path, args.logs / path.name)
    engine.dispose()
    return results


def _create_database() -> str:
    """A new database on the benchmark server that is kept (``--keep``)."""
    server = sa.engine.make_url(POSTGRES)
    name = f"glucoshare_population_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


def _drop(keep: Path) -> None:
    state = json.loads((keep / "state.json").read_text())
    server = sa.engine.make_url(POSTGRES)
    name = sa.engine.make_url(state["url"]).database
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    shutil.rmtree(keep)
    log(f"dropped {name} and {keep}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--workers", type=int, default=2, help="processes that import at once")
    parser.add_argument(
        "--clients", type=int, default=200, help="API clients of the load run (0: no load run)"
    )
    parser.add_argument("--seconds", type=float, default=600, help="length of the load run")
    parser.add_argument("--think", type=float, default=10.0, help="mean think time of a client, seconds")
    parser.add_argument("--servers", type=int, default=2, help="glucoshare serve processes in the load run")
    parser.add_argument(
        "--job-workers", type=int, default=1, help="glucoshare worker processes in the load run (if any)"
    )
    parser.add_argument("--repeat", type=int, default=20, help="calls per latency figure (PDF: half)")
    parser.add_argument("--out-section", type=Path, help="write the markdown section here")
    parser.add_argument("--json", type=Path, help="write every figure as JSON here")
    parser.add_argument(
        "--keep", type=Path, help="keep the database and its data directory here (reused when it exists)"
    )
    parser.add_argument("--logs", type=Path, help="copy the servers' logs of the load run here")
    parser.add_argument("--drop", type=Path, help="drop a database kept with --keep, and its directory")
    args = parser.parse_args()
    if args.drop:
        _drop(args.drop)
        return
    command = "python benchmarks/population.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="glucoshare-population-") as folder:
        work_dir = Path(folder)
        if args.keep is not None and (args.keep / "state.json").exists():
            state = State(**json.loads((args.keep / "state.json").read_text()))
            log(f"reusing the population kept in {args.keep} ({len(state.patient_ids):,} patients)")
            results = measure(state, args, work_dir)
        elif args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            url = _create_database()
            state = build(url, (args.keep / "data").resolve(), args)
            (args.keep / "state.json").write_text(json.dumps(dataclasses.asdict(state)))
            results = measure(state, args, work_dir)
        else:
            with scratch_postgres() as url:
                if url is None:
                    log("no PostgreSQL server answers: nothing measured")
                    sys.exit(1)
                state = build(url, work_dir / "data", args)
                results = measure(state, args, work_dir)
    lines = section(results, command)
    text = "\n".join(lines) + "\n"
    if args.out_section:
        args.out_section.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({"command": command, **results}, default=str))
    print(text)
    load_result = results.get("load")
    if load_result is not None:
        checks = load_result["checks"]
        clean = (
            not load_result["errors"]
            and checks["lost"]
            == checks["doubled"]
            == checks["half_stored_requests"]
            == checks["unexpected"]
            == 0
            and checks["audit_intact"]
        )
        log("load targets met" if clean else "load targets NOT met")


if __name__ == "__main__":
    main()
