"""Schemathesis over the HTTP API: generated requests never get a server error, and every JSON error of
the documented API has the one error shape.

Two schemas are fuzzed: ``/openapi.json`` (every documented operation) and a description of the
Nightscout API written here (its routes are left out of ``/openapi.json`` on purpose: they answer as
Nightscout does, for Nightscout's clients). Each generated request goes as one caller drawn per case:
the patient's session, the patient's upload and read tokens, a clinician's session (of a clinic the
patient shares with), or nobody; for Nightscout the API secret, an access token in the query, a JWT,
or nobody. Path parameters are often replaced by the identifiers of real things (the patient, an
upload, the clinic, the share), so that requests reach past the lookup into the handlers.

The number of cases per operation comes from the hypothesis profile: 6 under ``fast`` (CI); under
``fuzz`` (``make fuzz``) a tenth of its ``max_examples``; on PostgreSQL a fifth of that (at least 6).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from sqlalchemy import Engine

from glucoshare.accounts.models import Patient, User
from glucoshare.accounts.sessions import create_api_token
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.sharing.schemas import ClinicCreate
from glucoshare.sharing.service import create_clinic, share_with_clinic
from glucoshare.web.app import create_app
from tests.fuzz.tally import count
from tests.web.conftest import BASE_URL, clarity_bytes, make_person

SESSION_ENDING = {
    ("DELETE", "/v1/account"),
    ("DELETE", "/v1/account/sessions/{session_id}"),
    ("POST", "/v1/auth/logout"),
}
"""Operations run without credentials: signed in, they could end the session the run uses."""

MIN_EXAMPLES = 6


def examples(engine: Engine) -> int:
    """Cases per operation under the loaded profile (module docstring)."""
    base = max(MIN_EXAMPLES, settings.default.max_examples // 10)
    return base if engine.dialect.name == "sqlite" else max(MIN_EXAMPLES, base // 5)


@dataclasses.dataclass
class World:
    """The callers and the real identifiers the fuzzed requests may use."""

    headers: dict[str, dict[str, str]]
    """Per caller, what it sends (``nobody`` sends nothing)."""
    query: dict[str, dict[str, str]]
    """Per Nightscout caller, the query parameters it adds."""
    ids: dict[str, str]
    """Real values of path parameters, by name."""


def _world(app_settings: Settings, engine: Engine) -> World:
    patient = make_person(engine, "fuzz@example.org", "patient", patient=True)
    doctor = make_person(engine, "doc@example.org", "clinician", totp=True)
    assert patient.patient_id is not None
    with session_scope(engine) as session:
        owner = session.get(Patient, patient.patient_id)
        clinician = session.get(User, doctor.user_id)
        assert owner is not None
        assert clinician is not None
        clinic = create_clinic(session, ClinicCreate(name="Fuzz Clinic"), founder=clinician, actor="test")
        share = share_with_clinic(session, owner, clinic.share_code, None, actor="test")
        tokens = {
            kind: create_api_token(session, owner, kind=kind, created_by="test")
            for kind in ("upload", "read", "nightscout")
        }
        ids = {"patient_id": owner.id, "clinic_id": clinic.id, "share_id": share.id}
    name, data = clarity_bytes()
    with TestClient(create_app(app_settings, engine), base_url=BASE_URL) as http:
        uploaded = http.post(
            f"/v1/patients/{ids['patient_id']}/uploads",
            files={"files": (name, data)},
            headers=patient.headers,
        )
        assert uploaded.status_code == 201, uploaded.text
        ids["upload_id"] = uploaded.json()[0]["id"]
        admin = tokens["nightscout"]
        jwt = http.get(f"/api/v2/authorization/request/{admin.token}").json()["token"]
    secret = admin.api_secret
    assert secret is not None
    return World(
        headers={
            "patient": patient.headers,
            "upload token": {"Authorization": f"Bearer {tokens['upload'].token}"},
            "read token": {"Authorization": f"Bearer {tokens['read'].token}"},
            "clinician": doctor.headers,
            "nobody": {},
            "api secret": {"api-secret": hashlib.sha1(secret.encode(), usedforsecurity=False).hexdigest()},
            "jwt": {"Authorization": f"Bearer {jwt}"},
        },
        query={
            "token in query": {"token": tokens["read"].token},
            "admin token in query": {"token": admin.token},
        },
        ids=ids,
    )


def _call(case: Case, world: World, caller: str, real_ids: bool) -> Any:
    if real_ids:
        for name in case.path_parameters or {}:
            if name in world.ids:
                case.path_parameters[name] = world.ids[name]  # type: ignore[index]
    if caller in world.query:
        case.query = {**(case.query or {}), **world.query[caller]}
    return case.call(headers=world.headers.get(caller, {}))


def _content_type(response: Any) -> str:
    value = response.headers.get("content-type") or [""]
    return value[0] if isinstance(value, list) else value  # schemathesis keeps every value of a header


def test_no_operation_answers_with_a_server_error(app_settings: Settings, engine: Engine) -> None:
    world = _world(app_settings, engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app_settings, engine))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 60
    callers = ["patient", "patient", "upload token", "read token", "clinician", "nobody"]
    for operation in operations:
        ending = (operation.method.upper(), operation.path) in SESSION_ENDING
        _fuzz(operation, world, ["nobody"] if ending else callers, examples(engine), engine.dialect.name)


def _fuzz(
    operation: schemathesis.APIOperation, world: World, callers: list[str], cases: int, dialect: str
) -> None:
    @given(case=operation.as_strategy(), caller=st.sampled_from(callers), real_ids=st.booleans())
    @settings(max_examples=cases, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Case, caller: str, real_ids: bool) -> None:
        response = _call(case, world, caller, real_ids)
        count("openapi", dialect, f"{response.status_code // 100}xx")
        assert response.status_code < 500, (
            case.method,
            case.path,
            caller,
            response.status_code,
            response.text[:300],
        )
        if response.status_code >= 400 and _content_type(response).startswith("application/json"):
            assert set(response.json()) == {"error"}, response.text[:300]

    check()


# --- Nightscout -------------------------------------------------------------------------------------

_TEXT = {"type": "string"}
_NUMBERISH = {"oneOf": [{"type": "number"}, {"type": "integer"}, {"type": "string"}, {"type": "null"}]}
_EVENT_TYPES = ["Meal Bolus", "Correction Bolus", "Temp Basal", "Note", "BG Check", "Site Change", "<none>"]
_DOCUMENT = {
    "type": "object",
    "properties": {
        "_id": _TEXT,
        "identifier": _TEXT,
        "type": {"oneOf": [{"enum": ["sgv", "mbg", "cal", "Meal Bolus", "Temp Basal", "Note"]}, _TEXT]},
        "sgv": _NUMBERISH,
        "mbg": _NUMBERISH,
        "date": _NUMBERISH,
        "dateString": _TEXT,
        "sysTime": _TEXT,
        "utcOffset": _NUMBERISH,
        "device": _TEXT,
        "direction": _TEXT,
        "eventType": {"oneOf": [{"enum": _EVENT_TYPES}, _TEXT]},
        "created_at": _TEXT,
        "timestamp": _NUMBERISH,
        "insulin": _NUMBERISH,
        "carbs": _NUMBERISH,
        "glucose": _NUMBERISH,
        "glucoseType": _TEXT,
        "units": _TEXT,
        "duration": _NUMBERISH,
        "absolute": _NUMBERISH,
        "rate": _NUMBERISH,
        "percent": _NUMBERISH,
        "notes": _TEXT,
        "enteredBy": _TEXT,
        "insulinInjections": _TEXT,
        "defaultProfile": _TEXT,
        "startDate": _TEXT,
        "store": {"type": "object"},
        "uploader": {"type": "object"},
        "pump": {"type": "object"},
        "isValid": {"type": "boolean"},
    },
    "additionalProperties": True,
}
_BODY = {
    "required": False,
    "content": {
        "application/json": {"schema": {"oneOf": [_DOCUMENT, {"type": "array", "items": _DOCUMENT}]}}
    },
}
_COLLECTIONS = ["entries", "treatments", "devicestatus", "profile", "food", "activity"]


def _parameter(name: str, where: str = "query", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema or _TEXT}


_COLLECTION = _parameter(
    "collection", "path", {"oneOf": [{"enum": _COLLECTIONS + [f"{c}.json" for c in _COLLECTIONS]}, _TEXT]}
)
_FIND = [
    _parameter(name, schema=_NUMBERISH)
    for name in ("count", "find[date][$gte]", "find[created_at][$gte]", "find[sgv][$lt]", "find[type]",
                 "find[_id]", "find[eventType]", "limit", "skip", "sort", "sort$desc", "fields",
                 "date$gte", "srvModified$gt", "units", "brief_mode")
]  # fmt: skip


def _operations(methods: list[str], parameters: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in methods:
        operation: dict[str, Any] = {
            "parameters": parameters + _FIND,
            "responses": {"200": {"description": "ok"}},
        }
        if method in ("post", "put", "patch"):
            operation["requestBody"] = _BODY
        out[method] = operation
    return out


NIGHTSCOUT_OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Nightscout API as Glucoshare answers it", "version": "15.0.7"},
    "paths": {
        "/api/v1/status.json": _operations(["get"], []),
        "/api/v1/verifyauth": _operations(["get"], []),
        "/api/v1/experiments/test": _operations(["get"], []),
        "/api/v1/{collection}": _operations(["get", "post", "put", "delete"], [_COLLECTION]),
        "/api/v1/{collection}/{spec}": _operations(
            ["get", "delete"], [_COLLECTION, _parameter("spec", "path")]
        ),
        "/api/v2/authorization/request/{token}": _operations(["get"], [_parameter("token", "path")]),
        "/api/v2/properties": _operations(["get"], []),
        "/api/v2/properties/{names}": _operations(["get"], [_parameter("names", "path")]),
        "/pebble": _operations(["get"], []),
        "/api/v3/version": _operations(["get"], []),
        "/api/v3/status": _operations(["get"], []),
        "/api/v3/lastModified": _operations(["get"], []),
        "/api/v3/{collection}": _operations(["get", "post"], [_COLLECTION]),
        "/api/v3/{collection}/history": _operations(["get"], [_COLLECTION]),
        "/api/v3/{collection}/history/{last}": _operations(
            ["get"], [_COLLECTION, _parameter("last", "path")]
        ),
        "/api/v3/{collection}/{identifier}": _operations(
            ["get", "put", "patch", "delete"], [_COLLECTION, _parameter("identifier", "path")]
        ),
    },
}
"""The Nightscout API v1, v2 and v3 (research/nightscout.md), as far as clients use it."""


def test_no_nightscout_route_answers_with_a_server_error(app_settings: Settings, engine: Engine) -> None:
    world = _world(app_settings, engine)
    schema = schemathesis.openapi.from_dict(NIGHTSCOUT_OPENAPI)
    schema.app = create_app(app_settings, engine)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 24
    callers = [
        "api secret",
        "api secret",
        "token in query",
        "admin token in query",
        "jwt",
        "patient",
        "nobody",
    ]
    for operation in operations:
        _fuzz_nightscout(operation, world, callers, examples(engine), engine.dialect.name)


def _fuzz_nightscout(
    operation: schemathesis.APIOperation, world: World, callers: list[str], cases: int, dialect: str
) -> None:
    @given(case=operation.as_strategy(), caller=st.sampled_from(callers))
    @settings(max_examples=cases, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Case, caller: str) -> None:
        response = _call(case, world, caller, real_ids=False)
        count("nightscout api", dialect, f"{response.status_code // 100}xx")
        assert response.status_code < 500, (
            case.method,
            case.path,
            caller,
            response.status_code,
            response.text[:300],
        )

    check()
