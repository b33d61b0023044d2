"""A client of the upload API (``/v1/datasets``, docs/upload-api.md) for the command-line uploader.

Every request is retried when the connection fails or the server answers ``5xx`` or ``429``
(with a growing pause, or the server's ``Retry-After``), which is safe: opening a data set again
under the same name returns it, a batch of records sent again under the same
``Idempotency-Key`` gets the first answer, and closing twice changes nothing. A batch the server
finds too large (``413``) is halved until it passes.

Errors map to the one error tree (:mod:`glucoshare.errors`)::

    UnauthenticatedError      401: the token is wrong, expired or revoked
    PermissionDeniedError     403
    NotFoundError             404: no such data set, or the token may not upload for a patient
    InputError                any other 4xx (the server's message, which names no health data)
    └── ConflictError         409: the data set is closed, or the device is another patient's
    ServerUnavailableError    the server cannot be reached, or keeps failing (an InternalError)

The token goes in the ``Authorization`` header only; it is never part of a message or a log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Self
from urllib.parse import urlsplit

import httpx

from glucoshare import __version__
from glucoshare.datasets.records import MAX_RECORDS
from glucoshare.errors import (
    ConflictError,
    InputError,
    InternalError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

MAX_BODY_BYTES: Final = 768 * 1024
"""A batch is cut before its JSON body passes this size (the server takes 1 MiB per request)."""
RETRIES: Final = 5
"""Further attempts of a request after a connection failure, a ``5xx`` or a ``429``."""
BACKOFF_S: Final = 0.5
"""The pause before the first retry, in seconds; it doubles with each further one."""
MAX_PAUSE_S: Final = 30.0
"""The longest pause between two attempts, in seconds (a ``Retry-After`` included)."""
LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts reached without crossing a network: plain HTTP is allowed to them."""

_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_CLOSE_TIMEOUT_S: Final = 600.0  # closing stores every record of the data set in one transaction


class ServerUnavailableError(InternalError):
    """The server could not be reached, or kept failing, after every retry (run the upload again)."""

    code = "server_unavailable"


