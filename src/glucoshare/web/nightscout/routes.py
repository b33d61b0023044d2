"""The Nightscout API v1 and the v2 authorization request, as existing clients call them.

Every path is accepted as ``X``, ``X/`` and ``X.json`` for every method (research/nightscout.md
§1.1), so one route per API version takes the rest of the path and dispatches here. Answers and
errors have Nightscout's shapes (errors also carry Glucoshare's ``error`` object). Each request is
one transaction: the credential, the work and its audit event.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import email.utils
import io
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from glucoshare import __version__
from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.errors import GlucoshareError, error_document
from glucoshare.ingest.nightscout_mapping import Document
from glucoshare.nightscout.access import NightscoutCaller, Presented, authenticate, issue_jwt
from glucoshare.nightscout.documents import OBJECT_ID, prepare
from glucoshare.nightscout.errors import CredentialMissingError, DocumentInvalidError
from glucoshare.nightscout.query import Query, build_query, parse_query_string
from glucoshare.nightscout.service import delete_documents, find_documents, post_documents
from glucoshare.web.deps import unit_of_work
from glucoshare.web.nightscout.bodies import credentials_of, documents, inflate
from glucoshare.web.nightscout.common import audit_read, bearer_of, keyring, run_authorised

router = APIRouter(include_in_schema=False)

NIGHTSCOUT_VERSION: Final = "15.0.7"
"""The Nightscout version this API answers as (clients check it; xDrip+ refuses 0.6 to 0.8)."""
_METHODS: Final = ["GET", "POST", "PUT", "DELETE", "PATCH"]
_SUFFIXES: Final = (".json", ".csv", ".tsv", ".txt", ".js")
_COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile", "activity", "food")
_ENTRY_TYPES: Final = ("sgv", "mbg", "cal", "*")
_ARRAY_BODY: Final = re.compile(rb"\s*\[")


@dataclasses.dataclass(slots=True)
class _Call:
    """One request to the Nightscout API, read and normalised."""

    request: Request
    method: str
    segments: list[str]
    suffix: str
    params: dict[str, Any]
    body: list[Any]
    presented: Presented
    now: dt.datetime
    array: bool = False
    """True when the body was a JSON array (a PUT of one document answers as it was sent)."""

    @property
    def now_ms(self) -> int:
        return int(self.now.timestamp() * 1000)


def _ns_error(status: int, code: str, message: str) -> JSONResponse:
    """Nightscout's error shape, with Glucoshare's one error object beside it."""
    reason = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}.get(status, "Error")
    body = {
        "status": status,
        "message": reason,
        "description": message,
        **error_document(code, message, status),
    }
    headers = {"WWW-Authenticate": 'Bearer realm="nightscout"'} if status == 401 else None  # noqa: PLR2004
    return JSONResponse(body, status_code=status, headers=headers)


def _split(rest: str) -> tuple[list[str], str]:
    """Path segments without the trailing slash and the format suffix of the last one."""
    segments = [part for part in rest.strip("/").split("/") if part]
    suffix = ""
    if segments:
        last = segments[-1]
        for candidate in _SUFFIXES:
            if last.lower().endswith(candidate):
                suffix = candidate
                segments[-1] = last[: -len(candidate)]
                break
    return [s for s in segments if s], suffix


def _presented(request: Request, params: Mapping[str, Any], body: list[Any]) -> Presented:
    header = request.headers.get("api-secret") or request.headers.get("api_secret")
    bearer = bearer_of(request)
    secret, token = credentials_of(body)
    query_secret, query_token = params.get("secret") or params.get("api_secret"), params.get("token")
    return Presented(
        api_secret_header=header,
        bearer=bearer,
        query_secret=query_secret if isinstance(query_secret, str) else None,
        query_token=query_token if isinstance(query_token, str) else None,
        body_secret=secret,
        body_token=token,
    )


async def _read(request: Request, rest: str) -> _Call:
    method = request.method.upper()
    raw = await request.body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
    params = parse_query_string(request.url.query)
    inflated = inflate(raw, request.headers.get("content-encoding"))
    body = documents(inflated, request.headers.get("content-type"))
    segments, suffix = _split(rest)
    return _Call(
        request=request,
        method=method,
        segments=segments,
        suffix=suffix,
        params=params,
        body=body,
        presented=_presented(request, params, body),
        now=dt.datetime.now(dt.UTC),
        array=_ARRAY_BODY.match(inflated) is not None,
    )


@router.api_route("/api/v1/{rest:path}", methods=_METHODS)
async def api_v1(rest: str, request: Request) -> Response:
    """Every path of the Nightscout API v1."""
    try:
        call = await _read(request, rest)
        response = await run_in_threadpool(_dispatch_v1, call)
    except GlucoshareError as exc:
        response = _ns_error(exc.http_status, exc.code, exc.message)
    response.headers["Accept-Encoding"] = "gzip, deflate"  # xDrip+ compresses its uploads once it sees this
    return response


@router.get("/api/v2/authorization/request/{token}")
async def authorization_request(token: str, request: Request) -> Response:
    """A JWT for an access token (valid 8 hours), as AndroidAPS and API v3 clients request it."""

    def work() -> Response:
        with unit_of_work(request) as session:
            caller = authenticate(session, keyring(request), Presented(query_token=token))
            answer = issue_jwt(keyring(request), caller, dt.datetime.now(dt.UTC))
            record_event(
                session,
                actor=caller.actor,
                action=AuditTag.NIGHTSCOUT_JWT,
                patient_id=caller.patient.id,
                target=caller.token.id,
            )
        return JSONResponse(answer)

    try:
        return await run_in_threadpool(work)
    except GlucoshareError as exc:
        return _ns_error(exc.http_status, exc.code, exc.message)


def _dispatch_v1(call: _Call) -> Response:
    if not call.segments:
        return _ns_error(404, "not_found", "no such Nightscout API path")
    head = call.segments[0]
    if head == "status":
        return _status(call)
    if head == "verifyauth":
        return _verify(call)
    if head == "experiments" and call.segments[1:2] == ["test"]:
        return _authorised(call, _experiments_test)
    if head == "profiles":
        call.segments[0] = head = "profile"
    if head in _COLLECTIONS:
        return _authorised(call, _collection)
    return _ns_error(404, "not_found", f"the Nightscout API path /api/v1/{head} is not provided here")


def _authorised(call: _Call, handler: Callable[[_Call, Session, NightscoutCaller], Response]) -> Response:
    """Run ``handler`` in one transaction with the authenticated caller; a refusal is audited."""
    return run_authorised(
        call.request,
        lambda session: authenticate(session, keyring(call.request), call.presented),
        lambda session, caller: handler(call, session, caller),
        api="v1",
    )


# -- status and authorisation checks -------------------------------------------------------------


def _status_document(call: _Call, caller: NightscoutCaller | None) -> dict[str, Any]:
    mmol = caller is not None and caller.patient.display_units == "mmol/L"
    low, high = 70.0, 180.0
    if caller is not None:
        low = caller.patient.target_low_mgdl or low
        high = caller.patient.target_high_mgdl or high
    return {
        "status": "ok",
        "name": "Glucoshare",
        "version": NIGHTSCOUT_VERSION,
        "serverTime": call.now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "serverTimeEpoch": call.now_ms,
        "apiEnabled": True,
        "careportalEnabled": True,
        "boluscalcEnabled": False,
        "settings": {
            "units": "mmol" if mmol else "mg/dl",
            "timeFormat": 24,
            "nightMode": False,
            "editMode": True,
            "showRawbg": "never",
            "customTitle": "Glucoshare",
            "theme": "default",
            "language": "en",
            "showPlugins": "delta direction upbat",
            "enable": ["careportal", "delta", "direction", "upbat", "iob", "cob", "basal"],
            "thresholds": {
                "bgHigh": 250,
                "bgTargetTop": round(high),
                "bgTargetBottom": round(low),
                "bgLow": 54,
            },
            "authDefaultRoles": "denied",
        },
        "extendedSettings": {"devicestatus": {"advanced": True}},
        "authorized": None,
        "runtimeState": "loaded",
        "glucoshareVersion": __version__,
    }


def _optional_caller(call: _Call, session: Session) -> NightscoutCaller | None:
    if not call.presented.any():
        return None
    try:
        return authenticate(session, keyring(call.request), call.presented)
    except CredentialMissingError:
        return None


def _status(call: _Call) -> Response:
    """``status``: the server's settings (no patient data; units and targets with a credential)."""
    with unit_of_work(call.request) as session:
        caller = _optional_caller(call, session)
        document = _status_document(call, caller)
    if call.suffix == ".js":
        text = f"this.serverSettings = {json.dumps(document)};"
        return Response(text, media_type="application/javascript")
    return JSONResponse(document)


