"""Hypothesis strategies that damage a valid seed file the way real uploads get damaged, and worse.

A case applies one to three **operators** to a seed (:mod:`tests.fuzz.seeds`) and describes what
it did in a few words (shown when a case fails). The operators, by family:

* **bytes**: flip a byte, delete or insert a run, truncate anywhere, splice random bytes; change the
  encoding (UTF-16 LE/BE with and without BOM, Windows-1252, a BOM added or removed, a NUL byte);
* **lines**: drop, duplicate, swap, shuffle a run, insert blank lines, change line endings, damage
  one of the header lines (drop, shuffle, rename or case-fold its cells, another delimiter);
* **cells** (CSV, TSV, workbook-as-text, JSON values, XML attributes, workbook cells): empty,
  garbage text carrying :data:`CANARY`, huge/negative/NaN/infinite numbers, decimal commas, dates
  far in the past or future or impossible, unicode, very long cells, other units, stray quotes,
  formulas; a number scaled (x1000, negative, x0.001); a cell deleted or added;
* **structure**: JSON values of another type, keys removed, renamed or added, elements duplicated,
  arrays deeply nested, the root wrapped or unwrapped; XML entity declarations (billion laughs,
  external entities, a DTD), deep nesting, elements dropped, duplicated or renamed;
* **workbooks**: cells rewritten with values of any type, rows dropped or duplicated, sheets
  renamed or dropped (written again with xlwt), a zip that claims to be an ``.xlsx``;
* **archives and folders**: a member's content mutated as above, members dropped, duplicated (same
  name, same name in another case), renamed to climb out (``../``), absolute, with a backslash or a
  control character, a nested zip, a symbolic link, a device file, an "encrypted" member, a zip
  bomb, a member whose declared size or CRC lies, junk files (binary, empty, a read-me), a file of
  another format beside them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import random
import re
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import python_calamine
import xlwt  # type: ignore[import-untyped]
from hypothesis import strategies as st

from tests.fuzz.seeds import Kind, Layout, Member, layout

CANARY = "Quokkacanary"
"""Put into garbage written where the seed held a value (a number, a date, a time, free text next to
them); with the patient's name (:data:`~tests.fuzz.seeds.PATIENT_NAME`) it is what no message may
repeat (messages are searched for :data:`PHI_MARK`)."""

LABEL = "Labelmark"
"""Put into garbage written where the seed held a label (a column name, a unit, a record type): a
message may name an unknown label, so this mark is not searched for."""

PHI_MARK = "quokka"
"""Lower-case mark of the canary and of the patient's first name: no message may contain it."""

_DIGIT = re.compile(r"\d")
_NUMERIC_CELL = re.compile(r'^["\s]*[-+]?[\d.,:/ TZ-]*\d[\d.,:/ TZ-]*["\s]*$')


def is_data_line(line: str) -> bool:
    """True for a row of values: one of its cells is a number, a date or a time (a header row has
    none)."""
    return any(_NUMERIC_CELL.match(cell) for cell in re.split(r"[,;\t]", line))


def mark_for(original: object, *, data_line: bool) -> str:
    """The mark of garbage that replaces ``original``: :data:`CANARY` where the seed held a value (a
    number, a date, a time, or text with a digit or an empty cell in a row of values), else
    :data:`LABEL` (a column name, a unit, a kind of record)."""
    if isinstance(original, bool) or original is None:
        return CANARY if data_line else LABEL
    if isinstance(original, int | float | dt.date | dt.time | dt.timedelta):
        return CANARY
    text = str(original)
    if data_line and (_DIGIT.search(text) or not text.strip()):
        return CANARY
    return LABEL


Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    """One fuzz case: what a person gives ``glucoshare import`` after the damage, and how it was made."""

    layout: str
    operators: tuple[str, ...]
    files: tuple[Member, ...]
    """The single file or archive (``folder`` is ``None``), or the files of the folder."""
    folder: str | None

    def __repr__(self) -> str:  # shown by hypothesis for a failing case: the recipe, not the bytes
        sizes = ", ".join(f"{m.name}: {len(m.data)} B" for m in self.files[:6])
        return f"Case({self.layout}: {' + '.join(self.operators)}; {sizes})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # noqa: ARG002 - hypothesis' printer protocol
        printer.text(repr(self))


# --- values ------------------------------------------------------------------------------------------

