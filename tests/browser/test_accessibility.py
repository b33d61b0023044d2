"""Every main page in a real browser: no serious accessibility violation (axe-core), and screenshots.

axe-core comes from the npm registry (``make test`` downloads it into ``.oracles/``); it is
evaluated through the browser's debugging protocol, so the pages keep their strict CSP. Each page
is also photographed at 390×844 and 1440×900 (``build/test-artifacts/screens/``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from glucoshare.accounts.totp import code_at
from tests.browser.conftest import REQUIRE_BROWSER, LiveServer, screenshot
from tests.web.conftest import PASSWORD, Person, clarity_bytes, make_person

AXE = Path(__file__).resolve().parents[2] / ".oracles" / "axe-core-4.14.1.min.js"
SIZES = {"390": {"width": 390, "height": 844}, "1440": {"width": 1440, "height": 900}}
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def _axe() -> str:
    if not AXE.exists():
        reason = f"{AXE.name} is missing (make test downloads it from the npm registry)"
        if REQUIRE_BROWSER:
            pytest.fail(reason)
        pytest.skip(reason)
    return AXE.read_text(encoding="utf-8")


def _serious(page: Any, source: str) -> list[dict[str, Any]]:
    page.evaluate(source)
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", TAGS
    )
    return [v for v in result["violations"] if v["impact"] in {"serious", "critical"}]


def _sign_in(page: Any, server: LiveServer, person: Person) -> None:
    page.goto(f"{server.url}/signin")
    page.get_by_label("E-mail address").fill(person.email)
    page.get_by_label("Password").fill(PASSWORD)
    if person.totp_secret:
        page.get_by_label("Code from your authenticator app").fill(code_at(person.totp_secret, time.time()))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/signin" not in url)


def test_main_pages_have_no_serious_accessibility_violation(
    chromium: Any,
    live_server: LiveServer,
    engine: Engine,
) -> None:
    source = _axe()
    patient = make_person(engine, "ada@example.org", "patient", patient=True)
    doctor = make_person(engine, "doc@example.org", "clinician", totp=True)
    name, data = clarity_bytes(seed=6, days=3)
    setup = chromium.new_context()
    api, base = setup.request, live_server.url
    uploaded = api.post(
        f"{base}/v1/patients/{patient.patient_id}/uploads",
        headers=patient.headers,
        multipart={"files": {"name": name, "mimeType": "text/csv", "buffer": data}},
    )
    assert uploaded.ok, uploaded.text()
    clinic = api.post(f"{base}/v1/clinics", headers=doctor.headers, data={"name": "Sunrise Clinic"}).json()
    shared = api.post(
        f"{base}/v1/shares", headers=patient.headers, data={"clinic_code": clinic["share_code"]}
    )
    assert shared.ok, shared.text()
    token = api.post(f"{base}/v1/account/tokens", headers=patient.headers, data={"kind": "nightscout"})
    assert token.ok, token.text()
    setup.close()
    pid = patient.patient_id
    pages = {
        "signin": (None, "/signin"),
        "signup": (None, "/signup"),
        "help": (None, "/help"),
        "handout": (None, "/help/handout"),
        "dashboard": (patient, f"/patients/{pid}"),
        "report-agp": (patient, f"/patients/{pid}/reports/agp"),
        "report-daily": (patient, f"/patients/{pid}/reports/daily?days=1"),
        "sharing": (patient, f"/patients/{pid}/sharing"),
        "account": (patient, "/account"),
        "security": (patient, "/account/security"),
        "apps": (patient, "/account/apps"),
        "clinic": (doctor, f"/clinics/{clinic['id']}"),
    }
    problems: dict[str, list[str]] = {}
    signed_in: dict[str | None, Any] = {}  # one sign-in per person: a TOTP code works only once
    people = {None if who is None else who.email: who for who, _ in pages.values()}
    for who in people.values():
        context = chromium.new_context(bypass_csp=True)
        page = context.new_page()
        if who is not None:
            _sign_in(page, live_server, who)
        signed_in[None if who is None else who.email] = page
    for size, viewport in SIZES.items():
        for label, (who, path) in pages.items():
            page = signed_in[None if who is None else who.email]
            page.set_viewport_size(viewport)
            page.goto(f"{live_server.url}{path}")
            page.wait_for_load_state("networkidle")
            screenshot(page, f"{label}-{size}")
            found = _serious(page, source)
            if found:
                problems[f"{label}@{size}"] = [
                    f"{v['id']}: {v['help']} at {[n['target'] for n in v['nodes']]}" for v in found
                ]
    for page in signed_in.values():
        page.context.close()
    assert problems == {}, json.dumps(problems, indent=1)
