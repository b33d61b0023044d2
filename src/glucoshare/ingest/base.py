"""The importer plugin contract: detect → parse → normalise to the canonical model.

An importer is a class registered under the ``glucoshare.importers`` entry point. Built-in
vendors register exactly like third-party ones (see ``pyproject.toml``). An importer

* recognises its format from the **content** (:meth:`Importer.detect`, never the file name),
* parses the file into :class:`ParsedRecord` objects in canonical units, with UTC instants that it
  resolves through :meth:`ParseContext.clock` (one :class:`~glucoshare.ingest.localtime.LocalClock`
  per stream, fed in the device's order); runs of plain sensor readings may come as one
  :class:`ReadingBlock` of columns instead (the fast path of CGM files, where nine rows in ten are
  readings),
* registers every device it sees in :attr:`ParseResult.devices` before yielding a record of it,
* reports single unreadable rows in :attr:`ParseResult.rejected` with their line numbers (in any
  order),
* may hand records over before it has read the whole file, on an assumption it checks at the end;
  when the check fails it yields :class:`Restart` and the file's records again (and clears what it
  rejected so far, if it reads the rows again), and
* raises :class:`~glucoshare.ingest.errors.MalformedFileError` when the file as a whole is broken.

Records are yielded lazily: an import stores them while the parse reads on (in another process
for large files, :mod:`glucoshare.ingest.parse_process`).

An importer may set the class attribute ``final_newline = True`` when every file of its format ends
with a line break; a file that does not is then refused as truncated. Otherwise an unreadable last
row of a file without a final line break is taken for truncation, unless the importer sets
``checks_truncation = True``: it refuses a cut-off file itself (a JSON array that never closes), or
its files never end with a line break, so their last row tells nothing (Glooko).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import operator
import re
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.localtime import LocalClock

DETECT_LINES = 40
"""How many leading lines of a file :meth:`Importer.detect` sees."""

HEAD_LINE_CHARS = 65_536
"""At most this much of each leading line reaches :meth:`Importer.detect`."""

_LINES_CHUNK = 1 << 20
_ODD_LINE_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _only_newline_breaks(chunk: str) -> bool:
    """True when ``str.splitlines`` would split ``chunk`` only where a line feed ends a line."""
    if any(mark in chunk for mark in _ODD_LINE_BREAKS):
        return False
    return "\r" not in chunk or chunk.count("\r") == chunk.count("\r\n")


@dataclasses.dataclass(slots=True)
class DeviceInfo:
    """A physical device as a file describes it."""

    manufacturer: str
    model: str
    serial: str | None
    identifiers: set[tuple[str, str]] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(slots=True)
class ParsedRecord:
    """One canonical record read from a file.

    ``device`` is the key of its :class:`DeviceInfo` in :attr:`ParseResult.devices`; ``value`` is in
    the canonical unit of ``type`` (:mod:`glucoshare.records.vocabulary`); ``identity`` completes
    the natural key where type, subtype, instant and value do not tell two records apart.
    """

    type: str
    subtype: str
    time_ms: int
    utc_offset_min: int
    line: int
    device: str
    value: float | None = None
    orig_value: float | None = None
    orig_unit: str | None = None
    duration_ms: int | None = None
    annotation: str | None = None
    payload: dict[str, Any] | None = None
    identity: str = ""

    def __reduce__(self) -> tuple[Callable[..., ParsedRecord], tuple[Any, ...]]:
        """Pickled as its fields, in order.

        The parse process sends many; the default (a slotted dataclass's state) takes several times
        as long to pickle and to unpickle.
        """
        return ParsedRecord, _RECORD_FIELDS(self)


_RECORD_FIELDS = operator.attrgetter(*(field.name for field in dataclasses.fields(ParsedRecord)))


@dataclasses.dataclass(frozen=True, slots=True)
class RowOrigin:
    """Where the records of one row come from: its instant, UTC offset, line and device key."""

    time_ms: int
    utc_offset_min: int
    line: int
    device: str

    def record(
        self,
        type_: str,
        subtype: str = "",
        value: float | None = None,
        *,
        orig_value: float | None = None,
        orig_unit: str | None = None,
        duration_ms: int | None = None,
        annotation: str | None = None,
        payload: dict[str, Any] | None = None,
        identity: str = "",
    ) -> ParsedRecord:
        """A record of the row (the fields mean what they mean in :class:`ParsedRecord`)."""
        return ParsedRecord(
            type_,
            subtype,
            self.time_ms,
            self.utc_offset_min,
            self.line,
            self.device,
            value,
            orig_value,
            orig_unit,
            duration_ms,
            annotation,
            payload,
            identity,
        )


@dataclasses.dataclass(slots=True)
class ReadingBlock:
    """Plain records of one type, subtype, device and unit, as columns of equal length.

    Equivalent to one :class:`ParsedRecord` per index (without annotation, payload or identity);
    ``value`` in the canonical unit, ``orig_value`` in ``orig_unit`` as the file wrote it. Readings
    have no ``duration_ms``; evenly logged doses (a pump's basal segments) have one per row.
    """

    type: str
    subtype: str
    device: str
    orig_unit: str
    time_ms: npt.NDArray[np.int64]
    utc_offset_min: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    orig_value: npt.NDArray[np.float64]
    line: npt.NDArray[np.int64]
    duration_ms: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return len(self.time_ms)

    def records(self) -> Iterator[ParsedRecord]:
        """The block as one :class:`ParsedRecord` per row."""
        count = len(self.time_ms)
        durations = itertools.repeat(None, count) if self.duration_ms is None else self.duration_ms.tolist()
        for time_ms, offset, value, original, line, duration in zip(
            self.time_ms.tolist(),
            self.utc_offset_min.tolist(),
            self.value.tolist(),
            self.orig_value.tolist(),
            self.line.tolist(),
            durations,
            strict=True,
        ):
            yield ParsedRecord(
                self.type,
                self.subtype,
                time_ms,
                offset,
                line,
                self.device,
                value,
                original,
                self.orig_unit,
                duration,
            )

    def kept(self, keep: npt.NDArray[np.bool_] | slice) -> ReadingBlock:
        """The block with only the rows ``keep`` selects: where a mask is true, or a slice of them."""
        return dataclasses.replace(
            self,
            time_ms=self.time_ms[keep],
            utc_offset_min=self.utc_offset_min[keep],
            value=self.value[keep],
            orig_value=self.orig_value[keep],
            line=self.line[keep],
            duration_ms=None if self.duration_ms is None else self.duration_ms[keep],
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Restart:
    """Withdraws every item the parse of a file yielded before it; the items after it replace them.

    An importer that hands records over while it reads on may find, at the end of the file, that
    what it assumed while reading does not hold (Tandem Source resolves a stream's times a chunk at
    a time while its rows ascend; a stream that stops ascending may then be read in another order).
    It then yields this and the file's records again, read whole. A consumer undoes what it did with
    the withdrawn items (an import deletes the records it stored of the file). Rare by design: an
    importer speculates only on what nearly every file does.
    """

    reason: str


ParsedItem = ParsedRecord | ReadingBlock | Restart
"""What :attr:`ParseResult.records` yields."""


def settled(items: Iterable[ParsedItem]) -> list[ParsedRecord | ReadingBlock]:
    """The items of a parse that stand: those after its last :class:`Restart` (all of them, without one)."""
    kept: list[ParsedRecord | ReadingBlock] = []
    for item in items:
        if isinstance(item, Restart):
            kept.clear()
        else:
            kept.append(item)
    return kept


def each_record(items: Iterable[ParsedItem]) -> Iterator[ParsedRecord]:
    """Every record of a parse that stands (:func:`settled`), with blocks expanded into single records."""
    for item in settled(items):
        if isinstance(item, ReadingBlock):
            yield from item.records()
        else:
            yield item


class CsvReader(Protocol):
    """What :func:`checked_rows` needs of a :func:`csv.reader`: its rows and the line it is at."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...


MAX_SHOWN_LABEL = 40
"""The most characters of a file's own label (a column, a unit, a field) that a message repeats."""


def shown(label: str) -> str:
    """A label from a file as a message quotes it: ``repr``, cut to :data:`MAX_SHOWN_LABEL` characters.

    A damaged or hostile file's "column name" may be a whole line or megabytes long; the message
    names it, recognisably, without repeating it all.
    """
    if len(label) <= MAX_SHOWN_LABEL:
        return repr(label)
    return repr(label[:MAX_SHOWN_LABEL]) + f"… ({len(label):,} characters)"


def checked_rows(reader: CsvReader, name: str) -> Iterator[list[str]]:
    """The rows of ``reader``; a row the csv module cannot split refuses the file of ``name``.

    A carriage return inside an unquoted field (a file whose line ends were damaged) or a broken
    quote raises :class:`~glucoshare.ingest.errors.MalformedFileError` naming the line, never the
    row's content.
    """
    try:
        yield from reader
    except csv.Error:
        raise _damaged(name, reader.line_num) from None


def checked_chunks(reader: CsvReader, name: str, size: int) -> Iterator[list[list[str]]]:
    """:func:`checked_rows` in lists of up to ``size`` rows, for an importer that reads a chunk at a time.

    A row the csv module cannot split refuses the file the same way, naming its line.
    """
    rows = iter(reader)
    while True:
        try:
            chunk = list(itertools.islice(rows, size))
        except csv.Error:
            raise _damaged(name, reader.line_num) from None
        if not chunk:
            return
        yield chunk


def _damaged(name: str, line: int) -> MalformedFileError:
    msg = f"{name}: line {line}: a field holds a stray line break or quote (a damaged file?)"
    return MalformedFileError(msg)


_UNSTORABLE_ESCAPE = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u([dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|[dD][89a-fA-F][0-9a-fA-F]{2}|0000)"
)


def _replacement(match: re.Match[str]) -> str:
    pair = match.group(2)
    return match.group(0) if len(pair) > 4 else match.group(1) + "\\ufffd"  # noqa: PLR2004 - "dc80", "0000"


def storable_json(source: SourceText) -> SourceText:
    r"""``source`` (JSON) with the escapes of text no database stores made ``\ufffd``.

    JSON allows ``\u0000`` (PostgreSQL refuses a NUL in text) and half of a UTF-16 pair on its own
    (``\udc80``: the text it decodes to cannot be encoded at all); the replacement character takes
    their place. The escape has the same length, so lines and columns stay where they were.
    """
    if _UNSTORABLE_ESCAPE.search(source.text) is None:
        return source
    return dataclasses.replace(source, text=_UNSTORABLE_ESCAPE.sub(_replacement, source.text))


@dataclasses.dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that could not be read, with the reason (never the row's content)."""

    line: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class SourceText:
    """A decoded file handed to an importer."""

    name: str
    text: str
    encoding: str

    def lines(self) -> Iterator[str]:
        """Every line with its terminator, for :func:`csv.reader`, without copying the whole text.

        ``io.StringIO(text)`` would hold a second, four-bytes-per-character copy of the file (about
        200 MB for a one-year one-minute export); this reads the text in 1 MB slices instead, each
        split into a list at once (a line at a time through a generator took as long again as the
        splitting).
        """
        return itertools.chain.from_iterable(self._slices())

    def _slices(self) -> Iterator[list[str]]:
        """The lines of :meth:`lines`, a list per slice of about :data:`_LINES_CHUNK` characters."""
        text = self.text
        size = len(text)
        start = 0
        while start < size:
            end = text.find("\n", min(start + _LINES_CHUNK, size) - 1)
            end = size if end < 0 else end + 1
            chunk = text[start:end]
            if _only_newline_breaks(chunk):
                yield chunk.splitlines(keepends=True)
            else:  # only "\n" ends a line here; str.splitlines would also split at "\x1c" or "\u2028"
                pieces = [piece + "\n" for piece in chunk.split("\n")]
                pieces[-1] = pieces[-1][:-1]  # the piece after the last line feed has none
                yield pieces if pieces[-1] else pieces[:-1]
            start = end

    def head(self, lines: int = DETECT_LINES) -> list[str]:
        """The first ``lines`` lines, without line terminators, each cut at :data:`HEAD_LINE_CHARS`.

        A JSON export may be one line of hundreds of megabytes; detection needs only its start.
        """
        out: list[str] = []
        start = 0
        text = self.text
        while len(out) < lines and start < len(text):
            end = text.find("\n", start)
            if end < 0:
                end = len(text)
            out.append(text[start : min(end, start + HEAD_LINE_CHARS)].rstrip("\r"))
            start = end + 1
        return out


class ParseContext:
    """What an importer needs besides the file: the time zone, one clock per stream, the siblings.

    ``siblings`` are the other files that arrived together with this one (the members of the same
    archive, the files of one folder or one request), decoded; an importer whose vendor splits one
    export into several files may look at them (Tandem Source's hourly basal totals defer to the
    basal doses of the same export). They are never parsed into records by another file's import.
    """

    def __init__(self, timezone: str, siblings: Sequence[SourceText] = ()) -> None:
        self.timezone = timezone
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.siblings = tuple(siblings)
        self._clocks: dict[str, LocalClock] = {}

    def clock(self, stream: str) -> LocalClock:
        """The clock of one stream (created on first use)."""
        clock = self._clocks.get(stream)
        if clock is None:
            clock = self._clocks[stream] = LocalClock(self.tz)
        return clock

    def fresh_clock(self, stream: str) -> LocalClock:
        """A new clock for one stream, in place of the one it had: the stream is read again from its start."""
        clock = self._clocks[stream] = LocalClock(self.tz)
        return clock

    @property
    def skipped_hour_records(self) -> int:
        """Records whose wall time fell in a skipped (spring-forward) hour."""
        return sum(c.skipped_hour for c in self._clocks.values())

    @property
    def repeated_hour_records(self) -> int:
        """Records whose wall time fell in a repeated (fall-back) hour."""
        return sum(c.ambiguous for c in self._clocks.values())


@dataclasses.dataclass(slots=True)
class ParseResult:
    """The outcome of parsing one file. ``records`` is consumed once, lazily."""

    records: Iterator[ParsedItem]
    devices: dict[str, DeviceInfo] = dataclasses.field(default_factory=dict)
    rejected: list[RejectedRow] = dataclasses.field(default_factory=list)
    primary_device: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    """Warnings for the person importing (what of the file was deliberately not stored, and why);
    filled while ``records`` is consumed or before, never with the file's content."""


class Importer(Protocol):
    """A vendor format reader."""

    format: ClassVar[str]
    """Stable format name used in output (``dexcom_clarity``, ``libreview``, ...)."""

    label: ClassVar[str]
    """Human name of the format for messages and documentation."""

    def detect(self, head: list[str]) -> bool:
        """True when the leading lines of a decoded file are this format."""
        ...

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Parse the whole file (lazily) into canonical records."""
        ...
