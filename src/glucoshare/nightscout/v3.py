"""The Nightscout API v3 as AndroidAPS (NSClientV3) and its AAPSClient followers use it (nightscout.md §1.10).

Nightscout 15's ``lib/api3`` is the reference (read for facts; this is our own code). API v3 works
on the same stored documents as API v1 (:mod:`glucoshare.nightscout.service`): a document created
here is a row of ``ns_documents`` that v1 readers see, mapped to canonical records in the
patient's continuous *Nightscout API* upload, and a document posted through v1 is served here.

Identifiers
-----------
A document's v3 ``identifier`` is its ``identifier`` field when that is non-empty text, else its
v1 ``_id`` (Nightscout: ``normalizeDoc``). A path identifier finds a document by either. A create
without ``identifier`` gets Nightscout's: the UUID version 5 of ``<device>_<date>`` (plus
``_<eventType>`` when there is one) in the namespace made of the 16 bytes ``NightscoutRocks!``,
with ``device`` written as JavaScript would (``undefined`` when missing) and ``date`` in epoch ms.
Documents created here get a fresh 24-hex ``_id`` too, so v1 clients address them as usual.

Every document served here carries ``identifier``, ``srvCreated`` and ``srvModified`` (the row's
``created_ms`` and ``modified_ms``, UTC ms), ``isValid`` (false only once deleted) and ``date``
(the document's instant in epoch ms when the document has no ``date`` of its own, as v1
treatments and profiles do). These server fields are never stored in the document: sent in a
body, ``srvCreated``, ``srvModified``, ``subject``, ``modifiedBy`` and ``_id`` are ignored.

Writing
-------
CREATE, UPDATE and PATCH validate as Nightscout does, with its messages (AndroidAPS reads them):
``date`` is epoch ms (epoch seconds and ISO 8601 text are converted; without ``date``,
``created_at`` gives it) after 2000-01-01; ``utcOffset`` minutes from −1440 to 1440 (missing: the
ISO text's offset, else the stored document's, else the patient's time zone at that instant);
``app`` non-empty text; ``created_at`` is rewritten from ``date``. A create that finds a stored
document answers as a deduplication: the same ``identifier``, or the same instant with the
collection's identity (entries: ``type``; v1's unique key) or, for a stored document without an
``identifier``, Nightscout's fallback fields (treatments ``created_at`` and ``eventType``, device
status ``created_at`` and ``device``, profiles and food ``created_at``). Deduplicating replaces
the stored document and needs ``update`` permission; a new document needs ``create``.
``identifier``, ``date``, ``utcOffset``, ``eventType``, ``device``, ``app`` and ``isValid`` of a
stored, valid document cannot change (400 "Field … cannot be modified by the client"; a create
may change ``identifier`` when it deduplicates). Every write sets ``srvModified`` to now.

Deleting
--------
DELETE marks the document ``isValid: false`` and keeps it for HISTORY: the mapping reads such a
document as deleted, so the records it had added leave every report (stored again through
:func:`~glucoshare.nightscout.service.post_documents`, the same path as v1). ``permanent=true``
removes the row and its records. A deleted document answers 410 to READ, UPDATE and PATCH, is
left out of SEARCH, and a create with its identifier brings it back.

Reading
-------
SEARCH filters with :func:`~glucoshare.nightscout.query.v3_filters`; without ``sort`` the newest
documents come first (Nightscout orders by ``identifier``, an order no client relies on). A sort
on the collection's time field reads the rows in time order and stops once ``skip + limit``
match; any other sort looks at the newest :data:`~glucoshare.nightscout.service.MAX_SCAN`
documents. HISTORY lists the documents changed after an instant (deleted ones too) by
``srvModified``; when ``limit`` cuts through documents changed at the same millisecond, the rest
of them come too (a client asking again "after the last one" would miss them). Records imported
from files are not served through v3 (v1 serves them).

Finding a document by identifier is exact for treatments (v1's identity of a treatment with an
``identifier`` is ``id|<identifier>``) and for documents v1 gives no identity (food, settings,
device status and profiles without a time of their own), which v3 stores under the identity
``v3|<identifier>``; other documents (entries, keyed by type and instant in v1) are found by
their stored ``identifier`` column (indexed). Only an identifier longer than that column (160
characters) is looked for among the newest :data:`~glucoshare.nightscout.service.MAX_SCAN` of
its collection. A create never scans: it looks at the documents of the same instant, where a
calculated identifier's document is.

The request owns the transaction: nothing here commits. Permission checks raise
:class:`~glucoshare.nightscout.errors.RoleMissingError` ("Missing permission api:<col>:<action>").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import math
import uuid
import zoneinfo
from collections.abc import Iterator, Mapping
from typing import Any, Final

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.errors import ConflictError, NotFoundError
from glucoshare.ingest.nightscout_mapping import (
    Document,
    NightscoutDocumentError,
    iso_utc,
    parse_instant,
    zone_offset_min,
)
from glucoshare.nightscout import service
from glucoshare.nightscout.access import NightscoutCaller
from glucoshare.nightscout.documents import (
    MAX_IDENTITY,
    OBJECT_ID,
    TIME_FIELDS,
    identifier_of,
    new_object_id,
    prepare,
)
from glucoshare.nightscout.errors import DocumentInvalidError, RoleMissingError
from glucoshare.nightscout.models import NightscoutDocument
from glucoshare.nightscout.query import (
    V3_MAX_LIMIT,
    build_query,
    compile_find,
    project,
    sort_documents,
    v3_filters,
)
from glucoshare.vault.service import data_key

COLLECTIONS: Final = ("devicestatus", "entries", "food", "profile", "settings", "treatments")
"""The collections of API v3 (Nightscout's ``enabledCollections``)."""
API_VERSION: Final = "3.0.3-alpha"
"""The API v3 version Nightscout 15.0.7 reports."""
IDENTIFIER_NAMESPACE: Final = uuid.UUID(bytes=b"NightscoutRocks!")
"""Nightscout's UUID v5 namespace for calculated identifiers."""
MIN_TIMESTAMP_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z: ``date`` must be later; a smaller number is read as epoch seconds."""
_END_MS: Final = 4_102_444_800_000
"""2100-01-01T00:00:00Z: the end of the instants the mapping accepts."""
MAX_UTC_OFFSET_MIN: Final = 1440

MSG_BAD_BODY: Final = "Bad or missing request body"
MSG_BAD_IDENTIFIER: Final = "Bad or missing identifier field"
MSG_BAD_DATE: Final = "Bad or missing date field"
MSG_BAD_UTC_OFFSET: Final = "Bad or missing utcOffset field"
MSG_BAD_APP: Final = "Bad or missing app field"
MSG_BAD_LAST_MODIFIED: Final = "Bad or missing Last-Modified header/parameter"

SERVER_FIELDS: Final = ("_id", "srvCreated", "srvModified", "subject", "modifiedBy")
"""Fields the server owns: ignored in bodies, never stored."""
IMMUTABLE_FIELDS: Final = ("identifier", "date", "utcOffset", "eventType", "device", "app", "isValid")
"""Fields of a stored, valid document a write may not change (Nightscout's list, less the server's)."""
DEDUP_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "devicestatus": ("created_at", "device"),
    "entries": ("date", "type"),
    "food": ("created_at",),
    "profile": ("created_at",),
    "settings": (),
    "treatments": ("created_at", "eventType"),
}
"""Nightscout's fallback deduplication fields, for stored documents without an ``identifier``."""

_DIALECT: Final[Mapping[str, str]] = {"settings": "food"}
"""The v1 collection whose rules (time fields, numbers) a v3 collection's documents follow."""
_ACTIONS: Final = (("c", "create"), ("r", "read"), ("u", "update"), ("d", "delete"))
_CHUNK: Final = 500
_UNDEFINED: Final = object()


class DocumentNotFoundError(NotFoundError):
    """No document of the collection has this identifier."""

    code = "not_found"


class DocumentGoneError(NotFoundError):
    """The document was deleted (``isValid: false``); HISTORY still lists it."""

    code = "gone"
    http_status = 410


class PreconditionFailedError(ConflictError):
    """The document changed after the request's ``If-Unmodified-Since``."""

    code = "precondition_failed"
    http_status = 412


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """A stored document: its row and the document as stored (without the server's fields)."""

    row: NightscoutDocument
    doc: Document

    @property
    def identifier(self) -> str:
        """The v3 identifier: the ``identifier`` field when it is non-empty text, else ``_id``."""
        given = self.doc.get("identifier")
        return given if isinstance(given, str) and given else self.row.id

    @property
    def valid(self) -> bool:
        """False once the document was deleted (``isValid: false``)."""
        return self.doc.get("isValid") is not False

    def view(self) -> Document:
        """The document as v3 serves it (module docs: identifier, srvCreated, srvModified, isValid, date)."""
        out: Document = {key: value for key, value in self.doc.items() if key != "_id"}
        out["identifier"] = self.identifier
        if "date" not in out:
            out["date"] = self.row.time_ms
        out["srvCreated"] = self.row.created_ms
        out["srvModified"] = self.row.modified_ms
        out["isValid"] = self.valid
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class WriteResult:
    """What a CREATE, UPDATE or PATCH did.

    ``created`` is True for a new document (HTTP 201); ``deduplicated`` when a create (or an
    update's insert) found a stored document and replaced it; ``replaced_identifier`` the stored
    document's identifier when it differed from the new one; ``last_modified_ms`` the new
    ``srvModified`` (UTC ms).
    """

    identifier: str
    last_modified_ms: int
    created: bool
    deduplicated: bool = False
    replaced_identifier: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Normalised:
    """A body made ready to write, and whether the client gave ``utcOffset`` (or an ISO date's offset)."""

    doc: Document
    offset_given: bool


# -- identifiers and dates -----------------------------------------------------------------------


_JS_CONSTANTS: Final[Mapping[object, str]] = {None: "null", True: "true", False: "false"}


def _js_text(value: object) -> str:
    """``value`` as JavaScript's ``String()`` writes it (for the identifier key)."""
    if value is _UNDEFINED:
        return "undefined"
    if value is None or isinstance(value, bool):
        return _JS_CONSTANTS[value]
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list):
        return ",".join("" if item is None else _js_text(item) for item in value)
    return "[object Object]"


