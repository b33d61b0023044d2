"""The Nightscout-compatible API's service: store posted documents, find and delete them.

One truth (issue 9): a posted document is kept as it was sent (sealed, :class:`NightscoutDocument`)
and mapped to canonical records (:mod:`glucoshare.ingest.nightscout_mapping`) in the patient's
continuous *Nightscout API* upload, so that it counts in every report; reading a collection
serves those documents together with the records imported from files (and other apps), mapped
back to Nightscout documents, so that a Nightscout client sees everything the patient has.

The request owns the transaction: nothing here commits.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar, cast

import numpy as np
from sqlalchemy import ARRAY, String, any_, bindparam, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import Table

from glucoshare.accounts.models import Patient
from glucoshare.devices.models import Device
from glucoshare.ingest.base import DeviceInfo, ParsedRecord, ParseResult
from glucoshare.ingest.nightscout_mapping import (
    Document,
    MappedRecord,
    NightscoutDocumentError,
    device_info,
    entry_records,
    nightscout_document,
    profile_records,
    treatment_records,
)
from glucoshare.ingest.service import NIGHTSCOUT_API_FORMAT, collector_paused, store_parsed
from glucoshare.nightscout.documents import (
    Prepared,
    as_read,
    identifier_of,
    new_object_id,
    prepare,
    record_id_of,
    record_object_id,
    served,
)
from glucoshare.nightscout.errors import DocumentConflictError, DocumentInvalidError
from glucoshare.nightscout.models import NightscoutDocument
from glucoshare.nightscout.query import Query, sort_documents
from glucoshare.records.models import Record, Upload
from glucoshare.records.service import note_place
from glucoshare.records.vocabulary import RecordType
from glucoshare.summaries.data import distinct_readings
from glucoshare.summaries.service import mark_outdated
from glucoshare.vault.cipher import seal
from glucoshare.vault.service import data_key, open_mapping, open_value

API_FORMAT: Final = NIGHTSCOUT_API_FORMAT
"""The format of a patient's continuous upload of the Nightscout API."""
MAX_SCAN: Final = 50_000
"""Most documents one query looks at (a query wider than this is answered from the newest)."""
MAX_DOCUMENTS_PER_REQUEST: Final = 5_000

_RECORD_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "entries": (RecordType.CBG.value, RecordType.SMBG.value),
    "profile": (RecordType.PUMP_SETTINGS.value,),
    "treatments": tuple(
        t.value
        for t in RecordType
        if t not in (RecordType.CBG, RecordType.PUMP_SETTINGS, RecordType.CGM_SETTINGS)
    ),
}
"""The record types a collection may serve from imported files."""
_MAPPED: Final = frozenset({"entries", "treatments", "profile"})
T = TypeVar("T")
_TABLE: Final = cast("Table", NightscoutDocument.__table__)
_SAME_READING_MS: Final = 90_000
_SAME_READING_MGDL: Final = 2.0


def _place(patient_id: str, object_id: str) -> str:
    """Where a document is sealed: its table, patient and ``_id`` (a sealed copy fits no other row)."""
    return f"ns_documents:{patient_id}:{object_id}"


def seal_document(key: bytes, patient_id: str, object_id: str, doc: Document) -> bytes:
    """A document as stored: its JSON sealed with the patient's data key, bound to its ``_id``."""
    plain = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return seal(key, plain, _place(patient_id, object_id))


def open_document(session: Session, row: NightscoutDocument) -> Document:
    """A stored document as its client sent it (after :func:`~glucoshare.nightscout.documents.prepare`)."""
    plain = open_value(session, row.patient_id, row.document_sealed, _place(row.patient_id, row.id))
    opened: Document = json.loads(plain)
    return opened


def api_upload(session: Session, patient: Patient, actor: str) -> Upload:
    """The patient's continuous upload of the Nightscout API (made on first use)."""
    upload = session.scalar(
        select(Upload).where(
            Upload.patient_id == patient.id, Upload.format == API_FORMAT, Upload.state == "continuous"
        )
    )
    if upload is None:
        upload = Upload(
            patient_id=patient.id,
            file_name="Nightscout API",
            sha256=hashlib.sha256(f"{API_FORMAT}:{patient.id}".encode()).hexdigest(),
            size_bytes=0,
            format=API_FORMAT,
            encoding="utf-8",
            timezone=patient.timezone,
            uploaded_by=actor,
            state="continuous",
            counts={},
        )
        session.add(upload)
        session.flush()
    return upload


