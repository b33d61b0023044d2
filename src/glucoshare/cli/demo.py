"""``glucoshare demo [--patients N]``: simulated patients, their vendor exports, imported."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from glucoshare.cli.runtime import (
    JsonOption,
    actor,
    handle_errors,
    print_json,
    refresh_summaries,
    settings,
    stderr,
    stdout,
    unit_of_work,
)
from glucoshare.demo import DemoLoginsOut, DemoPatientOut, seed_demo, seed_demo_accounts


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@handle_errors
def demo_command(
    patients: Annotated[int, typer.Option(min=1, max=200, help="How many demo patients.")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Create simulated demo patients, import their devices' vendor exports, and show each summary.

    Running it again changes nothing: every record is recognised as a duplicate.
    """
    with unit_of_work() as session:
        results = seed_demo(
            session, settings=settings(), count=patients, today=dt.datetime.now(dt.UTC).date(), actor=actor()
        )
        logins = seed_demo_accounts(
            session, settings=settings(), patients=[item.patient for item in results], actor=actor()
        )
    refresh_summaries()
    if as_json:
        print_json({"patients": results, "logins": logins})
        return
    stderr.print(f"demo exports written to {settings().data_dir / 'demo'}", markup=False)
    for item in results:
        stdout.print(_describe(item), soft_wrap=True)
    stdout.print(_logins(logins), soft_wrap=True, markup=False)


def _logins(logins: DemoLoginsOut) -> str:
    """The demo logins, for a newcomer to click through the web app."""
    heading = (
        f"Demo logins (password for all: {logins.password}); clinic {logins.clinic!r}, "
        f"share code {logins.clinic_share_code}:"
    )
    lines = ["", heading]
    for account in logins.accounts:
        line = f"  {account.role:<22} {account.email}"
        if account.totp_secret:
            line += f"  (second factor: TOTP secret {account.totp_secret}"
            line += f", or recovery code {account.recovery_codes[0]})" if account.recovery_codes else ")"
        lines.append(line)
    return "\n".join(lines)


def _describe(item: DemoPatientOut) -> str:
    """A few lines about one demo patient, for people rather than scripts."""
    cgm = item.overview.cgm
    devices = ", ".join(
        sorted({f"{u.device.manufacturer} {u.device.model} ({u.format})" for u in item.uploads if u.device})
    )
    total = sum(item.overview.counts.values())
    new = sum(u.new for u in item.uploads)
    stored_before = sum(u.duplicates for u in item.uploads)
    span = f"{(item.overview.first or '-')[:10]} to {(item.overview.last or '-')[:10]}"
    ranges = ", ".join(
        f"{label} {_fmt(value)} %"
        for label, value in (
            ("<54", cgm.time_very_low_pct),
            ("54-69", cgm.time_low_pct),
            ("70-180", cgm.time_in_range_pct),
            ("181-250", cgm.time_high_pct),
            (">250", cgm.time_very_high_pct),
        )
    )
    metrics = f"mean {_fmt(cgm.mean_mgdl, 0)} mg/dL, GMI {_fmt(cgm.gmi_pct)} %, CV {_fmt(cgm.cv_pct)} %"
    return "\n".join(
        [
            f"[bold]{item.patient.name}[/bold] <{item.patient.email}>: {devices}",
            f"  {total:,} records ({new:,} new, {stored_before:,} already stored), {span}",
            f"  CGM: {cgm.readings:,} readings, {metrics}",
            f"  time in ranges: {ranges}",
        ]
    )