def _verify(call: _Call) -> Response:
    """``verifyauth``: always 200, saying what the credential (if any) may do."""
    with unit_of_work(call.request) as session:
        caller = _optional_caller(call, session)
        if caller is None:
            message = {
                "canRead": False,
                "canWrite": False,
                "isAdmin": False,
                "message": "UNAUTHORIZED",
                "rolefound": "NOTFOUND",
                "permissions": "DEFAULT",
            }
        else:
            message = {
                "canRead": caller.may("api:entries:read"),
                "canWrite": caller.may("api:treatments:create"),
                "isAdmin": caller.may("admin:api:subjects:create"),
                "message": "OK",
                "rolefound": "FOUND",
                "permissions": "ROLE",
            }
    return JSONResponse({"status": 200, "message": message})


def _experiments_test(call: _Call, session: Session, caller: NightscoutCaller) -> Response:  # noqa: ARG001
    """Loop's credential check: 200 for a credential that may do everything, else 401."""
    if not caller.may("authorization:debug:test"):
        msg = "this credential may not run the authorization test (an admin token or API secret may)"
        raise CredentialMissingError(msg)
    return JSONResponse({"status": "ok"})


# -- collections ----------------------------------------------------------------------------------


def _collection(call: _Call, session: Session, caller: NightscoutCaller) -> Response:
    collection = call.segments[0]
    spec = call.segments[1] if len(call.segments) > 1 else None
    if len(call.segments) > 2:  # noqa: PLR2004
        return _ns_error(404, "not_found", "no such Nightscout API path")
    if call.method == "GET":
        return _get(call, session, caller, collection, spec)
    if call.method in ("POST", "PUT", "PATCH"):
        if collection == "entries" and spec == "preview":
            caller.require("api:entries:read")
            return JSONResponse([prepare("entries", doc, call.now_ms).doc for doc in call.body])
        if spec is not None:
            return _ns_error(404, "not_found", f"{call.method} goes to /api/v1/{collection}, not below it")
        return _write(call, session, caller, collection)
    return _delete(call, session, caller, collection, spec)


