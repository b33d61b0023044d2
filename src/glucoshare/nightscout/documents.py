"""Documents of the Nightscout API as the server stores and serves them (research/nightscout.md §1.4–1.7).

Pure functions. A posted document is *prepared*: the credential fields a client may put in a body
(``secret``, ``token``) are removed; the collection's time is read whatever its format and written
back as Nightscout 15 does (UTC ISO text, ``utcOffset`` in minutes); numbers sent as text become
numbers; an ``_id`` that is not a 24-hex ObjectId moves to ``identifier`` (Nightscout 15 does the
same). Every other field is kept exactly as sent, also those Glucoshare does not read, so that a
client reads back what it wrote.

Deduplication follows Nightscout: an entry is identified by its type and instant; a treatment by
the client's sync id (``identifier``, ``syncIdentifier``, ``uuid`` or Trio's ``id``), else by its
instant and event type. Nightscout's API v1 inserts device status, profiles and activity again
each time they are posted; here a document that gives its own time is the same document when it
comes again (an app retrying after a lost answer): device status by device and instant (API v3's
rule), a profile by its ``startDate``, activity by type and instant. Without a time of its own
(xDrip+ sends device status without one) each is new, as is food.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import secrets
from collections.abc import Mapping
from typing import Any, Final

from glucoshare.ingest.nightscout_mapping import (
    Document,
    NightscoutDocumentError,
    iso_utc,
    parse_instant,
)

OBJECT_ID: Final = re.compile(r"^[0-9a-fA-F]{24}$")
MAX_IDENTITY: Final = 160
MAX_KIND: Final = 40
SYNTHETIC_PREFIX: Final = "ffffffff"
"""The first 8 hex digits of the ``_id`` of a record served from an imported file (an ObjectId
time of 2106, so never one a client or this server makes for a posted document)."""

TIME_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "entries": ("date", "dateString", "sysTime", "mills"),
    "treatments": ("eventTime", "created_at", "timestamp", "date", "mills"),
    "devicestatus": ("created_at", "date", "mills"),
    "profile": ("startDate", "created_at", "mills", "date"),
    "activity": ("created_at", "timeStamp", "date", "mills"),
    "food": ("created_at", "date", "mills"),
}
"""Where each collection's documents give their time, in order of preference."""

_CREDENTIALS: Final = ("secret", "token")
_TREATMENT_NUMBERS: Final = (
    "insulin", "carbs", "protein", "fat", "duration", "absolute", "rate", "percent", "glucose",
    "targetTop", "targetBottom", "relative", "preBolus", "enteredinsulin", "splitNow", "splitExt",
)  # fmt: skip
_DROPPED_WHEN_EMPTY: Final = (
    "carbs", "insulin", "percent", "relative", "targetTop", "targetBottom", "notes", "preBolus",
)  # fmt: skip
_SYNC_IDS: Final = ("identifier", "syncIdentifier", "uuid", "id")
_ENTRY_NUMBERS: Final = ("sgv", "mbg", "filtered", "unfiltered", "rssi", "noise", "delta", "utcOffset")


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """A posted document made ready to store: the document, its instant and its keys."""

    doc: Document
    time_ms: int
    identity: str | None
    kind: str
    given_id: str | None
    """The client's own 24-hex ``_id`` (lower case), when it sent one."""


def new_object_id(now_ms: int) -> str:
    """A fresh 24-hex id in ObjectId form: 4 bytes of the second, 8 random bytes."""
    return f"{(now_ms // 1000) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def record_object_id(record_id: int) -> str:
    """The ``_id`` under which a record imported from a file is served (:data:`SYNTHETIC_PREFIX`)."""
    return f"{SYNTHETIC_PREFIX}{record_id:016x}"


def record_id_of(object_id: str) -> int | None:
    """The record id inside an ``_id`` made by :func:`record_object_id`; ``None`` for other ids."""
    if len(object_id) == 24 and object_id.lower().startswith(SYNTHETIC_PREFIX):  # noqa: PLR2004
        try:
            return int(object_id[8:], 16)
        except ValueError:
            return None
    return None


