"""Signing in over HTTP, the session cookie, CSRF, security headers, size limits and the error shape."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.message import Message
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from glucoshare.config import Settings
from tests.kept import kept_places
from tests.web.conftest import PASSWORD, make_person


def _login(client: TestClient, email: str, password: str = PASSWORD, totp: str | None = None):
    return client.post("/v1/auth/login", json={"email": email, "password": password, "totp": totp})


def test_login_sets_a_secure_httponly_lax_cookie_and_returns_a_bearer_token(
    client: TestClient, engine: Engine
) -> None:
    make_person(engine, "kim@example.org", "patient", patient=True)
    response = _login(client, "KIM@example.org")
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["token"]) >= 22 and body["user"]["email"] == "kim@example.org"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("gs_session=")
    assert all(flag in cookie.lower() for flag in ("secure", "httponly", "samesite=lax", "path=/"))
    me = client.get("/v1/account", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.json()["patient"]["email"] == "kim@example.org"


def test_wrong_password_and_unknown_account_get_the_same_401(client: TestClient, engine: Engine) -> None:
    make_person(engine, "kim@example.org", "patient")
    wrong = _login(client, "kim@example.org", "not the password at all")
    unknown = _login(client, "nobody@example.org", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"].startswith("Bearer")


def test_ten_failures_answer_429_with_retry_after(client: TestClient, engine: Engine) -> None:
    make_person(engine, "kim@example.org", "patient")
    for _ in range(10):
        assert _login(client, "kim@example.org", "wrong guess number x").status_code == 401
    blocked = _login(client, "kim@example.org")  # even the right password waits
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["retry-after"]) <= 900
    assert blocked.json()["error"]["code"] == "too_many_requests"


def test_the_second_factor_is_required_and_a_code_works_once(client: TestClient, engine: Engine) -> None:
    person = make_person(engine, "doc@example.org", "clinician", totp=True)
    assert _login(client, "doc@example.org").status_code == 401
    code = person.code()
    assert _login(client, "doc@example.org", totp=code).status_code == 200
    assert _login(client, "doc@example.org", totp=code).status_code == 401  # replayed


def test_a_clinician_without_second_factor_can_only_enrol_one(client: TestClient, engine: Engine) -> None:
    make_person(engine, "doc@example.org", "clinician")
    login = _login(client, "doc@example.org")
    assert login.status_code == 200 and login.json()["must_enrol_second_factor"] is True
    auth = {"Authorization": f"Bearer {login.json()['token']}"}
    refused = client.get("/v1/account", headers=auth)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "second_factor_required"
    offer = client.post("/v1/account/second-factor", headers=auth).json()
    assert offer["qr_svg"].startswith("<svg") and offer["uri"].startswith("otpauth://totp/")
    import time  # noqa: PLC0415

    from glucoshare.accounts.totp import code_at  # noqa: PLC0415

    done = client.post(
        "/v1/account/second-factor/confirm",
        headers=auth,
        json={"secret": offer["secret"], "code": code_at(offer["secret"], time.time())},
    )
    assert done.status_code == 200, done.text
    assert len(done.json()["recovery_codes"]) == 10
    assert client.get("/v1/account", headers=auth).status_code == 200


def test_cookie_sessions_need_the_csrf_token_for_changes(client: TestClient, engine: Engine) -> None:
    make_person(engine, "kim@example.org", "patient", patient=True)
    login = _login(client, "kim@example.org").json()
    assert client.get("/v1/account").status_code == 200  # the cookie alone reads
    refused = client.patch("/v1/account", json={"name": "Mallory"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    wrong = client.patch("/v1/account", json={"name": "Mallory"}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    cross = client.patch(
        "/v1/account",
        json={"name": "Mallory"},
        headers={"X-CSRF-Token": login["csrf_token"], "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    done = client.patch("/v1/account", json={"name": "Kim K"}, headers={"X-CSRF-Token": login["csrf_token"]})
    assert done.status_code == 200 and done.json()["user"]["name"] == "Kim K"
    client.cookies.clear()
    bearer = client.patch(
        "/v1/account", json={"name": "Kim"}, headers={"Authorization": f"Bearer {login['token']}"}
    )
    assert bearer.status_code == 200  # no ambient credential, no CSRF token needed


def test_logout_ends_the_session(client: TestClient, engine: Engine) -> None:
    person = make_person(engine, "kim@example.org", "patient")
    assert client.post("/v1/auth/logout", headers=person.headers).status_code == 204
    assert client.get("/v1/account", headers=person.headers).status_code == 401


def test_every_response_carries_the_security_headers(client: TestClient, engine: Engine) -> None:
    person = make_person(engine, "kim@example.org", "patient", patient=True)
    for response in (
        client.get("/health"),
        client.get("/v1/account", headers=person.headers),
        client.get("/v1/account"),
        client.get("/docs"),
        client.get("/no/such/page"),
    ):
        headers = response.headers
        assert headers["strict-transport-security"].startswith("max-age=")
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
    static = client.get("/static/docs.js")
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")


def test_docs_page_runs_no_inline_script(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "<script>" not in page and 'src="/static/docs.js"' in page
    assert client.get("/static/vendor/swagger/swagger-ui-bundle.js").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "Glucoshare"


def test_bodies_over_the_limit_get_413(client: TestClient, engine: Engine, app_settings: Settings) -> None:
    person = make_person(engine, "kim@example.org", "patient", patient=True)
    big = client.post("/v1/auth/login", content=b"{" + b" " * (1024 * 1024 + 10) + b"}")
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
    huge = b"x" * (app_settings.max_upload_bytes + 200_000)
    upload = client.post(
        f"/v1/patients/{person.patient_id}/uploads", headers=person.headers, files={"files": ("a.csv", huge)}
    )
    assert upload.status_code == 413


def test_validation_errors_never_echo_what_was_sent(client: TestClient) -> None:
    response = client.post("/v1/auth/login", json={"email": "kim@example.org", "password": 12345678901})
    assert response.status_code == 422
    assert "12345678901" not in response.text
    assert set(response.json()["error"]) == {"code", "message", "status"}


def test_another_patients_stats_look_exactly_like_a_missing_patient(
    client: TestClient, engine: Engine
) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    lee = make_person(engine, "lee@example.org", "patient", patient=True)
    theirs = client.get(f"/v1/patients/{lee.patient_id}/stats?days=14", headers=kim.headers)
    missing = client.get(f"/v1/patients/{'f' * 32}/stats?days=14", headers=kim.headers)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    own = client.get(f"/v1/patients/{kim.patient_id}/stats?days=14", headers=kim.headers)
    assert own.status_code == 200 and own.json()["patient"] == "kim@example.org"


def _outbox(settings: Settings) -> list[Message]:
    folder = settings.data_dir / "outbox"
    return (
        [message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))] if folder.exists() else []
    )


def _link_token(mail: Message) -> str:
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    return body.decode().split("token=", 1)[1].split()[0]


def test_changing_the_email_needs_the_password_and_both_addresses(
    client: TestClient, engine: Engine, app_settings: Settings
) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    wrong = client.post(
        "/v1/account/email", headers=kim.headers, json={"new_email": "kim@new.example", "password": "nope"}
    )
    assert wrong.status_code == 401
    asked = client.post(
        "/v1/account/email", headers=kim.headers, json={"new_email": "kim@new.example", "password": PASSWORD}
    )
    assert asked.status_code == 202
    mails = {m["To"]: m for m in _outbox(app_settings)}
    assert set(mails) == {"kim@new.example", "kim@example.org"}
    first = client.post(
        "/v1/auth/email-change/confirm", json={"token": _link_token(mails["kim@new.example"])}
    )
    assert first.json() == {"confirmed": "new", "completed": False}
    assert _login(client, "kim@new.example").status_code == 401  # not yet
    second = client.post(
        "/v1/auth/email-change/confirm", json={"token": _link_token(mails["kim@example.org"])}
    )
    assert second.json() == {"confirmed": "old", "completed": True}
    assert _login(client, "kim@new.example").status_code == 200
    assert (
        client.get(f"/v1/patients/{kim.patient_id}", headers=kim.headers).json()["email"] == "kim@new.example"
    )
    again = client.post(
        "/v1/auth/email-change/confirm", json={"token": _link_token(mails["kim@example.org"])}
    )
    assert again.status_code == 401


def test_the_export_holds_everything_and_deletion_removes_it(
    client: TestClient, engine: Engine, app_settings: Settings, tmp_path: Path
) -> None:
    import io  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    from tests.web.conftest import clarity_bytes, user_row  # noqa: PLC0415

    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    name, data = clarity_bytes()
    assert (
        client.post(
            f"/v1/patients/{kim.patient_id}/uploads", headers=kim.headers, files={"files": (name, data)}
        ).status_code
        == 201
    )
    response = client.get("/v1/account/export", headers=kim.headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    assert "account.json" in names and "records.json" in names
    raw = [n for n in names if n.startswith("raw/")]
    assert len(raw) == 1 and archive.read(raw[0]) == data
    account = json.loads(archive.read("account.json"))
    assert account["user"]["email"] == "kim@example.org" and account["access_log"]
    records = json.loads(archive.read("records.json"))
    assert records["records"]
    gone = client.request("DELETE", "/v1/account", headers=kim.headers, json={"password": PASSWORD})
    assert gone.status_code == 204
    assert user_row(engine, kim.user_id) is None
    assert kept_places(engine, str(kim.patient_id)) == set()


def test_a_refused_reach_for_someone_elses_data_is_in_their_access_log(
    client: TestClient, engine: Engine
) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    lee = make_person(engine, "lee@example.org", "patient", patient=True)
    assert client.get(f"/v1/patients/{kim.patient_id}/stats", headers=lee.headers).status_code == 404
    assert client.get(f"/v1/patients/{'x' * 80}", headers=lee.headers).status_code == 404  # no such id
    entries = client.get("/v1/account/access-log", headers=kim.headers).json()
    denied = [e for e in entries if e["action"] == "accounts:access:denied"]
    assert len(denied) == 1
    assert denied[0]["outcome"] == "denied"
    assert denied[0]["actor"] == f"user:{lee.user_id}"


def test_signing_out_with_the_cookie_needs_the_csrf_token(client: TestClient, engine: Engine) -> None:
    make_person(engine, "kim@example.org", "patient")
    login = _login(client, "kim@example.org").json()
    refused = client.post("/v1/auth/logout")  # a page of another site cannot end the session
    assert refused.status_code == 403
    assert client.get("/v1/account").status_code == 200
    done = client.post("/v1/auth/logout", headers={"X-CSRF-Token": login["csrf_token"]})
    assert done.status_code == 204
    assert "gs_session=" in done.headers["set-cookie"]
    assert client.get("/v1/account", headers={"Authorization": f"Bearer {login['token']}"}).status_code == 401


def test_a_zip_upload_imports_each_export_and_a_hostile_zip_changes_nothing(
    client: TestClient, engine: Engine
) -> None:
    import io  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    from tests.conftest import table_snapshot  # noqa: PLC0415
    from tests.web.conftest import clarity_bytes  # noqa: PLC0415

    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    name, data = clarity_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"exports/{name}", data)
        archive.writestr("notes.txt", "for the clinic\n")
    url = f"/v1/patients/{kim.patient_id}/uploads"
    done = client.post(url, headers=kim.headers, files={"files": ("export.zip", buffer.getvalue())})
    assert done.status_code == 201, done.text
    (upload,) = done.json()
    assert upload["file"] == f"export.zip/exports/{name}"
    assert "notes.txt (unrecognised format)" in upload["warnings"][-1]
    hostile = io.BytesIO()
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("a.csv", data)
        archive.writestr("../../escape.csv", data)

    def stored() -> dict[str, list[tuple[object, ...]]]:  # the session's last-seen time moves on each request
        return {name: rows for name, rows in table_snapshot(engine).items() if name != "auth_sessions"}

    before = stored()
    refused = client.post(url, headers=kim.headers, files={"files": ("evil.zip", hostile.getvalue())})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "archive_refused"
    assert "climbs out of the archive" in refused.json()["error"]["message"]
    assert stored() == before
