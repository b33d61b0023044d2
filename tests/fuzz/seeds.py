"""Valid seed files for the fuzzer: one short simulated export per layout Glucoshare reads.

Every seed comes from the project's simulator (the writers the importer tests use), for one patient
whose name is :data:`PATIENT_NAME`: an error message that repeats it has leaked health data. A
layout is what a person gives ``glucoshare import``: one file, one zip archive, or one folder of
files (:attr:`Layout.container`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable
from typing import Literal

from glucoshare.ingest.diary import DiaryEntry, diary_document
from glucoshare.simulator import PatientProfile, simulate
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.accuchek_smartpix import SmartPixOptions, write_smartpix
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.diasend import write_diasend
from glucoshare.simulator.writers.glooko import write_glooko
from glucoshare.simulator.writers.glucoshare_csv import write_glucoshare_csv
from glucoshare.simulator.writers.libreview import write_libreview
from glucoshare.simulator.writers.mysugr import write_mysugr
from glucoshare.simulator.writers.nightscout import write_nightscout
from glucoshare.simulator.writers.tandem import write_tandem_source, write_tconnect
from glucoshare.simulator.writers.tidepool import write_tidepool
from glucoshare.simulator.writers.xdrip import write_xdrip

ZONE = "Europe/Berlin"
"""The patient's time zone, in which every seed is written and read."""

PATIENT_NAME = "Quokka Fuzzington"
"""The simulated patient's name: health data that no error message may repeat."""

Kind = Literal["text", "json", "xml", "xls", "zip", "folder"]
"""How a layout is mutated: ``text`` (CSV, TSV, JSON Lines), ``json``, ``xml`` (Smart Pix),
``xls`` (a workbook), ``zip`` (an archive of members) or ``folder`` (several files given together)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """One file of a seed: its name (inside the archive or folder) and bytes."""

    name: str
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """A valid seed of one layout and how to mutate it."""

    name: str
    format: str
    """The importer format the seed is detected as (for an archive or folder: of its members)."""
    kind: Kind
    members: tuple[Member, ...]
    """The file (``text``, ``json``, ``xml``, ``xls``), the archive's members (``zip``), the folder's
    files (``folder``)."""
    container: str
    """The file's, archive's or folder's name."""
    member_kinds: tuple[Kind, ...] = ()
    """For a ``zip`` or ``folder``: how each member is mutated."""


def _profile(**overrides: object) -> PatientProfile:
    fields: dict[str, object] = {
        "name": PATIENT_NAME,
        "email": "quokka.fuzzington@example.org",
        "birthdate": dt.date(1987, 3, 9),
        "timezone": ZONE,
        "therapy": "mdi",
        "cgm": "dexcom_g6",
        "units": "mg/dL",
        "control": 0.1,
        "seed": 17,
    }
    fields.update(overrides)
    return PatientProfile(**fields)  # type: ignore[arg-type]


@functools.cache
def _timeline(therapy: str = "mdi", cgm: str = "dexcom_g6", hours: int = 12) -> Timeline:
    """Half a day (a short file keeps each case fast) with meals, insulin and fingersticks."""
    whole = simulate(_profile(therapy=therapy, cgm=cgm), start=dt.date(2025, 6, 2), days=1)
    return whole.window(whole.start_ms + 6 * 3_600_000, whole.start_ms + (6 + hours) * 3_600_000)


def _single(name: str, fmt: str, kind: Kind, file_name: str, data: bytes) -> Layout:
    return Layout(name, fmt, kind, (Member(file_name, data),), file_name)


