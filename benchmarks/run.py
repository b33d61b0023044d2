"""Ingest benchmarks (``make bench``): write BENCHMARKS.md with the machine, the date and the figures.

Cases (issue 2): a 90-day Dexcom Clarity export (~26k readings) and a one-year, one-minute
LibreView-layout file (~525k readings), each imported end to end into SQLite and PostgreSQL in a
fresh process: records per second, peak memory of that process, and the ratio to merely reading the
same file with Python's ``csv`` module in the same run; for SQLite also the memory of the import
and its parse process together. Inputs come from the simulator and are kept
in ``benchmarks/.data`` between runs.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cores
import sqlalchemy as sa
from databases import POSTGRES, scratch_postgres

import analytics
import backup as backup_bench
import nightscout as nightscout_bench
import reports as report_bench
from glucoshare.config import Settings
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import inspect_file
from glucoshare.simulator import PatientProfile, simulate
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.glooko import GlookoOptions, write_glooko
from glucoshare.simulator.writers.libreview import LibreViewOptions, write_libreview
from glucoshare.simulator.writers.tandem import write_tandem_source

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
TARGET_RATE = 100_000
TARGET_RATIO = 5.0
TARGET_PEAK_MB = 300.0


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    timezone: str
    build: str


CASES = [
    Case("clarity_90d", "Dexcom Clarity, 90 days, 5-min CGM", "Europe/Berlin", "clarity"),
    Case("libreview_1y_1min", "LibreView layout, 1 year, 1-min CGM", "Europe/Berlin", "libreview"),
    Case(
        "glooko_1y",
        "Glooko export zip (Omnipod 5 pump, Dexcom G6), 1 year, 5-min CGM",
        "Europe/Berlin",
        "glooko",
    ),
    Case(
        "tandem_1y",
        "Tandem Source export zip (t:slim X2, Dexcom G6), 1 year, 5-min CGM",
        "Europe/Berlin",
        "tandem",
    ),
]
DAYS = {"clarity": 90, "libreview": 365, "glooko": 365, "tandem": 365}


def _profile(cgm: str, seed: int, therapy: str = "mdi") -> PatientProfile:
    return PatientProfile(
        name="Bench Mark",
        email="bench@example.org",
        birthdate=dt.date(1980, 1, 1),
        timezone="Europe/Berlin",
        therapy=therapy,  # type: ignore[arg-type]
        cgm=cgm,  # type: ignore[arg-type]
        control=0.5,
        seed=seed,
    )


def _export(case: Case, *, days: int, seed: int) -> WrittenExport:
    start = dt.date(2025, 1, 1)
    if case.build == "clarity":
        return write_clarity(simulate(_profile("dexcom_g6", seed), start=start, days=days))
    if case.build == "glooko":
        timeline = simulate(_profile("dexcom_g6", seed, "pump"), start=start, days=days)
        return write_glooko(timeline, GlookoOptions(serial="Omnipod 5", cgm_serial="Dexcom G6"))
    if case.build == "tandem":
        timeline = simulate(_profile("dexcom_g6", seed, "pump"), start=start, days=days)
        return write_tandem_source(timeline).zipped()
    timeline = simulate(_profile("libre3", seed), start=start, days=days, cgm_interval_s=60)
    return write_libreview(timeline, LibreViewOptions())


def build_input(case: Case) -> tuple[Path, Path]:
    """Write (or reuse) the input file of a case and its warm-up file (two days, another device)."""
    DATA.mkdir(exist_ok=True)
    suffix = ".zip" if case.build in ("glooko", "tandem") else ".csv"
    path = DATA / f"{case.name}{suffix}"
    warmup = DATA / f"{case.name}.warmup{suffix}"
    days = DAYS[case.build]
    if not path.exists():
        path.write_bytes(_export(case, days=days, seed=days).data)
    if not warmup.exists():
        warmup.write_bytes(_export(case, days=2, seed=days + 1).data)
    return path, warmup


def _texts(path: Path) -> list[bytes]:
    """The CSV files of an input: the file itself, or every member of a zip archive."""
    if not zipfile.is_zipfile(path):
        return [path.read_bytes()]
    with zipfile.ZipFile(path) as zf:
        return [zf.read(info) for info in zf.infolist() if not info.is_dir()]


def csv_read_seconds(path: Path) -> float:
    """Best of three: unpack (a zip), decode the file(s) and read every row with the csv module."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for data in _texts(path):
            for _row in csv.reader(io.StringIO(data.decode("utf-8-sig"))):
                pass
        best = min(best, time.perf_counter() - start)
    return best


