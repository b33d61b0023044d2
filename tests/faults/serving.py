"""``glucoshare serve`` as a victim: a free port, waiting until it answers, an upload in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy import Engine

from glucoshare.accounts.models import Patient
from glucoshare.accounts.sessions import create_api_token
from glucoshare.db.session import session_scope
from tests.faults.harness import Running


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_command(port: int) -> list[str]:
    """The command that serves Glucoshare on ``port`` of 127.0.0.1."""
    return ["glucoshare", "serve", "--host", "127.0.0.1", "--port", str(port)]


def upload_token(engine: Engine, patient_id: str, kind: str = "upload") -> dict[str, str]:
    """Headers with a new API token of the patient (``upload``: it may upload; ``read``: it may read)."""
    with session_scope(engine) as session:
        patient = session.get(Patient, patient_id)
        assert patient is not None
        token = create_api_token(session, patient, kind=kind, created_by="test").token
    return {"Authorization": f"Bearer {token}"}


def wait_until_serving(base: str, running: Running, timeout: float = 60) -> None:
    """Wait until the server answers ``/health``; fail when it ended or took too long."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        assert running.poll() is None, "the server ended before it answered"
        assert time.monotonic() < deadline, "the server did not answer in time"
        time.sleep(0.02)


class UploadRequest:
    """``POST /v1/patients/{id}/uploads`` with one file, sent from a thread of its own."""

    def __init__(self, base: str, patient_id: str, headers: dict[str, str], path: Path) -> None:
        self.url = f"{base}/v1/patients/{patient_id}/uploads"
        self.headers = headers
        self.path = path
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        try:
            self.response = httpx.post(
                self.url,
                headers=self.headers,
                files={"files": (self.path.name, self.path.read_bytes(), "text/csv")},
                timeout=120,
            )
        except Exception as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def start(self) -> UploadRequest:
        """Send it."""
        self._thread.start()
        return self

    def finish(self, timeout: float = 120) -> httpx.Response | None:
        """Wait for the answer; ``None`` when the connection broke (the server was killed)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the upload request did not end"
        if self.error is not None:
            assert isinstance(self.error, httpx.TransportError), repr(self.error)
        return self.response


@contextlib.contextmanager
def upload_once_serving(
    running: Running, base: str, patient_id: str, headers: dict[str, str], path: Path
) -> Iterator[UploadRequest]:
    """Wait for the server, send the upload; after the block, wait for the request to end."""
    wait_until_serving(base, running)
    request = UploadRequest(base, patient_id, headers, path).start()
    yield request
    request.finish()