_PRINTABLE = st.characters(blacklist_categories=("Cs", "Cc"))
_NUMBERS = (
    "0", "-0", "-1", "-40", "0.0001", "1e308", "-1e308", "1e400", "1e-320", "4.9e-324", "9" * 40, "NaN", "nan",
    "-nan", "inf", "-inf", "Infinity", "1_000", "0x1F", "+5", "5.", ".5", "1.2.3", "1,5", "1.234,5", "12,000",
    "\u0663", "\uff11\uff12\uff10", "2**10", "1e", "--1", "120 ", " 120",
)  # fmt: skip
_DATES = (
    "1899-12-31 00:00:00", "1970-01-01T00:00:00", "0001-01-01 00:00", "9999-12-31 23:59:59",
    "2099-01-01T00:00:00", "2024-02-30 10:00:00", "2025-06-02 25:61:61", "2025-13-01", "31/12/1969 23:59",
    "12/31/2099 11:59 PM", "2025-06-02T10:00:00+99:00", "2025-06-02T10:00:00Z", "2025-06-02T10:00:00-23:59",
    "2025-06-02T10:00:00.123456789+14:00", "1717315200000", "-62135596800", "99999999999999999999", "T",
    "2025-03-30 02:30:00", "2025-10-26 02:30:00", "2025-06-02", "10:00", "24:00:00", "02.06.2025 10:00",
    "6/2/25 10:00 AM", "2025-06-02 10:00:00 PM", "0000-00-00 00:00:00",
)  # fmt: skip
_UNITS = ("mg/dL", "mmol/L", "mg/dl", "mmol/l", "MG/DL", "U", "U/h", "g", "%", "mmol/mol", "kg", "mgdl")
_ODD = (
    "", " ", "\u202e", "\u2028", "\u00a0", "\ufeff", "e\u0301", "\U0001f600", "\u00df", "\ud7ff", "NULL", "null",
    "None", "true", "[]", "{}", '"', '"unterminated', '""', '"a""b"', "'", "=1+1", "@SUM(1)", "\\", "\\n",
    "\x00", "\x07", "\r", "LO", "HI", "Low", "High", "---", "N/A", "[" * 3000 + "]" * 3000, '{"a":' * 3000 + "1" + "}" * 3000,
)  # fmt: skip


def garbage_text(mark: str = CANARY) -> st.SearchStrategy[str]:
    """Text no export holds, carrying ``mark`` (to catch a message that repeats a cell)."""
    return st.builds(
        lambda a, b: a + mark + b, st.text(_PRINTABLE, max_size=6), st.text(_PRINTABLE, max_size=6)
    )


def cell_value(mark: str = CANARY) -> st.SearchStrategy[str]:
    """What a damaged cell may hold (as text); garbage carries ``mark`` (:func:`mark_for`)."""
    return st.one_of(
        st.sampled_from(_NUMBERS),
        st.sampled_from(_DATES),
        st.sampled_from(_UNITS),
        st.sampled_from(_ODD),
        garbage_text(mark),
        st.integers(1, 4000).map(lambda n: mark * (n // len(mark) + 1)),
        st.integers(1, 6000).map(lambda n: "9" * n),
        st.integers(-(10**15), 10**15).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)).map(lambda d: d.isoformat(sep=" ")),
        st.text(max_size=12),
    )


def _scaled(cell: str, factor: str) -> str | None:
    """``cell`` as a number times ``factor`` (keeping a decimal comma), or ``None`` when not a number."""
    comma = "," in cell and "." not in cell
    try:
        number = float(cell.replace(",", ".") if comma else cell)
    except ValueError:
        return None
    text = repr(number * float(factor))
    return text.replace(".", ",") if comma else text


# --- bytes -------------------------------------------------------------------------------------------


def _position(draw: Draw, data: bytes | list[Any] | str, *, end: bool = True) -> int:
    """A place in ``data``: half the time as hypothesis draws it (near the start and the end more
    often, where headers and truncation live), half the time uniformly anywhere."""
    upper = max(len(data) - (0 if end else 1), 0)
    if draw(st.booleans()):
        return draw(st.integers(0, upper))
    return random.Random(draw(st.integers(0, 2**32 - 1))).randint(0, upper)