@dataclasses.dataclass(slots=True)
class _Pending:
    """One posted document on its way to storage."""

    prepared: Prepared
    mapped: tuple[MappedRecord, ...] = ()
    row: NightscoutDocument | None = None
    """The stored document it replaces (loaded), if any."""
    seq: int | None = None
    object_id: str | None = None
    changed: bool = True
    same_as: _Pending | None = None
    """An earlier document of the same request with the same identity (the later one wins)."""


def post_documents(
    session: Session,
    *,
    patient: Patient,
    collection: str,
    bodies: Sequence[Any],
    actor: str,
    now_ms: int,
) -> list[Document]:
    """Store posted documents (insert, or replace the one with the same identity); return them as stored.

    The reply holds one document per posted one, in the posted order, each with its ``_id``
    (Loop needs exactly that). A document that cannot be read refuses the whole request
    (:class:`DocumentInvalidError` naming its index and field); nothing is stored then.
    """
    if len(bodies) > MAX_DOCUMENTS_PER_REQUEST:
        msg = f"at most {MAX_DOCUMENTS_PER_REQUEST:,} documents per request"
        raise DocumentInvalidError(msg)
    with collector_paused():  # many small, acyclic objects: the cyclic collector would only walk them
        return _post(
            session, patient=patient, collection=collection, bodies=bodies, actor=actor, now_ms=now_ms
        )


def _post(
    session: Session,
    *,
    patient: Patient,
    collection: str,
    bodies: Sequence[Any],
    actor: str,
    now_ms: int,
) -> list[Document]:
    pending = _prepared(collection, patient, bodies, now_ms)
    upload = api_upload(session, patient, actor)
    key = data_key(session, patient.id)
    superseded = _match_stored(session, patient, collection, pending)
    _merge_repeats(pending)
    inserts: list[_Pending] = []
    for item in pending:
        if item.same_as is not None:
            continue
        row = item.row
        if row is None:
            item.object_id = item.prepared.given_id or new_object_id(now_ms)
            inserts.append(item)
        elif open_document(session, row) == item.prepared.doc:
            item.changed = False
        else:
            superseded.extend(row.record_ids or [])
            row.record_ids = []
            row.identity, row.kind = item.prepared.identity, item.prepared.kind
            row.identifier = identifier_of(item.prepared.doc)
            row.time_ms, row.modified_ms = item.prepared.time_ms, now_ms
            row.document_sealed = seal_document(key, row.patient_id, row.id, item.prepared.doc)
        if row is not None:
            item.seq, item.object_id = row.seq, row.id
    if superseded:
        forget_records(session, patient, upload, superseded)
    sealed_bytes = _insert_documents(session, patient, upload, collection, inserts, key=key, now_ms=now_ms)
    stored = [item for item in pending if item.same_as is None and item.changed and item.mapped]
    if stored:
        added = _store_mapped(session, patient, upload, [(i.seq or 0, i.mapped) for i in stored], count=True)
        _link_records(session, pending, added)
    upload.size_bytes += sealed_bytes
    session.flush()
    return [_reply(item, collection) for item in pending]


def _reply(item: _Pending, collection: str) -> Document:
    final = item.same_as or item
    return as_read(served(final.prepared.doc, final.object_id or "", final.prepared.time_ms), collection)


def _prepared(collection: str, patient: Patient, bodies: Sequence[Any], now_ms: int) -> list[_Pending]:
    """Prepare and map every posted document; refuse the request when one cannot be read."""
    zone = _zone(patient)
    pending = []
    for index, body in enumerate(bodies):
        try:
            prepared = prepare(collection, body, now_ms)
            mapped = _map(collection, prepared.doc, zone) if collection in _MAPPED else ()
        except NightscoutDocumentError as exc:
            msg = f"document {index}: {exc}"
            raise DocumentInvalidError(msg) from exc
        pending.append(_Pending(prepared, mapped))
    return pending