def check_server(url: str, *, insecure_http: bool = False) -> str:
    """The server's base URL without a trailing slash; :class:`InputError` when it is unusable.

    It must be ``http`` or ``https`` with a host and no user name or password in it (the token
    goes in ``--token``). Plain ``http`` is refused unless the host is this machine
    (:data:`LOCAL_HOSTS`) or ``insecure_http`` is set: health data would cross the network
    unencrypted.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        msg = "--server: give the server's address as https://host[:port][/path]"
        raise InputError(msg)
    if parts.username is not None or parts.password is not None:
        msg = "--server: the address must not hold a user name or password; give the token with --token"
        raise InputError(msg)
    if parts.query or parts.fragment:
        msg = "--server: the address must not have a query (?...) or fragment (#...)"
        raise InputError(msg)
    if parts.scheme == "http" and host not in LOCAL_HOSTS and not insecure_http:
        msg = (
            f"--server: plain http to {host} would send health data unencrypted; use https, "
            "or --insecure-http on a network you trust"
        )
        raise InputError(msg)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


@dataclasses.dataclass(frozen=True, slots=True)
class Dataset:
    """What the server says of a data set (the fields the uploader uses)."""

    id: str
    state: str
    """``open``, ``closed`` or ``continuous``."""
    timezone: str
    records_received: int
    """Records the server holds for the data set, in the order they were sent (lines 1 to n)."""
    new: int
    """Records stored that were not stored before (counted when the data set is closed)."""
    duplicates: int
    device_latest: dict[str, int]
    """The newest instant (UTC epoch ms) the server holds per record type of the device."""

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Dataset:
        """Read the server's ``DatasetOut``; :class:`InternalError` when the answer is not one."""
        try:
            return cls(
                id=str(body["id"]),
                state=str(body["state"]),
                timezone=str(body["timezone"]),
                records_received=int(body["records_received"]),
                new=int(body["new"]),
                duplicates=int(body["duplicates"]),
                device_latest={
                    str(kind): _epoch_ms(str(when)) for kind, when in dict(body["device_latest"]).items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = (
                f"the server's answer is not a data set ({type(exc).__name__}); is this a Glucoshare server?"
            )
            raise InternalError(msg) from None


@dataclasses.dataclass(frozen=True, slots=True)
class Appended:
    """What the server says of one batch of records."""

    accepted: int
    first_line: int
    repeated: bool


def _epoch_ms(text: str) -> int:
    """UTC epoch milliseconds of an ISO 8601 instant with ``Z`` or an offset."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(text)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def _message(response: httpx.Response) -> str:
    """The server's own message of an error answer (``{"error": {"message"}}``), else a generic one."""
    try:
        body = response.json()
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"the server refused the request (HTTP {response.status_code})"
    return str(message) if isinstance(message, str) and message else f"HTTP {response.status_code}"


def _pause_of(response: httpx.Response | None, attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the server's ``Retry-After``, else a backoff."""
    if response is not None:
        after = str(response.headers.get("retry-after", ""))
        if after.isdigit():
            return min(float(after), MAX_PAUSE_S)
    return min(BACKOFF_S * (1 << min(attempt, 16)), MAX_PAUSE_S)


class UploadClient:
    """The upload API of one server, for one upload token (a context manager; see module notes).

    The environment's proxy and certificate settings (``HTTPS_PROXY``, ``SSL_CERT_FILE``) apply;
    redirects are not followed. ``transport`` replaces the network (tests use
    :class:`httpx.MockTransport`); ``sleep`` the pause between retries.
    """

    def __init__(
        self,
        server: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        retries: int = RETRIES,
        sleep: Callable[[float], None] = time.sleep,
        timeout_s: float = 60.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.retries = retries
        self.sleep = sleep
        self.batches_sent = 0
        """Batches of records the server accepted through this client (for progress and tests)."""
        self._http = httpx.Client(
            base_url=self.server,
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"glucoshare-upload/{__version__}",
            },
            follow_redirects=False,  # a redirect could carry the token elsewhere
        )

    def __repr__(self) -> str:
        return f"UploadClient({self.server!r})"  # never the token

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close_connection()

    def close_connection(self) -> None:
        """Close the connections to the server."""
        self._http.close()

    # -- requests ---------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """One request, retried (module notes); an error of the tree for any refusal."""
        sent_headers = dict(headers or {})
        if body is not None:
            sent_headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(
                    method,
                    path,
                    content=body,
                    headers=sent_headers,
                    timeout=httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s,
                )
            except httpx.TransportError as exc:
                failure = f"cannot reach {self.server} ({type(exc).__name__})"
            else:
                if response.is_redirect:
                    where = response.headers.get("location", "elsewhere")
                    msg = f"--server: {self.server} redirects to {where}; give the address it redirects to"
                    raise InputError(msg)
                if response.status_code < 400:  # noqa: PLR2004
                    return response
                if response.status_code not in _RETRY_STATUSES:
                    raise _refusal(response, path)
                failure = f"{self.server} answered HTTP {response.status_code}"
            if attempt >= self.retries:
                msg = f"{failure} after {attempt + 1} attempts; run the upload again to resume it"
                raise ServerUnavailableError(msg)
            self.sleep(_pause_of(response, attempt))
            attempt += 1

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            msg = f"{self.server} did not answer with JSON; is this the address of a Glucoshare server?"
            raise InternalError(msg)
        return body

    def open_dataset(
        self,
        *,
        name: str,
        device: Mapping[str, str | None],
        source_format: str | None,
        timezone: str | None,
    ) -> Dataset:
        """Open a data set for ``device`` (``POST /v1/datasets``), or find the one opened under ``name``."""
        document: dict[str, Any] = {"device": dict(device), "name": name, "continuous": False}
        if source_format is not None:
            document["source_format"] = source_format
        if timezone is not None:
            document["timezone"] = timezone
        response = self._request("POST", "/v1/datasets", body=json.dumps(document).encode())
        return Dataset.from_json(self._json(response))

    def append_records(
        self, dataset_id: str, records: Sequence[Mapping[str, Any]], *, first_line: int
    ) -> int:
        """Send records to a data set as lines ``first_line``… in batches; how many the server accepted.

        Batches hold at most :data:`MAX_RECORDS` records and :data:`MAX_BODY_BYTES` bytes; one the
        server refuses as too large (``413``) is halved. Each carries the ``Idempotency-Key``
        ``<data set id>:<first line>``, so a retried batch is stored once. :class:`ConflictError`
        when the server places a batch elsewhere than ``first_line`` says (another uploader is
        sending to the same data set).
        """
        accepted = 0
        for batch in _batches(records):
            accepted += self._append(dataset_id, batch, first_line + accepted)
        return accepted

    def _append(self, dataset_id: str, batch: list[bytes], first_line: int) -> int:
        body = b'{"records":[' + b",".join(batch) + b"]}"
        try:
            response = self._request(
                "POST",
                f"/v1/datasets/{dataset_id}/records",
                body=body,
                headers={"Idempotency-Key": f"{dataset_id}:{first_line}"},
            )
        except _TooLargeError:
            if len(batch) == 1:
                msg = "the server refuses even a single record as too large (HTTP 413)"
                raise InputError(msg) from None
            half = len(batch) // 2
            done = self._append(dataset_id, batch[:half], first_line)
            return done + self._append(dataset_id, batch[half:], first_line + done)
        answer = self._json(response)
        try:
            appended = Appended(int(answer["accepted"]), int(answer["first_line"]), bool(answer["repeated"]))
        except (KeyError, TypeError, ValueError):
            msg = "the server's answer to a batch of records is not understood; is this a Glucoshare server?"
            raise InternalError(msg) from None
        if appended.first_line != first_line or appended.accepted != len(batch):
            msg = (
                "the server placed a batch elsewhere than expected: is another upload of the same "
                "file running? Run the upload again once it has finished"
            )
            raise ConflictError(msg)
        self.batches_sent += 1
        return appended.accepted

    def close_dataset(self, dataset_id: str) -> Dataset:
        """Close a data set (its records become visible, all at once); closing again changes nothing."""
        response = self._request("POST", f"/v1/datasets/{dataset_id}/close", timeout_s=_CLOSE_TIMEOUT_S)
        return Dataset.from_json(self._json(response))


class _TooLargeError(InputError):
    """``413``: the batch is larger than the server takes (the client halves it)."""

    code = "too_many_records"
    http_status = 413


def _refusal(
    response: httpx.Response, path: str
) -> InputError | NotFoundError | PermissionDeniedError | UnauthenticatedError:
    """The error of a ``4xx`` answer that retrying cannot change."""
    status, message = response.status_code, _message(response)
    if status == 401:  # noqa: PLR2004
        return UnauthenticatedError(
            f"the server refused the token ({message}); check --token or GLUCOSHARE_UPLOAD_TOKEN"
        )
    if status == 403:  # noqa: PLR2004
        return PermissionDeniedError(f"the server refused the upload ({message})")
    if status == 404:  # noqa: PLR2004
        where = "the token may not upload data sets" if path == "/v1/datasets" else "no such data set"
        return NotFoundError(
            f"{message} ({where}; is the token an upload token, and the address a Glucoshare server?)"
        )
    if status == 413:  # noqa: PLR2004
        return _TooLargeError(message)
    if status == 409:  # noqa: PLR2004
        return ConflictError(message)
    return InputError(message)


def _batches(records: Sequence[Mapping[str, Any]]) -> list[list[bytes]]:
    """Records as compact JSON, cut into batches within :data:`MAX_RECORDS` and :data:`MAX_BODY_BYTES`."""
    out: list[list[bytes]] = []
    batch: list[bytes] = []
    size = 0
    for record in records:
        encoded = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        if batch and (len(batch) >= MAX_RECORDS or size + len(encoded) + 1 > MAX_BODY_BYTES):
            out.append(batch)
            batch, size = [], 0
        batch.append(encoded)
        size += len(encoded) + 1
    if batch:
        out.append(batch)
    return out