def _query(call: _Call, collection: str, spec: str | None) -> Query:
    params = dict(call.params)
    for credential in ("secret", "api_secret", "token"):
        params.pop(credential, None)
    path_type: str | None = None
    if spec is not None:
        if OBJECT_ID.match(spec):
            find = dict(params.get("find") or {}) if isinstance(params.get("find"), dict) else {}
            find["_id"] = spec.lower()
            params["find"] = find
        elif collection == "entries" and spec in _ENTRY_TYPES:
            path_type = spec
        elif collection == "entries" and spec == "current":
            path_type = "sgv"
            params["count"] = "1"
        elif collection == "profile" and spec == "current":
            params["count"] = "1"
        else:
            msg = f"/api/v1/{collection}/{spec} is not a document id or a known part of {collection}"
            raise DocumentInvalidError(msg)
    return build_query(collection, params, now_ms=call.now_ms, path_type=path_type)


def _get(
    call: _Call, session: Session, caller: NightscoutCaller, collection: str, spec: str | None
) -> Response:
    caller.require(f"api:{collection}:read")
    query = _query(call, collection, spec)
    if collection == "profile" and spec is None and "count" not in call.params:
        query = dataclasses.replace(query, low_ms=None)
    docs = find_documents(session, patient=caller.patient, collection=collection, query=query)
    audit_read(session, caller, collection, len(docs), api="nightscout")
    newest = max((int(doc.get("mills") or 0) for doc in docs), default=0)
    headers: dict[str, str] = {}
    if newest:
        headers["Last-Modified"] = email.utils.formatdate(newest / 1000, usegmt=True)
        since = call.request.headers.get("if-modified-since")
        if since and _not_modified(since, newest):
            return Response(status_code=304, headers=headers)
    if collection == "profile" and spec == "current":
        return JSONResponse(docs[0] if docs else None, headers=headers)
    if collection == "entries" and _wants_text(call):
        return _entries_text(docs, call, headers)
    return JSONResponse(docs, headers=headers)