def _merge_repeats(pending: Sequence[_Pending]) -> None:
    """A document posted twice in one request is stored once: the later one, under one ``_id``."""
    first: dict[str, _Pending] = {}
    for item in pending:
        identity = item.prepared.identity
        if identity is None or item.row is not None:
            continue
        earlier = first.get(identity)
        if earlier is None:
            first[identity] = item
            continue
        earlier.prepared, earlier.mapped = item.prepared, item.mapped
        item.same_as = earlier


def _insert_documents(
    session: Session,
    patient: Patient,
    upload: Upload,
    collection: str,
    items: Sequence[_Pending],
    *,
    key: bytes,
    now_ms: int,
) -> int:
    """Insert new documents in one statement and note their ``seq``; return the sealed bytes written."""
    if not items:
        return 0
    sealed = [seal_document(key, patient.id, str(item.object_id), item.prepared.doc) for item in items]
    try:
        if session.get_bind().dialect.name == "postgresql":
            seqs = _insert_postgres(session, patient, upload, collection, items, sealed, now_ms)
        else:
            seqs = _insert_rows(session, patient, upload, collection, items, sealed, now_ms)
    except IntegrityError:
        msg = "another request stored the same document at the same moment; send it again"
        raise DocumentConflictError(msg) from None
    for item in items:
        item.seq = seqs[str(item.object_id)]
    return sum(len(document) for document in sealed)


def _insert_postgres(  # noqa: PLR0917 - the parts of one insert
    session: Session,
    patient: Patient,
    upload: Upload,
    collection: str,
    items: Sequence[_Pending],
    sealed: Sequence[bytes],
    now_ms: int,
) -> dict[str, int]:
    """One ``INSERT ... SELECT FROM unnest(...) RETURNING``: the documents as arrays, one round trip."""
    result = session.execute(
        text(
            "INSERT INTO ns_documents (id, patient_id, collection, identity, identifier, kind, time_ms,"
            " created_ms, modified_ms, upload_seq, document_sealed, record_ids)"
            " SELECT u.id, :patient, :collection, u.identity, u.identifier, u.kind, u.time_ms, :now, :now,"
            " :upload, u.sealed, CAST('[]' AS json) FROM unnest(CAST(:ids AS varchar[]),"
            " CAST(:identities AS varchar[]), CAST(:identifiers AS varchar[]), CAST(:kinds AS varchar[]),"
            " CAST(:times AS bigint[]), CAST(:sealed AS bytea[]))"
            " AS u(id, identity, identifier, kind, time_ms, sealed) RETURNING id, seq"
        ),
        {
            "patient": patient.id,
            "collection": collection,
            "now": now_ms,
            "upload": upload.seq,
            "ids": [str(item.object_id) for item in items],
            "identities": [item.prepared.identity for item in items],
            "identifiers": [identifier_of(item.prepared.doc) for item in items],
            "kinds": [item.prepared.kind for item in items],
            "times": [item.prepared.time_ms for item in items],
            "sealed": list(sealed),
        },
    )
    return {str(object_id): int(seq) for object_id, seq in result}


def _insert_rows(  # noqa: PLR0917 - the parts of one insert
    session: Session,
    patient: Patient,
    upload: Upload,
    collection: str,
    items: Sequence[_Pending],
    sealed: Sequence[bytes],
    now_ms: int,
) -> dict[str, int]:
    """One executemany (SQLite runs it in-process), then the new ``seq`` of each document."""
    rows: list[dict[str, Any]] = [
        {
            "id": item.object_id,
            "patient_id": patient.id,
            "collection": collection,
            "identity": item.prepared.identity,
            "identifier": identifier_of(item.prepared.doc),
            "kind": item.prepared.kind,
            "time_ms": item.prepared.time_ms,
            "created_ms": now_ms,
            "modified_ms": now_ms,
            "upload_seq": upload.seq,
            "document_sealed": document,
            "record_ids": [],
        }
        for item, document in zip(items, sealed, strict=True)
    ]
    session.execute(insert(_TABLE), rows)
    seqs: dict[str, int] = {}
    for chunk in _chunks([str(item.object_id) for item in items], 500):
        seqs.update(
            (object_id, seq)
            for object_id, seq in session.execute(
                select(NightscoutDocument.id, NightscoutDocument.seq).where(NightscoutDocument.id.in_(chunk))
            )
        )
    return seqs


