"""The Nightscout API v3 over HTTP, as AndroidAPS (NSClientV3) and AAPSClient call it (nightscout.md §1.10).

One route takes every path below ``/api/v3`` (a final ``.json`` is dropped) and dispatches here;
the work is :mod:`glucoshare.nightscout.v3`. Answers have Nightscout's shapes (lib/api3):
``{"status", "result"}`` for reads; ``{"status": 201, "identifier", "lastModified"}`` for a new
document and ``{"status": 200, "identifier", "isDeduplication": true, ...}`` for a create that
found one; ``{"status": 200}`` for PATCH and DELETE. Errors are ``{"status", "message"}`` with
Nightscout's messages (AndroidAPS reads some of them), a ``description`` where there is more to
say, and Glucoshare's ``error`` object beside them.

Credentials: only ``Authorization: Bearer <JWT>`` with a JWT from
``/api/v2/authorization/request/<token>``, as Nightscout: an access token or API secret is not
accepted here (401), so the long-lived token travels once per 8 hours. ``/api/v3/version`` needs
no credential. AndroidAPS's ``Date`` header (epoch ms) is accepted and not checked (Nightscout
15 no longer checks it either). Each request is one transaction: the credential, the work and its
audit event; a refused permission is recorded in the patient's access log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import json
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from glucoshare import __version__
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.errors import GlucoshareError, error_document
from glucoshare.nightscout import v3
from glucoshare.nightscout.access import NightscoutCaller, Presented, authenticate
from glucoshare.nightscout.errors import CredentialMissingError, DocumentInvalidError
from glucoshare.nightscout.query import parse_query_string, project, v3_filters
from glucoshare.web.nightscout.bodies import inflate
from glucoshare.web.nightscout.common import audit_read, bearer_of, keyring, run_authorised
from glucoshare.web.nightscout.routes import NIGHTSCOUT_VERSION

router = APIRouter(include_in_schema=False)

_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_MISSING_TOKEN: Final = "Missing or bad access token or JWT"  # noqa: S105 - Nightscout's message
_BAD_TOKEN: Final = "Bad access token or JWT"  # noqa: S105 - Nightscout's message
_BAD_OPERATION: Final = "Bad operation or collection"
_READ_API: Final = "nightscout-v3"

Handler = Callable[["_Call", Session, NightscoutCaller], Response]


@dataclasses.dataclass(slots=True)
class _Call:
    """One request to API v3, read."""

    request: Request
    method: str
    segments: list[str]
    params: dict[str, Any]
    raw: bytes
    now: dt.datetime

    @property
    def now_ms(self) -> int:
        return int(self.now.timestamp() * 1000)

    def header_time(self, name: str) -> dt.datetime | None:
        """An HTTP-date header as an aware instant; ``None`` when missing or unreadable."""
        text = self.request.headers.get(name)
        if not text:
            return None
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _error(status: int, message: str, code: str, description: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "message": message}
    if description is not None and description != message:
        body["description"] = description
    body.update(error_document(code, description or message, status))
    headers = {"WWW-Authenticate": 'Bearer realm="nightscout"'} if status == 401 else None  # noqa: PLR2004
    return JSONResponse(body, status_code=status, headers=headers)


def _error_of(exc: GlucoshareError) -> JSONResponse:
    if isinstance(exc, CredentialMissingError):
        return _error(
            exc.http_status,
            exc.message if exc.message == _MISSING_TOKEN else _BAD_TOKEN,
            exc.code,
            exc.message,
        )
    return _error(exc.http_status, exc.message, exc.code)


def _http_date(ms: int) -> str:
    return email.utils.formatdate(ms / 1000, usegmt=True)


def _ok(result: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": 200, "result": result}, headers=headers)


async def _read(request: Request, rest: str) -> _Call:
    method = request.method.upper()
    raw = await request.body() if method in ("POST", "PUT", "PATCH") else b""
    segments = [part for part in rest.strip("/").split("/") if part]
    if segments and segments[-1].lower().endswith(".json"):
        segments[-1] = segments[-1][: -len(".json")]
    return _Call(
        request=request,
        method=method,
        segments=[s for s in segments if s],
        params=parse_query_string(request.url.query),
        raw=raw,
        now=dt.datetime.now(dt.UTC),
    )


@router.api_route("/api/v3/{rest:path}", methods=_METHODS)
async def api_v3(rest: str, request: Request) -> Response:
    """Every path of the Nightscout API v3."""
    try:
        call = await _read(request, rest)
        return await run_in_threadpool(_dispatch, call)
    except GlucoshareError as exc:
        return _error_of(exc)


def _not_found() -> JSONResponse:
    return _error(404, _BAD_OPERATION, "not_found")


def _dispatch(call: _Call) -> Response:
    segments, method = call.segments, call.method
    if segments == ["version"] and method == "GET":
        return _version(call)
    if segments == ["status"] and method == "GET":
        return _authorised(call, _status)
    if segments == ["lastModified"] and method == "GET":
        return _authorised(call, _last_modified)
    if segments and segments[0] in v3.COLLECTIONS:
        return _authorised(call, _collection)
    return _not_found()


def _caller(call: _Call, session: Session) -> NightscoutCaller:
    """The caller behind the request's JWT (API v3 takes nothing else)."""
    bearer = bearer_of(call.request)
    if not bearer:
        raise CredentialMissingError(_MISSING_TOKEN)
    if bearer.count(".") != 2:  # noqa: PLR2004 - a JWT has three parts
        msg = "API v3 takes a JWT from /api/v2/authorization/request/<token> as Bearer, not the token itself"
        raise CredentialMissingError(msg)
    return authenticate(session, keyring(call.request), Presented(bearer=bearer))


