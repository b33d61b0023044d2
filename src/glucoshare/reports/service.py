"""Build a patient's reports from the analytics: AGP, daily view, trends, patterns, progress, settings.

Every number comes from the same computation as the stats document (:func:`compute_stats`), so a
report and ``glucoshare stats`` never disagree. A report with too little data says so and leaves
out what would mislead (the rules are in docs/reports.md):

* no CGM reading in the period: no glucose figures or charts at all;
* less than 24 hours of readings: the same (a day's worth is the least any figure stands on);
* less than 14 days or less than 70 % of the period worn (International Consensus, Battelino
  2019): the figures are shown under a notice, and GMI is left out (it estimates a 3-month HbA1c).

Every built report is an audited read of the patient's data. Services never commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
from sqlalchemy.orm import Session

from glucoshare import __version__
from glucoshare.accounts.models import Patient
from glucoshare.analytics.agp import agp, daily_profiles, time_of_day_bins
from glucoshare.analytics.ranges import IN_RANGE, MGDL_CUTOFFS, TargetRange, classify
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.reports.charts import (
    RangeRow,
    agp_chart,
    comparison_chart,
    daily_profiles_chart,
    day_chart,
    time_in_ranges_bar,
    trends_chart,
    window_chart,
)
from glucoshare.reports.data import PeriodRecords, load_period_records
from glucoshare.reports.errors import InvalidReportError
from glucoshare.reports.settings import settings_sections
from glucoshare.reports.units import DASH, Glucose, Unit, duration_per_day, number, pct
from glucoshare.reports.views import TITLES, Figure, Header, Report, ReportKind, Section, Table
from glucoshare.summaries.data import CgmArrays, latest_cgm_ms, load_cgm, load_therapy
from glucoshare.summaries.schemas import StatsOut
from glucoshare.summaries.service import previous_period, target_of
from glucoshare.summaries.stats import Period, compute_stats

DAY_MS = 86_400_000
MINUTE_MS = 60_000
EPOCH = dt.date(1970, 1, 1)
MIN_HOURS = 24
"""Readings covering less than this many hours give no figures (a notice says so)."""
DAILY_MAX_DAYS = 31
"""The daily view prints at most this many days (the last ones of the period)."""
PROFILE_DAYS = 14
"""The AGP's daily glucose profiles show the last 14 days (IDC AGP v5)."""
MEAN_GOAL_MGDL = 154.0
"""Mean glucose that corresponds to a GMI of 7 % (Bergenstal 2018), the AGP's goal."""
OVERLAY_TRACES_MAX_DAYS = 28
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclasses.dataclass(frozen=True, slots=True)
class ReportOptions:
    """What the reader chose besides the period."""

    unit: Unit | None = None
    """mg/dL or mmol/L; ``None``: the patient's display unit."""
    weekdays: frozenset[int] | None = None
    """Trends only: the weekdays to include (0 = Monday); ``None``: all."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Context:
    session: Session
    patient: Patient
    period: Period
    glucose: Glucose
    target: TargetRange
    cgm: CgmArrays
    stats: StatsOut


def build_report(
    session: Session,
    patient: Patient,
    kind: ReportKind,
    period: Period,
    *,
    actor: str,
    options: ReportOptions | None = None,
    output: str = "html",
) -> Report:
    """The report ``kind`` of ``patient`` over ``period``; the read is audited (``output``: html or pdf)."""
    options = options or ReportOptions()
    if options.weekdays is not None and (not options.weekdays or not options.weekdays <= set(range(7))):
        msg = "weekdays: choose at least one of 0 (Monday) to 6 (Sunday)"
        raise InvalidReportError(msg)
    unit: Unit = options.unit or ("mmol/L" if patient.display_units == "mmol/L" else "mg/dL")
    context = _context(session, patient, period, Glucose(unit))
    builders = {
        "agp": _agp,
        "daily": _daily,
        "overlay": lambda c: _overlay(c, options.weekdays),
        "patterns": _patterns,
        "progress": _progress,
        "settings": _settings,
    }
    if kind not in builders:
        msg = f"unknown report {kind!r}; the reports are agp, daily, overlay, patterns, progress and settings"
        raise InvalidReportError(msg)
    notices, sections = builders[kind](context)
    record_event(
        session,
        actor=actor,
        action=AuditTag.REPORT_READ,
        patient_id=patient.id,
        details={
            "report": kind,
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
            "output": output,
        },
    )
    return Report(
        kind=kind,
        header=_header(patient, kind, period, unit),
        notices=tuple(notices),
        sections=tuple(sections),
        landscape=kind == "daily",
    )


def _context(session: Session, patient: Patient, period: Period, glucose: Glucose) -> _Context:
    cgm = load_cgm(session, patient.id, patient.timezone, period.start_ms, period.end_ms)
    therapy = load_therapy(session, patient.id, patient.timezone, period.start_ms, period.end_ms)
    target = target_of(patient)
    stats = compute_stats(
        patient=patient.email,
        timezone=patient.timezone,
        display_units=patient.display_units,
        target=target,
        period=period,
        cgm=cgm,
        therapy=therapy,
        latest_ms=latest_cgm_ms(session, patient.id),
    )
    return _Context(session, patient, period, glucose, target, cgm, stats)


def _date(day: dt.date) -> str:
    return f"{day.day} {day.strftime('%b %Y')}"


def _header(patient: Patient, kind: ReportKind, period: Period, unit: str) -> Header:
    born = patient.birthdate
    now = dt.datetime.now(dt.UTC)
    plural = "day" if period.days == 1 else "days"
    return Header(
        title=TITLES[kind],
        patient_name=patient.name,
        birthdate=None if born is None else _date(born),
        period=f"{_date(period.first)} – {_date(period.last)} ({period.days} {plural})",
        first=period.first.isoformat(),
        last=period.last.isoformat(),
        timezone=patient.timezone,
        unit=unit,
        generated=f"{now:%d %b %Y %H:%M} UTC, Glucoshare {__version__}",
    )


def _hours_of_data(stats: StatsOut) -> float:
    return stats.readings * (stats.sensor_interval_min or 5) / 60.0


def _data_notices(stats: StatsOut) -> tuple[list[str], bool]:
    """Notices about the amount of data, and whether there is enough for any glucose figure."""
    if stats.readings == 0:
        return [
            "No CGM readings in this period: there is nothing to show. Choose another period or upload data."
        ], False
    hours = _hours_of_data(stats)
    if hours < MIN_HOURS:
        return [
            (
                f"Only {hours:.0f} hours of CGM readings in this period: too little for any figure "
                f"(at least {MIN_HOURS} hours are needed)."
            )
        ], False
    if not stats.sufficient_data:
        active = pct(stats.sensor_active_pct, 0)
        return [
            (
                f"Less data than the consensus asks for ({stats.days} days, CGM active {active}; "
                "needed: 14 days "
                "with at least 70 % CGM time). The figures describe only the data there is and may not "
                "stand for usual glucose; GMI is left out."
            )
        ], True
    return [], True


def _range_rows(stats: StatsOut, glucose: Glucose, target: TargetRange) -> list[RangeRow]:
    goals = target.goals
    cut = glucose.fmt
    low_top = f"{cut(54.0)}–{glucose.fmt(69.0) if glucose.unit == 'mg/dL' else '3.8'}"
    high_span = f"{glucose.fmt(181.0) if glucose.unit == 'mg/dL' else '10.1'}–{cut(250.0)}"

    def goal(value: float | None, sign: str) -> str:
        return "" if value is None else f"{sign}{value:g} %"

    return [
        RangeRow(
            "very_high",
            f"Very high >{cut(250.0)}",
            stats.time_very_high_pct,
            goal(goals.very_high_max_pct, "<"),
        ),
        RangeRow(
            "high",
            f"High {high_span}",
            stats.time_high_pct,
            goal(goals.above_max_pct, "<") and f"{goal(goals.above_max_pct, '<')} with very high",
        ),
        RangeRow(
            "in_range",
            f"Target {cut(70.0)}–{cut(180.0)}",
            stats.time_in_range_pct,
            goal(goals.in_target_min_pct, ">"),
        ),
        RangeRow(
            "low",
            f"Low {low_top}",
            stats.time_low_pct,
            goal(goals.below_max_pct, "<") and f"{goal(goals.below_max_pct, '<')} with very low",
        ),
        RangeRow(
            "very_low", f"Very low <{cut(54.0)}", stats.time_very_low_pct, goal(goals.very_low_max_pct, "<")
        ),
    ]


def _metrics(stats: StatsOut, glucose: Glucose, *, with_gmi: bool) -> tuple[Figure, ...]:
    mean_goal = f"<{glucose.with_unit(MEAN_GOAL_MGDL)}"
    figures = [
        Figure(
            "Average glucose",
            glucose.with_unit(stats.mean_mgdl),
            mean_goal,
            None if stats.mean_mgdl is None else stats.mean_mgdl < MEAN_GOAL_MGDL,
        ),
        Figure(
            "Glucose management indicator (GMI)",
            pct(stats.gmi_pct, 1) if with_gmi else DASH,
            "<7 %",
            None if stats.gmi_pct is None or not with_gmi else stats.gmi_pct < 7.0,  # noqa: PLR2004 - the AGP's goal
            None if with_gmi else "needs 14 days with 70 % CGM time",
        ),
        Figure(
            "Glucose variability (CV)",
            pct(stats.cv_pct, 1),
            "≤36 %",
            None if stats.cv_pct is None else stats.cv_pct <= 36.0,  # noqa: PLR2004 - Monnier 2017
        ),
        Figure("Time in tight range", pct(stats.time_tight_range_pct, 0), note=glucose.span(70.0, 140.0)),
    ]
    return tuple(figures)


def _agp(c: _Context) -> tuple[list[str], list[Section]]:
    notices, enough = _data_notices(c.stats)
    wear = Section(
        "CGM wear",
        figures=(
            Figure("Period", f"{c.stats.days} days"),
            Figure(
                "Time CGM active",
                pct(c.stats.sensor_active_pct, 1),
                "≥70 %",
                _at_least(c.stats.sensor_active_pct, 70.0),
            ),
            Figure("Readings", f"{c.stats.readings:,}"),
        ),
    )
    if not enough:
        return notices, [wear]
    profile = agp(c.cgm.local_ms, c.cgm.mgdl)
    first_day = (c.period.first - EPOCH).days
    last_day = first_day + c.period.days - 1
    shown_from = max(first_day, last_day - PROFILE_DAYS + 1)
    days = daily_profiles(c.cgm.local_ms, c.cgm.mgdl, first_day=shown_from, last_day=last_day)
    target = (c.target.low_mgdl, c.target.high_mgdl)
    sections = [
        dataclasses.replace(wear, side=None),
        Section(
            "Time in ranges",
            chart=time_in_ranges_bar(_range_rows(c.stats, c.glucose, c.target)),
            sentences=("Each 5 % more time in range (70–180 mg/dL) is clinically beneficial.",),
            side=Section(
                "Glucose metrics", figures=_metrics(c.stats, c.glucose, with_gmi=c.stats.sufficient_data)
            ),
        ),
        Section(
            "Ambulatory glucose profile (AGP)",
            chart=agp_chart(profile, c.glucose, target_low=target[0], target_high=target[1]),
            sentences=(
                (
                    "The AGP sums up the glucose values of the period as one day: the dark line is the "
                    "median, the dark band holds the middle half of the values (25–75 %) and the light "
                    f"band 90 % of them (5–95 %). Green lines mark the target range "
                    f"{c.glucose.span(*target)}."
                ),
            ),
        ),
        Section(
            "Daily glucose profiles",
            chart=daily_profiles_chart(days, c.glucose, target_low=target[0], target_high=target[1]),
            sentences=(
                (
                    "Each panel runs from midnight to midnight; "
                    "yellow is above and red below the target range."
                    + (
                        f" The last {PROFILE_DAYS} days of the period are shown."
                        if c.period.days > PROFILE_DAYS
                        else ""
                    )
                ),
            ),
        ),
    ]
    return notices, sections


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _day_figures(records: PeriodRecords, day: int, glucose: Glucose) -> tuple[Figure, ...]:
    data = records.day(day)
    values = data.cgm_mgdl
    bands = classify(values, MGDL_CUTOFFS) if values.size else None
    in_range = None if bands is None else float(100.0 * np.mean(bands == IN_RANGE))
    below = None if bands is None else float(100.0 * np.mean(bands < IN_RANGE))
    above = None if bands is None else float(100.0 * np.mean(bands > IN_RANGE))
    basal_u = data.basal_units()
    bolus_u = float(data.bolus_u.sum()) if data.bolus_u.size else None
    insulin = None if basal_u is None and bolus_u is None else (basal_u or 0.0) + (bolus_u or 0.0)
    return (
        Figure("Time in range", pct(in_range, 0), note=f"below {pct(below, 0)}, above {pct(above, 0)}"),
        Figure("Average glucose", glucose.with_unit(float(values.mean()) if values.size else None)),
        Figure("CGM readings", str(values.size), note=f"{data.meter_mgdl.size} meter readings"),
        Figure(
            "Insulin",
            number(insulin, 1, "U"),
            note=f"bolus {number(bolus_u, 1, 'U')}, basal {number(basal_u, 1, 'U')}",
        ),
        Figure("Carbohydrate", number(float(data.carbs_g.sum()) if data.carbs_g.size else None, 0, "g")),
    )


def _daily(c: _Context) -> tuple[list[str], list[Section]]:
    notices: list[str] = []
    first_day = (c.period.first - EPOCH).days
    last_day = first_day + c.period.days - 1
    if c.period.days > DAILY_MAX_DAYS:
        first_day = last_day - DAILY_MAX_DAYS + 1
        notices.append(
            f"The daily view prints at most {DAILY_MAX_DAYS} days: "
            f"the last {DAILY_MAX_DAYS} of the period are shown."
        )
    records = load_period_records(
        c.session, c.patient.id, c.patient.timezone, c.period.start_ms, c.period.end_ms
    )
    target = (c.target.low_mgdl, c.target.high_mgdl)
    sections = []
    for at, day in enumerate(range(first_day, last_day + 1)):
        date = EPOCH + dt.timedelta(days=day)
        data = records.day(day)
        entries = records.entries_of(day)
        empty = not (
            data.cgm_mgdl.size or data.meter_mgdl.size or data.bolus_u.size or data.basal_rate.size or entries
        )
        table = Table(
            ("time", "what"),
            tuple(
                (
                    f"{(e.local_ms % DAY_MS) // 3_600_000:02d}:{(e.local_ms % 3_600_000) // MINUTE_MS:02d}",
                    e.text,
                )
                for e in entries
            ),
        )
        sections.append(
            Section(
                date.strftime("%A ") + _date(date),
                figures=() if empty else _day_figures(records, day, c.glucose),
                chart=None
                if empty
                else day_chart(data, c.glucose, target_low=target[0], target_high=target[1], width=1000),
                table=table if entries else None,
                sentences=("No data on this day.",) if empty else (),
                new_page=at > 0,
            )
        )
    return notices, sections


def _overlay(c: _Context, weekdays: frozenset[int] | None) -> tuple[list[str], list[Section]]:
    notices, enough = _data_notices(c.stats)
    chosen = sorted(weekdays) if weekdays is not None else list(range(7))
    local_days = c.cgm.local_ms // DAY_MS
    weekday_of = (local_days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
    keep = np.isin(weekday_of, chosen)
    if weekdays is not None:
        notices.append("Only " + ", ".join(WEEKDAYS[d] for d in chosen) + " are included.")
    if not enough or not keep.any():
        if enough:
            notices.append("No readings on the chosen weekdays.")
        return notices, []
    local, values = c.cgm.local_ms[keep], c.cgm.mgdl[keep]
    bins = time_of_day_bins(local, values, bin_minutes=30)
    traces = []
    if c.period.days <= OVERLAY_TRACES_MAX_DAYS:
        for day in np.unique(local // DAY_MS).tolist():
            inside = local // DAY_MS == day
            traces.append(((local[inside] % DAY_MS) / MINUTE_MS, values[inside]))
    records = load_period_records(
        c.session, c.patient.id, c.patient.timezone, c.period.start_ms, c.period.end_ms
    )
    meter_days = (records.meter[0] // DAY_MS + 3) % 7
    meter_keep = np.isin(meter_days, chosen)
    meter = ((records.meter[0][meter_keep] % DAY_MS) / MINUTE_MS, records.meter[1][meter_keep])
    chart = trends_chart(
        bins,
        c.glucose,
        target_low=c.target.low_mgdl,
        target_high=c.target.high_mgdl,
        day_traces=traces,
        meter=meter,
    )
    rows = []
    for label, start, end in (
        ("Night 00–06", 0, 360),
        ("Morning 06–12", 360, 720),
        ("Afternoon 12–18", 720, 1080),
        ("Evening 18–24", 1080, 1440),
    ):
        minutes = (local % DAY_MS) / MINUTE_MS
        part = values[(minutes >= start) & (minutes < end)]
        if part.size:
            q25, q50, q75 = np.percentile(part, [25, 50, 75])
            rows.append(
                (
                    label,
                    c.glucose.fmt(float(q50)),
                    f"{c.glucose.fmt(float(q25))}–{c.glucose.fmt(float(q75))}",
                    pct(float(100 * np.mean(part < MGDL_CUTOFFS.low)), 0),
                    pct(float(100 * np.mean(part > MGDL_CUTOFFS.high)), 0),
                    f"{part.size:,}",
                )
            )
        else:
            rows.append((label, DASH, DASH, DASH, DASH, "0"))
    table = Table(
        (
            "time of day",
            f"median ({c.glucose.unit})",
            "middle half",
            "below range",
            "above range",
            "readings",
        ),
        tuple(rows),
        (False, True, True, True, True, True),
    )
    sections = [
        Section(
            "Glucose by time of day",
            chart=chart,
            sentences=(
                (
                    "Each 30-minute column shows the median (line), the middle half (dark), 80 % of the "
                    "values (light) and the lowest and highest value (thin line); thin blue lines are the "
                    "single days, white dots meter readings."
                ),
            ),
        ),
        Section(
            "Time in ranges",
            figures=_tir_figures(c.stats),
            side=Section(
                "Glucose metrics", figures=_metrics(c.stats, c.glucose, with_gmi=c.stats.sufficient_data)
            ),
        ),
        Section("By part of the day", table=table),
    ]
    return notices, sections


def _tir_figures(stats: StatsOut) -> tuple[Figure, ...]:
    return (
        Figure(
            "Very high (>250 mg/dL)",
            pct(stats.time_very_high_pct, 0),
            note=duration_per_day(stats.time_very_high_pct),
        ),
        Figure(
            "High (181–250 mg/dL)", pct(stats.time_high_pct, 0), note=duration_per_day(stats.time_high_pct)
        ),
        Figure(
            "In range (70–180 mg/dL)",
            pct(stats.time_in_range_pct, 0),
            note=duration_per_day(stats.time_in_range_pct),
        ),
        Figure("Low (54–69 mg/dL)", pct(stats.time_low_pct, 0), note=duration_per_day(stats.time_low_pct)),
        Figure(
            "Very low (<54 mg/dL)",
            pct(stats.time_very_low_pct, 0),
            note=duration_per_day(stats.time_very_low_pct),
        ),
    )


def _patterns(c: _Context) -> tuple[list[str], list[Section]]:
    notices, enough = _data_notices(c.stats)
    if not enough:
        return notices, []
    s = c.stats
    events = Section(
        "Glucose events",
        figures=(
            Figure(
                "Low episodes <70 mg/dL (level 1)",
                _count(s.hypo_events_l1),
                note="≥15 minutes below 70 mg/dL",
            ),
            Figure(
                "Low episodes <54 mg/dL (level 2)",
                _count(s.hypo_events_l2),
                note="≥15 minutes below 54 mg/dL",
            ),
            Figure("Prolonged lows", _count(s.hypo_events_extended), note=">120 minutes below 70 mg/dL"),
            Figure("Night-time lows (00–06)", _count(s.nocturnal_hypo_events)),
            Figure("High episodes >180 mg/dL", _count(s.hyper_events_l1), note="≥15 minutes above 180 mg/dL"),
            Figure("High episodes >250 mg/dL", _count(s.hyper_events_l2), note="≥15 minutes above 250 mg/dL"),
        ),
    )
    sections = [events]
    if not s.patterns:
        sections.append(
            Section(
                "Recurring patterns",
                sentences=(
                    (
                        "No recurring pattern was found in this period: no time of day with lows or highs on "
                        "several days, no repeated post-meal highs and no repeated data gaps."
                    ),
                ),
            )
        )
    for pattern in s.patterns:
        wanted = set(pattern.dates)
        traces = []
        for day in np.unique(c.cgm.local_ms // DAY_MS).tolist():
            date = (EPOCH + dt.timedelta(days=day)).isoformat()
            if date in wanted:
                inside = c.cgm.local_ms // DAY_MS == day
                traces.append((date, (c.cgm.local_ms[inside] % DAY_MS) / MINUTE_MS, c.cgm.mgdl[inside]))
        start = _minutes(pattern.window_start)
        end = _minutes(pattern.window_end)
        worst = (
            ""
            if pattern.worst_mgdl is None
            else f" The most extreme value was {c.glucose.with_unit(pattern.worst_mgdl)}."
        )
        sections.append(
            Section(
                pattern.summary,
                chart=window_chart(
                    traces,
                    c.glucose,
                    window=(start, end),
                    target_low=c.target.low_mgdl,
                    target_high=c.target.high_mgdl,
                ),
                sentences=(
                    (
                        f"Seen {pattern.occurrences} times on {len(pattern.dates)} "
                        f"of {pattern.days_observed} days "
                        f"with data, between {pattern.window_start} and {pattern.window_end}.{worst}"
                    ),
                    "Days: " + ", ".join(_date(dt.date.fromisoformat(d)) for d in pattern.dates) + ".",
                ),
            )
        )
    return notices, sections


def _count(value: int | None) -> str:
    return DASH if value is None else str(value)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


_PROGRESS_ROWS: tuple[tuple[str, str, int, int], ...] = (
    # label, stats field, digits, direction (+1: higher is better, -1: lower is better, 0: neither)
    ("Time in range 70–180 mg/dL (%)", "time_in_range_pct", 0, 1),
    ("Time below 70 mg/dL (%)", "time_below_range_pct", 1, -1),
    ("Time below 54 mg/dL (%)", "time_very_low_pct", 1, -1),
    ("Time above 180 mg/dL (%)", "time_above_range_pct", 0, -1),
    ("Time above 250 mg/dL (%)", "time_very_high_pct", 0, -1),
    ("Average glucose (mg/dL)", "mean_mgdl", 0, -1),
    ("GMI (%)", "gmi_pct", 1, -1),
    ("Glucose variability, CV (%)", "cv_pct", 1, -1),
    ("Time CGM active (%)", "sensor_active_pct", 0, 1),
    ("Low episodes (level 1)", "hypo_events_l1", 0, -1),
    ("Low episodes (level 2)", "hypo_events_l2", 0, -1),
    ("Total insulin per day (U)", "insulin_total_daily_u", 1, 0),
    ("Basal share of insulin (%)", "insulin_basal_pct", 0, 0),
    ("Boluses per day", "boluses_daily", 1, 0),
    ("Carbohydrate per day (g)", "carbs_daily_g", 0, 0),
)


def _progress(c: _Context) -> tuple[list[str], list[Section]]:
    before_period = previous_period(c.period, c.patient.timezone)
    before = _context(c.session, c.patient, before_period, c.glucose)
    notices, enough_now = _data_notices(c.stats)
    before_notices, enough_before = _data_notices(before.stats)
    notices += [f"Previous period: {n}" for n in before_notices]
    rows = []
    for label, field, digits, direction in _PROGRESS_ROWS:
        now_value = getattr(c.stats, field) if enough_now else None
        old_value = getattr(before.stats, field) if enough_before else None
        if field == "gmi_pct":
            now_value = now_value if c.stats.sufficient_data else None
            old_value = old_value if before.stats.sufficient_data else None
        name = f"Average glucose ({c.glucose.unit})" if field == "mean_mgdl" else label
        if field == "mean_mgdl":
            shown_now, shown_old = c.glucose.fmt(now_value), c.glucose.fmt(old_value)
        else:
            shown_now, shown_old = number(now_value, digits), number(old_value, digits)
        change, verdict = _change(
            now_value, old_value, digits, direction, c.glucose if field == "mean_mgdl" else None
        )
        rows.append((name, shown_old, shown_now, change, verdict))
    header = (
        f"previous ({_date(before_period.first)} – {_date(before_period.last)})",
        f"this period ({_date(c.period.first)} – {_date(c.period.last)})",
    )
    sections = [
        Section(
            "Figures side by side",
            table=Table(("figure", *header, "change", ""), tuple(rows), (False, True, True, True, False)),
            sentences=(
                "Percentages change in percentage points. Better and worse follow the consensus goals.",
            ),
        )
    ]
    if enough_now:
        rows_now = _range_rows(c.stats, c.glucose, c.target)
        chart_now = time_in_ranges_bar(rows_now, width=330)
        side = None
        if enough_before:
            side = Section(
                "Time in ranges, previous period",
                chart=time_in_ranges_bar(_range_rows(before.stats, c.glucose, c.target), width=330),
            )
        sections.append(Section("Time in ranges, this period", chart=chart_now, side=side))
    if enough_now and enough_before:
        sections.append(
            Section(
                "Glucose by time of day",
                chart=comparison_chart(
                    agp(c.cgm.local_ms, c.cgm.mgdl),
                    agp(before.cgm.local_ms, before.cgm.mgdl),
                    c.glucose,
                    target_low=c.target.low_mgdl,
                    target_high=c.target.high_mgdl,
                ),
                sentences=(
                    "Blue: this period's median and middle half; orange, dashed: the previous period's.",
                ),
            )
        )
    return notices, sections


def _change(
    now: float | None, old: float | None, digits: int, direction: int, glucose: Glucose | None
) -> tuple[str, str]:
    if now is None or old is None:
        return DASH, ""
    if glucose is not None:  # compare what the reader sees: values rounded as printed
        digits = 0 if glucose.unit == "mg/dL" else 1
        delta = round(glucose.value(float(now)), digits) - round(glucose.value(float(old)), digits)
    else:
        delta = round(float(now), digits) - round(float(old), digits)
    if round(abs(delta), digits) == 0:
        return f"±{0:.{digits}f}", "about the same" if direction else ""
    sign = "+" if delta > 0 else "−"
    text = f"{sign}{abs(delta):.{digits}f}"
    if direction == 0:
        return text, ""
    return text, "better" if delta * direction > 0 else "worse"


def _settings(c: _Context) -> tuple[list[str], list[Section]]:
    return settings_sections(c.session, c.patient, c.period, c.stats, c.glucose)
