"""Send device exports to a Glucoshare server: only what it lacks, resuming what was interrupted.

For each file (:mod:`glucoshare.uploader.plan`) and each device in it, the uploader opens the
data set named ``upload:<sha256 of the file>:<device key>``. The server's answer decides:

* **closed**: the file was uploaded before; nothing is sent (``status`` ``already uploaded``);
* **open** with ``records_received`` = *n* > 0: an earlier upload was interrupted after the server
  had received the first *n* records of the file's stream; those are skipped (``resumed``) and the
  rest are sent;
* **open** and empty: a new upload.

Records are sent only when strictly newer than the newest the server holds for their type and
device (``device_latest``; the rest count as ``already_on_server``), unless ``full`` is set. Then
the data set is closed: the server stores its records, all at once, each at most once.

The rule "newer than the newest" is what makes a longer export of the same device cheap to send
again; it also means an *older* export sent after a newer one of the same device is taken as
already on the server (send it with ``full``). Resuming assumes the server's newest records of the
device did not move between the interrupted run and this one; when the file's stream turns out
shorter than what the server received, every record is sent again (the server stores each once).

Without a time zone the uploader reads local times in the patient's zone on the server, like
``glucoshare import``: the first data set it opens tells it (the first file, read in UTC until
then, is read again when it has records to send).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, Final, Protocol

from glucoshare.config import Settings
from glucoshare.datasets.records import MAX_RECORDS
from glucoshare.errors import ConflictError, InputError
from glucoshare.ingest.base import SourceText
from glucoshare.ingest.errors import NoRecordsError
from glucoshare.uploader.client import Dataset, UploadClient
from glucoshare.uploader.plan import (
    DeviceRecords,
    FilePlan,
    Prepared,
    Source,
    Tally,
    prepare,
    read_records,
    sendable,
)

UPLOADED: Final = "uploaded"
"""A data set this run closed."""
ALREADY_UPLOADED: Final = "already uploaded"
"""A data set the server had closed before: the file was uploaded, nothing was sent."""
PROVISIONAL_ZONE: Final = "UTC"
"""The zone a file is first read in while the patient's zone is not yet known (module notes)."""


class Progress(Protocol):
    """Where the uploader reports what it did (the command line draws a progress bar)."""

    def start(self, name: str, total: int) -> None:
        """A data set's records start to go: ``total`` records of the device in the file."""

    def advance(self, count: int) -> None:
        """``count`` more records were dealt with (sent, skipped or left out)."""

    def finish(self) -> None:
        """The data set is done."""