def byte_op(draw: Draw, data: bytes) -> tuple[bytes, str]:
    """One byte-level damage of ``data``."""
    action = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "splice", "encoding"]))
    if action == "encoding":
        return _encoding_op(draw, data)
    at = _position(draw, data)
    if action == "flip" and data:
        at = min(at, len(data) - 1)
        mask = draw(st.integers(1, 255))
        return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :], f"flip byte {at}"
    if action == "delete":
        size = draw(st.integers(1, 64))
        return data[:at] + data[at + size :], f"delete {size} bytes at {at}"
    if action == "truncate":
        return data[:at], f"truncate at {at}"
    chunk = draw(
        st.binary(min_size=1, max_size=16)
        | st.sampled_from([b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\r", b"\n\n", b'"', b",", b";", b"\t"])
    )
    if action == "insert":
        return data[:at] + chunk + data[at:], f"insert {len(chunk)} bytes at {at}"
    return data[:at] + chunk + data[at + len(chunk) :], f"splice {len(chunk)} bytes at {at}"


def _text_of(data: bytes) -> tuple[str, Callable[[str], bytes]]:
    """``data`` as text, and the function that encodes a changed text the same way."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-16"), lambda text: text.encode("utf-16")
    bom = data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    prefix = b"\xef\xbb\xbf" if bom else b""
    return text, lambda changed: prefix + changed.encode("utf-8", "surrogateescape")


def _encoding_op(draw: Draw, data: bytes) -> tuple[bytes, str]:
    text, _ = _text_of(data)
    target = draw(
        st.sampled_from(
            [
                "utf-16",
                "utf-16-le",
                "utf-16-be",
                "cp1252",
                "utf-8-sig",
                "utf-8",
                "latin-1-accents",
                "nul",
                "half-utf16",
            ]
        )
    )
    clean = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if target == "latin-1-accents":
        at = _position(draw, clean)
        return (clean[:at] + "\u00e9\u00e4\u00df" + clean[at:]).encode(
            "latin-1", "replace"
        ), "latin-1 with accents"
    if target == "nul":
        at = _position(draw, data)
        return data[:at] + b"\x00" + data[at:], f"NUL byte at {at}"
    if target == "half-utf16":
        at = _position(draw, clean)
        return clean[:at].encode("utf-8") + clean[at:].encode("utf-16-le"), f"UTF-16 from character {at}"
    return clean.encode(target, "replace"), f"encoded as {target}"


# --- lines and cells ---------------------------------------------------------------------------------

_HEADER_LINES = 12
"""Header damage hits one of the first lines (Clarity and CareLink have a dozen before the data)."""


def _split_line(line: str) -> tuple[str, str]:
    body = line.rstrip("\r\n")
    return body, line[len(body) :]


def _delimiter(body: str) -> str:
    return max([",", ";", "\t"], key=body.count)


def line_op(draw: Draw, text: str) -> tuple[str, str]:  # noqa: PLR0911 - one return per operator
    """One line-level damage of ``text``."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return "\n", "empty text becomes a line break"
    action = draw(
        st.sampled_from(
            ["drop", "duplicate", "swap", "shuffle", "blank", "endings", "header", "header", "final"]
        )
    )
    at = _position(draw, lines, end=False)
    if action == "drop":
        del lines[at]
        return "".join(lines), f"drop line {at + 1}"
    if action == "duplicate":
        times = draw(st.integers(1, 3))
        lines[at:at] = [lines[at]] * times
        return "".join(lines), f"duplicate line {at + 1} x{times}"
    if action == "swap":
        other = _position(draw, lines, end=False)
        lines[at], lines[other] = lines[other], lines[at]
        return "".join(lines), f"swap lines {at + 1} and {other + 1}"
    if action == "shuffle":
        size = draw(st.integers(2, 40))
        run = lines[at : at + size]
        lines[at : at + size] = draw(st.permutations(run))
        return "".join(lines), f"shuffle lines {at + 1}..{at + len(run)}"
    if action == "blank":
        lines.insert(at, draw(st.sampled_from(["\n", "\r\n", " \n", ",,,\n", ";;\n", "\t\n"])))
        return "".join(lines), f"blank line at {at + 1}"
    if action == "endings":
        ending = draw(st.sampled_from(["\r\n", "\r", "\n", "\n\r"]))
        return "".join(_split_line(line)[0] + ending for line in lines), f"line endings {ending!r}"
    if action == "final":
        body = "".join(lines)
        if body.endswith("\n"):
            return body.rstrip("\r\n"), "no final line break"
        return body + "\n\n\n", "extra final line breaks"
    return _header_op(draw, lines)


def _header_op(draw: Draw, lines: list[str]) -> tuple[str, str]:
    at = draw(st.integers(0, min(_HEADER_LINES, len(lines)) - 1))
    body, end = _split_line(lines[at])
    delimiter = _delimiter(body)
    cells = body.split(delimiter)
    action = draw(
        st.sampled_from(["drop", "shuffle", "rename", "case", "delimiter", "duplicate", "strip-quotes"])
    )
    if action == "drop":
        del lines[at]
        return "".join(lines), f"drop header line {at + 1}"
    if action == "shuffle":
        cells = draw(st.permutations(cells))
    elif action == "rename":
        cells[draw(st.integers(0, len(cells) - 1))] = draw(
            st.text(_PRINTABLE, max_size=12) | st.sampled_from(_ODD)
        )
    elif action == "case":
        body = draw(st.sampled_from([body.upper(), body.lower(), body.swapcase()]))
        cells = body.split(delimiter)
    elif action == "delimiter":
        delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    elif action == "duplicate":
        cells.append(cells[draw(st.integers(0, len(cells) - 1))])
    else:
        cells = [cell.replace('"', "") for cell in cells]
    lines[at] = delimiter.join(cells) + end
    return "".join(lines), f"header line {at + 1}: {action}"


def cell_op(draw: Draw, text: str) -> tuple[str, str]:
    """One cell-level damage of a delimited text (CSV, semicolon, TSV)."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return text, "no cell"
    at = _position(draw, lines, end=False)
    body, end = _split_line(lines[at])
    delimiter = _delimiter(body)
    cells = body.split(delimiter)
    column = draw(st.integers(0, len(cells) - 1))
    action = draw(st.sampled_from(["replace", "replace", "replace", "scale", "delete", "insert"]))
    if action == "scale":
        factor = draw(st.sampled_from(["1000", "-1", "0.001", "10", "1e6", "0", "1e300"]))
        scaled = _scaled(cells[column].strip('"'), factor)
        if scaled is None:
            action = "replace"
        else:
            cells[column] = scaled
    data_line = is_data_line(body)
    mark = mark_for(cells[column].strip('"'), data_line=data_line)
    if action == "replace":
        value = draw(cell_value(mark))
        quoted = cells[column].startswith('"') and draw(st.booleans())
        cells[column] = f'"{value}"' if quoted else value
    elif action == "delete":
        del cells[column]
    elif action == "insert":
        cells.insert(column, draw(cell_value(mark_for("", data_line=data_line))))
    lines[at] = delimiter.join(cells) + end
    return "".join(lines), f"line {at + 1} cell {column + 1}: {action}"


def text_op(draw: Draw, data: bytes, *, json_lines: bool = False) -> tuple[bytes, str]:
    """One damage of a text file: bytes (20 %), lines (30 %) or cells (50 %; JSON values in JSON Lines)."""
    family = draw(
        st.sampled_from(
            ["bytes", "lines", "lines", "lines", "cells", "cells", "cells", "cells", "cells", "bytes"]
        )
    )
    if family == "bytes":
        return byte_op(draw, data)
    text, encode = _text_of(data)
    if family == "lines":
        changed, what = line_op(draw, text)
    elif json_lines:
        changed, what = _json_line_op(draw, text)
    else:
        changed, what = cell_op(draw, text)
    return encode(changed), what


# --- JSON --------------------------------------------------------------------------------------------

_DEEP = "\u0000deep\u0000"


_JSON_LABELS = frozenset(
    {"version", "format", "type", "subType", "eventType", "units", "unit", "deliveryType"}
)
"""Keys whose values name a kind of thing rather than hold a measurement."""


def _json_mark(parent: Any, key: Any) -> str:
    if isinstance(key, str) and key in _JSON_LABELS:
        return LABEL
    value = parent[key]
    return LABEL if isinstance(value, dict | list) else mark_for(value, data_line=True)


def json_value(mark: str = LABEL) -> st.SearchStrategy[Any]:
    """A JSON value of any type, to put where another was (garbage text carries ``mark``)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0, -1, 1e308, -1e308, 10**20, 2**63, -(2**63) - 1, 1e-320]),
        cell_value(mark),
        st.just(_DEEP),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=3),
        st.dictionaries(
            st.sampled_from(["sgv", "date", "type", "value", "time", "unknownField"]), scalars, max_size=3
        ),
    )


