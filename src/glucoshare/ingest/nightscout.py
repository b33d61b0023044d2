"""Nightscout JSON saved from the API (research/formats.md §11, research/nightscout.md §1).

Layout
------
What a Nightscout site's API returns, saved to a file: a JSON **array** of documents of one
collection (``/api/v1/entries.json``, ``treatments.json``, ``devicestatus.json``,
``profile.json``), a single document (``/api/v1/profile/current``), an **object** holding several
such arrays keyed by collection name (``{"entries": [...], "treatments": [...],
"devicestatus": [...], "profile": [...]}``; ``profiles`` is read as ``profile``) or the API v3
answer ``{"status": 200, "result": [...]}``. Minified or indented, newest first as the API returns
it or in any order. Which collection a document of an array belongs to is decided from its
fields (:func:`~glucoshare.ingest.nightscout_mapping.document_collection`), so an array may mix
collections; under a collection key the key decides.

Recognition
-----------
Content only: the file starts (after a BOM and white space) with ``[`` or ``{``, and its first
document has Nightscout's fields: ``sgv``/``mbg`` or an entry ``type`` (``sgv``, ``mbg``,
``cal``) with ``date``/``dateString``; ``eventType`` with ``created_at`` (or another treatment
time); a profile ``store`` with ``defaultProfile`` or ``startDate``; or ``device``/``created_at``
with a loop, OpenAPS, pump or uploader status. A document whose ``type`` is a Tidepool data type
(``cbg``, ``smbg``, ``basal``, ...) or that has Tidepool's ``uploadId`` is not Nightscout; neither
is a FHIR resource. The first document may be cut off where the detection lines end; its keys
are then read from the text.

Mapping
-------
:mod:`glucoshare.ingest.nightscout_mapping` maps each document (shared with the Nightscout
API): entries ``sgv`` → ``cbg`` ``sensor`` (39 = LOW → 40 mg/dL ``low``; 0–38 are CGM error
codes, not stored), ``mbg`` → ``smbg`` ``meter``; treatments → boluses, carbohydrate, temporary
basals, fingersticks, device events, notes, exercise, the bolus calculator; a profile → one
``pumpSettings`` record; ``cal`` entries, devicestatus documents, loop states (temporary targets,
overrides, profile switches) and unknown event types are not stored and are counted in the
import's notes. Times are absolute (epoch ms or ISO text with an offset; text without an offset is
UTC); the offset comes from ``utcOffset``, else the ISO text, else the upload's time zone.

Plain ``sgv`` readings (a whole or decimal number of mg/dL from 40 to 1000 with a numeric
``date``) take a fast path and come as :class:`~glucoshare.ingest.base.ReadingBlock` columns per
device; everything else goes through the mapping functions.

Devices
-------
One device per uploader string (an entry's ``device``; a treatment's or profile's ``device``,
else its ``enteredBy`` or ``app`` when that names a known app), made by
:func:`~glucoshare.ingest.nightscout_mapping.device_info`: the CGM or pump the string names
(Dexcom, Abbott, Medtronic, Senseonics, Medtrum, Tandem, Insulet) or else the app (xDrip+, Loop,
Trio, AndroidAPS, OpenAPS, Spike, Nightscout), with the string in the model, e.g. Dexcom
``G6 (xDrip-DexcomG6)``; no serial. Treatments without one (careportal entries whose
``enteredBy`` is a person's nickname) go to the one ``Nightscout`` device.

Lines and errors
----------------
A record's line is the line where its document starts (every document of a minified file is on
line 1; a rejected document's reason also names its place in its array, ``treatment 12: ...``).
Text that is not valid JSON refuses the file naming the line and column (a file that ends inside
a document is reported as truncated); a document that is not an object, has no usable date or
holds an unreadable value is a rejected row.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Callable, Generator, Iterator
from typing import Any, ClassVar, Final

import numpy as np

from glucoshare.ingest.base import (
    ParseContext,
    ParsedItem,
    ParsedRecord,
    ParseResult,
    ReadingBlock,
    RejectedRow,
    SourceText,
    storable_json,
)
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.nightscout_mapping import (
    LAST_MS,
    MAX_GLUCOSE_MGDL,
    MAX_UTC_OFFSET_MIN,
    SENSOR_LOW_MGDL,
    NightscoutDocumentError,
    describe_ignored,
    device_info,
    document_collection,
    entry_offset,
    map_document,
)

BLOCK_READINGS: Final = 8192
"""Plain readings of one device gathered before they are handed over as one block."""

_WS = re.compile(r"[ \t\n\r]*")
_FIRST_KEY = re.compile(r'\{\s*"((?:[^"\\]|\\.)*)"\s*:')
_KEY = re.compile(r'"([A-Za-z_$][\w$.]{0,40})"\s*:')
_TYPE_VALUE = re.compile(r'"type"\s*:\s*"([^"\\]{0,40})"')
_WRAPPED = re.compile(r'"(entries|treatments|devicestatus|profile|profiles|result)"\s*:\s*([\[{])')
_COLLECTION_KEYS: Final[dict[str, str | None]] = {
    "entries": "entries",
    "treatments": "treatments",
    "devicestatus": "devicestatus",
    "profile": "profile",
    "profiles": "profile",
    "result": None,
}
_WRAPPER_KEYS: Final = frozenset({*_COLLECTION_KEYS, "status"})
_NAMES: Final[dict[str | None, str]] = {
    "entries": "entry",
    "treatments": "treatment",
    "profile": "profile",
    "devicestatus": "devicestatus document",
    None: "document",
}
_TIDEPOOL_TYPES: Final = frozenset(
    {
        "cbg", "smbg", "basal", "bolus", "wizard", "food", "pumpSettings", "cgmSettings",
        "deviceEvent", "physicalActivity", "upload", "bloodKetone", "insulin", "water",
        "reportedState", "alert", "dosingDecision", "controllerStatus", "controllerSettings",
        "pumpStatus", "cgmStatus", "deviceMeta",
    }
)  # fmt: skip
_ENTRY_TYPES: Final = frozenset({"sgv", "mbg", "cal"})
_ENTRY_TIMES: Final = frozenset({"date", "dateString", "sysTime"})
_TREATMENT_TIMES: Final = frozenset({"created_at", "eventTime", "timestamp", "date", "mills"})
_STATUS_KEYS: Final = frozenset({"openaps", "loop", "pump", "uploader", "uploaderBattery", "xdripjs"})

_Document = tuple[str | None, int, int, object]
"""A document as read: its collection (``None``: decided by content), line, ordinal and value."""


def _skip(text: str, pos: int) -> int:
    """The position after the white space at ``pos``."""
    end = _WS.match(text, pos)
    return pos if end is None else end.end()


def _start(text: str) -> int:
    """Where the JSON starts: after a byte-order mark and white space."""
    return _skip(text, 1 if text.startswith("\ufeff") else 0)


def _first_document(text: str) -> tuple[int, bool] | None:
    """Where the first document starts and whether it sits under a collection key."""
    pos = _start(text)
    first = text[pos : pos + 1]
    if first == "[":
        pos = _skip(text, pos + 1)
        return (pos, False) if text[pos : pos + 1] == "{" else None
    if first != "{":
        return None
    key = _FIRST_KEY.match(text, pos)
    if key is None or key[1] not in _WRAPPER_KEYS:
        return pos, False
    for found in _WRAPPED.finditer(text, pos):
        start = found.end() - 1 if found[2] == "{" else _skip(text, found.end())
        if text[start : start + 1] == "{":
            return start, True
    return None


def _first_keys(text: str, pos: int) -> tuple[set[str], object]:
    """The keys and ``type`` of the document starting at ``pos`` (read from its text when cut off)."""
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, pos)
    except json.JSONDecodeError:
        window = text[pos : pos + 50_000]
        found = _TYPE_VALUE.search(window)
        return set(_KEY.findall(window)), None if found is None else found[1]
    if not isinstance(doc, dict):
        return set(), None
    return set(doc), doc.get("type")


def looks_like_nightscout(text: str) -> bool:
    """True when ``text`` (a file's first lines) is Nightscout JSON (module notes)."""
    found = _first_document(text)
    if found is None:
        return False
    keys, kind = _first_keys(text, found[0])
    if "resourceType" in keys or "uploadId" in keys or (isinstance(kind, str) and kind in _TIDEPOOL_TYPES):
        return False
    if ("sgv" in keys or "mbg" in keys or kind in _ENTRY_TYPES) and _ENTRY_TIMES & keys:
        return True
    if "eventType" in keys and _TREATMENT_TIMES & keys:
        return True
    if "store" in keys and ("defaultProfile" in keys or "startDate" in keys):
        return True
    return bool(("device" in keys or "created_at" in keys) and _STATUS_KEYS & keys)


class _Reader:
    """Walks one file's documents and maps them, collecting readings into blocks."""

    def __init__(self, source: SourceText, ctx: ParseContext, result: ParseResult) -> None:
        self.name = source.name
        self.text = source.text
        self.zone = ctx.tz
        self.result = result
        self.ignored: collections.Counter[str] = collections.Counter()
        self.line = 1
        self.last = 0
        # The C scanner behind raw_decode (not in the stubs): no white-space skipping per call.
        decoder: Any = json.JSONDecoder()
        self.scan: Callable[[str, int], tuple[Any, int]] = decoder.scan_once
        self.keys: dict[str, str] = {}
        self.blocks: dict[str, tuple[list[int], list[int], list[float], list[int]]] = {}

    # -- the JSON structure ----------------------------------------------------------------------

    def line_at(self, pos: int) -> int:
        """The line of ``pos`` (positions are asked for in increasing order)."""
        self.line += self.text.count("\n", self.last, pos)
        self.last = pos
        return self.line

    def value(self, pos: int) -> tuple[Any, int]:
        """The JSON value at ``pos`` and where it ends."""
        try:
            return self.scan(self.text, pos)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", self.text, exc.value) from None

    def array(self, pos: int, collection: str | None) -> Generator[_Document, None, int]:
        """The elements of the array at ``pos``; returns the position after it.

        The hot loop of a file's structure: one C scan per element, the line counted from the
        previous element's start, white space skipped only where there is any.
        """
        text = self.text
        scan, count, skip = self.scan, text.count, _WS.match
        pos = _skip(text, pos + 1)
        if text[pos : pos + 1] == "]":
            return pos + 1
        ordinal = 0
        line, last = self.line, self.last
        try:
            while True:
                line += count("\n", last, pos)
                last = pos
                doc, end = scan(text, pos)
                ordinal += 1
                yield collection, line, ordinal, doc
                mark = text[end : end + 1]
                if mark == ",":
                    pos = end + 1
                    if text[pos : pos + 1] != "{":
                        pos = skip(text, pos).end()  # type: ignore[union-attr]  # matches every text
                    continue
                if mark != "]":
                    end = _skip(text, end)
                    mark = text[end : end + 1]
                    if mark == ",":
                        pos = _skip(text, end + 1)
                        continue
                if mark == "]":
                    self.line, self.last = line, last
                    return end + 1
                raise json.JSONDecodeError("Expecting ',' delimiter", text, end)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None

    def wrapper(self, pos: int) -> Generator[_Document, None, int]:
        """The members of an object keyed by collection; returns the position after it."""
        text = self.text
        pos = _skip(text, pos + 1)
        if text[pos : pos + 1] == "}":
            return pos + 1
        while True:
            if text[pos : pos + 1] != '"':
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
            key, end = self.value(pos)
            pos = _skip(text, end)
            if text[pos : pos + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
            pos = _skip(text, pos + 1)
            start = text[pos : pos + 1]
            if key in _COLLECTION_KEYS and start == "[":
                end = yield from self.array(pos, _COLLECTION_KEYS[key])
            elif key in _COLLECTION_KEYS and start == "{":
                line = self.line_at(pos)
                doc, end = self.value(pos)
                yield _COLLECTION_KEYS[key], line, 1, doc
            else:
                other, end = self.value(pos)
                if isinstance(other, list | dict) and other:
                    self.ignored["unknown_key"] += 1
            pos = _skip(text, end)
            mark = text[pos : pos + 1]
            if mark == "}":
                return pos + 1
            if mark != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
            pos = _skip(text, pos + 1)

    def documents(self) -> Generator[_Document, None, None]:
        """Every document of the file, in file order."""
        text = self.text
        pos = _start(text)
        first = text[pos : pos + 1]
        if first == "[":
            end = yield from self.array(pos, None)
        elif first == "{":
            key = _FIRST_KEY.match(text, pos)
            if key is not None and key[1] in _WRAPPER_KEYS:
                end = yield from self.wrapper(pos)
            else:
                line = self.line_at(pos)
                doc, end = self.value(pos)
                yield None, line, 1, doc
        else:
            msg = f"{self.name}: line {self.line_at(pos)}: the file is not a JSON array or object"
            raise MalformedFileError(msg)
        end = _skip(text, end)
        if end < len(text):
            raise json.JSONDecodeError("Extra data", text, end)

    # -- records ---------------------------------------------------------------------------------

    def device(self, source: str) -> str:
        """The device key of an uploader string, registering its device on first sight."""
        key = self.keys.get(source)
        if key is None:
            key = self.keys[source] = f"nightscout|{source}"
            self.result.devices[key] = device_info(source)
        return key

    def flush(self, source: str) -> ReadingBlock:
        """The gathered readings of one device as a block (and a fresh, empty gathering)."""
        times, offsets, values, lines = self.blocks.pop(source)
        column = np.array(values, dtype=np.float64)
        return ReadingBlock(
            type="cbg",
            subtype="sensor",
            device=self.device(source),
            orig_unit="mg/dL",
            time_ms=np.array(times, dtype=np.int64),
            utc_offset_min=np.array(offsets, dtype=np.int64),
            value=column,
            orig_value=column.copy(),
            line=np.array(lines, dtype=np.int64),
        )

    def records(self) -> Iterator[ParsedItem]:
        """Every record of the file (blocks of plain readings, then or between the others).

        This is the hot loop of an import: a plain ``sgv`` reading (a number from 40 to 1000 mg/dL,
        an integer ``date``, a usable ``utcOffset`` or none) is only gathered into its device's
        block here; everything else goes through the mapping.
        """
        reject = self.result.rejected.append
        zone = self.zone
        blocks = self.blocks
        low, high, max_offset = SENSOR_LOW_MGDL, MAX_GLUCOSE_MGDL, MAX_UTC_OFFSET_MIN
        try:
            for collection, line, ordinal, doc in self.documents():
                if type(doc) is not dict:
                    reject(RejectedRow(line, f"{_NAMES[collection]} {ordinal}: not a JSON object"))
                    continue
                if collection is None or collection == "entries":
                    get = doc.get
                    kind = get("type")
                    sgv = get("sgv")
                    time_ms = get("date")
                    if (
                        (kind == "sgv" or (kind is None and sgv is not None))
                        and type(time_ms) is int
                        and 0 <= time_ms < LAST_MS  # else the mapping says why not
                        and (type(sgv) is int or type(sgv) is float)
                        and low <= sgv <= high
                        and get("isValid") is not False
                    ):
                        offset = get("utcOffset")
                        if type(offset) is not int or not offset or not -max_offset <= offset <= max_offset:
                            offset = entry_offset(doc, time_ms, zone)
                        device = get("device")
                        source = device.strip() if type(device) is str else ""
                        block = blocks.get(source)
                        if block is None:
                            self.device(source)
                            block = blocks[source] = ([], [], [], [])
                        times = block[0]
                        times.append(time_ms)
                        block[1].append(offset)
                        block[2].append(float(sgv))
                        block[3].append(line)
                        if len(times) >= BLOCK_READINGS:
                            yield self.flush(source)
                        continue
                try:
                    mapped = map_document(collection, doc, zone)
                except NightscoutDocumentError as exc:
                    what = _NAMES[collection or document_collection(doc)]
                    reject(RejectedRow(line, f"{what} {ordinal}: {exc}"))
                    continue
                self.ignored.update(mapped.ignored)
                for r in mapped.records:
                    yield ParsedRecord(
                        r.type,
                        r.subtype,
                        r.time_ms,
                        r.utc_offset_min,
                        line,
                        self.device(r.device),
                        r.value,
                        r.orig_value,
                        r.orig_unit,
                        r.duration_ms,
                        r.annotation,
                        None if r.payload is None else dict(r.payload),
                        r.identity,
                    )
        except json.JSONDecodeError as exc:
            raise self.broken(exc) from None
        except RecursionError:  # the decoder's answer to nesting deeper than the interpreter's stack
            msg = f"{self.name}: a document is nested too deeply to be Nightscout data"
            raise MalformedFileError(msg) from None
        for source in list(blocks):
            yield self.flush(source)
        self.result.notes.extend(describe_ignored(self.ignored))

    def broken(self, exc: json.JSONDecodeError) -> MalformedFileError:
        """The error for text that is not valid JSON (naming line and column, never content).

        Text that stops inside a document (at its end, or inside a string that never closes) is
        reported as truncated, at the place where it stops.
        """
        end = len(self.text.rstrip())
        if exc.pos >= end or exc.msg.startswith("Unterminated string"):
            at = json.JSONDecodeError(exc.msg, self.text, end)
            what = "the file ends in the middle of a document (truncated?)"
            return MalformedFileError(f"{self.name}: line {at.lineno}, column {at.colno}: {what}")
        what = f"not valid JSON ({exc.msg})"
        return MalformedFileError(f"{self.name}: line {exc.lineno}, column {exc.colno}: {what}")


class NightscoutImporter:
    """Reads JSON saved from a Nightscout site's API (module notes)."""

    format: ClassVar[str] = "nightscout"
    label: ClassVar[str] = "Nightscout JSON (entries, treatments, profile, devicestatus)"
    checks_truncation: ClassVar[bool] = True
    """JSON from the API ends without a line break (a minified file is one line); the parser itself
    reports a file that stops inside a document, so a refused last document is no sign of it."""

    def detect(self, head: list[str]) -> bool:
        """The first document of the leading lines has Nightscout's fields (module notes)."""
        return looks_like_nightscout("\n".join(head))

    def parse(self, source: SourceText, ctx: ParseContext) -> ParseResult:
        """Every document's records, lazily; unreadable documents are reported with their line."""
        result = ParseResult(records=iter(()))
        result.records = _Reader(storable_json(source), ctx, result).records()
        return result