class _Silent:
    def start(self, name: str, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclasses.dataclass(slots=True)
class DatasetReport:
    """What happened to one device's records of one file."""

    id: str
    device: dict[str, str | None]
    status: str
    """:data:`UPLOADED` or :data:`ALREADY_UPLOADED`."""
    sent: int = 0
    """Records sent by this run."""
    resumed: int = 0
    """Records an interrupted run had sent already (skipped by this one)."""
    new: int = 0
    """Records the server stored that it did not hold before (when this run closed the data set)."""
    already_on_server: int = 0
    """Records not newer than the server's newest of their type for the device (not sent)."""
    left_out: dict[str, int] = dataclasses.field(default_factory=dict)
    """Records that cannot be sent, per reason (module notes of :mod:`glucoshare.uploader.plan`)."""

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (``glucoshare upload --json``)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class FileReport:
    """What happened to one file: its data sets, or why it was skipped or refused."""

    file: str
    format: str | None = None
    datasets: list[DatasetReport] = dataclasses.field(default_factory=list)
    skipped: str | None = None
    """Why nothing was sent though nothing went wrong (``already uploaded``, ``no records``)."""
    error: dict[str, str] | None = None
    """``{"code", "message"}`` when the file was refused (the command exits with 2)."""
    rejected_rows: int = 0
    """Rows of the file that could not be read (as an import rejects them)."""
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (``glucoshare upload --json``)."""
        document = dataclasses.asdict(self)
        document["datasets"] = [d.to_json() for d in self.datasets]
        return document


def refused(name: str, error: InputError) -> FileReport:
    """The report of a file refused with ``error`` (its message names no health data)."""
    return FileReport(file=name, error={"code": error.code, "message": error.message})


class Uploader:
    """Uploads files through one client (module notes).

    ``timezone`` (IANA) reads the files' local times and is given to new data sets; ``None``: the
    patient's zone on the server. ``full`` sends every record, not only those newer than the
    server's newest. Errors of the server that concern the whole run (a refused token, an
    unreachable server) are raised; a file that is refused is reported and the others go on.
    """

    def __init__(
        self,
        client: UploadClient,
        settings: Settings,
        *,
        timezone: str | None = None,
        full: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.given_zone = timezone
        self.zone = timezone
        self.full = full
        self.progress: Progress = progress or _Silent()

    def upload(self, sources: Sequence[Source]) -> list[FileReport]:
        """Upload the files of every source; one report per file (an archive's members each have one).

        Files that arrive together see each other while they are read, as in one import.
        """
        reports: list[FileReport] = []
        ready: list[tuple[Prepared, list[str]]] = []
        for source in sources:
            try:
                preparation = prepare(self.settings, source)
            except InputError as exc:
                reports.append(refused(source.label, exc))
                continue
            for at, prepared in enumerate(preparation.files):
                notes = []
                if at == 0 and preparation.left_out:
                    count = len(preparation.left_out)
                    notes.append(
                        f"{count} file{'s' if count > 1 else ''} of {source.label} not uploaded: "
                        + "; ".join(preparation.left_out)
                    )
                ready.append((prepared, notes))
        siblings = [prepared.source for prepared, _notes in ready]
        for prepared, notes in ready:
            report = self.upload_file(prepared, siblings)
            report.warnings[:0] = notes
            reports.append(report)
        return reports

    def upload_file(self, prepared: Prepared, siblings: Sequence[SourceText] = ()) -> FileReport:
        """Upload one prepared file; a refusal of the file (not of the run) goes in the report."""
        try:
            return self._upload_file(prepared, siblings)
        except NoRecordsError as exc:
            if prepared.container is None:
                return refused(prepared.name, exc)
            return FileReport(file=prepared.name, format=prepared.importer.format, skipped="no records")
        except InputError as exc:
            report = refused(prepared.name, exc)
            report.format = prepared.importer.format
            return report

    def _upload_file(self, prepared: Prepared, siblings: Sequence[SourceText]) -> FileReport:
        plan = read_records(prepared, timezone=self.zone or PROVISIONAL_ZONE, siblings=siblings)
        opened = {device.key: self._open(plan, device) for device in plan.devices}
        if self.zone is None:
            self.zone = opened[plan.devices[0].key].timezone
        if plan.timezone != self.zone and any(d.state != "closed" for d in opened.values()):
            plan = read_records(prepared, timezone=self.zone, siblings=siblings)
        report = FileReport(
            file=plan.name, format=plan.format, rejected_rows=plan.rejected_rows, warnings=list(plan.notes)
        )
        for device in plan.devices:
            dataset = opened.get(device.key) or self._open(plan, device)
            report.datasets.append(self._send(plan, device, dataset))
        if report.datasets and all(d.status == ALREADY_UPLOADED for d in report.datasets):
            report.skipped = ALREADY_UPLOADED
        return report

    def _open(self, plan: FilePlan, device: DeviceRecords) -> Dataset:
        return self.client.open_dataset(
            name=plan.dataset_name(device),
            device=device.device_json,
            source_format=plan.format,
            timezone=self.given_zone,
        )

    def _send(self, plan: FilePlan, device: DeviceRecords, dataset: Dataset) -> DatasetReport:
        report = DatasetReport(id=dataset.id, device=device.device_json, status=ALREADY_UPLOADED)
        if dataset.state == "closed":
            return report
        if dataset.state != "open":
            msg = f"{plan.name}: the server holds a continuous data set under this file's name"
            raise ConflictError(msg)
        latest = {} if self.full else dataset.device_latest
        received = dataset.records_received
        label = f"{plan.name} ({device.device.manufacturer} {device.device.model})"
        self.progress.start(label, device.count)
        try:
            tally = Tally()
            position, sent = self._stream(device, dataset, latest, tally, skip=received)
            if position < received:
                # The stream is shorter than what the server received: it changed since the
                # interrupted run. Send all of it again; the server stores each record once.
                tally = Tally()
                _position, sent = self._stream(
                    device, dataset, latest, tally, skip=0, after=received, shown=False
                )
                received = 0
        finally:
            self.progress.finish()
        closed = self.client.close_dataset(dataset.id)
        report.status = UPLOADED
        report.sent = sent
        report.resumed = received
        report.new = closed.new
        report.already_on_server = tally.already_on_server
        report.left_out = dict(sorted(tally.left_out.items()))
        return report

    def _stream(
        self,
        device: DeviceRecords,
        dataset: Dataset,
        latest: dict[str, int],
        tally: Tally,
        *,
        skip: int,
        after: int | None = None,
        shown: bool = True,
    ) -> tuple[int, int]:
        """Send the device's stream past its first ``skip`` records; ``(stream length, records sent)``.

        Lines continue after ``after`` (default ``skip``): the server's count of records received.
        ``shown``: report the progress (a second pass over the same records does not).
        """
        first_line = (skip if after is None else after) + 1
        position = sent = 0
        counted = sum(device.left_out.values())
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            nonlocal sent, counted, batch
            if batch:
                sent += self.client.append_records(dataset.id, batch, first_line=first_line + sent)
                batch = []
            dealt = position + tally.already_on_server + sum(tally.left_out.values())
            if shown:
                self.progress.advance(dealt - counted)
            counted = dealt

        records: Iterator[dict[str, Any]] = sendable(
            device, latest=latest, zone=dataset.timezone, tally=tally
        )
        for record in records:
            position += 1
            if position <= skip:
                continue
            batch.append(record)
            if len(batch) >= MAX_RECORDS:
                flush()
        flush()
        return position, sent