def calculate_identifier(doc: Mapping[str, Any]) -> str:
    """Nightscout's identifier of a document: UUID v5 of ``<device>_<date>[_<eventType>]``.

    ``date`` is the document's epoch ms after :func:`parse_moment`; ``eventType`` is added only
    when it is truthy, as in Nightscout's ``calculateIdentifier`` (lib/api3/shared/operationTools.js).
    """
    key = f"{_js_text(doc.get('device', _UNDEFINED))}_{_js_text(doc.get('date', _UNDEFINED))}"
    event = doc.get("eventType")
    if event:
        key += f"_{_js_text(event)}"
    return str(uuid.uuid5(IDENTIFIER_NAMESPACE, key))


def parse_moment(value: object) -> tuple[int, int | None] | None:
    """``(UTC epoch ms, offset written in minutes or None)`` of a v3 date value, or ``None``.

    As Nightscout's ``parseToMoment``: a number (or numeric text) is epoch ms, or epoch seconds
    when it is below :data:`MIN_TIMESTAMP_MS`; text is ISO 8601 or RFC 2822; anything before
    2000-01-01 (and 0, empty, ``false``) is no date.
    """
    if value is None or value is False or value in ("", 0):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    number = _numeric(value)
    if number is not None:
        if not math.isfinite(number):
            return None
        time_ms = math.trunc(number)
        if time_ms < MIN_TIMESTAMP_MS:
            time_ms = math.trunc(number * 1000)
        return (time_ms, None) if MIN_TIMESTAMP_MS <= time_ms < _END_MS else None
    assert isinstance(value, str)  # noqa: S101 - numbers were handled above
    try:
        time_ms, written = parse_instant(value.strip().replace(",", "."), "date")
    except NightscoutDocumentError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        offset = moment.utcoffset()
        written = None if offset is None else int(offset.total_seconds() // 60)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        time_ms = int(moment.timestamp() * 1000)
    return (time_ms, written) if time_ms >= MIN_TIMESTAMP_MS else None


def _numeric(value: float | str) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return (
            float(text) if text and text[-1].isdigit() and not text.lower().startswith(("n", "i")) else None
        )
    except ValueError:
        return None


def _valid_offset(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -MAX_UTC_OFFSET_MIN <= value <= MAX_UTC_OFFSET_MIN
    )


def _check_common(doc: Mapping[str, Any], *, patching: bool) -> None:
    """Nightscout's ``validateCommon`` of ``date``, ``utcOffset`` and ``app`` (patching: those sent)."""
    date = doc.get("date", _UNDEFINED)
    if not (patching and date is _UNDEFINED) and (
        isinstance(date, bool) or not isinstance(date, int | float) or date <= MIN_TIMESTAMP_MS
    ):
        raise DocumentInvalidError(MSG_BAD_DATE)
    offset = doc.get("utcOffset", _UNDEFINED)
    if not (patching and offset is _UNDEFINED) and not _valid_offset(offset):
        raise DocumentInvalidError(MSG_BAD_UTC_OFFSET)
    app = doc.get("app", _UNDEFINED)
    if not (patching and app is _UNDEFINED) and (not isinstance(app, str) or not app.strip()):
        raise DocumentInvalidError(MSG_BAD_APP)


def _body(body: object) -> Document:
    """The request body as a document without the server's fields; refused unless a non-empty object."""
    if not isinstance(body, Mapping) or not body:
        raise DocumentInvalidError(MSG_BAD_BODY)
    return {str(key): value for key, value in body.items() if key not in SERVER_FIELDS}


def _normalise(body: object, zone: zoneinfo.ZoneInfo) -> _Normalised:
    """Nightscout's ``parseDate`` and ``resolveIdentifier``, then ``validate`` (module docs, "Writing")."""
    doc = _body(body)
    moment = parse_moment(doc.get("date")) or parse_moment(doc.get("created_at"))
    offset_given = "utcOffset" in doc
    if moment is not None:
        time_ms, written = moment
        doc["date"] = time_ms
        if not offset_given and written is not None:
            doc["utcOffset"], offset_given = written, True
        elif not offset_given:
            doc["utcOffset"] = zone_offset_min(zone, time_ms)
        doc["created_at"] = iso_utc(time_ms)
    if not doc.get("identifier"):
        doc["identifier"] = calculate_identifier(doc)
    identifier = doc["identifier"]
    if not isinstance(identifier, str) or not identifier.strip():
        raise DocumentInvalidError(MSG_BAD_IDENTIFIER)
    _check_common(doc, patching=False)
    return _Normalised(doc, offset_given=offset_given)


def _same(left: object, right: object) -> bool:
    """JavaScript's ``===`` for JSON values (``true`` is not ``1``; objects by content)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    return type(left) is type(right) and left == right


def _check_immutable(doc: Mapping[str, Any], stored: Stored, *, skip_identifier: bool) -> None:
    """Refuse a change of an immutable field of a stored, valid document (Nightscout's update validation)."""
    if not stored.valid:
        return
    view = stored.view()
    for field in IMMUTABLE_FIELDS:
        if field == "identifier" and skip_identifier:
            continue
        if field in doc and not _same(doc[field], view.get(field, _UNDEFINED)):
            raise DocumentInvalidError(f"Field {field} cannot be modified by the client")


# -- permissions -----------------------------------------------------------------------------------


def require(caller: NightscoutCaller, permission: str) -> None:
    """Raise :class:`RoleMissingError` ("Missing permission …", Nightscout's message) unless allowed."""
    if not caller.may(permission):
        raise RoleMissingError(f"Missing permission {permission}")


def _require_read_all(caller: NightscoutCaller, collection: str) -> None:
    """SEARCH and HISTORY: ``read``, but ``admin`` for settings (as Nightscout)."""
    require(caller, f"api:{collection}:{'admin' if collection == 'settings' else 'read'}")


def api_permissions(caller: NightscoutCaller) -> dict[str, str]:
    """What the caller may do per collection, as v3 ``status`` writes it: ``crud`` letters.

    Every collection is listed (``""`` for none): AndroidAPS reads all six.
    """
    return {
        collection: "".join(letter for letter, action in _ACTIONS if caller.may(f"api:{collection}:{action}"))
        for collection in COLLECTIONS
    }


# -- finding stored documents -----------------------------------------------------------------------


def _check_collection(collection: str) -> None:
    if collection not in COLLECTIONS:
        msg = f"unknown API v3 collection {collection!r}"
        raise ValueError(msg)


def _zone(patient: Patient) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(patient.timezone)


def _rows(patient: Patient, collection: str) -> Select[NightscoutDocument]:
    return select(NightscoutDocument).where(
        NightscoutDocument.patient_id == patient.id, NightscoutDocument.collection == collection
    )


def _open(session: Session, row: NightscoutDocument) -> Stored:
    doc = service.open_document(session, row)
    return Stored(row, doc)


def _v3_identity(identifier: str) -> str:
    """The ``ns_documents.identity`` of a document written here with ``identifier`` (module docs)."""
    key = f"v3|{identifier}"
    return key if len(key) <= MAX_IDENTITY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _identity_of(collection: str, identifier: str) -> str:
    """The identity a document with this identifier may be found under (module docs, "Reading")."""
    if collection == "treatments":
        identity = prepare("treatments", {"identifier": identifier}, 0).identity
        if identity is not None:
            return identity
    return _v3_identity(identifier)


def _by_identity(
    session: Session, patient: Patient, collection: str, identity: str
) -> NightscoutDocument | None:
    return session.scalar(_rows(patient, collection).where(NightscoutDocument.identity == identity))


def _scan(session: Session, patient: Patient, collection: str) -> Iterator[Stored]:
    """The collection's documents, newest first, at most :data:`service.MAX_SCAN`."""
    statement = _rows(patient, collection).order_by(
        NightscoutDocument.time_ms.desc(), NightscoutDocument.seq.desc()
    )
    yield from _paged(session, statement)


def _paged(session: Session, statement: Select[NightscoutDocument]) -> Iterator[Stored]:
    for offset in range(0, service.MAX_SCAN, _CHUNK):
        rows = session.scalars(statement.offset(offset).limit(_CHUNK)).all()
        for row in rows:
            yield _open(session, row)
        if len(rows) < _CHUNK:
            return


def find_stored(
    session: Session, patient: Patient, collection: str, identifier: str, *, scan: bool = True
) -> Stored | None:
    """The stored document (deleted or not) with this v3 identifier or ``_id``; ``None`` when none.

    The identifier field wins over ``_id`` (Nightscout: ``filterForOne``). ``scan`` looks among
    the newest documents when the indexed ways find nothing (module docs, "Reading").
    """
    _check_collection(collection)
    row = _by_identity(session, patient, collection, _identity_of(collection, identifier))
    if row is not None:
        found = _open(session, row)
        if found.identifier == identifier:
            return found
    by_id: Stored | None = None
    if OBJECT_ID.match(identifier):
        row = session.scalar(_rows(patient, collection).where(NightscoutDocument.id == identifier.lower()))
        if row is not None:
            by_id = _open(session, row)
            if by_id.identifier == identifier or "identifier" not in by_id.doc:
                return by_id
    if scan and collection != "treatments":  # a treatment's identity already told
        row = session.scalar(
            _rows(patient, collection)
            .where(NightscoutDocument.identifier == identifier)
            .order_by(NightscoutDocument.time_ms.desc(), NightscoutDocument.seq.desc())
            .limit(1)
        )
        if row is not None:
            return _open(session, row)
        if len(identifier) > MAX_IDENTITY:  # too long for the column: looked for among the newest
            for found in _scan(session, patient, collection):
                if found.doc.get("identifier") == identifier:
                    return found
    return by_id


def _same_instant(session: Session, patient: Patient, collection: str, time_ms: int) -> list[Stored]:
    rows = session.scalars(
        _rows(patient, collection)
        .where(NightscoutDocument.time_ms == time_ms)
        .order_by(NightscoutDocument.seq)
    ).all()
    return [_open(session, row) for row in rows]


def _fallback_matches(collection: str, doc: Mapping[str, Any], candidate: Stored) -> bool:
    """Nightscout's fallback deduplication: a stored document without ``identifier``, same fields."""
    fields = DEDUP_FIELDS[collection]
    if not fields or "identifier" in candidate.doc or any(field not in doc for field in fields):
        return False
    view = candidate.view()
    for field in fields:
        if field in ("created_at", "date"):
            mine, theirs = parse_moment(doc[field]), parse_moment(view.get(field))
            if mine is None or theirs is None or mine[0] != theirs[0]:
                return False
        elif not _same(doc[field], view.get(field, _UNDEFINED)):
            return False
    return True


def _resolve_create(session: Session, patient: Patient, collection: str, doc: Document) -> Stored | None:
    """The stored document a create replaces (module docs, "Writing"), or ``None`` for a new one."""
    identifier = str(doc["identifier"])
    found = find_stored(session, patient, collection, identifier, scan=False)
    if found is not None:
        return found
    prepared = _prepared(collection, doc)
    candidates = _same_instant(session, patient, collection, prepared.time_ms)
    for candidate in candidates:
        if candidate.identifier == identifier:
            return candidate
    if prepared.identity is not None:
        row = _by_identity(session, patient, collection, prepared.identity)
        if row is not None:
            return _open(session, row)
    return next((c for c in candidates if _fallback_matches(collection, doc, c)), None)


def _prepared(collection: str, doc: Mapping[str, Any]) -> Any:  # noqa: ANN401 - documents.Prepared
    try:
        return prepare(_DIALECT.get(collection, collection), doc, 0)
    except NightscoutDocumentError as exc:
        raise DocumentInvalidError(str(exc)) from exc


# -- writing ----------------------------------------------------------------------------------------


def _write(
    session: Session,
    caller: NightscoutCaller,
    collection: str,
    doc: Document,
    *,
    target: Stored | None,
    now_ms: int,
    identifier: str,
) -> NightscoutDocument:
    """Store ``doc`` (replacing ``target``) through v1's storage and mapping; ``srvModified`` = now.

    The row keeps v1's identity of the document; a document v1 never merges gets the identity
    ``v3|<identifier>`` (``identifier``: its v3 identifier), by which it is found again.
    """
    patient = caller.patient
    prepared = _prepared(collection, doc)
    if prepared.identity is not None:
        holder = _by_identity(session, patient, collection, prepared.identity)
        if holder is not None and (target is None or holder is not target.row):
            msg = f"another document of {collection} is the same one for API v1 (same kind and time)"
            raise ConflictError(msg)
    if collection == "settings":
        row = _write_unmapped(session, caller, collection, doc, target=target, now_ms=now_ms)
    else:
        body = dict(doc)
        if target is not None:
            body["_id"] = target.row.id
        try:
            stored = service.post_documents(
                session,
                patient=patient,
                collection=collection,
                bodies=[body],
                actor=caller.actor,
                now_ms=now_ms,
            )
        except DocumentInvalidError as exc:
            raise DocumentInvalidError(exc.message.removeprefix("document 0: ")) from exc
        found = session.scalar(_rows(patient, collection).where(NightscoutDocument.id == stored[0]["_id"]))
        if found is None:  # pragma: no cover - post_documents just stored it
            msg = "the stored document cannot be found"
            raise DocumentInvalidError(msg)
        row = found
    row.modified_ms = now_ms
    if prepared.identity is not None:
        row.identity = prepared.identity
    else:
        key = _v3_identity(identifier)
        holder = _by_identity(session, patient, collection, key)
        row.identity = key if holder is None or holder is row else None
    session.flush()
    return row


def _write_unmapped(
    session: Session,
    caller: NightscoutCaller,
    collection: str,
    doc: Document,
    *,
    target: Stored | None,
    now_ms: int,
) -> NightscoutDocument:
    """Store a document of a collection v1 does not know (settings): kept as sent, no records."""
    patient = caller.patient
    prepared = prepare(_DIALECT[collection], doc, now_ms)
    upload = service.api_upload(session, patient, caller.actor)
    key = data_key(session, patient.id)
    object_id = new_object_id(now_ms) if target is None else target.row.id
    sealed = service.seal_document(key, patient.id, object_id, prepared.doc)
    if target is None:
        row = NightscoutDocument(
            id=object_id,
            patient_id=patient.id,
            collection=collection,
            created_ms=now_ms,
            upload_seq=upload.seq,
            record_ids=[],
        )
    else:
        row = target.row
    row.kind = prepared.kind
    row.identifier = identifier_of(prepared.doc)
    row.time_ms = prepared.time_ms
    row.modified_ms = now_ms
    row.document_sealed = sealed
    session.add(row)
    upload.size_bytes += len(sealed)
    session.flush()
    return row


def create(
    session: Session, caller: NightscoutCaller, collection: str, body: object, now_ms: int
) -> WriteResult:
    """CREATE ``POST /api/v3/{collection}``: a new document, or a deduplication (module docs, "Writing").

    Needs ``api:<collection>:create`` for a new document and ``:update`` to replace a stored one.
    Raises :class:`DocumentInvalidError` (400) with Nightscout's message for a bad body.
    """
    _check_collection(collection)
    if not (caller.may(f"api:{collection}:create") or caller.may(f"api:{collection}:update")):
        require(caller, f"api:{collection}:create")
    normalised = _normalise(body, _zone(caller.patient))
    return _upsert(session, caller, collection, normalised, now_ms)


def _upsert(
    session: Session, caller: NightscoutCaller, collection: str, normalised: _Normalised, now_ms: int
) -> WriteResult:
    doc = normalised.doc
    found = _resolve_create(session, caller.patient, collection, doc)
    identifier = str(doc["identifier"])
    if found is None:
        require(caller, f"api:{collection}:create")
        _write(session, caller, collection, doc, target=None, now_ms=now_ms, identifier=identifier)
        return WriteResult(identifier, now_ms, created=True)
    require(caller, f"api:{collection}:update")
    _inherit_offset(normalised, found)
    _check_immutable(doc, found, skip_identifier=True)
    _write(session, caller, collection, doc, target=found, now_ms=now_ms, identifier=identifier)
    replaced = found.identifier if found.identifier != identifier else None
    return WriteResult(identifier, now_ms, created=False, deduplicated=True, replaced_identifier=replaced)


def _inherit_offset(normalised: _Normalised, stored: Stored) -> None:
    """A ``utcOffset`` the client did not send is the stored document's (so it does not "change")."""
    stored_offset = stored.doc.get("utcOffset")
    if not normalised.offset_given and _valid_offset(stored_offset):
        normalised.doc["utcOffset"] = stored_offset


def _check_unmodified(stored: Stored, unmodified_since: dt.datetime | None) -> None:
    if unmodified_since is not None and stored.row.modified_ms // 1000 > int(unmodified_since.timestamp()):
        msg = "the document changed after If-Unmodified-Since"
        raise PreconditionFailedError(msg)


def _existing(session: Session, caller: NightscoutCaller, collection: str, identifier: str) -> Stored:
    found = find_stored(session, caller.patient, collection, identifier)
    if found is None:
        msg = f"no document of {collection} has this identifier"
        raise DocumentNotFoundError(msg)
    return found


def _gone(collection: str) -> DocumentGoneError:
    return DocumentGoneError(f"the document of {collection} was deleted")


def update(
    session: Session,
    caller: NightscoutCaller,
    collection: str,
    identifier: str,
    body: object,
    *,
    now_ms: int,
    unmodified_since: dt.datetime | None = None,
) -> WriteResult:
    """UPDATE ``PUT /api/v3/{collection}/{identifier}``: replace the document, or create it (upsert).

    The path's identifier is the document's. A deleted document answers
    :class:`DocumentGoneError` (410), one changed after ``unmodified_since``
    :class:`PreconditionFailedError` (412). Needs ``update`` (``create`` when it is new).
    """
    _check_collection(collection)
    if not (caller.may(f"api:{collection}:create") or caller.may(f"api:{collection}:update")):
        require(caller, f"api:{collection}:update")
    raw = _body(body)
    raw["identifier"] = identifier
    normalised = _normalise(raw, _zone(caller.patient))
    found = find_stored(session, caller.patient, collection, identifier)
    if found is None:
        return _upsert(session, caller, collection, normalised, now_ms)
    require(caller, f"api:{collection}:update")
    if not found.valid:
        raise _gone(collection)
    _check_unmodified(found, unmodified_since)
    _inherit_offset(normalised, found)
    doc = normalised.doc
    _check_immutable(doc, found, skip_identifier=False)
    if "identifier" not in found.doc and identifier == found.row.id:
        del doc["identifier"]  # addressed by its _id: it stays so (v1's sync ids keep their identity)
    _write(session, caller, collection, doc, target=found, now_ms=now_ms, identifier=identifier)
    return WriteResult(identifier, now_ms, created=False)


def patch(
    session: Session,
    caller: NightscoutCaller,
    collection: str,
    identifier: str,
    body: object,
    *,
    now_ms: int,
    unmodified_since: dt.datetime | None = None,
) -> WriteResult:
    """PATCH ``/api/v3/{collection}/{identifier}``: set the body's fields on the stored document.

    Top-level fields replace the stored ones (a sub-document is replaced whole, as MongoDB's
    ``$set``). :class:`DocumentNotFoundError` (404) when absent, :class:`DocumentGoneError`
    (410) when deleted, :class:`PreconditionFailedError` (412) as UPDATE. Needs ``update``.
    """
    _check_collection(collection)
    fields = _body(body)
    require(caller, f"api:{collection}:update")
    found = _existing(session, caller, collection, identifier)
    if not found.valid:
        raise _gone(collection)
    _check_unmodified(found, unmodified_since)
    _check_common(fields, patching=True)
    _check_immutable(fields, found, skip_identifier=False)
    merged: Document = {**found.doc, **fields}
    _write(session, caller, collection, merged, target=found, now_ms=now_ms, identifier=found.identifier)
    return WriteResult(found.identifier, now_ms, created=False)


def delete(
    session: Session,
    caller: NightscoutCaller,
    collection: str,
    identifier: str,
    now_ms: int,
    *,
    permanent: bool = False,
) -> None:
    """DELETE ``/api/v3/{collection}/{identifier}``: mark it deleted, or remove it (``permanent``).

    Either way the records the document added leave the patient's data. Needs ``delete``;
    :class:`DocumentNotFoundError` (404) when absent.
    """
    _check_collection(collection)
    require(caller, f"api:{collection}:delete")
    found = _existing(session, caller, collection, identifier)
    if permanent:
        upload = service.api_upload(session, caller.patient, caller.actor)
        service.forget_records(session, caller.patient, upload, found.row.record_ids or [])
        session.delete(found.row)
        session.flush()
        return
    doc: Document = {**found.doc, "isValid": False}
    _write(session, caller, collection, doc, target=found, now_ms=now_ms, identifier=found.identifier)


# -- reading ----------------------------------------------------------------------------------------


def read(session: Session, caller: NightscoutCaller, collection: str, identifier: str) -> Document:
    """READ ``GET /api/v3/{collection}/{identifier}``: the document as v3 serves it.

    :class:`DocumentNotFoundError` (404) when absent, :class:`DocumentGoneError` (410) when deleted.
    """
    _check_collection(collection)
    require(caller, f"api:{collection}:read")
    found = _existing(session, caller, collection, identifier)
    if not found.valid:
        raise _gone(collection)
    return found.view()


def fields_of(params: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The ``fields`` parameter (READ and HISTORY): the fields to keep, ``None`` for all."""
    value = params.get("fields")
    return v3_filters({} if value is None else {"fields": value}).fields


def search(
    session: Session, caller: NightscoutCaller, collection: str, params: Mapping[str, Any]
) -> list[Document]:
    """SEARCH ``GET /api/v3/{collection}``: the valid documents the filters accept (module docs).

    ``params`` are the parsed query parameters (``date$gt``, ``sort$desc``, ``limit``, ``skip``,
    ``fields``). Raises :class:`~glucoshare.nightscout.query.QueryError` (400) for a bad one.
    """
    _check_collection(collection)
    _require_read_all(caller, collection)
    spec = v3_filters(params)
    dialect = _DIALECT.get(collection, collection)
    predicate = compile_find(dialect, spec.find)
    bounds = build_query(dialect, {"find": spec.find}, now_ms=0)
    statement = _rows(caller.patient, collection)
    if not bounds.implicit_window and bounds.low_ms is not None:
        statement = statement.where(NightscoutDocument.time_ms >= bounds.low_ms)
    if bounds.high_ms is not None:
        statement = statement.where(NightscoutDocument.time_ms <= bounds.high_ms)
    column, ordered = _order_column(dialect, spec.sort)
    descending = spec.descending or spec.sort is None
    statement = statement.order_by(
        column.desc() if descending else column.asc(),
        NightscoutDocument.seq.desc() if descending else NightscoutDocument.seq.asc(),
    )
    wanted = spec.skip + spec.limit
    matched: list[Document] = []
    for found in _paged(session, statement):
        if not found.valid:
            continue
        view = found.view()
        if predicate(view):
            matched.append(view)
            if ordered and len(matched) >= wanted:
                break
    if spec.sort is not None:
        matched = sort_documents(dialect, matched, newest_first=spec.descending, field=spec.sort)
    return [project(doc, spec.fields) for doc in matched[spec.skip : wanted]]


def _order_column(dialect: str, field: str | None) -> tuple[Any, bool]:
    """The row column a sort follows, and whether the rows come in that order (so a scan may stop)."""
    if field is None or field in TIME_FIELDS[dialect]:
        return NightscoutDocument.time_ms, True
    if field == "srvModified":
        return NightscoutDocument.modified_ms, True
    if field == "srvCreated":
        return NightscoutDocument.created_ms, True
    return NightscoutDocument.time_ms, False


def history(
    session: Session,
    caller: NightscoutCaller,
    collection: str,
    since_ms: int,
    *,
    inclusive: bool = False,
    limit: int = V3_MAX_LIMIT,
    fields: tuple[str, ...] | None = None,
) -> list[Document]:
    """HISTORY: documents changed after ``since_ms`` (UTC ms; ``inclusive``: at or after), deleted ones too.

    Ordered by ``srvModified``, at most ``limit`` plus the rest of the documents changed in the
    same millisecond as the last one (module docs, "Reading").
    """
    _check_collection(collection)
    _require_read_all(caller, collection)
    column = NightscoutDocument.modified_ms
    statement = _rows(caller.patient, collection).where(
        column >= since_ms if inclusive else column > since_ms
    )
    rows = list(session.scalars(statement.order_by(column, NightscoutDocument.seq).limit(limit)))
    if rows and len(rows) == limit:
        last = rows[-1]
        rows.extend(
            session.scalars(
                _rows(caller.patient, collection)
                .where(column == last.modified_ms, NightscoutDocument.seq > last.seq)
                .order_by(NightscoutDocument.seq)
            )
        )
    return [project(_open(session, row).view(), fields) for row in rows]


def last_modified(session: Session, caller: NightscoutCaller) -> dict[str, int]:
    """LAST MODIFIED: the newest ``srvModified`` (UTC ms) of each collection the caller may read.

    Collections without documents are left out, as Nightscout does.
    """
    readable = [c for c in COLLECTIONS if caller.may(f"api:{c}:read")]
    if not readable:
        return {}
    found = session.execute(
        select(NightscoutDocument.collection, func.max(NightscoutDocument.modified_ms))
        .where(
            NightscoutDocument.patient_id == caller.patient.id, NightscoutDocument.collection.in_(readable)
        )
        .group_by(NightscoutDocument.collection)
    )
    return {str(name): int(value) for name, value in sorted(found) if value is not None}


def parse_since(value: str) -> int:
    """The ``{lastModified}`` of a HISTORY path (epoch ms or s, or ISO text; ``0``: the beginning)."""
    if value.strip() == "0":
        return 0
    moment = parse_moment(value)
    if moment is None:
        raise DocumentInvalidError(MSG_BAD_LAST_MODIFIED)
    return moment[0]


__all__ = [
    "API_VERSION",
    "COLLECTIONS",
    "DEDUP_FIELDS",
    "IDENTIFIER_NAMESPACE",
    "IMMUTABLE_FIELDS",
    "MIN_TIMESTAMP_MS",
    "SERVER_FIELDS",
    "DocumentGoneError",
    "DocumentNotFoundError",
    "PreconditionFailedError",
    "Stored",
    "WriteResult",
    "api_permissions",
    "calculate_identifier",
    "create",
    "delete",
    "fields_of",
    "find_stored",
    "history",
    "last_modified",
    "parse_moment",
    "parse_since",
    "patch",
    "read",
    "require",
    "search",
    "update",
]
