r"""Nightscout queries: ``find[...]`` filters of API v1 and v3, counts, time bounds and order.

Pure functions over documents (dicts from JSON), with no database and no web framework
(research/nightscout.md §1.3, §1.10). A route parses the query string (:func:`parse_query_string`)
and builds a :class:`Query` (:func:`build_query`): its time bounds, ids and type narrow what the
database reads; :meth:`Query.accepts` (or :func:`matches`) keeps the documents the filter accepts,
and :func:`sort_documents` orders them. An API v3 search (:func:`v3_filters`) becomes the same find
tree, so one matcher serves both. Every refusal is a :class:`QueryError` (HTTP 400) that names the
parameter and the rule, never a value.

Query strings
-------------
Parsed as Node's ``qs`` parses them: ``&`` separates parameters, the first ``=`` separates name and
value (no ``=``: the value is empty), ``+`` is a space, ``%XX`` escapes are UTF-8.
``a[b][c]=v`` nests, ``a[]=v`` appends to a list, a repeated name gives a list, and brackets
holding only digits up to 20 (``a[0]=v&a[1]=w``) give a list too. A name whose brackets do not
close cleanly (``a[b``) stays flat. At most :data:`MAX_PARAMETERS` parameters, :data:`MAX_DEPTH`
brackets, names of :data:`MAX_KEY_LENGTH` and values of :data:`MAX_VALUE_LENGTH` characters; a
``%`` not followed by two hex digits, bytes that are not UTF-8, ``[]`` inside a name and a name
given both as a value and with brackets are refused rather than guessed at.

The find tree
-------------
``{field: value}`` is equality; ``{field: {"$op": value}}`` applies an operator: ``$eq $ne $gt
$gte $lt $lte $in $nin $exists $regex`` (``$options`` goes with ``$regex``). Anything else
(``$where``, ``$or``, ``$function``, ``$elemMatch`` ...) is refused. Brackets without an operator
name a path, as dots do: ``find[pump][battery][percent][$lt]=20`` is
``find[pump.battery.percent][$lt]=20`` (MongoDB would compare a whole sub-document, which no
client can mean). A value given more than once is one condition per value, all of which must
hold: Trio's ``find[enteredBy][$ne]=A&find[enteredBy][$ne]=B`` is "neither A nor B". ``$in`` and
``$nin`` take a list (one value is a list of one).

Comparisons
-----------
Query values arrive as text; the field decides how they compare.

* *Date fields*, the collection's :data:`~glucoshare.nightscout.documents.TIME_FIELDS` and
  :data:`SERVER_DATE_FIELDS`, compare as instants: both sides go through
  :func:`~glucoshare.ingest.nightscout_mapping.parse_instant`, so ISO text with ``Z``,
  ``±hh:mm`` or ``±hhmm``, a space for ``T``, and epoch milliseconds (integer or decimal text)
  all compare correctly, also on ``dateString``, which Nightscout itself compares as text. A
  space where an offset's ``+`` belongs (an unescaped ``+`` in a URL) is turned back into ``+``,
  as Nightscout does. A query value that is no instant is refused.
* *Number fields* (:data:`NUMBER_FIELDS`) compare as numbers; the document may hold a number or
  numeric text; a query value that is no number is refused.
* ``_id`` compares as text, ignoring the case of 24-hex ObjectIds.
* *Any other field* compares by what the document holds: a number with a numeric query value,
  ``true``/``false`` with ``"true"``/``"false"``, text with text (code point order). A value of
  the form ``/pattern/flags`` (in equality, ``$eq``, ``$ne``, ``$in``, ``$nin``) is a regular
  expression, as Nightscout reads it for treatments' ``eventType``, ``enteredBy`` and ``notes``.

A missing field matches only ``$ne``, ``$nin`` and ``$exists: false``; ``null`` counts as present.
When the document holds an array, a positive operator matches if any element does, and ``$ne`` or
``$nin`` if none does (MongoDB). Dotted paths go through sub-documents and arrays of them.

Regular expressions
-------------------
Python's ``re`` backtracks, so a pattern is checked before use: at most
:data:`MAX_PATTERN_LENGTH` characters; no backreferences, lookarounds, conditionals or comments;
no repeated group that itself repeats or has alternatives (``(a+)+``, ``(a|ab)*``); flags ``i``,
``m`` and ``s`` only (JavaScript's ``g`` and ``u`` are ignored). A leading or trailing ``.*``
changes no search result and is dropped. What remains is costed for a value of
:data:`MAX_REGEX_SUBJECT` characters: the start positions (1 when anchored by ``^``) times, for
each repetition, the number of ways it can end (``?``: 2, ``{2,5}``: 4, unbounded: the length),
and 10 for each such repetition after the first (backtracking through several costs more per
step); above :data:`MAX_REGEX_COST` the pattern is refused. ``foo.*bar``, ``^Temp ?Basal$``,
``Temp ?Basal ?Start`` and ``\d{1,3}`` pass; ``.+.+x`` and ``\d+\.\d+`` do not. The worst value
an accepted pattern meets takes about 0.1 s. Values longer than :data:`MAX_REGEX_SUBJECT` characters
never match a regular expression. Compiled patterns are cached.

Time bounds and the implicit window
-----------------------------------
:attr:`Query.low_ms` and :attr:`Query.high_ms` are inclusive UTC epoch-millisecond bounds taken
from ``$eq $gt $gte $lt $lte $in`` conditions on the collection's time fields (a strict bound
becomes an inclusive one 1 ms further in). They assume a document's time fields all give its one
instant, as stored documents do; the filter itself still decides. A query with no condition on
any time field and none on ``_id`` gets Nightscout's implicit window: ``low_ms = now − 4 days``
for entries, treatments, device status and activity (not profiles and food).

Counts
------
``count`` defaults to :data:`DEFAULT_COUNTS` (treatments: 1000 when a ``find`` is given). A
decimal is cut to its whole part (``1.2`` → 1); 0 (or less than 1) means the default, as in
Nightscout; anything above :data:`MAX_COUNT` is :data:`MAX_COUNT`; a negative or non-numeric
count is refused.

API v3
------
A search parameter ``field$op=value`` (op: ``eq ne gt gte lt lte in nin re``; no ``$``: ``eq``)
is a condition; ``in``/``nin`` values are ``|``-separated; a value in single quotes loses them.
``limit`` is 1 to :data:`V3_MAX_LIMIT` (default :data:`V3_MAX_LIMIT`, as Nightscout 15), ``skip``
0 or more, ``sort`` or ``sort$desc`` (not both) name the sort field, and ``fields`` (default or
``_all``: everything) lists the fields to return, to which ``identifier``, ``srvCreated``,
``created_at`` and ``date`` are always added. ``token`` and ``now`` are not filters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import re
import urllib.parse
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, Final, TypeVar

from glucoshare.errors import InputError
from glucoshare.ingest.nightscout_mapping import NightscoutDocumentError, parse_instant
from glucoshare.nightscout.documents import TIME_FIELDS

COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile", "activity", "food")
"""The collections a v1 query may address."""

MAX_PARAMETERS: Final = 200
MAX_DEPTH: Final = 5
MAX_KEY_LENGTH: Final = 200
MAX_VALUE_LENGTH: Final = 2000
MAX_COUNT: Final = 100_000
MAX_PATTERN_LENGTH: Final = 200
MAX_REGEX_SUBJECT: Final = 10_000
MAX_REGEX_COST: Final = 10**8
IMPLICIT_WINDOW_MS: Final = 4 * 24 * 3600 * 1000
V3_MAX_LIMIT: Final = 1000

DEFAULT_COUNTS: Final[Mapping[str, int]] = {
    "entries": 10,
    "treatments": 100,
    "devicestatus": 10,
    "profile": 10,
    "activity": 10,
    "food": 100,
}
"""``count`` when none is given (treatments with a ``find``: :data:`TREATMENTS_FIND_COUNT`)."""

TREATMENTS_FIND_COUNT: Final = 1000
SERVER_DATE_FIELDS: Final = ("srvModified", "srvCreated")
"""Fields every collection compares as instants without their being its time (API v3)."""

NUMBER_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "entries": frozenset(
        {"date", "sgv", "mbg", "filtered", "unfiltered", "rssi", "noise", "delta", "utcOffset", "mills"}
    ),
    "treatments": frozenset(
        {"insulin", "carbs", "glucose", "duration", "absolute", "rate", "percent", "mills", "utcOffset"}
    ),
    "devicestatus": frozenset({"mills", "utcOffset"}),
    "profile": frozenset({"mills", "utcOffset"}),
    "activity": frozenset({"mills", "utcOffset"}),
    "food": frozenset({"mills", "utcOffset"}),
}
"""Fields compared as numbers (a time field among them compares as an instant)."""

_WINDOWED: Final = frozenset({"entries", "treatments", "devicestatus", "activity"})
_OPERATORS: Final = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex"}
)
_ORDERINGS: Final[Mapping[str, Callable[[int, int], bool]]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
_BOUNDING: Final = frozenset({"$eq", "$gt", "$gte", "$lt", "$lte"})
_MAX_PATH: Final = 16
_MAX_TREE_DEPTH: Final = 24
_ARRAY_INDEX_LIMIT: Final = 20
_LABEL_CHARS: Final = 60

_DATE: Final = "date"
_NUMBER: Final = "number"
_ID: Final = "id"
_OTHER: Final = "other"

_BAD_ESCAPE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_BRACKETED: Final = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])+)")
_SEGMENT: Final = re.compile(r"\[([^\[\]]*)\]")
_DIGITS: Final = re.compile(r"[0-9]+")
_INTEGER: Final = re.compile(r"[+-]?\d{1,40}")
_NUMERIC: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_COUNT: Final = re.compile(r"\+?(\d*)(?:\.\d*)?")
_SPACED_OFFSET: Final = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}(?::?\d{2})?)$")
_OBJECT_ID: Final = re.compile(r"[0-9a-fA-F]{24}")
_SLASHED: Final = re.compile(r"/(.*)/([A-Za-z]*)", re.DOTALL)
_OPERATOR_NAME: Final = re.compile(r"\$[A-Za-z]{1,30}")


class QueryError(InputError):
    """A query string or find filter that cannot be read or is refused.

    The message names the parameter and the rule, never the value given.
    """

    code = "bad_query"


Predicate = Callable[[Mapping[str, Any]], bool]
"""A compiled find filter: ``True`` when a document matches (:func:`compile_find`)."""

D = TypeVar("D", bound=Mapping[str, Any])
_Comparable = TypeVar("_Comparable", float, str)


# -- query strings -------------------------------------------------------------------------------


def parse_query_string(raw: str | bytes) -> dict[str, Any]:
    """The parameters of a raw URL query string (the part after ``?``) as Node's ``qs`` gives them.

    Values are text, lists of text, or dicts of these (module docs, "Query strings"). Text input
    is taken as UTF-8 (lone surrogates from ``surrogateescape`` stand for their bytes). Raises
    :class:`QueryError` beyond the limits or for bytes that do not decode.
    """
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    parts = [part for part in data.split(b"&") if part]
    if len(parts) > MAX_PARAMETERS:
        msg = f"the query has more than {MAX_PARAMETERS} parameters"
        raise QueryError(msg)
    tree: dict[str, Any] = {}
    for part in parts:
        raw_key, _, raw_value = part.partition(b"=")
        key = _decode(raw_key, "a parameter name")
        if not key:
            continue
        if len(key) > MAX_KEY_LENGTH:
            msg = f"a parameter name is longer than {MAX_KEY_LENGTH} characters"
            raise QueryError(msg)
        value = _decode(raw_value, f"the value of {_shown(key)}")
        if len(value) > MAX_VALUE_LENGTH:
            msg = f"the value of {_shown(key)} is longer than {MAX_VALUE_LENGTH} characters"
            raise QueryError(msg)
        _insert(tree, _key_path(key), value)
    return {name: _with_lists(value) for name, value in tree.items()}


def _shown(text: str) -> str:
    """A parameter or field name, shortened for a message."""
    return text if len(text) <= _LABEL_CHARS else text[:_LABEL_CHARS] + "…"


def _decode(data: bytes, what: str) -> str:
    """Undo ``+`` and ``%XX`` (strictly) and decode UTF-8."""
    if _BAD_ESCAPE.search(data):
        msg = f"{what} has a % that is not followed by two hex digits"
        raise QueryError(msg)
    try:
        return urllib.parse.unquote_to_bytes(data.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        msg = f"{what} is not UTF-8 text"
        raise QueryError(msg) from None


def _key_path(key: str) -> list[str]:
    """``a[b][c]`` → ``["a", "b", "c"]``; a name without clean brackets is one segment."""
    match = _BRACKETED.fullmatch(key)
    if match is None:
        return [key]
    segments = _SEGMENT.findall(match.group(2))
    if len(segments) > MAX_DEPTH:
        msg = f"parameter {_shown(key)} nests more than {MAX_DEPTH} brackets deep"
        raise QueryError(msg)
    return [match.group(1), *segments]


def _insert(tree: dict[str, Any], path: list[str], value: str) -> None:
    """Put one decoded parameter into the tree (``[]`` at the end appends)."""
    append = len(path) > 1 and path[-1] == ""
    names = path[:-1] if append else path
    shown = _shown(path[0] + "".join(f"[{name}]" for name in path[1:]))
    if "" in names:
        msg = f"parameter {shown} has [] before its last bracket"
        raise QueryError(msg)
    node = tree
    for name in names[:-1]:
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise _conflict(shown)
        node = child
    name = names[-1]
    old = node.get(name)
    if isinstance(old, dict):
        raise _conflict(shown)
    if old is None:
        node[name] = [value] if append else value
    elif isinstance(old, list):
        old.append(value)
    else:
        node[name] = [old, value]


def _conflict(name: str) -> QueryError:
    return QueryError(f"parameter {_shown(name)} is given both as a value and with brackets")


def _with_lists(value: object) -> object:
    """Dicts whose keys are all array indices (0 to 20) become lists, in index order."""
    if not isinstance(value, dict):
        return value
    converted = {key: _with_lists(item) for key, item in value.items()}
    if converted and all(_DIGITS.fullmatch(key) and int(key) <= _ARRAY_INDEX_LIMIT for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


# -- compiled conditions -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Operand:
    """One query value, read every way the field may need it."""

    text: str | None = None
    number: float | None = None
    integer: int | None = None
    instant: int | None = None
    flag: bool | None = None
    regex: re.Pattern[str] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Condition:
    """One operator on one field path."""

    path: tuple[str, ...]
    op: str
    kind: str
    operands: tuple[_Operand, ...] = ()
    exists: bool = True


def _check_collection(collection: str) -> None:
    if collection not in COLLECTIONS:
        msg = f"unknown Nightscout collection {collection!r}"
        raise ValueError(msg)


def _label(path: tuple[str, ...], op: str | None = None) -> str:
    field = f"find[{_shown('.'.join(path))}]"
    return field if op is None else f"{field}[{op}]"


def _unsupported(op: str) -> QueryError:
    name = op if _OPERATOR_NAME.fullmatch(op) else "an operator"
    return QueryError(
        f"find: {name} is not supported (only $eq $ne $gt $gte $lt $lte $in $nin $exists $regex)"
    )


def _path_segments(prefix: tuple[str, ...], key: object) -> tuple[str, ...]:
    """The field path of ``key`` under ``prefix`` (dots separate levels)."""
    if not isinstance(key, str):
        msg = f"{_label(prefix)} has a field name that is not text"
        raise QueryError(msg)
    if key.startswith("$"):
        raise _unsupported(key)
    if len(key) > MAX_KEY_LENGTH:
        msg = f"find has a field name longer than {MAX_KEY_LENGTH} characters"
        raise QueryError(msg)
    path = (*prefix, *key.split("."))
    if any(not name or name.startswith("$") for name in path) or len(path) > _MAX_PATH:
        msg = f"{_label(path)} is not a field path (names separated by single dots, at most {_MAX_PATH})"
        raise QueryError(msg)
    return path


def _kind(collection: str, path: tuple[str, ...]) -> str:
    """How values of this field compare (module docs, "Comparisons")."""
    if len(path) != 1:
        return _OTHER
    name = path[0]
    if name == "_id":
        return _ID
    if name in TIME_FIELDS[collection] or name in SERVER_DATE_FIELDS:
        return _DATE
    return _NUMBER if name in NUMBER_FIELDS[collection] else _OTHER


def _walk(collection: str, node: Mapping[Any, Any], prefix: tuple[str, ...], out: list[_Condition]) -> None:
    """Collect the conditions of a find (sub)tree."""
    for key, value in node.items():
        path = _path_segments(prefix, key)
        if isinstance(value, Mapping):
            _walk_field(collection, path, value, out)
        else:
            out.extend(_conditions_for(collection, path, "$eq", value))


def _walk_field(
    collection: str, path: tuple[str, ...], value: Mapping[Any, Any], out: list[_Condition]
) -> None:
    """A field given a dict: operators for it, or deeper field names."""
    operators = [key for key in value if isinstance(key, str) and key.startswith("$")]
    if not value:
        msg = f"{_label(path)} has no condition"
        raise QueryError(msg)
    if not operators:
        _walk(collection, value, path, out)
        return
    if len(operators) != len(value):
        msg = f"{_label(path)} mixes operators with field names"
        raise QueryError(msg)
    options = _options(path, value)
    for op, operand in value.items():
        if op == "$options":
            continue
        if op not in _OPERATORS:
            raise _unsupported(op)
        out.extend(_conditions_for(collection, path, op, operand, options))


def _options(path: tuple[str, ...], ops: Mapping[str, Any]) -> str:
    """The ``$options`` of a ``$regex`` (refused without one)."""
    options = ops.get("$options")
    if options is None:
        return ""
    if "$regex" not in ops or not isinstance(options, str):
        msg = f"{_label(path, '$options')} needs a $regex and must be text"
        raise QueryError(msg)
    return options


def _conditions_for(
    collection: str, path: tuple[str, ...], op: str, value: object, options: str = ""
) -> list[_Condition]:
    """The conditions of one operator; a list of values is one condition each (``$in``: one)."""
    kind = _kind(collection, path)
    label = _label(path, op)
    values = value if isinstance(value, list) else [value]
    if op in ("$in", "$nin"):
        return [
            _Condition(path, op, kind, tuple(_operand(kind, item, label, regex_ok=True) for item in values))
        ]
    if op == "$exists":
        return [_Condition(path, op, kind, exists=_exists_flag(item, label)) for item in values]
    if op == "$regex":
        return [_Condition(path, op, kind, (_regex_operand(item, options, label),)) for item in values]
    regex_ok = op in ("$eq", "$ne")
    return [_Condition(path, op, kind, (_operand(kind, item, label, regex_ok=regex_ok),)) for item in values]


def _operand(kind: str, value: object, label: str, *, regex_ok: bool) -> _Operand:
    """Read one query value for a field of ``kind``."""
    if not isinstance(value, str | int | float):
        msg = f"{label} must be a single value"
        raise QueryError(msg)
    if kind == _DATE:
        return _Operand(instant=_query_instant(value, label))
    if kind == _NUMBER:
        number = _number_of(value)
        if number is None:
            msg = f"{label} is not a number"
            raise QueryError(msg)
        return _Operand(number=number)
    text = value if isinstance(value, str) else None
    regex = _slashed_regex(text, label) if regex_ok and text is not None else None
    integer = int(text) if text is not None and _INTEGER.fullmatch(text) else None
    return _Operand(text=text, number=_number_of(value), integer=integer, flag=_flag_of(value), regex=regex)


def _number_of(value: object) -> float | None:
    """A finite number from a number or numeric text; ``None`` otherwise (also for booleans)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if abs(value) < 2**53 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _flag_of(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(value) if isinstance(value, str) else None


def _restore_plus(text: str) -> str:
    """Turn a space where an offset's ``+`` was back into ``+`` (``…01:00:00 02:00``)."""
    return _SPACED_OFFSET.sub(r"\1+\2", text.strip())


def _query_instant(value: str | float, label: str) -> int:
    try:
        return parse_instant(_restore_plus(value) if isinstance(value, str) else value, "find")[0]
    except NightscoutDocumentError:
        msg = f"{label} is not a date (epoch milliseconds or ISO 8601 text)"
        raise QueryError(msg) from None


def _exists_flag(value: object, label: str) -> bool:
    if isinstance(value, bool):
        return value
    flags = {"true": True, "1": True, "false": False, "0": False}
    if isinstance(value, str) and value.strip().lower() in flags:
        return flags[value.strip().lower()]
    msg = f"{label} must be true or false"
    raise QueryError(msg)


def _slashed_regex(text: str, label: str) -> re.Pattern[str] | None:
    """The regular expression of a ``/pattern/flags`` value; ``None`` for other text."""
    match = _SLASHED.fullmatch(text)
    return None if match is None else _regex(match.group(1), match.group(2), label)


def _regex_operand(value: object, options: str, label: str) -> _Operand:
    if not isinstance(value, str):
        msg = f"{label} must be a pattern"
        raise QueryError(msg)
    match = _SLASHED.fullmatch(value)
    if match is None:
        return _Operand(regex=_regex(value, options, label))
    return _Operand(regex=_regex(match.group(1), match.group(2) + options, label))


# -- regular expressions -------------------------------------------------------------------------


_QUANTIFIER: Final = re.compile(r"(?:[*+?]|\{(\d+)\}|\{(\d*),(\d*)\})[?+]?")
_EXTENDED_GROUP: Final = re.compile(r"\(\?(?::|>|P<[A-Za-z_][A-Za-z0-9_]*>|[ims]*(?:-[ims]+)?:)")
_GLOBAL_FLAGS: Final = re.compile(r"\(\?([ims]+)\)")
_FLAG_BITS: Final[Mapping[str, int]] = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "g": 0, "u": 0}
_SET_OPERATIONS: Final = frozenset("&|~-")
_BRANCHING: Final = 10
"""Cost multiplier of each open-ended repetition after the first: backtracking through several
repetitions costs more per step than through one (measured on CPython 3.11)."""


