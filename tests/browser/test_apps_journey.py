"""A patient connects an app on the "Apps and uploaders" page, in a real browser (Chromium).

The patient signs in, makes a Nightscout token, reads the API secret from the page (shown once),
and an app (httpx, as Loop and Trio send it) reads the Nightscout API with it; the patient revokes
the token on the page and the app's very next call is refused.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine

from tests.browser.conftest import LiveServer, screenshot
from tests.web.conftest import PASSWORD, make_person

PHONE = {"width": 390, "height": 844}


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def test_a_nightscout_token_made_on_the_page_works_until_it_is_revoked(
    chromium: Any, live_server: LiveServer, engine: Engine
) -> None:
    make_person(engine, "ada@example.org", "patient", patient=True)
    context = chromium.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{live_server.url}/signin")
    page.get_by_label("E-mail address").fill("ada@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/signin" not in url)

    page.get_by_role("link", name="Apps and uploaders").click()
    page.get_by_role("heading", name="Apps and uploaders", level=1).wait_for()
    page.get_by_text("No app can reach your data").wait_for()
    page.get_by_label("What the app does").select_option("nightscout")
    page.get_by_role("button", name="Make the token").click()
    page.get_by_role("heading", name="Your new token").wait_for()
    token = page.locator("#token-value").inner_text().strip()
    secret = page.locator("#secret-value").inner_text().strip()
    assert token.startswith("gs_")
    assert re.fullmatch(r"[\w-]{20,}", secret)  # a real secret, not "null" (a token without one)
    xdrip = urlsplit(page.locator("#xdrip-value").inner_text().strip())
    assert xdrip.username == secret
    assert f"{xdrip.scheme}://{xdrip.netloc.rpartition('@')[2]}" == live_server.url
    assert xdrip.path == "/api/v1/"
    assert page.locator('[data-kind="upload"]').is_hidden()
    assert page.locator('[data-kind="read"]').is_hidden()
    assert "not shown again" in page.locator("#token-new").inner_text()
    screenshot(page, "apps-new-token-390")

    entries = f"{live_server.url}/api/v1/entries.json"
    app = {"api-secret": _sha1(secret)}  # Loop and Trio send the SHA-1 of the API secret
    assert httpx.get(entries, headers=app).status_code == 200

    page.get_by_role("link", name="Done: I have copied it").click()
    page.get_by_role("button", name=re.compile("^Revoke")).wait_for()
    shown = page.content()
    assert secret not in shown  # shown once, never again
    assert token not in shown
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=re.compile("^Revoke")).click()
    page.get_by_text("No app can reach your data").wait_for()
    assert page.get_by_role("cell", name=re.compile("^revoked")).count() == 1
    assert httpx.get(entries, headers=app).status_code == 401
    context.close()
