"""The fuzz oracle: import a damaged file the way ``glucoshare import`` does, and judge the outcome.

Per case, exactly one of:

* **stored**: the import succeeded; every record it added is dated inside the import service's
  plausible window, has a UTC offset a clock can have, a finite value that is not negative, and a
  glucose inside the service's plausible range (:data:`GLUCOSE_TYPES`);
  and no warning or rejected-row reason repeats health data (:data:`~tests.fuzz.mutations.PHI_MARK`);
  the daily summaries of the stored data can be refreshed (what the worker does next);
* **refused**: the import raised an error of Glucoshare's error tree (not an ``InternalError``) with
  a message that does not repeat health data, the command's unit of work rolled back, and every
  table and the raw-file store are exactly as before.

Any other exception is a failure (hypothesis then shrinks the case). Every case is counted per
layout, engine and outcome (:mod:`tests.fuzz.tally`), for ``build/fuzz-report.json``.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.cli.imports import read_folder
from glucoshare.config import Settings
from glucoshare.db.models import Base
from glucoshare.db.session import session_scope
from glucoshare.errors import GlucoshareError, InternalError
from glucoshare.ingest.errors import NoRecordsError
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import GLUCOSE_CEILING_MGDL, import_files, plausible_bounds
from glucoshare.records.models import Record
from glucoshare.records.schemas import UploadOut
from glucoshare.summaries.service import refresh_outdated
from tests.fuzz.mutations import PHI_MARK, Case, zip_members
from tests.fuzz.seeds import ZONE, Layout, layout
from tests.fuzz.tally import count

GLUCOSE_TYPES = frozenset({"cbg", "smbg"})
"""Stored glucose must lie inside the service's plausible range, above 0 and at most
:data:`~glucoshare.ingest.service.GLUCOSE_CEILING_MGDL`; no stored value is negative, NaN or infinite."""

OFFSET_BOUNDS_MIN = (-12 * 60, 14 * 60)
"""A UTC offset a clock can have (minutes)."""

GROWING_TABLES = frozenset({"records", "audit_events", "uploads", "sealed_files", "sealed_file_pieces"})
"""Tables every stored case adds rows to and no import changes a row of: their row count and highest
key are compared after a refusal (reading them whole each time would slow the fuzzing down as
they grow); every other table is compared row by row."""


def fuzz_settings(settings: Settings) -> Settings:
    """The test's settings with small archive limits, so that a zip bomb trips them cheaply."""
    return settings.model_copy(
        update={"max_upload_bytes": 1_000_000, "max_unpacked_bytes": 2_000_000, "max_archive_members": 40}
    )


def has_phi(message: str) -> bool:
    """True when ``message`` repeats the patient's name or a damaged cell's canary."""
    return PHI_MARK in message.lower()