def _places(doc: Any, limit: int = 20_000) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of a JSON document, breadth first, at most ``limit``."""
    found: list[tuple[Any, Any]] = []
    queue = [doc]
    while queue and len(found) < limit:
        node = queue.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            found.append((node, key))
            if isinstance(value, dict | list):
                queue.append(value)
    return found


def _mutate_json(draw: Draw, doc: Any) -> tuple[Any, str]:  # noqa: PLR0911 - one return per operator
    """One structural damage of a parsed JSON document (changed in place where possible)."""
    places = _places(doc)
    action = draw(
        st.sampled_from(
            [
                "replace",
                "replace",
                "replace",
                "retype",
                "delete",
                "rename",
                "add",
                "duplicate",
                "wrap",
                "unwrap",
            ]
        )
    )
    if action == "wrap":
        return draw(st.sampled_from([[doc], {"data": doc}, {"entries": doc}])), "root wrapped"
    if action == "unwrap":
        if isinstance(doc, list) and doc:
            return doc[0], "root unwrapped"
        if isinstance(doc, dict) and doc:
            return next(iter(doc.values())), "root unwrapped"
    if not places:
        return draw(json_value()), "root replaced"
    parent, key = places[draw(st.integers(0, len(places) - 1))]
    where = f"[{key!r}]" if isinstance(parent, dict) else f"[{key}]"
    if action == "retype":
        value = parent[key]
        retyped = {
            int: str, float: str, str: lambda v: [v], bool: str, type(None): lambda _: {}, list: lambda v: {"0": v},
            dict: lambda v: list(v.values()),
        }[type(value)](value)  # fmt: skip
        parent[key] = retyped
        return doc, f"{where} retyped"
    if action == "delete":
        del parent[key]
        return doc, f"{where} deleted"
    if action == "rename" and isinstance(parent, dict):
        parent[draw(st.sampled_from([key.upper(), key + "_", "unknownField", ""]))] = parent.pop(key)
        return doc, f"{where} renamed"
    if action == "add":
        target = parent[key] if isinstance(parent[key], dict | list) else parent
        value = draw(json_value())
        if isinstance(target, dict):
            target[draw(st.sampled_from(["type", "units", "_id", "unknownField", "date", "time"]))] = value
        else:
            target.insert(draw(st.integers(0, len(target))), value)
        return doc, f"{where} got a new member"
    if action == "duplicate" and isinstance(parent, list):
        parent.insert(key, parent[key])
        return doc, f"{where} duplicated"
    parent[key] = draw(json_value(_json_mark(parent, key)))
    return doc, f"{where} replaced"


def _json_text(draw: Draw, doc: Any) -> str:
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True)
    if _DEEP in text or json.dumps(_DEEP) in text:
        depth = draw(st.sampled_from([50, 900, 5_000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        text = text.replace(json.dumps(_DEEP), opener * depth + "1" + closer * depth)
    return text


def json_op(draw: Draw, data: bytes) -> tuple[bytes, str]:
    """One damage of a JSON document: its structure (60 %), its tokens (20 %) or its bytes (20 %)."""
    family = draw(st.sampled_from(["structure", "structure", "structure", "tokens", "bytes"]))
    text, encode = _text_of(data)
    if family == "structure":
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            family = "tokens"
        else:
            doc, what = _mutate_json(draw, doc)
            return encode(_json_text(draw, doc)), what
    if family == "tokens":
        at = _position(draw, text)
        token = draw(st.sampled_from(["{", "}", "[", "]", ",", ":", '"', "\\", "null", "-", "1e999", "\n"]))
        if draw(st.booleans()):
            return encode(text[:at] + token + text[at:]), f"token {token!r} inserted at {at}"
        return encode(text[:at] + text[at + 1 :]), f"character {at} removed"
    return byte_op(draw, data)


def _json_line_op(draw: Draw, text: str) -> tuple[str, str]:
    """One JSON Lines row's value damaged (the diary)."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return cell_op(draw, text)
    at = _position(draw, lines, end=False)
    body, end = _split_line(lines[at])
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return cell_op(draw, text)
    doc, what = _mutate_json(draw, doc)
    lines[at] = _json_text(draw, doc) + end
    return "".join(lines), f"line {at + 1}: {what}"


