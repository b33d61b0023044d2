"""What followers read: ``/pebble`` and ``/api/v2/properties``.

``/pebble`` serves old watch faces and Spike, the properties menu-bar apps and nightguard; both
are computed from the same entries and device status the v1 API serves.

Both need a credential with ``api:entries:read`` (Nightscout serves them to its default role; here
nothing is readable without a credential).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from glucoshare.errors import GlucoshareError
from glucoshare.ingest.nightscout_mapping import Document
from glucoshare.nightscout.access import NightscoutCaller, Presented, authenticate
from glucoshare.nightscout.query import build_query, parse_query_string
from glucoshare.nightscout.service import find_documents
from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.web.deps import unit_of_work
from glucoshare.web.nightscout.common import audit_read, bearer_of, keyring

router = APIRouter(include_in_schema=False)

TRENDS: Final[Mapping[str, int]] = {
    "NONE": 0,
    "DoubleUp": 1,
    "SingleUp": 2,
    "FortyFiveUp": 3,
    "Flat": 4,
    "FortyFiveDown": 5,
    "SingleDown": 6,
    "DoubleDown": 7,
    "NOT COMPUTABLE": 8,
    "RATE OUT OF RANGE": 9,
}
"""Nightscout's trend numbers of the ``direction`` names."""
_ARROWS: Final[Mapping[str, str]] = {
    "DoubleUp": "⇈",
    "SingleUp": "↑",
    "FortyFiveUp": "↗",
    "Flat": "→",
    "FortyFiveDown": "↘",
    "SingleDown": "↓",
    "DoubleDown": "⇊",
}
_PROPERTIES: Final = ("bgnow", "delta", "direction", "upbat", "iob", "cob", "buckets")
_MAX_PEBBLE: Final = 100


def _error(exc: GlucoshareError) -> JSONResponse:
    reason = {401: "Unauthorized", 403: "Forbidden"}.get(exc.http_status, "Error")
    body = {"status": exc.http_status, "message": reason, "description": exc.message, **exc.to_dict()}
    return JSONResponse(body, status_code=exc.http_status)


def _caller(request: Request, session: Session, params: Mapping[str, Any]) -> NightscoutCaller:
    secret, token = params.get("secret"), params.get("token")
    presented = Presented(
        api_secret_header=request.headers.get("api-secret"),
        bearer=bearer_of(request),
        query_secret=secret if isinstance(secret, str) else None,
        query_token=token if isinstance(token, str) else None,
    )
    caller = authenticate(session, keyring(request), presented)
    caller.require("api:entries:read")
    return caller


def _recent(
    session: Session, caller: NightscoutCaller, collection: str, count: int, now_ms: int
) -> list[Document]:
    params: dict[str, Any] = {"count": str(count)}
    query = build_query(
        collection, params, now_ms=now_ms, path_type="sgv" if collection == "entries" else None
    )
    return find_documents(session, patient=caller.patient, collection=collection, query=query)


def _glucose(value: float, mmol: bool) -> str:
    return f"{value / MGDL_PER_MMOLL:.1f}" if mmol else str(round(value))


def _status_numbers(status: Document | None) -> dict[str, Any]:
    """Battery, insulin and carbohydrate on board from the newest device status, where given."""
    out: dict[str, Any] = {"battery": None, "iob": None, "cob": None}
    if status is None:
        return out
    uploader = status.get("uploader")
    if isinstance(uploader, dict) and isinstance(uploader.get("battery"), int | float):
        out["battery"] = uploader["battery"]
    elif isinstance(status.get("uploaderBattery"), int | float):
        out["battery"] = status["uploaderBattery"]
    for source in ("openaps", "loop"):
        part = status.get(source)
        if not isinstance(part, dict):
            continue
        iob = part.get("iob")
        if isinstance(iob, dict) and isinstance(iob.get("iob"), int | float):
            out["iob"] = iob["iob"]
        cob = part.get("cob")
        if isinstance(cob, dict) and isinstance(cob.get("cob"), int | float):
            out["cob"] = cob["cob"]
        suggested = part.get("suggested")
        if isinstance(suggested, dict) and isinstance(suggested.get("COB"), int | float):
            out["cob"] = suggested["COB"]
    return out


