"""Demo patients: who they are and which vendor exports their devices produce."""

from __future__ import annotations

import dataclasses
import datetime as dt

from glucoshare.simulator.physiology import simulate
from glucoshare.simulator.timeline import PatientProfile, Timeline
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.dexcom_clarity import ClarityOptions, write_clarity

DEMO_DAYS = 30

_PEOPLE = [
    ("Mia Jensen", "Europe/Berlin", "mdi", "dexcom_g6", "mg/dL", 0.55),
    ("Noah Okafor", "Europe/London", "mdi", "libre2", "mmol/L", 0.7),
    ("Lena Fischer", "Europe/Berlin", "pump", "guardian4", "mg/dL", 0.85),
    ("Sam Rivera", "America/New_York", "mdi", "dexcom_g7", "mg/dL", 0.35),
    ("Aiko Tanaka", "Asia/Tokyo", "mdi", "libre3", "mg/dL", 0.6),
]


@dataclasses.dataclass(frozen=True, slots=True)
class DemoPatient:
    """A demo patient's profile and the exports of their devices."""

    profile: PatientProfile
    timeline: Timeline
    exports: list[WrittenExport]


def demo_profile(index: int) -> PatientProfile:
    """The ``index``-th demo patient (cycling through five people and their devices)."""
    name, tz, therapy, cgm, units, control = _PEOPLE[index % len(_PEOPLE)]
    round_ = index // len(_PEOPLE)
    first, last = name.split(" ")
    email = f"{first.lower()}.{last.lower()}{round_ or ''}@demo.glucoshare.example"
    return PatientProfile(
        name=name if not round_ else f"{name} {round_ + 1}",
        email=email,
        birthdate=dt.date(1960 + 7 * index % 50, 1 + index % 12, 1 + 3 * index % 28),
        timezone=tz,
        therapy=therapy,  # type: ignore[arg-type]
        cgm=cgm,  # type: ignore[arg-type]
        units=units,  # type: ignore[arg-type]
        control=control,
        seed=1000 + index,
    )


def exports_for(timeline: Timeline) -> list[WrittenExport]:
    """The vendor exports a patient with these devices would bring."""
    profile = timeline.profile
    if profile.cgm.startswith("dexcom"):
        return [write_clarity(timeline, ClarityOptions(units=profile.units, quoted=profile.seed % 2 == 0))]
    if profile.cgm.startswith("libre"):
        from glucoshare.simulator.writers.libreview import LibreViewOptions, write_libreview  # noqa: PLC0415

        return [write_libreview(timeline, LibreViewOptions(units=profile.units))]
    from glucoshare.simulator.writers.carelink import CareLinkOptions, write_carelink  # noqa: PLC0415

    return [write_carelink(timeline, CareLinkOptions())]


def demo_patients(count: int, *, end: dt.date) -> list[DemoPatient]:
    """``count`` demo patients with :data:`DEMO_DAYS` days of data ending the day before ``end``."""
    start = end - dt.timedelta(days=DEMO_DAYS)
    patients = []
    for index in range(count):
        profile = demo_profile(index)
        timeline = simulate(profile, start=start, days=DEMO_DAYS)
        patients.append(DemoPatient(profile, timeline, exports_for(timeline)))
    return patients