def parse_seconds(path: Path, timezone: str) -> float:
    """Best of three: the import's work without storing (unpack, decode, detect, parse every record).

    ``inspect_file`` reads a file exactly as an import does and stores nothing, so this is the part
    of an import that the importer decides; the rest is storage, the same per record for every
    format.
    """
    settings = Settings(data_dir=DATA)
    incoming = IncomingFile(path.name, path.read_bytes())
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        inspect_file(settings, incoming, timezone=timezone)
        best = min(best, time.perf_counter() - start)
    return best


IN_PROCESS = {"GLUCOSHARE_PARSE_PROCESS_MIN_CHARS": str(10**15)}
"""The environment of an import that parses in its own process, as smaller files always do."""


def import_once(
    url: str,
    path: Path,
    warmup: Path,
    timezone: str,
    *,
    sample_memory: bool = False,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run one import in a fresh process (after a warm-up import) and return its report.

    With ``sample_memory`` the memory of the import and of its parse process is sampled as it runs
    (``peak_pss_both_mb``), which slows the import: its time is not used. ``env`` adds to the
    environment (:data:`IN_PROCESS`).
    """
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "import_once.py"),
            "--url",
            url,
            "--file",
            str(path),
            "--warmup",
            str(warmup),
            "--timezone",
            timezone,
            *(["--sample-memory"] if sample_memory else []),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def machine() -> dict[str, str]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    postgres = "not reachable"
    try:
        engine = sa.create_engine(POSTGRES)
        with engine.connect() as conn:
            postgres = str(conn.execute(sa.text("show server_version")).scalar())
        engine.dispose()
    except sa.exc.OperationalError:
        pass
    return {
        "CPU": f"{cpu} ({os.cpu_count()} cores)",
        "memory": memory,
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE.parent / "BENCHMARKS.md")
    parser.add_argument(
        "--runs", type=int, default=5, help="imports per case and engine; the best time and the median ratio"
    )
    args = parser.parse_args()
    rows: list[tuple[Case, str, dict[str, float] | None, float]] = []
    # Each time is paired with a csv read of the same file just before it, and each ratio is taken
    # within its pair: the machine's speed drifts over minutes (shared virtual machine), and a ratio
    # of two times measured far apart would carry that drift.
    parses: dict[str, tuple[float, float]] = {}
    floors: dict[str, tuple[float, float]] = {}
    two_cores = cores.run()
    for case in CASES:
        path, warmup = build_input(case)
        parse_csv = csv_read_seconds(path)
        parses[case.name] = (parse_seconds(path, case.timezone), parse_csv)
        for engine in ("sqlite", "postgresql"):
            reports = []
            for _ in range(args.runs):
                csv_seconds = csv_read_seconds(path)
                if engine == "sqlite":
                    db = DATA / "bench.db"
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{db}{suffix}").unlink(missing_ok=True)
                    report = import_once(f"sqlite:///{db}", path, warmup, case.timezone)
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{db}{suffix}").unlink(missing_ok=True)
                    here = import_once(f"sqlite:///{db}", path, warmup, case.timezone, env=IN_PROCESS)
                    report["in_process_seconds"] = here["seconds"]
                else:
                    with scratch_postgres() as url:
                        if url is None:
                            break
                        report = import_once(url, path, warmup, case.timezone)
                reports.append({**report, "csv_seconds": csv_seconds})
            if not reports:
                rows.append((case, engine, None, parse_csv))
                continue
            best = min(reports, key=lambda r: r["seconds"])
            best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in reports)
            best["ratio"] = statistics.median(r["seconds"] / r["csv_seconds"] for r in reports)
            if engine == "sqlite":
                best["in_process_seconds"] = min(r["in_process_seconds"] for r in reports)
            if engine == "sqlite":  # one more import, untimed, for the memory of both processes
                db = DATA / "bench.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                sampled = import_once(f"sqlite:///{db}", path, warmup, case.timezone, sample_memory=True)
                best["peak_pss_both_mb"] = sampled["peak_pss_both_mb"]
            rows.append((case, engine, best, best["csv_seconds"]))
            print(case.name, engine, json.dumps(best), file=sys.stderr)
            if engine == "sqlite":
                floor_csv = csv_read_seconds(path)
                floors[case.name] = (store_seconds(int(best["records"])), floor_csv)
    write_report(
        args.out,
        rows,
        parses=parses,
        floors=floors,
        two_cores=two_cores,
        measurements=analytics.run(),
        report_measurements=report_bench.run(),
        nightscout_measurements=nightscout_bench.run(),
        backup_measurements=backup_bench.run(patient_days=900),
    )


def store_seconds(records: int) -> float:
    """Best of three: storing ``records`` plain readings into a fresh SQLite file, no file or parsing."""
    best = float("inf")
    for _ in range(3):
        db = DATA / "store.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        out = subprocess.run(
            [
                sys.executable,
                str(HERE / "store_once.py"),
                "--url",
                f"sqlite:///{db}",
                "--records",
                str(records),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        best = min(best, float(json.loads(out.stdout)["seconds"]))
    return best


def _both(report: dict[str, float]) -> str:
    """The sampled memory of the import and its parse process, where it was measured."""
    both = report.get("peak_pss_both_mb")
    return "" if both is None else f"{both:.0f}"


def _in_process(report: dict[str, float]) -> str:
    """The best time of the same import parsed in one process, where it was measured."""
    seconds = report.get("in_process_seconds")
    return "" if seconds is None else f"{seconds:.2f}"


def _ratio(pair: tuple[float, float]) -> float:
    """A time over the csv read measured just before it."""
    return pair[0] / pair[1]


def storage_floor_lines(
    rows: list[tuple[Case, str, dict[str, float] | None, float]],
    *,
    parses: dict[str, tuple[float, float]],
    floors: dict[str, tuple[float, float]],
    two_cores: cores.CoreMeasurement,
) -> list[str]:
    """The two halves of an import, each measured alone against the ``csv`` read of the same file.

    ``parses`` holds the import without storing (``inspect_file``); ``floors`` the record writer
    alone storing as many plain readings (the cheapest record there is) into SQLite
    (``benchmarks/store_once.py``); each with the csv read measured just before it. An import does
    both, at once in two processes (``glucoshare.ingest.parse_process``), on two cores that do
    ``two_cores.throughput`` times the work of one while both are busy: the bound column.
    """
    lines = [
        (
            "Where the time of an import goes: the parse alone (`inspect_file`, no storing) and the "
            "storing alone (`benchmarks/store_once.py`: as many plain readings as the file holds, the "
            "cheapest record there is, in column blocks, no file and no parsing, into a fresh SQLite "
            "database), each as a multiple of the csv read of the same file. An import parses in a "
            "child process while it stores (a thread would not do: the parse holds the interpreter "
            "lock), plus the per-file work (an upload row, the sealed raw file, the audit event, for "
            "every member of a zip). On two cores an import takes at least the longer of the two "
            "halves plus that per-file work: every importer here hands its records over while it reads "
            "(Glooko and Tandem a chunk of 4,096 rows at a time, docs/architecture.md), so the store "
            "starts on the first rows. The store alone plus 1x (the read itself, which any parser "
            "does) is the least with any parser; a Glooko export's CGM rows are short, so its read is "
            "fast and its store alone already 3x, and each of its twelve members carries the per-file "
            "work."
        ),
        "",
        (
            "The bound is the least any import built of these two halves could take on this machine, "
            "with no per-file work at all and the two halves perfectly overlapped: at least the longer "
            "half, and at least the work of both at the rate of two busy cores, which here do "
            f"{two_cores.throughput:.2f}x the work of one (Machine): (parse + store) x "
            f"{two_cores.slowdown:.2f} / 2."
        ),
        "",
        "| case | csv read s | parse alone | store alone | parse + store | bound on two cores | import |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, engine, report, csv_s in rows:
        if engine != "sqlite" or report is None or case.name not in floors:
            continue
        parse, store = _ratio(parses[case.name]), _ratio(floors[case.name])
        bound = max(parse, store, (parse + store) / two_cores.throughput)
        lines.append(
            f"| {case.description} | {csv_s:.3f} | {parse:.1f}x | {store:.1f}x | {parse + store:.1f}x | "
            f"{bound:.1f}x | {report['ratio']:.1f}x |"
        )
    return lines


def write_report(
    out: Path,
    rows: list[tuple[Case, str, dict[str, float] | None, float]],
    *,
    parses: dict[str, tuple[float, float]],
    floors: dict[str, tuple[float, float]],
    two_cores: cores.CoreMeasurement,
    measurements: list[analytics.Measurement],
    report_measurements: list[analytics.Measurement],
    nightscout_measurements: list[analytics.Measurement],
    backup_measurements: list[analytics.Measurement],
) -> None:
    lines = [
        "# Benchmarks",
        "",
        (
            f"Run on {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} with `make bench` "
            "(`benchmarks/run.py`). Each import runs in a fresh process into an empty database, five "
            "times; the best time is shown and the median ratio (peak memory: the highest). Inputs are "
            "simulated (`glucoshare.simulator`). "
            "The machine is a shared virtual machine: repeated runs of the same import vary by about 20 %."
        ),
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in machine().items()]
    lines.append(f"- {cores.report_line(two_cores)}")
    lines += [
        "",
        "## Import, end to end",
        "",
        (
            "Time from reading the file's bytes to the committed transaction, in a process that has "
            "loaded its importer plugins and imported one small file (two days of another device, "
            "same format), as a running server has: decoding, format detection, "
            "parsing, time-zone resolution, deduplicating insert, raw-file storage and the audit event. "
            "The `csv` column is the time to unpack (a zip) and decode the same file(s) and read their "
            "rows with Python's `csv` module, measured just before each import (best of three); the "
            "row shows the fastest import and the csv read paired with it; the ratio is the median, "
            "over the runs, of each import over the csv read just before it, so that the machine's "
            "drift over minutes cancels out and one fast or slow read does not decide it. The `parse` column "
            "is the import without storing (unpack, decode, detect, parse every record: "
            "`inspect_file`), and the parse ratio is that over a csv read measured just before it."
        ),
        "",
        (
            "Files of at least `GLUCOSHARE_PARSE_PROCESS_MIN_CHARS` characters (default about 1 MB; "
            "every case here) are parsed in a forked child process while the importing process stores "
            "their records (`glucoshare.ingest.parse_process`). `peak RSS MB` is the importing "
            "process's own peak; `both processes MB` is the highest sum of the two processes' "
            "proportional set sizes (pages they share counted once), sampled every 5 ms in one more "
            "import that is not timed (SQLite only). `one process s` is the same import with the "
            "parse in the importing process (as smaller files are), run right after each import "
            "(best of the runs; SQLite only): what the second core gives."
        ),
        "",
        (
            "| case | database | records | seconds | records/s | csv read s | ratio | parse s "
            "| parse ratio | peak RSS MB | both processes MB | one process s |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, engine, report, csv_seconds in rows:
        parse = parses[case.name][0]
        if report is None:
            lines.append(
                f"| {case.description} | {engine} | not run (no server) | | | {csv_seconds:.3f} | | "
                f"{parse:.3f} | {_ratio(parses[case.name]):.1f} | | | |"
            )
            continue
        rate = report["records"] / report["seconds"]
        lines.append(
            f"| {case.description} | {engine} | {int(report['records']):,} | {report['seconds']:.2f} | "
            f"{rate:,.0f} | {csv_seconds:.3f} | {report['ratio']:.1f} | {parse:.3f} | "
            f"{_ratio(parses[case.name]):.1f} | {report['peak_rss_mb']:.0f} | {_both(report)} | "
            f"{_in_process(report)} |"
        )
    lines += [
        "",
        "## Targets (issues 2 and 8)",
        "",
        f"- end to end at least {TARGET_RATE:,} records/s into SQLite;",
        f"- within {TARGET_RATIO:.0f}x of the plain `csv` read;",
        f"- peak memory below {TARGET_PEAK_MB:.0f} MB for the one-year files.",
        "",
    ]
    for case, engine, report, _csv_seconds in rows:
        if report is None or engine != "sqlite":
            continue
        rate = report["records"] / report["seconds"]
        ratio = report["ratio"]
        parse_ratio = _ratio(parses[case.name])
        verdicts = [
            f"{rate:,.0f} records/s ({'met' if rate >= TARGET_RATE else 'NOT met'})",
            f"ratio {ratio:.1f} ({'met' if ratio <= TARGET_RATIO else 'NOT met'})",
            f"parse ratio {parse_ratio:.1f} ({'met' if parse_ratio <= TARGET_RATIO else 'NOT met'})",
        ]
        if DAYS[case.build] >= 365:  # the one-year files: the import and its parse process together
            peak = max(report["peak_rss_mb"], report.get("peak_pss_both_mb", 0.0))
            verdicts.append(f"peak {peak:.0f} MB ({'met' if peak < TARGET_PEAK_MB else 'NOT met'})")
        lines.append(f"- {case.description}, SQLite: " + "; ".join(verdicts) + ".")
    lines += ["", *storage_floor_lines(rows, parses=parses, floors=floors, two_cores=two_cores)]
    lines += ["", *analytics.report_lines(measurements)]
    lines += [
        (
            "Targets (issue 3): core metrics and bands for the cohort ≤ 0.15 s; MAGE for the cohort ≤ 2 s; "
            "every number of the stats document for one patient × 90 days ≤ 20 ms; a clinic's triage of "
            "10,000 patients from the aggregates ≤ 0.3 s."
        ),
        "",
        *report_bench.report_lines(report_measurements),
        *nightscout_bench.report_lines(nightscout_measurements),
        *backup_bench.report_lines(backup_measurements),
    ]
    # The population benchmark takes half an hour on its own (`make load`); its latest section is
    # kept in benchmarks/results/population.md and shown here as it was measured.
    population = HERE / "results" / "population.md"
    if population.exists():
        lines += ["", population.read_text(encoding="utf-8").strip()]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
