"""The device settings report: insulin and carbohydrate summary, the pump settings in force and their changes.

Settings come from :func:`glucoshare.summaries.settings_data.load_device_settings`: the pump's own
settings records where an export carries them, otherwise the values the bolus calculator used
(which show only the times of day it was used; the report says so).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.analytics.settings import PumpSettings, ScheduleEntry
from glucoshare.reports.units import DASH, Glucose, number, pct
from glucoshare.reports.views import Figure, Section, Table
from glucoshare.summaries.schemas import StatsOut
from glucoshare.summaries.settings_data import load_device_settings
from glucoshare.summaries.stats import Period

DAY_MS = 86_400_000


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _when(local_ms: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=local_ms)  # wall time
    return f"{moment.day} {moment:%b %Y %H:%M}"


def _schedule_table(entries: tuple[ScheduleEntry, ...], heading: str, fmt: str) -> Table:
    rows = []
    for at, entry in enumerate(entries):
        end = entries[at + 1].start_min if at + 1 < len(entries) else 1440
        rows.append((f"{_clock(entry.start_min)}–{_clock(end)}", fmt.format(entry.value)))
    return Table(("time of day", heading), tuple(rows), (False, True))


def insulin_section(stats: StatsOut) -> Section:
    """Insulin and carbohydrate figures of the period (the stats document's)."""
    return Section(
        "Insulin and carbohydrate",
        figures=(
            Figure(
                "Total insulin per day",
                number(stats.insulin_total_daily_u, 1, "U"),
                note=f"{stats.days_with_insulin} days with insulin data",
            ),
            Figure(
                "Basal per day",
                number(stats.insulin_basal_daily_u, 1, "U"),
                note=f"{pct(stats.insulin_basal_pct, 0)} of the total",
            ),
            Figure(
                "Bolus per day",
                number(stats.insulin_bolus_daily_u, 1, "U"),
                note=f"{number(stats.boluses_daily, 1)} boluses a day",
            ),
            Figure("Time in automated mode", pct(stats.time_in_automated_pct, 0)),
            Figure(
                "Carbohydrate per day",
                number(stats.carbs_daily_g, 0, "g"),
                note=f"{stats.days_with_carbs} days with carbohydrate entries",
            ),
            Figure(
                "Infusion set changes",
                str(stats.site_changes),
                note=f"every {number(stats.days_between_site_changes, 1, 'days')}",
            ),
        ),
    )


def _settings_sections(settings: PumpSettings, glucose: Glucose, *, title: str) -> list[Section]:
    sections = []
    sentences: list[str] = []
    if settings.source == "calculator":
        sentences.append(
            "These values are the ones the pump's bolus calculator used; times of day at which it "
            "was not used are not known and are shown with the value in force before them."
        )
    for name, entries in settings.basal_schedules.items():
        active = " (active)" if name == settings.active_schedule else ""
        total = sum(
            e.value * ((entries[i + 1].start_min if i + 1 < len(entries) else 1440) - e.start_min) / 60.0
            for i, e in enumerate(entries)
        )
        sections.append(
            Section(
                f"Basal schedule {name}{active}",
                table=_schedule_table(entries, "rate (U/h)", "{:.3f}"),
                sentences=(f"{total:.2f} U per day.",),
            )
        )
    if settings.carb_ratios:
        sections.append(
            Section("Carbohydrate ratios", table=_schedule_table(settings.carb_ratios, "g per U", "{:g}"))
        )
    if settings.sensitivities:
        unit = glucose.unit
        table = _schedule_table(
            tuple(ScheduleEntry(e.start_min, glucose.value(e.value)) for e in settings.sensitivities),
            f"{unit} per U",
            "{:.0f}" if unit == "mg/dL" else "{:.1f}",
        )
        sections.append(Section("Insulin sensitivity factors", table=table))
    if settings.targets:
        rows = []
        for at, entry in enumerate(settings.targets):
            end = settings.targets[at + 1].start_min if at + 1 < len(settings.targets) else 1440
            rows.append(
                (f"{_clock(entry.start_min)}–{_clock(end)}", glucose.span(entry.low_mgdl, entry.high_mgdl))
            )
        sections.append(
            Section("Glucose targets", table=Table(("time of day", "target"), tuple(rows), (False, True)))
        )
    limits = (
        Figure("Maximum bolus", number(settings.max_bolus_u, 1, "U")),
        Figure("Maximum basal rate", number(settings.max_basal_u_h, 2, "U/h")),
        Figure("Active insulin time", number(settings.insulin_duration_h, 1, "h")),
    )
    if any(f.value != DASH for f in limits):
        sections.append(Section("Limits", figures=limits))
    head = Section(title, sentences=tuple(sentences))
    return [head, *sections]


def settings_sections(
    session: Session, patient: Patient, period: Period, stats: StatsOut, glucose: Glucose
) -> tuple[list[str], list[Section]]:
    """Notices and sections of the device settings report."""
    found = load_device_settings(
        session, patient.id, patient.timezone, period.start_ms, period.end_ms, glucose_unit=glucose.unit
    )
    sections = [insulin_section(stats)]
    notices: list[str] = []
    if found.latest is None:
        notices.append(
            "No pump settings in this period: upload a pump export that includes its settings "
            "(or its bolus calculator entries) to see them here."
        )
    else:
        origin = "from the pump" if found.latest.source == "pump" else "as used by the bolus calculator"
        title = f"Settings in force from {_when(found.latest.local_ms)} ({origin})"
        sections += _settings_sections(found.latest, glucose, title=title)
    if found.basal_observed and (found.latest is None or not found.latest.basal_schedules):
        sections.append(
            Section(
                "Scheduled basal as delivered",
                table=_schedule_table(found.basal_observed, "rate (U/h)", "{:.3f}"),
                sentences=(
                    "The scheduled basal rates the pump delivered on the last full day of the period.",
                ),
            )
        )
    if found.changes:
        rows = tuple((_when(c.local_ms), c.what, c.before, c.after) for c in found.changes)
        sections.append(
            Section("Changes in this period", table=Table(("when", "what", "before", "after"), rows))
        )
    elif found.latest is not None:
        sections.append(Section("Changes in this period", sentences=("No settings changed in this period.",)))
    return notices, sections
