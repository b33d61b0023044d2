"""``glucoshare demo [--patients N]``: simulated patients, their vendor exports, imported."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table

from glucoshare.cli.runtime import actor, handle_errors, print_json, settings, stderr, stdout, unit_of_work
from glucoshare.demo import seed_demo


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@handle_errors
def demo_command(
    patients: Annotated[int, typer.Option(min=1, max=200, help="How many demo patients.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Create simulated demo patients, import their devices' vendor exports, and show each summary.

    Running it again changes nothing: every record is recognised as a duplicate.
    """
    with unit_of_work() as session:
        results = seed_demo(
            session, settings=settings(), count=patients, today=dt.datetime.now(dt.UTC).date(), actor=actor()
        )
    if as_json:
        print_json({"patients": results})
        return
    stderr.print(f"demo exports written to {settings().data_dir / 'demo'}", markup=False)
    table = Table(
        "patient",
        "device",
        "file",
        "records",
        "new",
        "CGM readings",
        "mean mg/dL",
        "GMI %",
        "CV %",
        "<54 %",
        "54-69 %",
        "70-180 %",
        "181-250 %",
        ">250 %",
        title="Demo patients (last 30 days)",
    )
    for item in results:
        upload = item.uploads[0]
        cgm = item.overview.cgm
        device = f"{upload.device.manufacturer} {upload.device.model}" if upload.device else "-"
        table.add_row(
            item.patient.name,
            device,
            upload.format,
            str(sum(item.overview.counts.values())),
            str(sum(u.new for u in item.uploads)),
            str(cgm.readings),
            _fmt(cgm.mean_mgdl, 0),
            _fmt(cgm.gmi_pct),
            _fmt(cgm.cv_pct),
            _fmt(cgm.time_very_low_pct),
            _fmt(cgm.time_low_pct),
            _fmt(cgm.time_in_range_pct),
            _fmt(cgm.time_high_pct),
            _fmt(cgm.time_very_high_pct),
        )
    stdout.print(table)