# --- XML ---------------------------------------------------------------------------------------------

_ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')
_ENTITY_TRICKS = (
    (
        '<!DOCTYPE IMPORT [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    ),
    '<!DOCTYPE IMPORT [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE IMPORT [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>',
    '<!DOCTYPE IMPORT SYSTEM "http://127.0.0.1:9/report.dtd">',
    "<!DOCTYPE IMPORT [<!ELEMENT IMPORT ANY>]>",
    '<!DOCTYPE IMPORT [<!ENTITY q "Quokkacanary">]>',
)
_REFERENCES = ("&c;", "&x;", "&q;", "&a;", "&#0;", "&#x110000;", "&undefined;", "&amp;", "&#65;")


def xml_op(draw: Draw, data: bytes) -> tuple[bytes, str]:  # noqa: PLR0911 - one return per operator
    """One damage of an XML report: attributes (40 %), elements and lines (20 %), entities (15 %),
    nesting (5 %) or bytes (20 %)."""
    family = draw(
        st.sampled_from(
            ["attribute"] * 8 + ["element"] * 2 + ["lines"] * 2 + ["entity"] * 3 + ["nesting"] + ["bytes"] * 4
        )
    )
    if family == "bytes":
        return byte_op(draw, data)
    text, encode = _text_of(data)
    if family == "lines":
        changed, what = line_op(draw, text)
        return encode(changed), what
    if family == "attribute":
        found = list(_ATTRIBUTE.finditer(text))
        if found:
            match = found[draw(st.integers(0, len(found) - 1))]
            value = draw(cell_value(mark_for(match.group(2), data_line=True)) | st.sampled_from(_REFERENCES))
            if draw(st.booleans()):  # escaped as a writer would, or raw (breaking the XML, perhaps)
                value = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            name = (
                match.group(1)
                if draw(st.integers(0, 4))
                else draw(st.sampled_from(["Val", "Dt", "Tm", "X", "Unknown"]))
            )
            changed = f'{text[: match.start()]}{name}="{value}"{text[match.end() :]}'
            return encode(changed), f"attribute {match.group(1)} of offset {match.start()}"
    if family == "entity":
        trick = draw(st.sampled_from(_ENTITY_TRICKS))
        declaration = text.find("?>") + 2 if text.startswith("<?xml") else 0
        changed = text[:declaration] + trick + text[declaration:]
        found = list(_ATTRIBUTE.finditer(changed))
        if found and draw(st.booleans()):
            match = found[draw(st.integers(0, len(found) - 1))]
            reference = draw(st.sampled_from(_REFERENCES))
            changed = f'{changed[: match.start()]}{match.group(1)}="{reference}"{changed[match.end() :]}'
        return encode(changed), f"entity trick {_ENTITY_TRICKS.index(trick)}"
    if family == "nesting":
        depth = draw(st.sampled_from([100, 2_000, 50_000]))
        at = text.rfind("</")
        at = at if at > 0 else len(text)
        return encode(text[:at] + "<a>" * depth + "</a>" * depth + text[at:]), f"nested {depth} deep"
    elements = list(re.finditer(r"<(\w+)[^<>]*/>", text))
    if not elements:
        changed, what = line_op(draw, text)
        return encode(changed), what
    match = elements[draw(st.integers(0, len(elements) - 1))]
    action = draw(st.sampled_from(["drop", "duplicate", "rename", "unclose", "cdata"]))
    replacement = {
        "drop": "",
        "duplicate": match.group(0) * draw(st.integers(2, 4)),
        "rename": match.group(0).replace(
            match.group(1), draw(st.sampled_from(["BG", "BOLUS", "X", "bg"])), 1
        ),
        "unclose": match.group(0).removesuffix("/>") + ">",
        "cdata": match.group(0) + "<![CDATA[" + CANARY + "]]><!-- c --><?pi x?>",
    }[action]
    return encode(
        text[: match.start()] + replacement + text[match.end() :]
    ), f"element {match.group(1)}: {action}"


# --- workbooks ---------------------------------------------------------------------------------------

_XLS_DATE = xlwt.easyxf(num_format_str="DD/MM/YYYY HH:MM")


_WRITTEN: set[bytes] = set()
"""Digests of the workbooks the simulator or :func:`_xls` wrote: only those are read back here. The
reader is native code that a damaged workbook can make abort the process (``workbook_text`` runs it
in a child process; this module does not)."""


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sheets(data: bytes) -> list[tuple[str, list[list[Any]]]]:
    book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    return [
        (name, [list(row) for row in book.get_sheet_by_name(name).to_python(skip_empty_area=False)])
        for name in book.sheet_names
    ]


def _xls(sheets: list[tuple[str, list[list[Any]]]]) -> bytes:
    book = xlwt.Workbook()
    for name, rows in sheets:
        sheet = book.add_sheet(name, cell_overwrite_ok=True)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is None or value == "":
                    continue
                if isinstance(value, dt.datetime | dt.date):
                    sheet.write(r, c, value, _XLS_DATE)
                else:
                    sheet.write(r, c, value)
    out = io.BytesIO()
    book.save(out)
    written = out.getvalue()
    _WRITTEN.add(_digest(written))
    return written


def _xls_value(mark: str) -> st.SearchStrategy[Any]:
    return st.one_of(
        cell_value(mark),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**31), 2**31),
        st.booleans(),
        st.datetimes(dt.datetime(1900, 3, 1), dt.datetime(9999, 12, 31)),
        st.sampled_from([dt.datetime(1900, 3, 1), dt.datetime(2099, 1, 1), dt.datetime(2025, 3, 30, 2, 30)]),
    )


