"""Reports built from real imported data: the numbers the analytics computed, in the PDF and HTML."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.audit.models import AuditEvent
from glucoshare.audit.tags import AuditTag
from glucoshare.config import Settings
from glucoshare.devices.models import Device
from glucoshare.records.models import Record
from glucoshare.records.vocabulary import mgdl_to_mmol
from glucoshare.reports.errors import InvalidReportError
from glucoshare.reports.render import render_body, render_html, render_pdf
from glucoshare.reports.service import ReportOptions, build_report
from glucoshare.reports.views import REPORT_KINDS, Report, ReportKind
from glucoshare.summaries.data import load_cgm
from glucoshare.summaries.schemas import StatsOut
from glucoshare.summaries.service import patient_stats, resolve_period
from glucoshare.summaries.stats import Period
from tests.reports.helpers import START, cgm_patient, keep_picture, pdf_pages, pdf_text, pump_patient


def _period(session: Session, patient: Patient, days: int = 14) -> Period:
    return resolve_period(session, patient, days=days)


def _report(
    session: Session, patient: Patient, kind: ReportKind, period: Period, **options: object
) -> Report:
    return build_report(session, patient, kind, period, actor="test", options=ReportOptions(**options))  # type: ignore[arg-type]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture
def ada(session: Session, settings: Settings) -> Patient:
    return cgm_patient(session, settings)


def _stats(session: Session, patient: Patient, period: Period) -> StatsOut:
    return patient_stats(session, patient, period, actor="test")


def test_the_agp_pdf_is_one_page_with_the_numbers_of_the_analytics(
    session: Session, ada: Patient, tmp_path: Path
) -> None:
    period = _period(session, ada)
    stats = _stats(session, ada, period)
    assert stats.sufficient_data
    pdf = render_pdf(_report(session, ada, "agp", period))
    assert pdf_pages(pdf, tmp_path) == 1
    text = pdf_text(pdf, tmp_path)
    flat = _squash(text)
    assert "Ada Example" in text
    assert "29 Feb 1984" in text
    assert f"{stats.mean_mgdl:.0f} mg/dL" in text
    assert f"{stats.gmi_pct:.1f} %" in text
    assert f"{stats.cv_pct:.1f} %" in text
    assert f"{stats.sensor_active_pct:.1f} %" in text
    for value in (stats.time_in_range_pct, stats.time_high_pct, stats.time_very_high_pct, stats.time_low_pct):
        assert value is not None
        assert f"{value:.0f}%" in flat
    assert "Ambulatory glucose profile" in text
    assert "Daily glucose profiles" in text
    assert "not enough" not in text.lower()
    keep_picture(pdf, "agp-cgm-only", tmp_path)


def test_a_mmol_patient_reads_mmol_and_the_printed_cut_offs(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    patient = cgm_patient(session, settings, units="mmol/L", email="mmol@example.org")
    period = _period(session, patient)
    stats = _stats(session, patient, period)
    html = render_html(_report(session, patient, "agp", period))
    assert stats.mean_mgdl is not None
    assert f"{mgdl_to_mmol(stats.mean_mgdl):.1f} mmol/L" in html
    assert "Target 3.9–10.0" in html
    assert "Very low &lt;3.0" in html
    assert "mg/dL)" not in html.split("Glucose metrics")[1].split("Ambulatory")[0]
    mg = render_html(_report(session, patient, "agp", period, unit="mg/dL"))
    assert f"{stats.mean_mgdl:.0f} mg/dL" in mg


def test_an_empty_period_says_so_and_shows_no_numbers(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    patient = add_patient(session, validate_patient(email="none@example.org", name="No Data", timezone="UTC"))
    period = _period(session, patient)
    report = _report(session, patient, "agp", period)
    assert report.notices
    assert "No CGM readings" in report.notices[0]
    html = render_html(report)
    assert "Average glucose" not in html
    assert "Ambulatory glucose profile" not in html
    text = pdf_text(render_pdf(report), tmp_path)
    assert "nothing to show" in text


def test_a_few_hours_of_data_give_no_figures(session: Session, ada: Patient) -> None:
    cgm = load_cgm(session, ada.id, ada.timezone, 0, 2**62)
    first = int(cgm.utc_ms[0])
    devices = select(Device.seq).where(Device.patient_id == ada.id).scalar_subquery()
    session.execute(  # only the first six hours of readings arrived
        delete(Record).where(Record.device_seq.in_(devices), Record.time_ms > first + 6 * 3_600_000)
    )
    period = _period(session, ada)
    report = _report(session, ada, "agp", period)
    assert "too little for any figure" in report.notices[0]
    assert [section.title for section in report.sections] == ["CGM wear"]
    assert "Average glucose" not in render_html(report)


def test_less_than_14_days_shows_figures_under_a_notice_without_gmi(session: Session, ada: Patient) -> None:
    period = _period(session, ada, days=5)
    report = _report(session, ada, "agp", period)
    assert any("Less data than the consensus" in n for n in report.notices)
    metrics = next(
        s.side for s in report.sections if s.side is not None and s.side.title == "Glucose metrics"
    )
    assert metrics is not None
    gmi = next(f for f in metrics.figures if f.label.startswith("Glucose management"))
    assert gmi.value == "–"
    assert gmi.note is not None
    assert "14 days" in gmi.note
    average = next(f for f in metrics.figures if f.label == "Average glucose")
    assert average.value.endswith("mg/dL")


@pytest.mark.parametrize("kind", REPORT_KINDS)
def test_every_report_renders_as_html_and_pdf(
    session: Session, settings: Settings, tmp_path: Path, kind: ReportKind
) -> None:
    patient = pump_patient(session, settings)
    period = _period(session, patient, days=3 if kind == "daily" else 14)
    report = _report(session, patient, kind, period)
    body = render_body(report)
    assert report.header.title in body
    assert "<script" not in body
    pdf = render_pdf(report)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf, tmp_path)
    assert report.header.title in text
    assert "Pat Pump" in text
    keep_picture(pdf, kind, tmp_path)
    if kind == "daily":
        assert pdf_pages(pdf, tmp_path) >= period.days


def test_the_daily_view_draws_doses_basal_and_carbs_of_each_day(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    patient = pump_patient(session, settings)
    period = _period(session, patient, days=2)
    report = _report(session, patient, "daily", period)
    days = [s for s in report.sections]
    assert len(days) == 2
    assert not days[0].new_page
    assert days[1].new_page
    for day in days:
        assert day.chart is not None
        chart = str(day.chart)
        assert 'class="scheduled"' in chart or 'class="automated"' in chart or 'class="temp"' in chart
        assert 'class="bolus"' in chart
        assert day.table is not None
        assert any("bolus" in row[1] for row in day.table.rows)
        insulin = next(f for f in day.figures if f.label == "Insulin")
        assert insulin.value.endswith(" U")
    assert report.landscape


def test_the_daily_view_says_when_a_day_has_no_data(session: Session, ada: Patient) -> None:
    before = START - dt.timedelta(days=3)
    report = _report(session, ada, "daily", resolve_period(session, ada, first=before, last=before))
    assert report.sections[0].sentences == ("No data on this day.",)
    assert report.sections[0].chart is None


def test_the_overlay_keeps_only_the_chosen_weekdays(session: Session, ada: Patient) -> None:
    period = _period(session, ada, days=14)
    everything = _report(session, ada, "overlay", period)
    weekend = _report(session, ada, "overlay", period, weekdays=frozenset({5, 6}))
    assert any("Sat, Sun" in n for n in weekend.notices)

    def readings(report: Report) -> int:
        table = next(s.table for s in report.sections if s.table is not None)
        return sum(int(row[-1].replace(",", "")) for row in table.rows)

    cgm = load_cgm(session, ada.id, ada.timezone, period.start_ms, period.end_ms)
    weekdays = (cgm.local_ms // 86_400_000 + 3) % 7
    assert readings(weekend) == int(np.isin(weekdays, [5, 6]).sum())
    assert readings(everything) == cgm.mgdl.size
    with pytest.raises(InvalidReportError):
        _report(session, ada, "overlay", period, weekdays=frozenset({7}))


def test_progress_compares_the_period_with_the_one_before(session: Session, ada: Patient) -> None:
    period = _period(session, ada, days=7)
    before = resolve_period(
        session, ada, first=period.first - dt.timedelta(days=7), last=period.first - dt.timedelta(days=1)
    )
    now_stats, old_stats = _stats(session, ada, period), _stats(session, ada, before)
    report = _report(session, ada, "progress", period)
    table = report.sections[0].table
    assert table is not None
    row = next(r for r in table.rows if r[0].startswith("Time in range"))
    assert now_stats.time_in_range_pct is not None
    assert old_stats.time_in_range_pct is not None
    assert row[1] == f"{old_stats.time_in_range_pct:.0f}"
    assert row[2] == f"{now_stats.time_in_range_pct:.0f}"
    delta = round(now_stats.time_in_range_pct) - round(old_stats.time_in_range_pct)
    expected = "±0" if delta == 0 else f"{'+' if delta > 0 else '−'}{abs(delta)}"
    assert row[3] == expected
    assert row[4] == ("about the same" if delta == 0 else "better" if delta > 0 else "worse")


def test_patterns_show_each_finding_with_its_days(session: Session, ada: Patient) -> None:
    period = _period(session, ada)
    stats = _stats(session, ada, period)
    report = _report(session, ada, "patterns", period)
    titles = [s.title for s in report.sections]
    assert titles[0] == "Glucose events"
    events = {f.label: f.value for f in report.sections[0].figures}
    assert events["Low episodes <70 mg/dL (level 1)"] == str(stats.hypo_events_l1)
    for pattern in stats.patterns:
        section = next(s for s in report.sections if s.title == pattern.summary)
        assert section.chart is not None
        assert all(dt.date.fromisoformat(d).strftime("%b %Y") in section.sentences[1] for d in pattern.dates)
    if not stats.patterns:
        assert "Recurring patterns" in titles


def test_settings_report_shows_insulin_and_the_calculator_settings(
    session: Session, settings: Settings
) -> None:
    patient = pump_patient(session, settings)
    period = _period(session, patient)
    stats = _stats(session, patient, period)
    report = _report(session, patient, "settings", period)
    insulin = report.sections[0]
    assert insulin.title == "Insulin and carbohydrate"
    total = next(f for f in insulin.figures if f.label == "Total insulin per day")
    assert stats.insulin_total_daily_u is not None
    assert total.value == f"{stats.insulin_total_daily_u:.1f} U"
    titles = " ".join(s.title for s in report.sections)
    assert "Carbohydrate ratios" in titles
    assert "Insulin sensitivity factors" in titles


def test_every_report_is_an_audited_read(session: Session, ada: Patient) -> None:
    period = _period(session, ada)
    _report(session, ada, "overlay", period)
    event = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == AuditTag.REPORT_READ.value)
        .order_by(AuditEvent.id.desc())
    ).first()
    assert event is not None
    assert event.patient_id == ada.id
    assert event.details["report"] == "overlay"
    assert event.details["from"] == period.first.isoformat()