@router.get("/pebble")
async def pebble(request: Request) -> Response:
    """The Pebble watch-face document: the newest readings, their trends and deltas, battery, IOB, COB."""
    params = parse_query_string(request.url.query)

    def work() -> Response:
        now = dt.datetime.now(dt.UTC)
        now_ms = int(now.timestamp() * 1000)
        with unit_of_work(request) as session:
            caller = _caller(request, session, params)
            try:
                count = max(1, min(_MAX_PEBBLE, int(str(params.get("count", "1")))))
            except ValueError:
                count = 1
            mmol = str(params.get("units", "")).lower().startswith("mmol")
            entries = _recent(session, caller, "entries", count, now_ms)
            statuses = _recent(session, caller, "devicestatus", 1, now_ms)
            numbers = _status_numbers(statuses[0] if statuses else None)
            bgs = []
            for doc in entries:
                direction = str(doc.get("direction") or "NONE")
                delta = doc.get("delta")
                bgs.append(
                    {
                        "sgv": _glucose(float(doc["sgv"]), mmol),
                        "trend": TRENDS.get(direction, 0),
                        "direction": direction,
                        "datetime": int(doc["mills"]),
                        "bgdelta": None
                        if not isinstance(delta, int | float)
                        else (round(delta / MGDL_PER_MMOLL, 1) if mmol else round(delta)),
                        "battery": None if numbers["battery"] is None else str(numbers["battery"]),
                        "iob": None if numbers["iob"] is None else f"{numbers['iob']:.2f}",
                        "cob": numbers["cob"],
                        "bwp": None,
                        "bwpo": None,
                    }
                )
            audit_read(session, caller, "pebble", len(bgs), api="nightscout")
        return JSONResponse({"status": [{"now": now_ms}], "bgs": bgs, "cals": []})

    try:
        return await run_in_threadpool(work)
    except GlucoshareError as exc:
        return _error(exc)


def _properties(
    entries: list[Document], numbers: Mapping[str, Any], mmol: bool, now_ms: int
) -> dict[str, Any]:
    units = "mmol" if mmol else "mg/dl"
    out: dict[str, Any] = {}
    if entries:
        last = entries[0]
        value = float(last["sgv"])
        out["bgnow"] = {
            "mean": value,
            "last": value,
            "mills": int(last["mills"]),
            "sgvs": [
                {"mgdl": value, "mills": int(last["mills"]), "device": last.get("device"), "type": "sgv"}
            ],
        }
        delta = last.get("delta")
        if isinstance(delta, int | float):
            shown = round(delta / MGDL_PER_MMOLL, 1) if mmol else round(delta)
            out["delta"] = {
                "absolute": delta,
                "elapsedMins": 5,
                "interpolated": False,
                "mean5MinsAgo": value - delta,
                "mgdl": delta,
                "scaled": shown,
                "display": f"{shown:+}" if not mmol else f"{shown:+.1f}",
                "units": units,
            }
        direction = str(last.get("direction") or "NONE")
        out["direction"] = {
            "value": direction,
            "label": _ARROWS.get(direction, "-"),
            "entity": _ARROWS.get(direction, ""),
        }
        out["buckets"] = [
            {"mean": float(doc["sgv"]), "last": float(doc["sgv"]), "mills": int(doc["mills"])}
            for doc in entries
        ]
    if numbers["battery"] is not None:
        out["upbat"] = {"display": f"{numbers['battery']}%", "level": numbers["battery"]}
    if numbers["iob"] is not None:
        out["iob"] = {"iob": numbers["iob"], "display": f"{numbers['iob']:.2f}", "mills": now_ms}
    if numbers["cob"] is not None:
        out["cob"] = {"cob": numbers["cob"], "display": numbers["cob"], "mills": now_ms}
    return out


@router.get("/api/v2/properties")
@router.get("/api/v2/properties/{names}")
async def properties(request: Request, names: str | None = None) -> Response:
    """Nightscout's plugin properties; ``/api/v2/properties/bgnow,delta`` picks some.

    ``bgnow``, ``delta``, ``direction``, ``upbat``, ``iob``, ``cob`` and ``buckets``.
    """
    params = parse_query_string(request.url.query)
    wanted = [n for n in (names or "").removesuffix(".json").split(",") if n] or list(_PROPERTIES)

    def work() -> Response:
        now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        with unit_of_work(request) as session:
            caller = _caller(request, session, params)
            entries = _recent(session, caller, "entries", 6, now_ms)
            statuses = _recent(session, caller, "devicestatus", 1, now_ms)
            found = _properties(
                entries,
                _status_numbers(statuses[0] if statuses else None),
                caller.patient.display_units == "mmol/L",
                now_ms,
            )
            audit_read(session, caller, "properties", len(entries), api="nightscout")
        return JSONResponse({name: found[name] for name in wanted if name in found})

    try:
        return await run_in_threadpool(work)
    except GlucoshareError as exc:
        return _error(exc)