def _diary() -> bytes:
    """A typed diary (the diary has no vendor writer: its rows are the timeline's own events)."""
    timeline = _timeline()
    entries: list[DiaryEntry] = []
    for event in timeline.events:
        wall = timeline.local(event.utc_ms).replace(second=0, microsecond=0)
        if event.kind == "fingerstick" and event.value is not None:
            entries.append(DiaryEntry(time=wall, glucose=event.value, unit="mg/dL"))
        elif event.kind == "carbs" and event.value:
            entries.append(DiaryEntry(time=wall, carbs_g=event.value, note="lunch with Quokka"))
        elif event.kind in ("pen_rapid", "pen_long") and event.value:
            field = "rapid_u" if event.kind == "pen_rapid" else "long_u"
            entries.append(DiaryEntry.model_validate({"time": wall, field: event.value}))
    entries.append(
        DiaryEntry(time=timeline.local(timeline.start_ms), carb_ratio=10, sensitivity=40, unit="mg/dL")
    )
    return diary_document(entries)


def _tandem_source() -> tuple[Member, ...]:
    export = write_tandem_source(_timeline("pump"))
    return tuple(Member(f.file_name, f.data) for f in export.files)


def _glooko() -> tuple[Member, ...]:
    import io  # noqa: PLC0415 - only the seed of this layout reads a zip
    import zipfile  # noqa: PLC0415

    archive = write_glooko(_timeline("pump"))
    with zipfile.ZipFile(io.BytesIO(archive.data)) as opened:
        return tuple(Member(info.filename, opened.read(info)) for info in opened.infolist())


_BUILDERS: dict[str, Callable[[], Layout]] = {
    "dexcom_clarity": lambda: _single(
        "dexcom_clarity", "dexcom_clarity", "text", "clarity.csv", write_clarity(_timeline()).data
    ),
    "libreview": lambda: _single(
        "libreview", "libreview", "text", "libreview.csv", write_libreview(_timeline(cgm="libre2")).data
    ),
    "carelink": lambda: _single(
        "carelink", "carelink", "text", "carelink.csv", write_carelink(_timeline("pump", "guardian4")).data
    ),
    "glucoshare_diary": lambda: _single(
        "glucoshare_diary", "glucoshare_diary", "text", "diary.jsonl", _diary()
    ),
    "tandem_source": lambda: Layout(
        "tandem_source", "tandem_source", "folder", _tandem_source(), "tandem", ("text",) * 5
    ),
    "tandem_source_zip": lambda: Layout(
        "tandem_source_zip", "tandem_source", "zip", _tandem_source(), "tandem.zip", ("text",) * 5
    ),
    "tandem_tconnect": lambda: _single(
        "tandem_tconnect",
        "tandem_tconnect",
        "text",
        "tconnect.csv",
        write_tconnect(_timeline("pump")).file.data,
    ),
    "glooko": lambda: Layout("glooko", "glooko", "zip", _glooko(), "glooko.zip", ("text",) * len(_glooko())),
    "mysugr": lambda: _single("mysugr", "mysugr", "text", "mysugr.csv", write_mysugr(_timeline()).data),
    "accuchek_smartpix": lambda: _single(
        "accuchek_smartpix",
        "accuchek_smartpix",
        "xml",
        "smartpix.xml",
        write_smartpix(_timeline("pump"), SmartPixOptions(report="pump")).data,
    ),
    "xdrip": lambda: _single("xdrip", "xdrip", "text", "xdrip.csv", write_xdrip(_timeline()).data),
    "nightscout": lambda: _single(
        "nightscout", "nightscout", "json", "nightscout.json", write_nightscout(_timeline("pump")).data
    ),
    "tidepool": lambda: _single(
        "tidepool", "tidepool", "json", "tidepool.json", write_tidepool(_timeline("pump")).data
    ),
    "glucoshare_csv": lambda: _single(
        "glucoshare_csv",
        "glucoshare_csv",
        "text",
        "generic.csv",
        write_glucoshare_csv(_timeline("pump")).data,
    ),
    "diasend": lambda: _single(
        "diasend", "diasend", "xls", "diasend.xls", write_diasend(_timeline("pump")).data
    ),
}

LAYOUTS: tuple[str, ...] = tuple(_BUILDERS)
"""Every fuzzed layout: the 14 importers, Tandem Source also as a zip archive."""


@functools.cache
def layout(name: str) -> Layout:
    """The seed of one layout (built once per test session)."""
    return _BUILDERS[name]()