def _authorised(call: _Call, handler: Handler) -> Response:
    """Run ``handler`` in one transaction with the authenticated caller; a refusal is audited."""
    return run_authorised(
        call.request,
        lambda session: _caller(call, session),
        lambda session, caller: handler(call, session, caller),
        api="v3",
    )


# -- version, status, lastModified ---------------------------------------------------------------


def _version_info(call: _Call) -> dict[str, Any]:
    return {
        "version": NIGHTSCOUT_VERSION,
        "apiVersion": v3.API_VERSION,
        "srvDate": call.now_ms,
        "storage": {"storage": call.request.app.state.engine.dialect.name, "version": __version__},
    }


def _version(call: _Call) -> Response:
    """``version``: the server's versions (no credential needed)."""
    return _ok(_version_info(call))


def _status(call: _Call, session: Session, caller: NightscoutCaller) -> Response:  # noqa: ARG001
    """``status``: the versions and what the caller may do per collection (``crud`` letters)."""
    return _ok({**_version_info(call), "apiPermissions": v3.api_permissions(caller)})


def _last_modified(call: _Call, session: Session, caller: NightscoutCaller) -> Response:
    """``lastModified``: the newest ``srvModified`` of each collection the caller may read."""
    return _ok({"srvDate": call.now_ms, "collections": v3.last_modified(session, caller)})


# -- collections -----------------------------------------------------------------------------------


def _collection(call: _Call, session: Session, caller: NightscoutCaller) -> Response:
    collection, rest, method = call.segments[0], call.segments[1:], call.method
    if not rest and method == "GET":
        return _search(call, session, caller, collection)
    if not rest and method == "POST":
        return _create(call, session, caller, collection)
    if rest and rest[0] == "history" and len(rest) <= 2 and method == "GET":  # noqa: PLR2004
        return _history(call, session, caller, collection, rest[1] if len(rest) == 2 else None)  # noqa: PLR2004
    if len(rest) == 1 and method in ("GET", "PUT", "PATCH", "DELETE"):
        return _one(call, session, caller, collection, rest[0])
    return _not_found()


def _audit_read(session: Session, caller: NightscoutCaller, collection: str, documents: int) -> None:
    audit_read(session, caller, collection, documents, api=_READ_API)


def _audit_write(session: Session, caller: NightscoutCaller, collection: str, method: str) -> None:
    record_event(
        session,
        actor=caller.actor,
        action=AuditTag.NIGHTSCOUT_WRITE,
        patient_id=caller.patient.id,
        target=f"nightscout:{collection}",
        details={"documents": 1, "method": method, "api": "v3"},
    )


def _search(call: _Call, session: Session, caller: NightscoutCaller, collection: str) -> Response:
    docs = v3.search(session, caller, collection, call.params)
    _audit_read(session, caller, collection, len(docs))
    return _ok(docs)