def _not_modified(since: str, newest_ms: int) -> bool:
    try:
        moment = email.utils.parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return newest_ms // 1000 <= int(moment.timestamp())


def _wants_text(call: _Call) -> bool:
    if call.suffix in (".csv", ".tsv", ".txt"):
        return True
    if call.suffix:
        return False
    accept = call.request.headers.get("accept", "")
    return "text/csv" in accept or "text/tab-separated-values" in accept or accept.startswith("text/plain")


def _entries_text(docs: list[Document], call: _Call, headers: dict[str, str]) -> Response:
    """Entries as text, one per line: dateString, date, sgv, direction, device (quoted strings)."""
    comma = call.suffix == ".csv" or (
        not call.suffix and "text/csv" in call.request.headers.get("accept", "")
    )
    out = io.StringIO()
    writer = csv.writer(
        out, delimiter="," if comma else "\t", quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n"
    )
    for doc in docs:
        value = doc.get("sgv", doc.get("mbg", ""))
        writer.writerow(
            [
                _safe(str(doc.get("dateString", ""))),
                doc.get("date", ""),
                value,
                _safe(str(doc.get("direction", ""))),
                _safe(str(doc.get("device", ""))),
            ]
        )
    media = "text/csv" if comma else "text/tab-separated-values" if call.suffix != ".txt" else "text/plain"
    return Response(out.getvalue(), media_type=media, headers=headers)


def _safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (ASVS 5.0 1.2.10)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _write(call: _Call, session: Session, caller: NightscoutCaller, collection: str) -> Response:
    action = "create" if call.method == "POST" else "update"
    if action == "update" and not caller.may(f"api:{collection}:update"):
        caller.require(f"api:{collection}:create")  # an upsert: creating is what most clients do
    else:
        caller.require(f"api:{collection}:{action}")
    if collection == "profile" and call.method == "PUT":
        for index, doc in enumerate(call.body):
            given = doc.get("_id") if isinstance(doc, dict) else None
            if not isinstance(given, str) or not OBJECT_ID.match(given):
                msg = f"document {index}: a profile is replaced by its _id (24 hexadecimal digits)"
                raise DocumentInvalidError(msg)
    stored = post_documents(
        session,
        patient=caller.patient,
        collection=collection,
        bodies=call.body,
        actor=caller.actor,
        now_ms=call.now_ms,
    )
    record_event(
        session,
        actor=caller.actor,
        action=AuditTag.NIGHTSCOUT_WRITE,
        patient_id=caller.patient.id,
        target=f"nightscout:{collection}",
        details={"documents": len(stored), "method": call.method},
    )
    if call.method == "PUT" and len(call.body) == 1 and not call.array:
        return JSONResponse(stored[0])  # one object in, one object out (xDrip+); an array stays one (Loop)
    return JSONResponse(stored)


def _delete(
    call: _Call, session: Session, caller: NightscoutCaller, collection: str, spec: str | None
) -> Response:
    caller.require(f"api:{collection}:delete")
    if spec is None and not call.params.get("find"):
        msg = f"DELETE /api/v1/{collection} needs a document id or a find[...] query"
        raise DocumentInvalidError(msg)
    query = _query(call, collection, spec)
    if spec is not None and OBJECT_ID.match(spec):
        query = dataclasses.replace(query, low_ms=None, high_ms=None)
    deleted = delete_documents(
        session, patient=caller.patient, collection=collection, query=query, actor=caller.actor
    )
    record_event(
        session,
        actor=caller.actor,
        action=AuditTag.NIGHTSCOUT_DELETE,
        patient_id=caller.patient.id,
        target=f"nightscout:{collection}",
        details={"documents": deleted},
    )
    return JSONResponse({"n": deleted, "ok": 1, "deletedCount": deleted})