def workbook_op(draw: Draw, data: bytes) -> tuple[bytes, str]:  # noqa: PLR0911 - one return per operator
    """One damage of an ``.xls`` workbook: its cells, rows and sheets (60 %), its bytes (25 %), or a
    zip claiming to be an ``.xlsx`` (15 %)."""
    family = draw(st.sampled_from(["cells"] * 12 + ["bytes"] * 5 + ["xlsx"] * 3))
    if family == "bytes":
        return byte_op(draw, data)
    if family == "xlsx":
        parts = {
            "[Content_Types].xml": draw(st.binary(max_size=64)),
            "xl/workbook.xml": draw(st.binary(max_size=64)),
        }
        if draw(st.booleans()):
            parts["xl/worksheets/sheet1.xml"] = (
                b"<worksheet><sheetData><row><c><v>1</v></c></row></sheetData></worksheet>"
            )
        return zip_members([(name, body) for name, body in parts.items()]), "a damaged .xlsx"
    if _digest(data) not in _WRITTEN:  # an earlier operator damaged it: damage it further
        return byte_op(draw, data)
    sheets = _sheets(data)
    if not sheets:
        return byte_op(draw, data)
    index = draw(st.integers(0, len(sheets) - 1))
    name, rows = sheets[index]
    action = draw(st.sampled_from(["cell"] * 6 + ["drop-row", "duplicate-row", "rename-sheet", "drop-sheet"]))
    if action == "drop-sheet":
        del sheets[index]
    elif action == "rename-sheet":
        sheets[index] = (draw(st.sampled_from(["CGM", "Sheet1", "Name and glucose", "cgm", "X"])), rows)
    elif rows and action in ("drop-row", "duplicate-row"):
        at = _position(draw, rows, end=False)
        rows[at : at + 1] = [] if action == "drop-row" else [rows[at], list(rows[at])]
    elif rows:
        r = _position(draw, rows, end=False)
        width = max(len(rows[r]), 1)
        c = draw(st.integers(0, width))
        rows[r].extend([None] * (c + 1 - len(rows[r])))
        data_line = any(isinstance(v, int | float | dt.date) for v in rows[r] if not isinstance(v, bool))
        rows[r][c] = draw(_xls_value(mark_for(rows[r][c], data_line=data_line)))
    names = [n for n, _ in sheets]
    if len(set(names)) != len(names) or not sheets:
        return byte_op(draw, data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            written = _xls(sheets)
    except Exception:  # noqa: BLE001 - xlwt refuses some values (long text, odd names): damage the bytes
        return byte_op(draw, data)
    return written, f"sheet {name!r}: {action}"


# --- archives and folders ----------------------------------------------------------------------------


def zip_members(
    members: list[tuple[str | zipfile.ZipInfo, bytes]], compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": a duplicate is the point
        with zipfile.ZipFile(out, "w", compression) as archive:
            for name, body in members:
                archive.writestr(name, body)
    return out.getvalue()


def _member_op(draw: Draw, kind: Kind, data: bytes) -> tuple[bytes, str]:
    if kind == "json":
        return json_op(draw, data)
    if kind == "xml":
        return xml_op(draw, data)
    if kind == "xls":
        return workbook_op(draw, data)
    return text_op(draw, data)


def _junk(draw: Draw) -> tuple[str, bytes]:
    return draw(
        st.sampled_from(
            [
                ("README.txt", b"This export was made by a vendor portal.\n"),
                ("report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
                ("empty.csv", b""),
                ("blank.csv", b"\n\n"),
                ("binary.bin", bytes(range(256))),
                ("__MACOSX/._cgm_data_1.csv", b"\x00\x05\x16\x07"),
                (".DS_Store", b"\x00\x00\x00\x01Bud1"),
                ("notes.csv", b"a,b\n" + CANARY.encode() + b",1\n"),
            ]
        )
    )


def _other_format() -> tuple[str, bytes]:
    clarity = layout("dexcom_clarity").members[0]
    return "other/clarity.csv", clarity.data


def _archive_op(draw: Draw, members: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """One archive-level damage; returns the whole zip's bytes."""
    action = draw(
        st.sampled_from(
            [
                "drop", "duplicate", "duplicate-case", "bad-name", "nested", "symlink", "device", "encrypted",
                "bomb", "declared-size", "crc", "junk", "other-format", "stored", "bzip2", "lzma", "empty",
                "directory", "comment", "only-junk",
            ]
        )
    )  # fmt: skip
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = list(members)
    at = _position(draw, members, end=False)
    name, body = members[at]
    compression = zipfile.ZIP_DEFLATED
    if action == "drop":
        del entries[at]
    elif action == "duplicate":
        entries.append((name, draw(st.sampled_from([body, body[: len(body) // 2], b"x\n"]))))
    elif action == "duplicate-case":
        entries.append((name.upper(), body))
    elif action == "bad-name":
        bad = draw(
            st.sampled_from(
                ["../" + name, "/" + name, "C:/" + name, name.replace("/", "\\") + "\\x", name + "\x01", "a/../../" + name,
                 "\u202e" + name, "x" * 300 + ".csv", name + "/"]
            )
        )  # fmt: skip
        entries[at] = (bad, body)
    elif action == "nested":
        entries.append(("inner.zip", zip_members(members[:2])))
    elif action in ("symlink", "device", "encrypted", "directory"):
        info = zipfile.ZipInfo(name if action != "directory" else "folder/")
        mode = {
            "symlink": stat.S_IFLNK | 0o777,
            "device": stat.S_IFCHR | 0o600,
            "directory": stat.S_IFDIR | 0o755,
        }
        if action in mode:
            info.external_attr = mode[action] << 16
        if action == "encrypted":
            info.flag_bits |= 0x1
        entries[at] = (info, b"/etc/passwd" if action == "symlink" else body)
    elif action == "bomb":
        size = draw(st.sampled_from([300_000, 3_000_000]))
        entries.append(("bomb.csv", b"0" * size))
    elif action in ("stored", "bzip2", "lzma"):
        compression = {"stored": zipfile.ZIP_STORED, "bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}[
            action
        ]
    elif action == "junk":
        entries.append(_junk(draw))
    elif action == "only-junk":
        entries = [_junk(draw) for _ in range(draw(st.integers(1, 3)))]
    elif action == "other-format":
        entries.append(_other_format())
    elif action == "empty":
        entries = []
    data = zip_members(entries, compression)
    if action in ("declared-size", "crc"):
        data = _lie_in_central_directory(draw, data, action)
    elif action == "comment":
        data = data[:-2] + struct.pack("<H", 0xFFFF) + draw(st.binary(max_size=32))
    return data, f"archive: {action} ({name})"


def _lie_in_central_directory(draw: Draw, data: bytes, field: str) -> bytes:
    """Change a member's CRC or declared (uncompressed) size in the central directory and local header."""
    out = bytearray(data)
    value = draw(st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 10**9]))
    offsets = {"crc": (16, 14), "declared-size": (24, 22)}[field]  # (central, local) field offsets
    central = [m.start() for m in re.finditer(b"PK\x01\x02", data)]
    local = [m.start() for m in re.finditer(b"PK\x03\x04", data)]
    if central:
        at = central[draw(st.integers(0, len(central) - 1))]
        struct.pack_into("<I", out, at + offsets[0], value)
    if local and draw(st.booleans()):
        at = local[draw(st.integers(0, len(local) - 1))]
        struct.pack_into("<I", out, at + offsets[1], value)
    return bytes(out)


def _operator(
    draw: Draw, seed: Layout, files: list[tuple[str, bytes]]
) -> tuple[list[tuple[str, bytes]], str]:
    """Apply one operator to the current files (for a ``zip``: the members, or the whole archive as
    one file under the archive's name)."""
    if seed.kind in ("zip", "folder"):
        whole = seed.kind == "zip" and len(files) == 1 and files[0][0] == seed.container
        if whole:  # an earlier operator already damaged the archive itself: go on with its bytes
            data, what = byte_op(draw, files[0][1])
            return [(seed.container, data)], what
        family = draw(
            st.sampled_from(
                ["member"] * 6 + ["container"] * 4 + (["bytes"] * 2 if seed.kind == "zip" else [])
            )
        )
        if family == "member" and files:
            at = _position(draw, files, end=False)
            name, data = files[at]
            kinds = dict(zip((m.name for m in seed.members), seed.member_kinds, strict=True))
            changed, what = _member_op(draw, kinds.get(name, "text"), data)
            files = [*files[:at], (name, changed), *files[at + 1 :]]
            return files, f"{name}: {what}"
        if seed.kind == "zip":
            if family == "bytes":
                data, what = byte_op(draw, zip_members(list(files)))
                return [(seed.container, data)], f"archive bytes: {what}"
            data, what = _archive_op(draw, files) if files else (zip_members([]), "archive: empty")
            return [(seed.container, data)], what
        return _folder_op(draw, files)
    ((name, data),) = files
    if seed.kind == "json":
        changed, what = json_op(draw, data)
    elif seed.kind == "xml":
        changed, what = xml_op(draw, data)
    elif seed.kind == "xls":
        changed, what = workbook_op(draw, data)
    else:
        changed, what = text_op(draw, data, json_lines=seed.format == "glucoshare_diary")
    return [(name, changed)], what


def _folder_op(draw: Draw, files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], str]:
    action = draw(
        st.sampled_from(["drop", "only-one", "duplicate", "junk", "other-format", "reorder", "hidden"])
    )
    files = list(files)
    at = _position(draw, files, end=False) if files else 0
    if action == "drop" and files:
        del files[at]
    elif action == "only-one" and files:
        files = [files[at]]
    elif action == "duplicate" and files:
        files.append(("copy of " + files[at][0], files[at][1]))
    elif action == "junk":
        files.append(_junk(draw))
    elif action == "other-format":
        files.append(_other_format())
    elif action == "reorder":
        files = draw(st.permutations(files))
    elif action == "hidden" and files:
        files[at] = ("." + files[at][0], files[at][1])
    return files, f"folder: {action}"


@st.composite
def cases(draw: Draw, name: str) -> Case:
    """A damaged copy of the seed of layout ``name``: one operator, sometimes two or three."""
    seed = layout(name)
    files = [(m.name, m.data) for m in seed.members]
    if seed.kind == "xls":
        _WRITTEN.add(_digest(seed.members[0].data))
    operators: list[str] = []
    for _ in range({9: 3, 8: 2, 7: 2}.get(draw(st.integers(0, 9)), 1)):  # mostly one operator
        files, what = _operator(draw, seed, files)
        operators.append(what)
    if seed.kind == "zip" and not (len(files) == 1 and files[0][0] == seed.container):
        files = [(seed.container, zip_members(list(files)))]
    return Case(
        name,
        tuple(operators),
        tuple(Member(n, d) for n, d in files),
        seed.container if seed.kind == "folder" else None,
    )
