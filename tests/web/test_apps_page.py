"""The "Apps and uploaders" page (``/account/apps``): tokens listed without their values, made and
shown once, revoked at once, the API's refusal for accounts without patient data, CSRF on every
change, and this server's address in the instructions."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from glucoshare.accounts.roles import KIND_ROLES, ROLES
from glucoshare.accounts.sessions import TOKEN_KINDS
from glucoshare.audit.models import AuditEvent
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from glucoshare.web.app import create_app
from glucoshare.web.deps import SESSION_COOKIE
from glucoshare.web.ui.pages import ROLE_LABELS, TOKEN_KIND_LABELS, server_address
from tests.web.conftest import BASE_URL, Person, make_person

PAGE = "/account/apps"
REFUSAL = "this account holds no patient data"


def _as(client: TestClient, person: Person) -> TestClient:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, person.token)
    return client


def _csrf(page: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
    assert match is not None
    return match.group(1)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _actions(engine: Engine, patient_id: str) -> list[str]:
    with session_scope(engine) as session:
        return list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.patient_id == patient_id).order_by(AuditEvent.id)
            )
        )


@pytest.fixture
def patient(engine: Engine) -> Person:
    return make_person(engine, "ada@example.org", "patient", patient=True)


def test_a_token_is_made_shown_once_used_and_revoked_at_once(
    client: TestClient, patient: Person, engine: Engine
) -> None:
    _as(client, patient)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "No app can reach your data" in page.text
    assert 'href="/account/apps" aria-current="page">Apps and uploaders<' in page.text
    assert 'data-api="/v1/account/tokens" data-method="POST" data-then="show"' in page.text
    assert "Glucoshare never shows your data without a credential" in page.text
    assert "Revoking a token stops its app at once" in page.text
    made = client.post(
        "/v1/account/tokens", headers={"X-CSRF-Token": _csrf(page.text)}, json={"kind": "nightscout"}
    )
    assert made.status_code == 201, made.text
    token, secret, token_id = made.json()["token"], made.json()["api_secret"], made.json()["id"]
    assert secret

    again = client.get(PAGE)
    assert f'data-api="/v1/account/tokens/{token_id}" data-method="DELETE"' in again.text
    assert token not in again.text
    assert secret not in again.text
    assert _sha1(secret) not in again.text
    assert "Nightscout app" in again.text
    assert '<span class="badge">admin</span> read and change everything' in again.text
    assert ">never<" in again.text
    assert "No app can reach your data" not in again.text

    ns = {"api-secret": _sha1(secret)}
    assert client.get("/api/v1/entries.json", headers=ns).status_code == 200
    used = client.get(PAGE)
    assert ">never<" not in used.text  # the last use is listed

    revoked = client.delete(f"/v1/account/tokens/{token_id}", headers={"X-CSRF-Token": _csrf(used.text)})
    assert revoked.status_code == 204
    assert client.get("/api/v1/entries.json", headers=ns).status_code == 401
    after = client.get(PAGE)
    assert "revoked " in after.text
    assert f'data-api="/v1/account/tokens/{token_id}"' not in after.text  # nothing left to revoke
    assert "No app can reach your data" in after.text

    actions = _actions(engine, patient.patient_id or "")
    assert actions.count("accounts:token:list") == 4  # one per page view
    assert "accounts:token:create" in actions
    assert "accounts:token:revoke" in actions
    log = client.get("/account").text
    assert "made a token for an app" in log
    assert "revoked an app&#39;s token" in log


def test_the_api_lists_tokens_without_values_and_records_the_listing(
    client: TestClient, patient: Person, engine: Engine
) -> None:
    made = client.post("/v1/account/tokens", headers=patient.headers, json={"kind": "read"})
    assert made.status_code == 201
    listed = client.get("/v1/account/tokens", headers=patient.headers)
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()] == [made.json()["id"]]
    assert made.json()["token"] not in listed.text
    assert _actions(engine, patient.patient_id or "")[-1] == "accounts:token:list"


def test_roles_chosen_on_the_page_and_the_roles_of_a_kind_are_listed(
    client: TestClient, patient: Person
) -> None:
    _as(client, patient)
    page = client.get(PAGE)
    for kind, (name, text) in TOKEN_KIND_LABELS.items():
        assert f'<option value="{kind}">{name}</option>' in page.text
        assert text in page.text
    for role in ROLES:
        assert f'name="roles" value="{role}"' in page.text
    csrf = {"X-CSRF-Token": _csrf(page.text)}
    # The form sends every checkbox group, so no role chosen arrives as an empty list.
    plain = client.post("/v1/account/tokens", headers=csrf, json={"kind": "upload", "roles": []})
    assert plain.status_code == 201, plain.text
    chosen = client.post(
        "/v1/account/tokens", headers=csrf, json={"kind": "read", "roles": ["careportal", "readable"]}
    )
    assert chosen.status_code == 201, chosen.text
    listed = client.get(PAGE).text
    assert '<span class="badge">uploader</span> send data, read nothing' in listed
    assert '<span class="badge">careportal</span> add, change and delete treatments' in listed
    assert '<span class="badge">readable</span> read everything' in listed
    api = {t["id"]: t["roles"] for t in client.get("/v1/account/tokens", headers=csrf).json()}
    assert api[chosen.json()["id"]] == ["careportal", "readable"]
    assert api[plain.json()["id"]] is None  # the roles of its kind
    unknown = client.post("/v1/account/tokens", headers=csrf, json={"kind": "read", "roles": ["root"]})
    assert unknown.status_code == 400  # the form shows the API's message in its alert
    assert "readable" in unknown.json()["error"]["message"]


def test_people_without_patient_data_get_the_apis_refusal(client: TestClient, engine: Engine) -> None:
    carer = make_person(engine, "carer@example.org", "carepartner")
    doctor = make_person(engine, "doc@example.org", "clinician", totp=True)
    for person in (carer, doctor):
        api = client.get("/v1/account/tokens", headers=person.headers)
        assert api.status_code == 404
        assert api.json()["error"]["message"] == REFUSAL
        _as(client, person)
        page = client.get(PAGE)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert REFUSAL in page.text
        assert 'href="/account/apps"' not in client.get("/account").text  # no link to it either


def test_the_token_forms_need_the_csrf_token(client: TestClient, patient: Person) -> None:
    _as(client, patient)
    page = client.get(PAGE)
    made = client.post(
        "/v1/account/tokens", headers={"X-CSRF-Token": _csrf(page.text)}, json={"kind": "read"}
    )
    assert made.status_code == 201
    token_id = made.json()["id"]
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        create = client.post("/v1/account/tokens", headers=headers, json={"kind": "nightscout"})
        assert create.status_code == 403
        assert create.json()["error"]["code"] == "csrf_failed"
        revoke = client.delete(f"/v1/account/tokens/{token_id}", headers=headers)
        assert revoke.status_code == 403
        assert revoke.json()["error"]["code"] == "csrf_failed"
    listed = client.get("/v1/account/tokens", headers=patient.headers).json()
    assert [(row["id"], row["revoked_at"]) for row in listed] == [(token_id, None)]


def test_without_a_session_the_page_sends_to_sign_in(client: TestClient) -> None:
    client.cookies.clear()
    response = client.get(PAGE, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=%2Faccount%2Fapps"


def test_the_page_carries_no_inline_script_or_style(client: TestClient, patient: Person) -> None:
    _as(client, patient)
    page = client.get(PAGE)
    assert "<style" not in page.text
    assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None
    assert re.search(r"\son[a-z]+=", page.text) is None
    assert re.search(r"\sstyle=", page.text) is None
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/ui/apps.js", "/static/ui/apps.css"):
        assert client.get(asset).status_code == 200
    assert f'href="{PAGE}"' in client.get(f"/patients/{patient.patient_id}").text


@pytest.fixture
def public_client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    served = settings.model_copy(update={"base_url": "https://glucose.example.org/"})
    with TestClient(create_app(served, engine), base_url=BASE_URL) as http:
        yield http


def test_the_instructions_carry_this_servers_address(
    public_client: TestClient, client: TestClient, patient: Person
) -> None:
    _as(public_client, patient)
    page = public_client.get(PAGE).text
    assert "https://API-SECRET@glucose.example.org/api/v1/" in page
    assert '<span data-field="api_secret"></span>@glucose.example.org/api/v1/' in page
    assert "the site URL <code>https://glucose.example.org</code>" in page
    assert "https://glucose.example.org/?token=TOKEN" in page
    assert "glucoshare upload --server https://glucose.example.org --token TOKEN" in page
    assert "starts with http://" not in page
    _as(client, patient)
    assert "starts with http://" in client.get(PAGE).text  # the test settings' http://127.0.0.1


@pytest.mark.parametrize(
    ("base_url", "site", "xdrip"),
    [
        (
            "https://glucose.example.org",
            "https://glucose.example.org",
            "https://S@glucose.example.org/api/v1/",
        ),
        (
            "https://glucose.example.org/",
            "https://glucose.example.org",
            "https://S@glucose.example.org/api/v1/",
        ),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000", "http://S@127.0.0.1:8000/api/v1/"),
        ("https://me:pw@example.org/gs/", "https://example.org/gs", "https://S@example.org/gs/api/v1/"),
        (" https://example.org ", "https://example.org", "https://S@example.org/api/v1/"),
    ],
)
def test_server_address_examples(base_url: str, site: str, xdrip: str) -> None:
    address = server_address(base_url)
    assert address.site == site
    assert address.xdrip("S") == xdrip
    assert address.secure == site.startswith("https://")


_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    port=st.none() | st.integers(min_value=1, max_value=65535),
    path=st.lists(_LABEL, max_size=3).map(lambda parts: "".join(f"/{p}" for p in parts)),
    trailing=st.booleans(),
    secret=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=40
    ),
)
def test_the_xdrip_url_carries_the_secret_as_its_user_and_ends_in_api_v1(
    scheme: str, host: str, port: int | None, path: str, trailing: bool, secret: str
) -> None:
    netloc = host if port is None else f"{host}:{port}"
    address = server_address(f"{scheme}://{netloc}{path}{'/' if trailing else ''}")
    parts = urlsplit(address.xdrip(secret))
    assert parts.scheme == scheme
    assert parts.username == secret
    assert parts.password is None
    assert parts.hostname == host
    assert parts.port == port
    assert parts.path == f"{path}/api/v1/"
    assert address.site == f"{scheme}://{netloc}{path}"
    assert not address.site.endswith("/")


def test_every_kind_and_role_is_explained_in_words() -> None:
    assert set(TOKEN_KIND_LABELS) == set(TOKEN_KINDS) == set(KIND_ROLES)
    assert set(ROLE_LABELS) == set(ROLES)