def _link_records(session: Session, pending: Sequence[_Pending], added: Mapping[int, list[int]]) -> None:
    """Note on each document the records it added (one statement for the new documents)."""
    loaded = {item.seq: item.row for item in pending if item.row is not None}
    updates = []
    for seq, ids in added.items():
        row = loaded.get(seq)
        if row is not None:
            row.record_ids = sorted({*(row.record_ids or []), *ids})
        else:
            updates.append({"at": seq, "ids": sorted(ids)})
    if not updates:
        return
    if session.get_bind().dialect.name == "postgresql":  # one statement instead of one per document
        session.execute(
            text(
                "UPDATE ns_documents SET record_ids = linked.ids FROM (SELECT unnest(CAST(:seqs AS"
                " integer[])) AS seq, unnest(CAST(:ids AS json[])) AS ids) AS linked"
                " WHERE ns_documents.seq = linked.seq"
            ),
            {"seqs": [u["at"] for u in updates], "ids": [json.dumps(u["ids"]) for u in updates]},
        )
        return
    table = _TABLE
    statement = update(table).where(table.c.seq == bindparam("at")).values(record_ids=bindparam("ids"))
    session.execute(statement, updates)  # one executemany (SQLite runs it in-process)


def _zone(patient: Patient) -> Any:  # noqa: ANN401 - a zoneinfo.ZoneInfo
    import zoneinfo  # noqa: PLC0415 - keeps the module's imports about storage

    return zoneinfo.ZoneInfo(patient.timezone)


def _map(collection: str, doc: Mapping[str, Any], zone: Any) -> tuple[MappedRecord, ...]:  # noqa: ANN401
    if collection == "entries":
        return entry_records(doc, zone).records
    if collection == "treatments":
        return treatment_records(doc, zone).records
    return profile_records(doc, zone).records


def _match_stored(
    session: Session, patient: Patient, collection: str, pending: Sequence[_Pending]
) -> list[int]:
    """Find the stored document each posted one replaces: by its ``_id``, else by its identity.

    A document whose ``_id`` names one row and whose identity another replaces both: the other row
    goes; returns the records that row had added (for the caller to forget).
    """
    ids = {p.prepared.given_id for p in pending if p.prepared.given_id is not None}
    identities = {p.prepared.identity for p in pending if p.prepared.identity is not None}
    by_id: dict[str, NightscoutDocument] = {}
    by_identity: dict[str, NightscoutDocument] = {}
    orphaned: list[int] = []
    for chunk in _chunks(sorted(ids), 500):
        for row in session.scalars(
            select(NightscoutDocument).where(_among(session, NightscoutDocument.id, chunk))
        ):
            if row.patient_id != patient.id or row.collection != collection:
                msg = "a posted _id belongs to another document; leave _id out to add a new one"
                raise DocumentConflictError(msg)
            by_id[row.id] = row
    for chunk in _chunks(sorted(identities), 500):
        query = select(NightscoutDocument).where(
            NightscoutDocument.patient_id == patient.id,
            NightscoutDocument.collection == collection,
            _among(session, NightscoutDocument.identity, chunk),
        )
        for found in session.scalars(query):
            if found.identity is not None:
                by_identity[found.identity] = found
    for item in pending:
        prepared = item.prepared
        target = by_id.get(prepared.given_id) if prepared.given_id is not None else None
        twin = by_identity.get(prepared.identity) if prepared.identity is not None else None
        if target is not None and twin is not None and twin is not target:
            # The document moves onto an identity another one holds: that one is replaced by it.
            orphaned.extend(twin.record_ids or [])
            session.delete(twin)
            session.flush()
            by_identity.pop(twin.identity or "", None)
        item.row = target if target is not None else twin
    return orphaned