def _number(value: object) -> object:
    """A number sent as text becomes a number (Nightscout's ``Number()``); other values stay."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return value
        try:
            number = float(text)
        except ValueError:
            return value
        if not math.isfinite(number):
            return None
        return int(number) if number.is_integer() and "." not in text else number
    return value


def _empty(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, int | float) and not value)


def _bounded(key: str) -> str:
    if len(key) <= MAX_IDENTITY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _document_time(collection: str, doc: Mapping[str, Any], now_ms: int) -> tuple[int, int | None]:
    """``(instant, offset written)``: the first time field present, else now.

    The offset comes from the first time text that has one (xDrip+ gives ``date`` in epoch
    milliseconds and the phone's offset only in ``dateString``).
    """
    fields = [f for f in TIME_FIELDS[collection] if doc.get(f) is not None and doc.get(f) != ""]
    if not fields:
        return now_ms, None
    time_ms, written = parse_instant(doc[fields[0]], fields[0])
    for field in fields[1:]:
        if written is not None:
            break
        if isinstance(doc[field], str):
            try:
                written = parse_instant(doc[field], field)[1]
            except NightscoutDocumentError:
                continue
    return time_ms, written


def _own_id(doc: Document) -> str | None:
    """Take the client's ``_id``: an ObjectId is kept, anything else moves to ``identifier``."""
    given = doc.pop("_id", None)
    if given is None:
        return None
    if isinstance(given, str) and OBJECT_ID.match(given):
        return given.lower()
    if isinstance(given, dict) and isinstance(given.get("$oid"), str) and OBJECT_ID.match(given["$oid"]):
        return str(given["$oid"]).lower()
    doc.setdefault("identifier", str(given)[:MAX_IDENTITY])
    return None


def prepare(collection: str, raw: Mapping[str, Any], now_ms: int) -> Prepared:
    """Make a posted document of ``collection`` ready to store (module docs).

    Raises :class:`NightscoutDocumentError` naming the field at fault.
    """
    if not isinstance(raw, Mapping):
        msg = "a document is a JSON object"
        raise NightscoutDocumentError(msg)
    doc: Document = {key: value for key, value in raw.items() if key not in _CREDENTIALS}
    given_id = _own_id(doc)
    timed = any(doc.get(field) not in (None, "") for field in TIME_FIELDS[collection])
    time_ms, written = _document_time(collection, doc, now_ms)
    if collection == "entries":
        return _entry(doc, time_ms, written, given_id)
    if collection == "treatments":
        return _treatment(doc, time_ms, written, given_id)
    if collection == "profile":
        iso = iso_utc(time_ms)
        doc["startDate"] = doc.get("startDate") or iso
        doc.setdefault("created_at", iso)
        return Prepared(doc, time_ms, f"profile|{time_ms}" if timed else None, "", given_id)
    doc["created_at"] = iso_utc(time_ms)
    if written is not None and "utcOffset" not in doc:
        doc["utcOffset"] = written
    kind = doc.get("device") if collection == "devicestatus" else doc.get("type", doc.get("activityType"))
    kind_full = kind if isinstance(kind, str) else ""
    identity = None
    if timed and collection in ("devicestatus", "activity"):
        identity = _bounded(f"{collection}|{time_ms}|{kind_full}")
    return Prepared(doc, time_ms, identity, kind_full[:MAX_KIND], given_id)


def _entry(doc: Document, time_ms: int, written: int | None, given_id: str | None) -> Prepared:
    for key in _ENTRY_NUMBERS:
        if key in doc:
            doc[key] = _number(doc[key])
    kind = doc.get("type")
    if not isinstance(kind, str) or not kind:
        kind = "sgv" if "sgv" in doc else "mbg" if "mbg" in doc else "cal" if "slope" in doc else ""
        if not kind:
            msg = "type is missing (sgv, mbg or cal)"
            raise NightscoutDocumentError(msg)
        doc["type"] = kind
    date = doc.get("date")
    if not isinstance(date, int | float) or isinstance(date, bool):
        doc["date"] = time_ms
    iso = iso_utc(time_ms)
    doc["dateString"] = iso
    doc["sysTime"] = iso
    if "utcOffset" not in doc:
        doc["utcOffset"] = written if written is not None else 0
    return Prepared(doc, time_ms, f"{kind}|{time_ms}", kind[:MAX_KIND], given_id)


def _treatment(doc: Document, time_ms: int, written: int | None, given_id: str | None) -> Prepared:
    for key in _TREATMENT_NUMBERS:
        if key in doc:
            doc[key] = _number(doc[key])
    for key in _DROPPED_WHEN_EMPTY:
        if key in doc and _empty(doc[key]):
            del doc[key]
    for key in ("absolute", "duration"):
        if key in doc and doc[key] is None:
            del doc[key]
    if "glucose" in doc and _empty(doc["glucose"]):
        for key in ("glucose", "glucoseType", "units"):
            doc.pop(key, None)
    event = doc.get("eventType")
    event_text = event if isinstance(event, str) else ""
    doc["eventType"] = event_text or "<none>"
    doc["created_at"] = iso_utc(time_ms)
    doc.pop("eventTime", None)
    if written is not None and "utcOffset" not in doc:
        doc["utcOffset"] = written
    sync = next((str(doc[key]) for key in _SYNC_IDS if doc.get(key) not in (None, "")), None)
    identity = f"id|{sync}" if sync is not None else f"at|{time_ms}|{doc['eventType']}"
    return Prepared(doc, time_ms, _bounded(identity), doc["eventType"][:MAX_KIND], given_id)


def identifier_of(doc: Mapping[str, Any]) -> str | None:
    """A document's own ``identifier`` field, as stored for lookups (``None``: none, or too long)."""
    value = doc.get("identifier")
    if isinstance(value, str) and value and len(value) <= MAX_IDENTITY:
        return value
    return None


def served(doc: Mapping[str, Any], object_id: str, time_ms: int) -> Document:
    """A stored document as queries see it: with its ``_id`` and ``mills``."""
    out: Document = {"_id": object_id, **doc}
    out.setdefault("mills", time_ms)
    return out


def as_read(doc: Document, collection: str) -> Document:
    """A found document as clients read it (after the query has matched it).

    Treatments always have ``carbs`` and ``insulin`` (``null`` when absent), as Nightscout serves them.
    """
    if collection == "treatments":
        doc.setdefault("carbs", None)
        doc.setdefault("insulin", None)
    return doc


__all__ = [
    "OBJECT_ID",
    "TIME_FIELDS",
    "NightscoutDocumentError",
    "Prepared",
    "as_read",
    "identifier_of",
    "new_object_id",
    "prepare",
    "record_id_of",
    "record_object_id",
    "served",
]