def _history(
    call: _Call, session: Session, caller: NightscoutCaller, collection: str, since: str | None
) -> Response:
    """HISTORY after ``{lastModified}`` of the path, or at or after the ``Last-Modified`` header (seconds)."""
    if since is not None:
        since_ms, inclusive = v3.parse_since(since), False
    else:
        header = call.header_time("last-modified")
        if header is None:
            raise DocumentInvalidError(v3.MSG_BAD_LAST_MODIFIED)
        since_ms, inclusive = int(header.timestamp()) * 1000, True
    spec = v3_filters({key: call.params[key] for key in ("limit", "fields") if key in call.params})
    docs = v3.history(
        session, caller, collection, since_ms, inclusive=inclusive, limit=spec.limit, fields=spec.fields
    )
    _audit_read(session, caller, collection, len(docs))
    headers: dict[str, str] = {}
    if docs:
        newest = max(int(doc.get("srvModified") or 0) for doc in docs)
        headers = {"Last-Modified": _http_date(newest), "ETag": f'W/"{newest}"'}
    return _ok(docs, headers)


def _body(call: _Call) -> object:
    data = inflate(call.raw, call.request.headers.get("content-encoding"))
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DocumentInvalidError(v3.MSG_BAD_BODY) from None


def _location(collection: str, identifier: str) -> str:
    return f"/api/v3/{collection}/{urllib.parse.quote(identifier, safe='')}"


def _written(collection: str, result: v3.WriteResult) -> Response:
    """The answer of CREATE and UPDATE (Nightscout's fields at the top level, no ``result``)."""
    headers = {"Last-Modified": _http_date(result.last_modified_ms)}
    if result.created:
        headers["Location"] = _location(collection, result.identifier)
        body: dict[str, Any] = {"status": 201, "identifier": result.identifier}
    else:
        body = {"status": 200}
        if result.deduplicated:
            headers["Location"] = _location(collection, result.identifier)
            body.update(identifier=result.identifier, isDeduplication=True)
            if result.replaced_identifier is not None:
                body["deduplicatedIdentifier"] = result.replaced_identifier
    body["lastModified"] = result.last_modified_ms
    return JSONResponse(body, status_code=body["status"], headers=headers)


def _create(call: _Call, session: Session, caller: NightscoutCaller, collection: str) -> Response:
    result = v3.create(session, caller, collection, _body(call), call.now_ms)
    _audit_write(session, caller, collection, "POST")
    return _written(collection, result)


def _one(
    call: _Call, session: Session, caller: NightscoutCaller, collection: str, identifier: str
) -> Response:
    """READ, UPDATE, PATCH or DELETE of one document."""
    if call.method == "GET":
        return _read_one(call, session, caller, collection, identifier)
    if call.method == "DELETE":
        permanent = call.params.get("permanent") == "true"
        v3.delete(session, caller, collection, identifier, call.now_ms, permanent=permanent)
        record_event(
            session,
            actor=caller.actor,
            action=AuditTag.NIGHTSCOUT_DELETE,
            patient_id=caller.patient.id,
            target=f"nightscout:{collection}",
            details={"documents": 1, "permanent": permanent, "api": "v3"},
        )
        return JSONResponse({"status": 200})
    unmodified_since = call.header_time("if-unmodified-since")
    if call.method == "PUT":
        result = v3.update(
            session,
            caller,
            collection,
            identifier,
            _body(call),
            now_ms=call.now_ms,
            unmodified_since=unmodified_since,
        )
        _audit_write(session, caller, collection, "PUT")
        return _written(collection, result)
    result = v3.patch(
        session,
        caller,
        collection,
        identifier,
        _body(call),
        now_ms=call.now_ms,
        unmodified_since=unmodified_since,
    )
    _audit_write(session, caller, collection, "PATCH")
    return JSONResponse({"status": 200}, headers={"Last-Modified": _http_date(result.last_modified_ms)})


def _read_one(
    call: _Call, session: Session, caller: NightscoutCaller, collection: str, identifier: str
) -> Response:
    fields = v3.fields_of(call.params)
    doc = v3.read(session, caller, collection, identifier)
    _audit_read(session, caller, collection, 1)
    modified = int(doc["srvModified"])
    headers = {"Last-Modified": _http_date(modified)}
    since = call.header_time("if-modified-since")
    if since is not None and modified // 1000 <= int(since.timestamp()):
        return Response(status_code=304, headers=headers)
    return _ok(project(doc, fields), headers)