def _among(session: Session, column: Any, values: Sequence[str]) -> Any:  # noqa: ANN401 - SQL expressions
    """``column IN values``: on PostgreSQL as ``= ANY(array)``, one parameter instead of one per value."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam("among", list(values), type_=ARRAY(String)))
    return column.in_(values)


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _store_mapped(
    session: Session,
    patient: Patient,
    upload: Upload,
    items: Sequence[tuple[int, Sequence[MappedRecord]]],
    *,
    count: bool,
) -> dict[int, list[int]]:
    """Store the records of documents (line = the document's ``seq``); the new record ids by document."""
    devices: dict[str, DeviceInfo] = {}
    records: list[ParsedRecord] = []
    for seq, mapped in items:
        for one in mapped:
            if one.device not in devices:
                devices[one.device] = device_info(one.device)
            records.append(_parsed(one, seq))
    if not records:
        return {}
    result = ParseResult(records=iter(records), devices=devices)
    run = store_parsed(session, patient=patient, upload=upload, result=result, count=count)
    added: dict[int, list[int]] = collections.defaultdict(list)
    if run.first_record_id is None or run.last_record_id is None:
        return added
    query = select(Record.id, Record.source_line).where(
        Record.id >= run.first_record_id, Record.id <= run.last_record_id, Record.upload_seq == upload.seq
    )
    for record_id, line in session.execute(query):
        added[line].append(record_id)
    return added


def restore_documents(session: Session, patient: Patient, upload: Upload) -> int:
    """Store again the records of the posted documents that another upload's removal took away."""
    rows = session.scalars(
        select(NightscoutDocument)
        .where(
            NightscoutDocument.upload_seq == upload.seq, NightscoutDocument.collection.in_(sorted(_MAPPED))
        )
        .order_by(NightscoutDocument.seq)
    ).all()
    zone = _zone(patient)
    items = [(row.seq, _map(row.collection, open_document(session, row), zone)) for row in rows]
    before = sum(len(row.record_ids or []) for row in rows)
    added = _store_mapped(session, patient, upload, items, count=False)
    by_seq = {row.seq: row for row in rows}
    for seq, ids in added.items():
        row = by_seq[seq]
        row.record_ids = sorted({*(row.record_ids or []), *ids})
    return sum(len(row.record_ids or []) for row in rows) - before


def _parsed(mapped: MappedRecord, line: int) -> ParsedRecord:
    return ParsedRecord(
        mapped.type,
        mapped.subtype,
        mapped.time_ms,
        mapped.utc_offset_min,
        line,
        mapped.device,
        mapped.value,
        mapped.orig_value,
        mapped.orig_unit,
        mapped.duration_ms,
        mapped.annotation,
        mapped.payload,
        mapped.identity,
    )


def forget_records(session: Session, patient: Patient, upload: Upload, record_ids: Iterable[int]) -> int:
    """Delete records a document had added (it was replaced or deleted); keep the upload's counts true."""
    ids = sorted(set(record_ids))
    if not ids:
        return 0
    counts = collections.Counter(upload.counts or {})
    first, last = None, None
    removed = 0
    for chunk in _chunks(ids, 500):
        for kind, low, high, number in session.execute(
            select(Record.type, func.min(Record.time_ms), func.max(Record.time_ms), func.count())
            .where(Record.id.in_(chunk))
            .group_by(Record.type)
        ):
            counts[kind] -= number
            removed += number
            first = low if first is None else min(first, low)
            last = high if last is None else max(last, high)
        session.execute(delete(Record).where(Record.id.in_(chunk)))
    upload.counts = {k: v for k, v in sorted(counts.items()) if v > 0}
    upload.new_count = max(0, upload.new_count - removed)
    if first is not None and last is not None:
        mark_outdated(session, patient.id, first, last, "nightscout document replaced or deleted")
    return removed


# -- reading --------------------------------------------------------------------------------------


def find_documents(
    session: Session,
    *,
    patient: Patient,
    collection: str,
    query: Query,
    include_files: bool = True,
    include_deleted: bool = False,
) -> list[Document]:
    """The documents of ``collection`` that match ``query``, newest first, at most ``query.count``.

    Posted documents and (for entries, treatments and profiles) the records of every other upload
    mapped to documents, so a Nightscout client reads what was imported from files too; an
    imported CGM reading that repeats a posted one (within 90 s and 2 mg/dL) is served once.
    """
    simple = _only_prefilters(collection, query)
    limit = query.count + 1 if simple else MAX_SCAN
    docs = _stored_documents(session, patient, collection, query, limit)
    if include_files and collection in _MAPPED:
        docs.extend(
            _file_documents(
                session, patient=patient, collection=collection, query=query, limit=limit, posted=docs
            )
        )
    found = [
        doc for doc in docs if (include_deleted or doc.get("isValid") is not False) and query.accepts(doc)
    ]
    ordered = sort_documents(collection, found)
    if collection == "entries":
        _add_deltas(ordered)
    return [as_read(doc, collection) for doc in ordered[: query.count]]


def _only_prefilters(collection: str, query: Query) -> bool:
    """True when the SQL filters already do the whole query (so SQL may stop at ``count``)."""
    return query.bounds_exact and (collection != "entries" or "type" not in query.find)


def _stored_documents(
    session: Session, patient: Patient, collection: str, query: Query, limit: int
) -> list[Document]:
    statement = select(NightscoutDocument).where(
        NightscoutDocument.patient_id == patient.id, NightscoutDocument.collection == collection
    )
    if query.low_ms is not None:
        statement = statement.where(NightscoutDocument.time_ms >= query.low_ms)
    if query.high_ms is not None:
        statement = statement.where(NightscoutDocument.time_ms <= query.high_ms)
    if query.ids is not None:
        statement = statement.where(NightscoutDocument.id.in_([i.lower() for i in query.ids]))
    if collection == "entries" and query.type not in (None, "*"):
        statement = statement.where(NightscoutDocument.kind == query.type)
    statement = statement.order_by(NightscoutDocument.time_ms.desc(), NightscoutDocument.seq.desc()).limit(
        limit
    )
    return [served(open_document(session, row), row.id, row.time_ms) for row in session.scalars(statement)]


def _api_uploads(session: Session, patient: Patient) -> list[int]:
    return list(
        session.scalars(
            select(Upload.seq).where(Upload.patient_id == patient.id, Upload.format == API_FORMAT)
        )
    )


def _file_documents(
    session: Session,
    *,
    patient: Patient,
    collection: str,
    query: Query,
    limit: int,
    posted: Sequence[Document],
) -> list[Document]:
    """Records of every upload but the Nightscout API's, as documents of ``collection``."""
    types = _RECORD_TYPES[collection]
    if collection == "entries" and query.type not in (None, "*"):
        types = {"sgv": ("cbg",), "mbg": ("smbg",)}.get(str(query.type), ())
    if not types:
        return []
    statement = (
        select(Record, Device)
        .join(Device, Device.seq == Record.device_seq)
        .where(Device.patient_id == patient.id, Record.type.in_(types))
    )
    excluded = _api_uploads(session, patient)
    if excluded:
        statement = statement.where(Record.upload_seq.not_in(excluded))
    if query.low_ms is not None:
        statement = statement.where(Record.time_ms >= query.low_ms)
    if query.high_ms is not None:
        statement = statement.where(Record.time_ms <= query.high_ms)
    if query.ids is not None:
        wanted = [r for r in (record_id_of(i) for i in query.ids) if r is not None]
        if not wanted:
            return []
        statement = statement.where(Record.id.in_(wanted))
    statement = statement.order_by(Record.time_ms.desc(), Record.id.desc()).limit(limit)
    rows = session.execute(statement).all()
    if collection == "entries":
        rows = _distinct_entries(session, patient, rows, posted)
    notes_at = note_place(patient.id)
    out: list[Document] = []
    for record, device in rows:
        payload = record.payload
        if record.type == RecordType.NOTE:
            payload = open_mapping(session, patient.id, payload, notes_at)
        mapped = MappedRecord(
            record.type,
            record.subtype,
            record.time_ms,
            record.utc_offset_min,
            f"{device.manufacturer} {device.model}".strip(),
            record.value,
            record.orig_value,
            record.orig_unit,
            record.duration_ms,
            record.annotation,
            payload,
        )
        made = nightscout_document(mapped)
        if made is None or made[0] != collection:
            continue
        if collection == "profile":
            _with_timezone(made[1], patient.timezone)
        out.append(served(made[1], record_object_id(record.id), record.time_ms))
    return out


def _with_timezone(doc: Document, timezone: str) -> None:
    """Give each stored profile of an imported file's profile the patient's time zone.

    Readers of profiles need it (py-nightscout and Trio read ``timezone``); an export does not say.
    """
    store = doc.get("store")
    if isinstance(store, dict):
        for profile in store.values():
            if isinstance(profile, dict) and not profile.get("timezone"):
                profile["timezone"] = timezone


def _distinct_entries(
    session: Session, patient: Patient, rows: Sequence[Any], posted: Sequence[Document]
) -> list[Any]:
    """Imported readings, once each: repeats across devices (ranked) and of posted sgv left out."""
    cgm = [at for at, (record, _device) in enumerate(rows) if record.type == RecordType.CBG]
    if not cgm:
        return list(rows)
    times = np.array([rows[at][0].time_ms for at in cgm], np.int64)
    values = np.array([rows[at][0].value or 0.0 for at in cgm], np.float64)
    devices = np.array([rows[at][0].device_seq for at in cgm], np.int64)
    keep = distinct_readings(session, patient.id, times, values, devices)
    posted_sgv = sorted(
        (int(doc["mills"]), float(doc["sgv"]))
        for doc in posted
        if doc.get("type") == "sgv" and isinstance(doc.get("sgv"), int | float)
    )
    if posted_sgv:
        posted_times = np.array([t for t, _ in posted_sgv], np.int64)
        posted_values = np.array([v for _, v in posted_sgv], np.float64)
        left = np.searchsorted(posted_times, times - _SAME_READING_MS, side="left")
        right = np.searchsorted(posted_times, times + _SAME_READING_MS, side="right")
        for at in np.flatnonzero(keep).tolist():
            near = posted_values[left[at] : right[at]]
            if near.size and bool((np.abs(near - values[at]) <= _SAME_READING_MGDL).any()):
                keep[at] = False
    dropped = {cgm[at] for at in np.flatnonzero(~keep).tolist()}
    return [row for at, row in enumerate(rows) if at not in dropped]


def _add_deltas(entries: list[Document]) -> None:
    """Give sgv entries without a ``delta`` one: mg/dL per 5 minutes from the reading before.

    Nightscout does not compute it (readers such as Home Assistant then show none): the change
    from the previous sgv entry within 15 minutes, scaled to 5 minutes.
    """
    sgv = [doc for doc in entries if doc.get("type") == "sgv" and isinstance(doc.get("sgv"), int | float)]
    for newer, older in itertools.pairwise(sgv):
        if "delta" in newer:
            continue
        gap = int(newer["mills"]) - int(older["mills"])
        if 0 < gap <= 15 * 60_000:
            newer["delta"] = round((float(newer["sgv"]) - float(older["sgv"])) * 300_000 / gap, 3)


def newest_modified(session: Session, patient: Patient, collection: str) -> int | None:
    """When the patient's posted documents of ``collection`` last changed (UTC ms), for ``Last-Modified``."""
    value = session.scalar(
        select(func.max(NightscoutDocument.modified_ms)).where(
            NightscoutDocument.patient_id == patient.id, NightscoutDocument.collection == collection
        )
    )
    return None if value is None else int(value)


# -- deleting -------------------------------------------------------------------------------------


def delete_documents(session: Session, *, patient: Patient, collection: str, query: Query, actor: str) -> int:
    """Delete the posted documents that match ``query`` (no count limit) and the records they added.

    Records imported from files are not deleted through the Nightscout API (remove their upload);
    returns how many documents were deleted.
    """
    unlimited = dataclasses.replace(query, count=MAX_SCAN)
    found = find_documents(
        session,
        patient=patient,
        collection=collection,
        query=unlimited,
        include_files=False,
        include_deleted=True,
    )
    ids = [str(doc["_id"]) for doc in found]
    if not ids:
        return 0
    upload = api_upload(session, patient, actor)
    deleted = 0
    for chunk in _chunks(ids, 500):
        rows = list(
            session.scalars(
                select(NightscoutDocument).where(
                    NightscoutDocument.patient_id == patient.id, NightscoutDocument.id.in_(chunk)
                )
            )
        )
        forget_records(session, patient, upload, [i for row in rows for i in (row.record_ids or [])])
        for row in rows:
            session.delete(row)
        deleted += len(rows)
    session.flush()
    return deleted
