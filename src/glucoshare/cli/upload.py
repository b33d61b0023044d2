"""``glucoshare upload PATH... --server URL --token T`` and ``--watch FOLDER``.

A thin command over :mod:`glucoshare.uploader` (docs/cli.md, docs/upload-api.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from glucoshare.cli.imports import read_file, read_folder
from glucoshare.cli.runtime import JsonOption, fail, handle_errors, print_json, settings, stderr, stdout
from glucoshare.config import Settings
from glucoshare.errors import InputError
from glucoshare.ingest.errors import InvalidTimezoneError
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.uploader.client import ServerUnavailableError, UploadClient, check_server
from glucoshare.uploader.plan import Source
from glucoshare.uploader.send import FileReport, Uploader, refused
from glucoshare.uploader.watch import watch_folder

TOKEN_VARIABLE = "GLUCOSHARE_UPLOAD_TOKEN"  # noqa: S105 - the name of a variable, not a secret
"""The environment variable the token may come from (so that it is not in the shell history)."""


class _Bar:
    """The uploader's progress as a Rich bar per data set, on stderr."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task: TaskID | None = None

    def start(self, name: str, total: int) -> None:
        self.task = self.bar.add_task(name, total=total)

    def advance(self, count: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, count)

    def finish(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None


def _source(path: Path, now: Settings) -> Source:
    if path.is_dir():
        return Source(path.name, read_folder(path, now), container=path.name)
    return Source(path.name, [read_file(path, now.max_upload_bytes)])


def _left_out_text(left_out: dict[str, int]) -> str:
    return "; ".join(f"{count:,} {reason}" for reason, count in left_out.items())


def _report_lines(report: FileReport) -> None:
    """What a file's upload left out or warns about, and why it was refused, on stderr."""
    if report.error is not None:
        message = report.error["message"]
        named = message if message.startswith(f"{report.file}:") else f"{report.file}: {message}"
        stderr.print(f"not uploaded: {named}", markup=False, soft_wrap=True)
    for dataset in report.datasets:
        if dataset.left_out:
            stderr.print(
                f"{report.file}: records not sent: {_left_out_text(dataset.left_out)}",
                markup=False,
                soft_wrap=True,
            )
    if report.rejected_rows:
        stderr.print(f"{report.file}: {report.rejected_rows:,} rows could not be read", markup=False)
    for warning in report.warnings:
        stderr.print(f"{report.file}: {warning}", markup=False, soft_wrap=True)


def _watch_line(report: FileReport) -> None:
    """One line per file handled while watching (stderr)."""
    if report.error is not None:
        _report_lines(report)
        return
    if report.skipped is not None:
        stderr.print(f"{report.file}: skipped ({report.skipped})", markup=False)
        return
    sent = sum(d.sent for d in report.datasets)
    new = sum(d.new for d in report.datasets)
    stderr.print(f"{report.file}: {sent:,} records sent, {new:,} new", markup=False)
    _report_lines(report)


def _print_table(reports: list[FileReport]) -> None:
    table = Table("file", "format", "device", "status", "sent", "new", "already on server", "left out")
    for report in reports:
        if not report.datasets:
            status = "refused" if report.error is not None else f"skipped: {report.skipped}"
            table.add_row(report.file, report.format or "-", "-", status, "0", "0", "0", "0")
        for dataset in report.datasets:
            device = f"{dataset.device['manufacturer']} {dataset.device['model']}"
            table.add_row(
                report.file,
                report.format or "-",
                device,
                dataset.status,
                f"{dataset.sent:,}",
                f"{dataset.new:,}",
                f"{dataset.already_on_server:,}",
                f"{sum(dataset.left_out.values()):,}",
            )
    stdout.print(table)
    for report in reports:
        _report_lines(report)


@handle_errors
def upload_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Export files, zip archives or folders of export files to upload.", show_default=False
        ),
    ] = None,
    server: Annotated[
        str,
        typer.Option(
            "--server",
            help="The Glucoshare server, as https://host or https://host:port/path "
            "(plain http only to this machine).",
        ),
    ] = "",
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar=TOKEN_VARIABLE,
            show_envvar=True,
            show_default=False,
            help="An upload token of the patient (glucoshare token create --kind upload); better given in "
            f"the environment variable {TOKEN_VARIABLE}, out of the shell history.",
        ),
    ] = "",
    watch: Annotated[
        Path | None,
        typer.Option(
            "--watch",
            help="Keep running: upload each new or changed export that appears in this folder.",
            file_okay=False,
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between two looks at the watched folder.", min=0.01)
    ] = 30.0,
    max_rounds: Annotated[
        int | None,
        typer.Option(
            "--max-rounds", help="Stop watching after N looks at the folder (default: Ctrl-C).", min=1
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(help="IANA time zone of the files' local times (default: the patient's on the server)."),
    ] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Send every record, not only those newer than the server's newest for the device "
            "(for an older export sent after a newer one).",
        ),
    ] = False,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Allow plain http to a server on another machine.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Upload device exports to a Glucoshare server: only what it lacks, resuming an interrupted upload."""
    if not server:
        raise InputError("--server: give the address of the Glucoshare server")
    base = check_server(server, insecure_http=insecure_http)
    secret = token.strip()
    if not secret:
        raise InputError(f"--token: give an upload token, or set {TOKEN_VARIABLE}")
    if not paths and watch is None:
        raise InputError("give export files or folders to upload, or --watch FOLDER")
    if watch is not None and not watch.is_dir():
        raise InputError(f"--watch: {watch} is not a folder")
    if timezone is not None:
        from glucoshare.accounts.schemas import check_timezone  # noqa: PLC0415 - only with --timezone

        try:
            timezone = check_timezone(timezone)
        except ValueError as exc:
            raise InvalidTimezoneError(f"--timezone: {exc}") from exc
    now = settings()
    reports: list[FileReport] = []
    with (
        UploadClient(base, secret) as client,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,} of {task.total:,} records"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not stderr.is_terminal,
        ) as bar,
    ):
        uploader = Uploader(client, now, timezone=timezone, full=full, progress=_Bar(bar))
        if paths:
            sources: list[Source] = []
            for path in paths:
                try:
                    sources.append(_source(path, now))
                except InputError as exc:
                    reports.append(refused(path.name, exc))
            try:
                reports.extend(uploader.upload(sources))
            except KeyboardInterrupt:
                stderr.print("interrupted: run the same command again to resume the upload", markup=False)
                raise typer.Exit(1) from None
        if watch is not None:
            folder = watch

            def handle(path: Path) -> bool:
                name = path.relative_to(folder).as_posix()
                try:
                    data = read_file(path, now.max_upload_bytes).data
                except InputError as exc:
                    got = [refused(name, exc)]
                else:
                    try:
                        got = uploader.upload([Source(name, [IncomingFile(name, data)])])
                    except ServerUnavailableError as exc:
                        stderr.print(f"warning: {exc.message}; trying again later", markup=False)
                        return False
                for report in got:
                    _watch_line(report)
                reports.extend(got)
                return True

            if not as_json:
                stderr.print(f"watching {folder} (Ctrl-C stops)", markup=False)
            watch_folder(folder, handle, interval_s=interval, max_rounds=max_rounds)
    if as_json:
        print_json({"server": base, "files": [r.to_json() for r in reports]})
    elif watch is None:
        _print_table(reports)
    failed = [r for r in reports if r.error is not None]
    if failed:
        first = failed[0]
        message = first.error["message"] if first.error else ""
        verb = "was" if len(failed) == 1 else "were"
        fail(InputError(f"{len(failed)} of {len(reports)} files {verb} not uploaded; the first: {message}"))
