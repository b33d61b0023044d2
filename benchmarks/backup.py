"""Backup and restore benchmarks (issue 10): time, size and memory of ``glucoshare backup`` and ``restore``.

A database of N simulated patient-days (patients of 30 days each: Dexcom Clarity exports with
meals, insulin and 5-minute CGM readings, imported through the import service, so the raw files,
the audit trail and the summaries are there as in use) is built on SQLite and on PostgreSQL.
Then, each as an operator runs it, in a process of its own: ``glucoshare backup --out FILE`` of
it, ``glucoshare restore FILE`` into a new database of the same engine, and the SQLite backup
restored into PostgreSQL (the move from the embedded default to production). Seconds are the
commands' own (``--json``: interpreter start-up excluded); the note gives the backup's size and
the process's peak memory (which stays flat as the database grows: tables are streamed).

``run(patient_days)`` is called by ``benchmarks/run.py``; ``python benchmarks/backup.py [N]`` runs
it alone and prints the figures (default N = 900).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from databases import scratch_postgres

from analytics import Measurement, measurement_table
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file
from glucoshare.simulator import PatientProfile, simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.vault.keyfile import load_or_create

DAYS_PER_PATIENT = 30
DEFAULT_PATIENT_DAYS = 900


def build(url: str, data_dir: Path, patient_days: int) -> int:
    """Fill the database at ``url`` with ``patient_days`` simulated patient-days; return the records."""
    settings = Settings(database_url=url, data_dir=data_dir)
    engine = create_db_engine(url, keyring=load_or_create(settings.effective_secret_key_file))
    upgrade(engine, data_dir=settings.data_dir)
    stored = 0
    try:
        for number in range(-(-patient_days // DAYS_PER_PATIENT)):
            days = min(DAYS_PER_PATIENT, patient_days - number * DAYS_PER_PATIENT)
            profile = PatientProfile(
                name=f"Bench Patient {number}",
                email=f"bench{number}@example.org",
                birthdate=dt.date(1980, 1, 1),
                timezone="Europe/Berlin",
                therapy="mdi",
                cgm="dexcom_g6",
                control=0.5,
                seed=number + 1,
            )
            export = write_clarity(simulate(profile, start=dt.date(2025, 1, 1), days=days))
            with session_scope(engine) as session:
                patient = add_patient(
                    session,
                    validate_patient(email=profile.email, name=profile.name, timezone=profile.timezone),
                )
                upload = import_file(
                    session,
                    settings=settings,
                    patient=patient,
                    incoming=IncomingFile(export.file_name, export.data),
                    timezone=None,
                    actor="bench",
                )
                stored += upload.new
    finally:
        engine.dispose()
    return stored


def command(url: str, data_dir: Path, key_file: Path, *args: str) -> tuple[dict[str, Any], float]:
    """Run ``glucoshare ARGS --json`` in a process of its own: its document and its peak memory (MB)."""
    env = {
        **os.environ,
        "GLUCOSHARE_DATABASE_URL": url,
        "GLUCOSHARE_DATA_DIR": str(data_dir),
        "GLUCOSHARE_SECRET_KEY_FILE": str(key_file),
    }
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "glucoshare", *args, "--json"], env=env, stdout=out, stderr=err
        )
        peak_kib = 0
        while process.poll() is None:
            peak_kib = max(peak_kib, _high_water_kib(process.pid))
            time.sleep(0.01)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            msg = f"glucoshare {args[0]} failed: {err.read().decode(errors='replace').strip()}"
            raise RuntimeError(msg)
        return json.loads(out.read()), peak_kib / 1024


def _high_water_kib(pid: int) -> int:
    """The peak resident memory of process ``pid`` so far (``VmHWM``, KiB; 0 once it has ended).

    Read while the command runs, since ``getrusage`` of a child would also count the memory of
    this (large) benchmark process that the child shared between ``fork`` and ``exec``: Linux
    carries that over ``exec``. ``VmHWM`` belongs to the command's own address space; it only
    grows, so the last reading before the end is within 10 ms of the peak.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def _database(engine: str, folder: Path, name: str) -> Iterator[str | None]:
    if engine == "sqlite":
        yield f"sqlite:///{folder / name / 'glucoshare.db'}"
        return
    with scratch_postgres() as url:
        yield url


def _measure(engine: str, targets: tuple[str, ...], folder: Path, patient_days: int) -> list[Measurement]:
    """Build on ``engine``, back it up, and restore the backup into a new database of each of ``targets``."""
    label = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    source_dir = folder / "source"
    key_file = source_dir / "master.key"
    backup = folder / "bench.glucoshare-backup"
    with _database(engine, folder, "source") as url:
        if url is None:
            return []
        records = build(url, source_dir, patient_days)
        made, backup_mb = command(url, source_dir, key_file, "backup", "--out", str(backup))
    rows = sum(made["counts"].values())
    raw_files = made["counts"]["sealed_files"]  # kept raw files are rows
    what = f"{patient_days} patient-days ({records:,} records, {rows:,} rows, {raw_files} raw files)"
    measurements = [
        Measurement(
            f"backup_{engine}",
            f"`glucoshare backup` of {what}, {label[engine]}",
            made["seconds"],
            None,
            f"{made['bytes'] / 1e6:,.1f} MB file; peak memory {backup_mb:,.0f} MB",
        )
    ]
    for target in targets:
        with _database(target, folder, f"target_{target}") as target_url:
            if target_url is None:
                continue
            target_dir = folder / f"target_{target}"
            restored, restore_mb = command(target_url, target_dir, key_file, "restore", str(backup))
        measurements.append(
            Measurement(
                f"restore_{engine}_to_{target}",
                f"`glucoshare restore` of that backup, {label[engine]} into a new {label[target]} database",
                restored["seconds"],
                None,
                f"checked, restored and verified; peak memory {restore_mb:,.0f} MB",
            )
        )
    return measurements


def run(patient_days: int = DEFAULT_PATIENT_DAYS) -> list[Measurement]:
    """Every backup and restore measurement for a database of ``patient_days`` simulated patient-days."""
    measurements = []
    for engine, targets in (("sqlite", ("sqlite", "postgresql")), ("postgresql", ("postgresql",))):
        with tempfile.TemporaryDirectory() as folder:
            measurements += _measure(engine, targets, Path(folder), patient_days)
    for m in measurements:
        print(m.key, json.dumps({"seconds": m.seconds, "note": m.note}), file=sys.stderr)
    return measurements


def report_lines(measurements: list[Measurement]) -> list[str]:
    """The BENCHMARKS.md section."""
    intro = (
        "`glucoshare backup` and `glucoshare restore` as an operator runs them, each in a process of "
        "its own, on a database of simulated patients (30 days each, Dexcom Clarity exports imported "
        "with their raw files) (`benchmarks/backup.py`). Seconds are the commands' own; a restore "
        "includes checking the whole file first and verifying every count and the audit chain after. "
        "The cross-engine line is the move from SQLite to PostgreSQL."
    )
    return measurement_table("Backup and restore", intro, measurements)


if __name__ == "__main__":
    days = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATIENT_DAYS
    print("\n".join(report_lines(run(days))))
