"""Several `glucoshare serve` processes on one database answer as one: a session started on one is
valid on the other, failed sign-ins are counted across both, and their audit events make one chain."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from glucoshare.audit.service import verify_chain
from glucoshare.config import Settings
from glucoshare.db.session import session_scope
from tests.web.conftest import PASSWORD, make_person


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _server(settings: Settings) -> Iterator[str]:
    port = _port()
    env = {
        **os.environ,
        "GLUCOSHARE_DATABASE_URL": settings.effective_database_url,
        "GLUCOSHARE_DATA_DIR": str(settings.data_dir),
    }
    exe = Path(sys.executable).with_name("glucoshare")
    process = subprocess.Popen(  # our own entry point
        [str(exe), "serve", "--port", str(port), "--no-jobs"], env=env, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("the server did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_two_servers_share_sessions_throttling_and_one_audit_chain(
    engine: Engine, settings: Settings
) -> None:
    kim = make_person(engine, "kim@example.org", "patient", patient=True)
    make_person(engine, "ada@example.org", "patient", patient=True)
    with ExitStack() as servers:
        first, second = (servers.enter_context(_server(settings)) for _ in range(2))

        # A session started on one server works on the other, and ends on both when ended on one.
        signed_in = httpx.post(f"{first}/v1/auth/login", json={"email": kim.email, "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        bearer = {"Authorization": f"Bearer {signed_in.json()['token']}"}
        stats = httpx.get(f"{second}/v1/patients/{kim.patient_id}/stats", headers=bearer)
        assert stats.status_code == 200, stats.text
        assert httpx.post(f"{second}/v1/auth/logout", headers=bearer).status_code == 204
        assert httpx.get(f"{first}/v1/patients/{kim.patient_id}/stats", headers=bearer).status_code == 401

        # Failed sign-ins count across both servers: the eleventh is refused, wherever it lands (and,
        # from this one address, for every account: the address is throttled too).
        wrong = {"email": "ada@example.org", "password": "not the passphrase"}
        answers = [
            httpx.post(f"{(first, second)[i % 2]}/v1/auth/login", json=wrong).status_code for i in range(10)
        ]
        assert answers == [401] * 10
        for server in (first, second):
            refused = httpx.post(f"{server}/v1/auth/login", json=wrong)
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) > 0

        # Audited reads from both servers at once make one unbroken chain.
        headers = {"Authorization": f"Bearer {kim.token}"}

        def read(i: int) -> int:
            server = (first, second)[i % 2]
            return httpx.get(f"{server}/v1/patients/{kim.patient_id}/stats", headers=headers).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(read, range(40))) == {200}
    with session_scope(engine) as session:
        report = verify_chain(session)
    assert report.intact, report
    assert report.events >= 40
