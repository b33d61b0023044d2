"""The stats document (CONTRACT.md ``stats --json``) and the population triage, on both databases.

Every figure checked here is recomputed independently from the simulator's own record of what it
wrote, so a wrong query, period or time zone shows up as a different number.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.audit.models import AuditEvent
from glucoshare.cli import app
from glucoshare.config import Settings
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_file, remove_upload
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.libreview import LibreViewOptions, write_libreview
from glucoshare.summaries.models import DailySummary, SummaryBacklog
from glucoshare.summaries.service import patient_stats, population, refresh_outdated, resolve_period
from tests.ingest.helpers import profile, store_export

CONTRACT_KEYS = [
    "patient", "from", "to", "days", "readings", "sensor_active_pct", "sufficient_data",
    "mean_mgdl", "sd_mgdl", "cv_pct", "gmi_pct",
    "time_very_low_pct", "time_low_pct", "time_in_range_pct", "time_high_pct",
    "time_very_high_pct", "time_tight_range_pct", "time_below_range_pct", "time_above_range_pct",
    "gri", "gri_hypo", "gri_hyper", "lbgi", "hbgi", "mage_mgdl", "modd_mgdl", "conga1_mgdl", "j_index",
    "hypo_events_l1", "hypo_events_l2", "hyper_events_l1", "hyper_events_l2",
    "insulin_total_daily_u", "insulin_basal_pct", "carbs_daily_g",
]  # fmt: skip
ZONE = "Europe/Berlin"
runner = CliRunner()


def _cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _patient(session: Session, email: str = "stats@example.org") -> Patient:
    return add_patient(session, validate_patient(email=email, name="Stats Person", timezone=ZONE))


def _import(session: Session, settings: Settings, patient: Patient, export: WrittenExport) -> None:
    store_export(session, settings, patient, export)


def _local_date(utc_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(utc_ms / 1000, tz=zoneinfo.ZoneInfo(ZONE)).date()


def _expected_cgm(export: WrittenExport, first: dt.date, last: dt.date) -> np.ndarray:
    return np.array(
        [
            e.value
            for e in export.expected
            if e.type == "cbg" and e.subtype == "sensor" and first <= _local_date(e.utc_ms) <= last
        ]
    )


@pytest.fixture(scope="module")
def clarity() -> WrittenExport:
    return write_clarity(simulate(profile(seed=33, control=0.4), start=dt.date(2025, 3, 20), days=20))


def test_stats_json_is_the_contract_document(
    cli_env: Settings, clarity: WrittenExport, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(clarity.data)
    assert _cli("patients", "add", "--email", "kim@example.org", "--name", "Kim", "--timezone", ZONE)[0] == 0
    code, _, err = _cli("import", str(path), "--patient", "kim@example.org", "--json")
    assert code == 0, err
    code, out, err = _cli("stats", "--patient", "kim@example.org", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert list(document)[: len(CONTRACT_KEYS)] == CONTRACT_KEYS
    latest = max(e.utc_ms for e in clarity.expected if e.type == "cbg")
    last = _local_date(latest)
    first = last - dt.timedelta(days=13)
    assert (document["from"], document["to"], document["days"]) == (first.isoformat(), last.isoformat(), 14)
    values = _expected_cgm(clarity, first, last)
    assert document["readings"] == values.size
    assert document["mean_mgdl"] == pytest.approx(values.mean())
    assert document["sd_mgdl"] == pytest.approx(values.std(ddof=1))
    assert document["time_in_range_pct"] == pytest.approx(100 * np.mean((values >= 70) & (values <= 180)))
    assert document["time_very_low_pct"] == pytest.approx(100 * np.mean(values < 54))
    assert document["gmi_pct"] == pytest.approx(3.31 + 0.02392 * values.mean())
    assert document["sufficient_data"] is (document["sensor_active_pct"] >= 70)
    assert isinstance(document["hypo_events_l1"], int)
    assert document["target"]["scheme"] == "standard"


def test_explicit_dates_are_inclusive_local_days(
    cli_env: Settings, clarity: WrittenExport, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(clarity.data)
    _cli("patients", "add", "--email", "kim@example.org", "--name", "Kim", "--timezone", ZONE)
    _cli("import", str(path), "--patient", "kim@example.org")
    code, out, err = _cli(
        "stats", "--patient", "kim@example.org", "--from", "2025-03-29", "--to", "2025-03-31", "--json"
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["days"] == 3
    # 2025-03-30 is the spring-forward day in Berlin: 23 hours of readings.
    values = _expected_cgm(clarity, dt.date(2025, 3, 29), dt.date(2025, 3, 31))
    assert document["readings"] == values.size
    assert document["mean_mgdl"] == pytest.approx(values.mean())
    assert document["sufficient_data"] is False  # fewer than 14 days


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--patient", "nobody@example.org"), "no patient"),
        (("--patient", "kim@example.org", "--days", "0"), "--days"),
        (("--patient", "kim@example.org", "--from", "2025-02-30"), "--from"),
        (("--patient", "kim@example.org", "--from", "2025-03-10", "--to", "2025-03-01"), "before"),
    ],
)
def test_bad_requests_exit_2_with_one_line(cli_env: Settings, args: tuple[str, ...], message: str) -> None:
    _cli("patients", "add", "--email", "kim@example.org", "--name", "Kim", "--timezone", ZONE)
    code, out, err = _cli("stats", *args, "--json")
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_patient_without_data_gets_nulls_not_an_error(session: Session) -> None:
    patient = _patient(session)
    stats = patient_stats(session, patient, resolve_period(session, patient), actor="test")
    assert stats.readings == 0
    assert stats.mean_mgdl is None
    assert stats.time_in_range_pct is None
    assert stats.sensor_active_pct == 0.0
    assert stats.sufficient_data is False


def test_mmol_readings_are_judged_on_the_printed_cutoffs(session: Session, settings: Settings) -> None:
    timeline = simulate(profile(seed=8, control=0.3, cgm="libre2"), start=dt.date(2025, 6, 1), days=6)
    export = write_libreview(timeline, LibreViewOptions(units="mmol/L"))
    patient = _patient(session)
    _import(session, settings, patient, export)
    period = resolve_period(session, patient, first=dt.date(2025, 6, 2), last=dt.date(2025, 6, 5))
    stats = patient_stats(session, patient, period, actor="test")
    mgdl = _expected_cgm(export, period.first, period.last)
    mmol = np.round(mgdl / 18.01559, 1)  # the file's values, as written
    assert stats.readings == mgdl.size
    assert stats.time_in_range_pct == pytest.approx(100 * np.mean((mmol >= 3.9) & (mmol <= 10.0)))
    assert stats.time_low_pct == pytest.approx(100 * np.mean((mmol >= 3.0) & (mmol < 3.9)))


def test_every_stats_read_is_audited(session: Session, settings: Settings, clarity: WrittenExport) -> None:
    patient = _patient(session)
    _import(session, settings, patient, clarity)
    patient_stats(session, patient, resolve_period(session, patient, days=7), actor="clinician:1")
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "summaries:stats:read")).one()
    assert (event.actor, event.patient_id) == ("clinician:1", patient.id)
    assert "mean" not in json.dumps(event.details)  # no health data in the trail


def test_daily_aggregates_follow_imports_and_deletions(
    session: Session, settings: Settings, clarity: WrittenExport
) -> None:
    patient = _patient(session)
    upload = import_file(
        session,
        settings=settings,
        patient=patient,
        incoming=IncomingFile(clarity.file_name, clarity.data),
        timezone=None,
        actor="test",
    )
    assert session.get(SummaryBacklog, patient.id) is not None
    assert refresh_outdated(session) == 1
    assert session.get(SummaryBacklog, patient.id) is None
    readings = session.scalar(
        select(func.sum(DailySummary.readings)).where(DailySummary.patient_id == patient.id)
    )
    assert readings == sum(1 for e in clarity.expected if e.type == "cbg")
    remove_upload(session, settings=settings, upload_id=upload.id, actor="test")
    refresh_outdated(session)
    assert session.scalar(select(func.count()).select_from(DailySummary)) == 0


def test_aggregates_give_the_same_figures_as_the_readings(
    session: Session, settings: Settings, clarity: WrittenExport
) -> None:
    patient = _patient(session)
    _import(session, settings, patient, clarity)
    latest = max(e.utc_ms for e in clarity.expected if e.type == "cbg")
    result = population(session, days=7, now_ms=latest).out()  # today is the day of the latest reading
    (row,) = result.patients
    period = resolve_period(session, patient, days=7)
    stats = patient_stats(session, patient, period, actor="test")
    assert row.current.readings == stats.readings
    assert row.current.mean_mgdl == pytest.approx(stats.mean_mgdl)
    assert row.current.sd_mgdl == pytest.approx(stats.sd_mgdl)
    assert row.current.time_in_range_pct == pytest.approx(stats.time_in_range_pct)
    assert row.current.time_tight_range_pct == pytest.approx(stats.time_tight_range_pct)


def test_triage_puts_each_patient_in_the_first_category_that_matches(
    session: Session, settings: Settings
) -> None:
    start = dt.date(2025, 4, 1)
    people = {
        "steady@example.org": profile(seed=1, control=0.95),
        "lows@example.org": profile(seed=2, control=0.05),
        "nodata@example.org": None,
    }
    latest = 0
    for email, person in people.items():
        patient = _patient(session, email)
        if person is not None:
            export = write_clarity(simulate(person, start=start, days=16))
            _import(session, settings, patient, export)
            latest = max(latest, *(e.utc_ms for e in export.expected if e.type == "cbg"))
    result = population(session, days=14, now_ms=latest).out()
    category = {p.email: p.category for p in result.patients}
    assert category["nodata@example.org"] == "no_data"
    assert category["lows@example.org"] in {"very_low", "any_low", "very_high", "any_high"}
    assert category["steady@example.org"] not in {"no_data", "low_cgm_use"}
    assert sum(result.counts.values()) == 3
    order = [p.category for p in result.patients]
    ranks = [list(result.counts).index(c) for c in order]
    assert ranks == sorted(ranks)


def test_compare_puts_a_period_beside_the_one_before(
    cli_env: Settings, clarity: WrittenExport, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(clarity.data)
    _cli("patients", "add", "--email", "kim@example.org", "--name", "Kim", "--timezone", ZONE)
    _cli("import", str(path), "--patient", "kim@example.org")
    code, out, err = _cli("compare", "--patient", "kim@example.org", "--days", "7", "--json")
    assert code == 0, err
    document = json.loads(out)
    now, before = document["current"], document["previous"]
    assert dt.date.fromisoformat(before["to"]) == dt.date.fromisoformat(now["from"]) - dt.timedelta(days=1)
    assert before["days"] == now["days"] == 7
    for name in ("time_in_range_pct", "mean_mgdl", "readings"):
        assert document["changes"][name] == pytest.approx(now[name] - before[name])
    values = _expected_cgm(
        clarity, dt.date.fromisoformat(before["from"]), dt.date.fromisoformat(before["to"])
    )
    assert before["mean_mgdl"] == pytest.approx(values.mean())


def test_patterns_come_with_dates_and_windows(session: Session, settings: Settings) -> None:
    export = write_clarity(simulate(profile(seed=5, control=0.05), start=dt.date(2025, 6, 1), days=14))
    patient = _patient(session)
    _import(session, settings, patient, export)
    stats = patient_stats(session, patient, resolve_period(session, patient, days=14), actor="test")
    assert stats.patterns, "a poorly controlled fortnight shows patterns"
    for pattern in stats.patterns:
        assert pattern.occurrences == len(pattern.dates)
        assert all(stats.from_ <= date <= stats.to for date in pattern.dates)
        assert len(pattern.window_start) == len(pattern.window_end) == 5


def test_the_human_output_speaks_the_patients_unit(
    cli_env: Settings, clarity: WrittenExport, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(clarity.data)
    _cli(
        "patients",
        "add",
        "--email",
        "kim@example.org",
        "--name",
        "Kim",
        "--timezone",
        ZONE,
        "--units",
        "mmol/L",
    )
    _cli("import", str(path), "--patient", "kim@example.org")
    code, out, err = _cli("stats", "--patient", "kim@example.org")
    assert code == 0, err
    mean = json.loads(_cli("stats", "--patient", "kim@example.org", "--json")[1])["mean_mgdl"]
    assert f"mean {mean / 18.01559:.1f} mmol/L" in out
    assert "mg/dL" not in out


def test_a_period_after_the_last_reading_has_no_sensor_use(
    session: Session, settings: Settings, clarity: WrittenExport
) -> None:
    patient = _patient(session)
    _import(session, settings, patient, clarity)
    period = resolve_period(session, patient, first=dt.date(2025, 6, 1), last=dt.date(2025, 6, 14))
    stats = patient_stats(session, patient, period, actor="test")
    assert (stats.readings, stats.sensor_active_pct, stats.sufficient_data) == (0, 0.0, False)
