"""A live Glucoshare server on 127.0.0.1 and Debian's Chromium driven by Playwright.

Never downloads a browser: Chromium is ``/usr/bin/chromium`` (``apt-get install chromium``, as
``.ci/run`` does). Without it the browser tests are skipped with the reason, or fail when
``GLUCOSHARE_TEST_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.web.app import create_app
from tests.mailbox import Inbox, smtp_server
from tests.queue import run_queued_jobs

CHROMIUM = os.environ.get("GLUCOSHARE_TEST_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("GLUCOSHARE_TEST_REQUIRE_BROWSER") == "1"
SCREENS = Path(os.environ.get("GLUCOSHARE_TEST_ARTIFACTS", "build/test-artifacts")) / "screens"


def _browser_missing() -> str | None:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError:
        return "the playwright package is not installed (make install)"
    return None


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session."""
    reason = _browser_missing()
    if reason is not None:
        if REQUIRE_BROWSER:
            pytest.fail(reason + " (GLUCOSHARE_TEST_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class LiveServer:
    """A running server: its base URL, and how to run the jobs it queued (a worker's part)."""

    def __init__(self, url: str, run_jobs: Callable[[], None]) -> None:
        self.url = url
        self.run_jobs = run_jobs
        """Run every queued job with a real worker, then return (nothing to do on SQLite)."""


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """A real SMTP server on 127.0.0.1 that the live server sends its mail to."""
    with smtp_server() as (url, received):
        received.url = url  # type: ignore[attr-defined]
        yield received


@pytest.fixture
def live_server(settings: Settings, engine: Engine, inbox: Inbox) -> Iterator[LiveServer]:
    """``glucoshare serve`` in a thread on a free port of 127.0.0.1, on the test database."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = settings.model_copy(
        update={"base_url": f"http://127.0.0.1:{port}", "smtp_url": inbox.url}  # type: ignore[attr-defined]
    )
    inbox.drain = lambda: run_queued_jobs(engine, served)
    app = create_app(served, engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the live server did not start")
        time.sleep(0.05)
    yield LiveServer(f"http://127.0.0.1:{port}", inbox.drain)
    server.should_exit = True
    thread.join(timeout=10)


def screenshot(page: Any, name: str) -> None:
    """Keep a picture of the page as a test artifact (``build/test-artifacts/screens/NAME.png``)."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)