class _RefusedError(Exception):
    """A pattern the audit refuses; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    """A piece of a pattern: ``atom``, ``open``, ``close``, ``alt``, ``quant`` or ``flags``."""

    kind: str
    text: str
    low: int = 0
    high: int | None = 0


@dataclasses.dataclass(slots=True)
class _Group:
    """What a group (or the whole pattern) holds, for the audit."""

    repeats: bool = False
    alternates: bool = False


def _regex(pattern: str, flags: str, label: str) -> re.Pattern[str]:
    """The compiled, audited pattern (module docs, "Regular expressions")."""
    try:
        return _compiled(pattern, _flag_bits(flags))
    except _RefusedError as refused:
        msg = f"{label}: the regular expression {refused}"
        raise QueryError(msg) from None


def _flag_bits(flags: str) -> int:
    bits = 0
    for letter in flags:
        if letter not in _FLAG_BITS:
            shown = letter if letter.isascii() and letter.isalpha() else "?"
            msg = f"uses the option {shown} (only i, m and s are supported)"
            raise _RefusedError(msg)
        bits |= _FLAG_BITS[letter]
    return bits


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str, flags: int) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN_LENGTH:
        msg = f"is longer than {MAX_PATTERN_LENGTH} characters"
        raise _RefusedError(msg)
    tokens = _simplified(_tokens(pattern))
    multiline = bool(flags & re.MULTILINE) or any(t.kind == "flags" and "m" in t.text for t in tokens)
    _audit(tokens, anchored=_anchored(tokens) and not multiline)
    try:
        return re.compile("".join(token.text for token in tokens), flags)
    except re.error:
        msg = "is not valid"
        raise _RefusedError(msg) from None


def _tokens(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    flags = _GLOBAL_FLAGS.match(pattern)
    if flags is not None:
        tokens.append(_Token("flags", flags.group()))
        index = flags.end()
    while index < len(pattern):
        token, index = _token_at(pattern, index)
        tokens.append(token)
    return tokens


def _token_at(pattern: str, index: int) -> tuple[_Token, int]:
    """The token starting at ``index`` and the index after it."""
    char = pattern[index]
    if char == "\\":
        follower = pattern[index + 1 : index + 2]
        if not follower or follower in "123456789":
            msg = "ends with a backslash" if not follower else "uses a backreference"
            raise _RefusedError(msg)
        return _Token("atom", pattern[index : index + 2]), index + 2
    if char == "[":
        return _character_class(pattern, index)
    if char == "(":
        return _group_opening(pattern, index)
    if char in ")|":
        return _Token("close" if char == ")" else "alt", char), index + 1
    quantifier = _QUANTIFIER.match(pattern, index) if char in "*+?{" else None
    if quantifier is None:
        return _Token("atom", char), index + 1
    low, high = _repetition(quantifier)
    return _Token("quant", quantifier.group(), low, high), quantifier.end()


def _repetition(match: re.Match[str]) -> tuple[int, int | None]:
    """``(least, most)`` repetitions of a quantifier; ``None``: no limit."""
    text = match.group()
    if text[0] in "*+?":
        return {"*": (0, None), "+": (1, None), "?": (0, 1)}[text[0]]
    if match.group(1) is not None:
        count = int(match.group(1))
        return count, count
    high = match.group(3)
    return int(match.group(2) or 0), int(high) if high else None


def _group_opening(pattern: str, index: int) -> tuple[_Token, int]:
    if not pattern.startswith("(?", index):
        return _Token("open", "("), index + 1
    match = _EXTENDED_GROUP.match(pattern, index)
    if match is None:
        msg = "uses a lookaround, backreference, conditional, comment or inline flag (not supported)"
        raise _RefusedError(msg)
    return _Token("open", match.group()), match.end()


def _character_class(pattern: str, index: int) -> tuple[_Token, int]:
    """A ``[...]`` class as one atom, with ``[`` and doubled ``&|~-`` inside escaped.

    Python would read them as set syntax it warns about; JavaScript and MongoDB read them literally.
    """
    out = ["["]
    position = index + 1
    if pattern.startswith("^", position):
        out.append("^")
        position += 1
    if pattern.startswith("]", position):
        out.append("\\]")
        position += 1
    while position < len(pattern):
        char = pattern[position]
        if char == "]":
            return _Token("atom", "".join([*out, "]"])), position + 1
        if char == "\\":
            out.append(pattern[position : position + 2])
            position += 2
        elif char == "[" or (char in _SET_OPERATIONS and pattern.startswith(char, position + 1)):
            out.append("\\" + char)
            position += 1
        else:
            out.append(char)
            position += 1
    msg = "has a [ without its ]"
    raise _RefusedError(msg)


def _top_level_alternation(tokens: list[_Token]) -> bool:
    depth = 0
    for token in tokens:
        depth += {"open": 1, "close": -1}.get(token.kind, 0)
        if token.kind == "alt" and depth == 0:
            return True
    return False


def _is_dot_star(pair: list[_Token]) -> bool:
    return (
        len(pair) == 2  # noqa: PLR2004 - a dot and its star
        and pair[0].kind == "atom"
        and pair[0].text == "."
        and pair[1].text in ("*", "*?")
    )


def _simplified(tokens: list[_Token]) -> list[_Token]:
    """Drop leading and trailing ``.*`` (a search finds the same with or without them)."""
    if _top_level_alternation(tokens):
        return tokens
    start = 1 if tokens and tokens[0].kind == "flags" else 0
    body = tokens[start:]
    while _is_dot_star(body[:2]):
        body = body[2:]
    while _is_dot_star(body[-2:]):
        body = body[:-2]
    return tokens[:start] + body


def _anchored(tokens: list[_Token]) -> bool:
    """True when the pattern can only match at the start of the value."""
    body = [token for token in tokens if token.kind != "flags"]
    return bool(body) and body[0].text in ("^", "\\A") and not _top_level_alternation(tokens)


def _audit(tokens: list[_Token], *, anchored: bool) -> None:
    """Refuse nested repetition and patterns whose worst case costs more than :data:`MAX_REGEX_COST`."""
    cost = 1 if anchored else MAX_REGEX_SUBJECT
    variable = 0
    stack = [_Group()]
    last: _Group | None = None
    for token in tokens:
        if token.kind == "open":
            stack.append(_Group())
            last = None
        elif token.kind == "close":
            last = _close_group(stack)
        elif token.kind == "alt":
            stack[-1].alternates = True
            last = None
        elif token.kind == "quant":
            factor = _repeat(stack[-1], last, token)
            if factor > 1:
                variable += 1
                cost *= factor * (_BRANCHING if variable > 1 else 1)
            if cost > MAX_REGEX_COST:
                msg = "could take too long on a long value (too many open-ended repetitions)"
                raise _RefusedError(msg)
            last = None
        elif token.kind == "atom":
            last = _Group()
    if len(stack) != 1:
        msg = "has a ( without its )"
        raise _RefusedError(msg)


def _close_group(stack: list[_Group]) -> _Group:
    if len(stack) == 1:
        msg = "has a ) without its ("
        raise _RefusedError(msg)
    group = stack.pop()
    stack[-1].repeats |= group.repeats
    stack[-1].alternates |= group.alternates
    return group


def _repeat(enclosing: _Group, repeated: _Group | None, token: _Token) -> int:
    """The cost factor of a quantifier (the ways it can end); refuses nested repetition."""
    if repeated is None:
        msg = "repeats nothing"
        raise _RefusedError(msg)
    if repeated.repeats or repeated.alternates:
        msg = "repeats a group that itself repeats or has alternatives"
        raise _RefusedError(msg)
    if token.high is not None and token.high == token.low:
        return 1
    enclosing.repeats = True
    if token.high is None:
        return MAX_REGEX_SUBJECT
    return min(token.high - token.low + 1, MAX_REGEX_SUBJECT)


def _search(pattern: re.Pattern[str] | None, value: object) -> bool:
    return (
        pattern is not None
        and isinstance(value, str)
        and len(value) <= MAX_REGEX_SUBJECT
        and pattern.search(value) is not None
    )


# -- matching ------------------------------------------------------------------------------------


def _freeze(value: object, depth: int = 0) -> Hashable:
    """A hashable copy of a find tree (the compiled-filter cache key)."""
    if depth > _MAX_TREE_DEPTH:
        msg = "find nests too deeply"
        raise QueryError(msg)
    if isinstance(value, Mapping):
        return ("map", tuple((key, _freeze(item, depth + 1)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("list", tuple(_freeze(item, depth + 1) for item in value))
    if isinstance(value, str | int | float | bool) or value is None:
        return ("value", type(value).__name__, value)
    return ("other", id(value))


def _thaw(frozen: Hashable) -> object:
    assert isinstance(frozen, tuple)  # noqa: S101 - made by _freeze
    if frozen[0] == "map":
        return {key: _thaw(item) for key, item in frozen[1]}
    if frozen[0] == "list":
        return [_thaw(item) for item in frozen[1]]
    if frozen[0] == "value":
        return frozen[2]
    return object()


@functools.lru_cache(maxsize=128)
def _cached_conditions(collection: str, frozen: Hashable) -> tuple[_Condition, ...]:
    tree = _thaw(frozen)
    assert isinstance(tree, dict)  # noqa: S101 - a frozen mapping thaws to a dict
    conditions: list[_Condition] = []
    _walk(collection, tree, (), conditions)
    return tuple(conditions)


def _conditions_of(collection: str, find: Mapping[str, Any]) -> tuple[_Condition, ...]:
    _check_collection(collection)
    if not isinstance(find, Mapping):
        msg = "find must name fields in brackets: find[field]=value"
        raise QueryError(msg)
    return _cached_conditions(collection, _freeze(find))


def compile_find(collection: str, find: Mapping[str, Any]) -> Predicate:
    """The find tree of ``collection`` as a predicate over documents (module docs, "The find tree").

    Raises :class:`QueryError` for an operator, value or pattern that is refused, and
    ``ValueError`` for an unknown collection. Compiled trees are cached.
    """
    return functools.partial(_all_hold, _conditions_of(collection, find))


def matches(collection: str, doc: Mapping[str, Any], find: Mapping[str, Any]) -> bool:
    """True when ``doc`` of ``collection`` matches the ``find`` tree (MongoDB semantics, module docs).

    Raises :class:`QueryError` for a refused filter (:func:`compile_find`).
    """
    return _all_hold(_conditions_of(collection, find), doc)


def _all_hold(conditions: tuple[_Condition, ...], doc: Mapping[str, Any]) -> bool:
    return all(_holds(condition, doc) for condition in conditions)


def _values(doc: Mapping[str, Any], path: tuple[str, ...]) -> list[object]:
    """The values at ``path``, through sub-documents and arrays of them; empty when missing."""
    current: list[object] = [doc]
    for name in path:
        found: list[object] = []
        for item in current:
            if isinstance(item, Mapping):
                if name in item:
                    found.append(item[name])
            elif isinstance(item, list):
                found.extend(
                    element[name] for element in item if isinstance(element, Mapping) and name in element
                )
        current = found
    return current


def _scalars(values: list[object]) -> Iterator[object]:
    """Each value, with arrays opened one level (MongoDB matches array elements)."""
    for value in values:
        if isinstance(value, list):
            yield from value
        else:
            yield value


def _holds(condition: _Condition, doc: Mapping[str, Any]) -> bool:
    values = _values(doc, condition.path)
    if condition.op == "$exists":
        return bool(values) == condition.exists
    if condition.op in ("$ne", "$nin"):
        return not any(_is_in(condition, value) for value in _scalars(values))
    return any(_test(condition, value) for value in _scalars(values))


def _is_in(condition: _Condition, value: object) -> bool:
    return any(_equal(condition.kind, operand, value) for operand in condition.operands)


def _test(condition: _Condition, value: object) -> bool:
    """One positive operator against one document value."""
    if condition.op in ("$eq", "$in"):
        return _is_in(condition, value)
    operand = condition.operands[0]
    if condition.op == "$regex":
        return _search(operand.regex, value)
    sign = _compare(condition.kind, operand, value)
    return sign is not None and _ORDERINGS[condition.op](sign, 0)


def _equal(kind: str, operand: _Operand, value: object) -> bool:
    if operand.regex is not None:
        return _search(operand.regex, value)
    return _compare(kind, operand, value) == 0


def _order(left: _Comparable, right: _Comparable) -> int:
    return (left > right) - (left < right)


def _compare(kind: str, operand: _Operand, value: object) -> int | None:
    """-1, 0 or 1 as the document value is below, at or above the operand; ``None``: incomparable."""
    if kind == _DATE:
        instant = _doc_instant(value)
        return None if instant is None or operand.instant is None else _order(instant, operand.instant)
    if kind == _NUMBER:
        number = _number_of(value)
        return None if number is None or operand.number is None else _order(number, operand.number)
    if kind == _ID and isinstance(value, str) and operand.text is not None:
        return _order(_id_form(value), _id_form(operand.text))
    return _compare_other(operand, value)


def _compare_other(operand: _Operand, value: object) -> int | None:
    """Compare by the type the document holds (module docs, "Comparisons")."""
    if isinstance(value, bool):
        return None if operand.flag is None else _order(int(value), int(operand.flag))
    if isinstance(value, int) and operand.integer is not None:
        return (value > operand.integer) - (value < operand.integer)
    if isinstance(value, int | float):
        number = _number_of(value)
        return None if number is None or operand.number is None else _order(number, operand.number)
    if isinstance(value, str) and operand.text is not None:
        return _order(value, operand.text)
    return None


def _id_form(text: str) -> str:
    return text.lower() if _OBJECT_ID.fullmatch(text) else text


def _doc_instant(value: object) -> int | None:
    """The instant a document value gives, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return parse_instant(_restore_plus(value) if isinstance(value, str) else value)[0]
    except NightscoutDocumentError:
        return None


def document_instant(collection: str, doc: Mapping[str, Any]) -> int | None:
    """The instant of a document in UTC epoch milliseconds; ``None`` when it has none.

    Its first time field (``TIME_FIELDS``) that is present and parses gives it.
    """
    _check_collection(collection)
    for field in TIME_FIELDS[collection]:
        value = doc.get(field)
        if value is None or value == "":
            continue
        instant = _doc_instant(value)
        if instant is not None:
            return instant
    return None


# -- v1 queries ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    """A v1 read (or delete) of one collection (module docs).

    ``find`` is the find tree as given; ``count`` how many documents to return; ``type`` the
    entry type of the path (``entries/sgv.json``; ``None``: any); ``low_ms``/``high_ms`` inclusive
    UTC epoch-ms bounds of the documents' instants (``None``: open), including the implicit
    window when ``implicit_window``; ``ids`` the ``_id`` values the filter allows (lower-case
    ObjectIds; ``None``: not limited to a list). ``bounds_exact`` is True when ``low_ms``,
    ``high_ms`` and ``ids`` say everything the filter says for documents whose time fields all
    give their instant. ``predicate`` is the compiled ``find``.
    """

    collection: str
    find: dict[str, Any]
    count: int
    type: str | None
    low_ms: int | None
    high_ms: int | None
    ids: tuple[str, ...] | None
    implicit_window: bool
    bounds_exact: bool
    predicate: Predicate = dataclasses.field(repr=False, compare=False)

    def accepts(self, doc: Mapping[str, Any]) -> bool:
        """True when ``doc`` is one this query returns: its type, the implicit window and ``find``."""
        if self.type is not None and doc.get("type") != self.type:
            return False
        if self.implicit_window and self.low_ms is not None:
            instant = document_instant(self.collection, doc)
            if instant is None or instant < self.low_ms:
                return False
        return self.predicate(doc)


def build_query(
    collection: str, params: Mapping[str, Any], *, now_ms: int, path_type: str | None = None
) -> Query:
    """The :class:`Query` of parsed v1 parameters (``find``, ``count``; others are ignored).

    ``now_ms`` (UTC epoch ms) anchors the implicit window; ``path_type`` is the entry type named
    in the path (``"*"``: any). Raises :class:`QueryError` for a refused filter or count and
    ``ValueError`` for an unknown collection.
    """
    _check_collection(collection)
    find = _find_of(params.get("find"))
    conditions = _conditions_of(collection, find)
    low, high, dated = _time_bounds(collection, conditions)
    has_id = any(condition.path == ("_id",) for condition in conditions)
    implicit = collection in _WINDOWED and not dated and not has_id
    return Query(
        collection=collection,
        find=find,
        count=parse_count(collection, params.get("count"), has_find=bool(find)),
        type=_path_type(path_type),
        low_ms=now_ms - IMPLICIT_WINDOW_MS if implicit else low,
        high_ms=high,
        ids=_ids(conditions),
        implicit_window=implicit,
        bounds_exact=all(_prefiltered(collection, condition) for condition in conditions),
        predicate=functools.partial(_all_hold, conditions),
    )


def _find_of(value: object) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    msg = "find must name fields in brackets: find[field]=value"
    raise QueryError(msg)


def _path_type(path_type: str | None) -> str | None:
    if path_type in (None, "", "*"):
        return None
    if len(path_type) > MAX_KEY_LENGTH:
        msg = f"the type in the path is longer than {MAX_KEY_LENGTH} characters"
        raise QueryError(msg)
    return path_type


def parse_count(collection: str, value: object, *, has_find: bool = False) -> int:
    """The number of documents a v1 read returns (module docs, "Counts").

    ``value`` is the ``count`` parameter (text, a number or ``None``); ``has_find`` whether the
    query has a ``find``. Raises :class:`QueryError` for a negative or non-numeric count.
    """
    _check_collection(collection)
    default = TREATMENTS_FIND_COUNT if collection == "treatments" and has_find else DEFAULT_COUNTS[collection]
    if value is None:
        return default
    whole = _whole_count(value)
    if whole == 0:
        return default
    return min(whole, MAX_COUNT)


def _whole_count(value: object) -> int:
    """The whole part of a count (0 for empty text); refuses negative and non-numeric counts."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        match = _COUNT.fullmatch(text)
        if not text:
            return 0
        if match is not None and any(char.isdigit() for char in text):
            digits = match.group(1).lstrip("0")
            return MAX_COUNT if len(digits) > len(str(MAX_COUNT)) else int(digits or "0")
    msg = "count must be a number of documents (0 or more)"
    raise QueryError(msg)


def _time_bounds(collection: str, conditions: Iterable[_Condition]) -> tuple[int | None, int | None, bool]:
    """``(low, high, dated)``: inclusive bounds from conditions on time fields, and whether any exists."""
    low: int | None = None
    high: int | None = None
    dated = False
    for condition in conditions:
        if len(condition.path) != 1 or condition.path[0] not in TIME_FIELDS[collection]:
            continue
        dated = True
        below, above = _condition_bounds(condition)
        if below is not None:
            low = below if low is None else max(low, below)
        if above is not None:
            high = above if high is None else min(high, above)
    return low, high, dated


def _condition_bounds(condition: _Condition) -> tuple[int | None, int | None]:
    instants = [operand.instant for operand in condition.operands if operand.instant is not None]
    if not instants or condition.op not in (*_BOUNDING, "$in"):
        return None, None
    instant = instants[0]
    return {
        "$eq": (instant, instant),
        "$gt": (instant + 1, None),
        "$gte": (instant, None),
        "$lt": (None, instant - 1),
        "$lte": (None, instant),
        "$in": (min(instants), max(instants)),
    }[condition.op]


def _id_values(condition: _Condition) -> set[str] | None:
    """The ``_id`` values an ``$eq``/``$in`` condition allows; ``None`` when not a finite list."""
    if condition.path != ("_id",) or condition.op not in ("$eq", "$in"):
        return None
    if any(operand.regex is not None or operand.text is None for operand in condition.operands):
        return None
    return {_id_form(operand.text) for operand in condition.operands if operand.text is not None}


def _ids(conditions: Iterable[_Condition]) -> tuple[str, ...] | None:
    allowed = [values for values in map(_id_values, conditions) if values is not None]
    if not allowed:
        return None
    return tuple(sorted(set.intersection(*allowed)))


def _prefiltered(collection: str, condition: _Condition) -> bool:
    """True when the time bounds or ids say all this condition says."""
    if len(condition.path) == 1 and condition.path[0] in TIME_FIELDS[collection]:
        return condition.op in _BOUNDING
    return _id_values(condition) is not None


# -- order ---------------------------------------------------------------------------------------


def sort_documents(
    collection: str, docs: Iterable[D], *, newest_first: bool = True, field: str | None = None
) -> list[D]:
    """``docs`` ordered by their instant (:func:`document_instant`), newest first by default.

    With ``field`` (a dotted path; API v3 ``sort``) they are ordered by that field instead: a
    time field as an instant, otherwise numbers before text before booleans. Documents without a
    usable value come last, in their given order; the sort is stable. The documents themselves
    are returned, not copies.
    """
    _check_collection(collection)
    keyed = [(_sort_key(collection, doc, field), doc) for doc in docs]
    known = [(key, doc) for key, doc in keyed if key is not None]
    known.sort(key=operator.itemgetter(0), reverse=newest_first)
    return [doc for _, doc in known] + [doc for key, doc in keyed if key is None]


def _sort_key(collection: str, doc: Mapping[str, Any], field: str | None) -> tuple[int, Any] | None:
    if field is None:
        instant = document_instant(collection, doc)
        return None if instant is None else (0, instant)
    path = tuple(field.split("."))
    values = list(_scalars(_values(doc, path)))
    if not values:
        return None
    if _kind(collection, path) == _DATE:
        instant = _doc_instant(values[0])
        return None if instant is None else (0, instant)
    return _generic_key(values[0])


def _generic_key(value: object) -> tuple[int, Any] | None:
    if isinstance(value, bool):
        return 2, int(value)
    number = _number_of(value) if isinstance(value, int | float) else None
    if number is not None:
        return 0, number
    return (1, value) if isinstance(value, str) else None


# -- API v3 --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class V3Search:
    """An API v3 search (module docs, "API v3").

    ``find`` is a find tree for :func:`matches`/:func:`compile_find`; ``limit`` and ``skip``
    count documents; ``sort`` is the field to order by (``None``: Nightscout's default,
    ``identifier`` then ``created_at`` then ``date``) and ``descending`` its direction;
    ``fields`` the fields to return (``None``: all; see :func:`project`).
    """

    find: dict[str, Any]
    limit: int
    skip: int
    sort: str | None
    descending: bool
    fields: tuple[str, ...] | None


_V3_RESERVED: Final = frozenset({"token", "sort", "sort$desc", "limit", "skip", "fields", "now"})
_V3_OPERATORS: Final[Mapping[str, str]] = {
    "eq": "$eq",
    "ne": "$ne",
    "gt": "$gt",
    "gte": "$gte",
    "lt": "$lt",
    "lte": "$lte",
    "in": "$in",
    "nin": "$nin",
    "re": "$regex",
}
_V3_FILTER: Final = re.compile(r"(.*)\$([A-Za-z]+)", re.DOTALL)
_V3_SYSTEM_FIELDS: Final = ("identifier", "srvCreated", "created_at", "date")
_WHOLE: Final = re.compile(r"\+?(\d+)(?:\.\d*)?")


def v3_filters(params: Mapping[str, Any]) -> V3Search:
    """The :class:`V3Search` of API v3 query parameters (``date$gt=…``, ``sort$desc=date``, ``limit``).

    Raises :class:`QueryError` for an unknown operator, a value that is not text, a ``limit``
    outside 1 to :data:`V3_MAX_LIMIT`, a negative ``skip``, or ``sort`` with ``sort$desc``.
    """
    find: dict[str, Any] = {}
    for key, value in params.items():
        if key not in _V3_RESERVED:
            _v3_condition(find, key, value)
    ascending, descending = _v3_text(params, "sort"), _v3_text(params, "sort$desc")
    if ascending and descending:
        msg = "sort and sort$desc cannot be combined"
        raise QueryError(msg)
    sort = _v3_field(descending or ascending, "sort") if descending or ascending else None
    return V3Search(
        find=find,
        limit=_v3_limit(_v3_text(params, "limit")),
        skip=_v3_skip(_v3_text(params, "skip")),
        sort=sort,
        descending=bool(descending),
        fields=_v3_fields(_v3_text(params, "fields")),
    )


def _v3_text(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        msg = f"{key} must be given once, as text"
        raise QueryError(msg)
    return value.strip()


def _v3_condition(find: dict[str, Any], key: str, value: object) -> None:
    """Add ``field$op=value`` to the find tree."""
    match = _V3_FILTER.fullmatch(key)
    field, name = (match.group(1), match.group(2)) if match else (key, "eq")
    if name not in _V3_OPERATORS:
        shown = name if len(name) <= _LABEL_CHARS else "?"
        msg = f"filter operator {shown} is not supported (eq ne gt gte lt lte in nin re)"
        raise QueryError(msg)
    if not field:
        msg = f"filter {_shown(key)} names no field"
        raise QueryError(msg)
    op = _V3_OPERATORS[name]
    values = [_v3_value(key, item) for item in (value if isinstance(value, list) else [value])]
    if op in ("$in", "$nin"):
        if len(values) != 1:
            msg = f"{_shown(key)} must be given once (separate values with |)"
            raise QueryError(msg)
        operand: object = values[0].split("|")
    else:
        operand = values[0] if len(values) == 1 else values
    conditions = find.setdefault(field, {})
    if op in conditions:
        previous = conditions[op]
        operand = [*(previous if isinstance(previous, list) else [previous]), operand]
    conditions[op] = operand


def _v3_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        msg = f"{_shown(key)} must be text"
        raise QueryError(msg)
    quoted = len(value) >= 2 and value.startswith("'") and value.endswith("'")  # noqa: PLR2004
    return value[1:-1] if quoted else value


def _v3_limit(text: str) -> int:
    if not text:
        return V3_MAX_LIMIT
    match = _WHOLE.fullmatch(text)
    limit = int(match.group(1)) if match and len(match.group(1)) <= len(str(V3_MAX_LIMIT)) else 0
    if not 1 <= limit <= V3_MAX_LIMIT:
        msg = f"limit must be a number from 1 to {V3_MAX_LIMIT}"
        raise QueryError(msg)
    return limit


def _v3_skip(text: str) -> int:
    if not text:
        return 0
    match = _WHOLE.fullmatch(text)
    if match is None or len(match.group(1)) > len(str(MAX_COUNT * MAX_COUNT)):
        msg = "skip must be a number of documents (0 or more)"
        raise QueryError(msg)
    return int(match.group(1))


def _v3_fields(text: str) -> tuple[str, ...] | None:
    if not text or text == "_all":
        return None
    named = [_v3_field(name.strip(), "fields") for name in text.split(",") if name.strip()]
    return tuple(dict.fromkeys([*named, *_V3_SYSTEM_FIELDS]))


def _v3_field(name: str, parameter: str) -> str:
    """``name`` when it is a field path; refused otherwise."""
    try:
        _path_segments((), name)
    except QueryError:
        msg = f"{parameter} must name fields (names separated by single dots, no $)"
        raise QueryError(msg) from None
    return name


def project(doc: Mapping[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """``doc`` cut to ``fields`` (API v3 ``fields``); ``None`` keeps everything.

    A name keeps its whole value, a dotted path only that part; arrays of sub-documents are cut
    element by element.
    """
    if fields is None:
        return dict(doc)
    return _pruned(doc, fields)


def _pruned(doc: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    wanted = list(fields)
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in wanted:
            out[key] = value
            continue
        below = [field[len(key) + 1 :] for field in wanted if field.startswith(key + ".")]
        if below and isinstance(value, Mapping):
            out[key] = _pruned(value, below)
        elif below and isinstance(value, list):
            out[key] = [_pruned(item, below) if isinstance(item, Mapping) else item for item in value]
    return out


__all__ = [
    "COLLECTIONS",
    "DEFAULT_COUNTS",
    "IMPLICIT_WINDOW_MS",
    "MAX_COUNT",
    "MAX_DEPTH",
    "MAX_KEY_LENGTH",
    "MAX_PARAMETERS",
    "MAX_PATTERN_LENGTH",
    "MAX_REGEX_COST",
    "MAX_REGEX_SUBJECT",
    "MAX_VALUE_LENGTH",
    "NUMBER_FIELDS",
    "SERVER_DATE_FIELDS",
    "TREATMENTS_FIND_COUNT",
    "V3_MAX_LIMIT",
    "Predicate",
    "Query",
    "QueryError",
    "V3Search",
    "build_query",
    "compile_find",
    "document_instant",
    "matches",
    "parse_count",
    "parse_query_string",
    "project",
    "sort_documents",
    "v3_filters",
]