@dataclasses.dataclass
class FuzzTarget:
    """One database with one patient whose valid seed is stored: the state a refusal must keep."""

    engine: Engine
    settings: Settings
    patient_id: str
    scratch: Path
    """Where the files of a folder case are written, one case at a time."""

    @classmethod
    def create(cls, engine: Engine, settings: Settings, scratch: Path, name: str) -> FuzzTarget:
        """A patient with the seed of layout ``name`` imported and committed."""
        with session_scope(engine) as session:
            patient = add_patient(
                session, validate_patient(email="fuzz@example.org", name="Fuzz Patient", timezone=ZONE)
            )
        target = cls(engine, settings, patient.id, scratch)
        seed = layout(name)
        outcome = target.run(_seed_case(seed), tally=None)
        assert outcome == "stored", f"the valid seed of {name} was refused: {outcome}"
        return target

    # -- the command's path ---------------------------------------------------------------------

    def _files(self, case: Case) -> tuple[list[IncomingFile], list[str | None]]:
        """What ``glucoshare import`` reads: one file, or a folder's files (through ``read_folder``)."""
        if case.folder is None:
            return [IncomingFile(m.name, m.data) for m in case.files], [None] * len(case.files)
        root = self.scratch / case.folder
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for member in case.files:
            path = root / member.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(member.data)
        files = read_folder(root, self.settings)
        return files, [root.name] * len(files)

    def run(self, case: Case, *, tally: str | None) -> str:
        """Import ``case`` as the command does and judge it (module docstring); return the outcome."""
        before = self.state()
        newest = self._newest_record()
        try:
            files, containers = self._files(case)
            with session_scope(self.engine) as session:
                patient = session.get(Patient, self.patient_id)
                assert patient is not None
                uploads = import_files(
                    session,
                    settings=self.settings,
                    patient=patient,
                    files=files,
                    containers=containers,
                    timezone=None,
                    actor="cli:fuzz",
                )
        except InternalError:
            raise
        except GlucoshareError as exc:
            outcome = self._refused(exc, before)
        else:
            self._stored(uploads, newest)
            outcome = "stored"
        if tally is not None:
            count(case.layout, tally, outcome)
        return outcome

    def _refused(self, exc: GlucoshareError, before: dict[str, Any]) -> str:
        message = exc.message
        assert message.strip(), f"{type(exc).__name__} without a message"
        notes = exc.notes if isinstance(exc, NoRecordsError) else ()
        for said in (message, str(exc), *notes):
            assert not has_phi(said), f"the refusal repeats health data: {said[:500]!r}"
        assert self.state() == before, f"a refused import ({exc.code}) changed the stored data"
        return exc.code

    def _stored(self, uploads: list[UploadOut], newest: int) -> None:
        assert uploads, "an import that stored nothing must be refused"
        for upload in uploads:
            for said in (*upload.warnings, *(row.reason for row in upload.rejected)):
                assert not has_phi(said), (
                    f"{upload.format}: a warning or rejection repeats health data: {said!r}"
                )
        low, high = plausible_bounds()
        with Session(self.engine) as session:
            rows = session.execute(
                select(Record.type, Record.time_ms, Record.utc_offset_min, Record.value).where(
                    Record.id > newest
                )
            ).all()
        for kind, time_ms, offset, value in rows:
            assert low <= time_ms <= high + 60_000, (
                f"{kind} stored at {time_ms}, outside the plausible window"
            )
            assert OFFSET_BOUNDS_MIN[0] <= offset <= OFFSET_BOUNDS_MIN[1], (
                f"{kind} stored with UTC offset {offset}"
            )
            if value is None:
                continue
            assert math.isfinite(value), f"{kind} stored with value {value}"
            assert value >= 0, f"{kind} stored with the negative value {value}"
            if kind in GLUCOSE_TYPES:
                assert 0 < value <= GLUCOSE_CEILING_MGDL, f"{kind} stored with {value} mg/dL"
        with session_scope(self.engine) as session:  # what the worker does next: the daily summaries
            refresh_outdated(session, [self.patient_id])

    # -- the stored state -----------------------------------------------------------------------

    def _newest_record(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.max(Record.id))) or 0

    def state(self) -> dict[str, Any]:
        """Row counts of every table, every row of those an import may change, the raw files."""
        tables = Base.metadata.sorted_tables
        snapshot: dict[str, Any] = {}
        with self.engine.connect() as conn:
            counts = conn.execute(
                select(*(select(func.count()).select_from(t).scalar_subquery().label(t.name) for t in tables))
            ).one()
            snapshot["counts"] = dict(counts._mapping)
            for table in tables:
                if table.name in GROWING_TABLES:
                    key = next(iter(table.primary_key.columns))
                    snapshot[table.name] = conn.execute(select(func.max(key))).scalar()
                    continue
                rows = conn.execute(text(f'SELECT * FROM "{table.name}"')).all()
                snapshot[table.name] = sorted((tuple(r) for r in rows), key=repr)
        folder = self.settings.data_dir  # kept raw files are rows (sealed_files); nothing else is written
        snapshot["data folder"] = (
            sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []
        )
        return snapshot


def _seed_case(seed: Layout) -> Case:
    """The valid seed as a case (a zip layout zipped, as a vendor delivers it)."""
    if seed.kind == "zip":
        files = (
            type(seed.members[0])(seed.container, zip_members([(m.name, m.data) for m in seed.members])),
        )
        return Case(seed.name, ("seed",), files, None)
    return Case(seed.name, ("seed",), seed.members, seed.container if seed.kind == "folder" else None)
