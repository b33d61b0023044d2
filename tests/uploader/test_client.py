"""The upload API client: retries, halving on 413, idempotency keys, errors, the server address."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.errors import (
    ConflictError,
    GlucoshareError,
    InputError,
    InternalError,
    NotFoundError,
    UnauthenticatedError,
)
from glucoshare.uploader.client import (
    BACKOFF_S,
    MAX_BODY_BYTES,
    MAX_PAUSE_S,
    ServerUnavailableError,
    UploadClient,
    _batches,
    check_server,
)

TOKEN = "gs_secret-token-value"  # noqa: S105 - a test token
DATASET = {
    "id": "ds1",
    "patient_id": "p1",
    "state": "open",
    "name": "upload:x",
    "format": "dexcom_clarity",
    "timezone": "Europe/Berlin",
    "device": None,
    "records_received": 0,
    "counts": {},
    "new": 0,
    "duplicates": 0,
    "first": None,
    "last": None,
    "created_at": "2026-01-01T00:00:00Z",
    "device_latest": {"cbg": "2025-03-01T10:00:00Z", "smbg": "2025-03-01T10:00:00.250+01:00"},
}
Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, pauses: list[float] | None = None, retries: int = 5) -> UploadClient:
    record = pauses.append if pauses is not None else (lambda _s: None)
    return UploadClient(
        "https://gs.example.org/base/",
        TOKEN,
        transport=httpx.MockTransport(handler),
        retries=retries,
        sleep=record,
    )


def records(count: int) -> list[dict[str, Any]]:
    return [{"type": "cbg", "time": f"2025-03-01T00:{i % 60:02d}:00Z", "value": 100} for i in range(count)]


def accepting(limit: int, log: list[tuple[str, int, str]]) -> Handler:
    """A server that takes at most ``limit`` records per request and logs (key, count, path)."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        body = json.loads(request.content)
        sent = body["records"]
        if len(sent) > limit:
            return httpx.Response(413, json={"error": {"code": "too_many_records", "message": "too many"}})
        key = request.headers["Idempotency-Key"]
        log.append((key, len(sent), request.url.path))
        first = int(key.split(":")[1])
        return httpx.Response(
            200, json={"accepted": len(sent), "new": None, "first_line": first, "repeated": False}
        )

    return handler


def test_open_reads_the_answer_and_the_newest_instants() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/base/v1/datasets"
        seen.append(json.loads(request.content))
        return httpx.Response(201, json=DATASET)

    with make_client(handler) as client:
        dataset = client.open_dataset(
            name="upload:x",
            device={"manufacturer": "Dexcom", "model": "G6", "serial": None},
            source_format="dexcom_clarity",
            timezone=None,
        )
    assert seen == [
        {
            "device": {"manufacturer": "Dexcom", "model": "G6", "serial": None},
            "name": "upload:x",
            "continuous": False,
            "source_format": "dexcom_clarity",
        }
    ]
    assert dataset.id == "ds1"
    assert dataset.device_latest == {"cbg": 1_740_823_200_000, "smbg": 1_740_819_600_250}


def test_batches_halve_on_413_and_carry_the_key_of_their_first_line() -> None:
    log: list[tuple[str, int, str]] = []
    with make_client(accepting(300, log)) as client:
        accepted = client.append_records("ds1", records(2100), first_line=11)
    assert accepted == 2100
    assert [count for _key, count, _path in log] == [250, 250, 250, 250, 250, 250, 250, 250, 100]
    assert [key for key, _count, _path in log][:3] == ["ds1:11", "ds1:261", "ds1:511"]
    assert {path for _key, _count, path in log} == {"/base/v1/datasets/ds1/records"}
    assert client.batches_sent == 9


def test_a_single_record_too_large_is_refused() -> None:
    with make_client(accepting(0, [])) as client, pytest.raises(InputError, match="single record"):
        client.append_records("ds1", records(3), first_line=1)


@pytest.mark.parametrize("failure", ["503", "connect", "429"])
def test_failures_are_retried_with_a_growing_pause(failure: str) -> None:
    pauses: list[float] = []
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= 3:
            if failure == "connect":
                raise httpx.ConnectError("refused", request=request)
            if failure == "429":
                return httpx.Response(429, headers={"Retry-After": "7"})
            return httpx.Response(503)
        return httpx.Response(200, json=DATASET)

    with make_client(handler, pauses) as client:
        assert client.close_dataset("ds1").id == "ds1"
    expected = [7.0] * 3 if failure == "429" else [BACKOFF_S, 2 * BACKOFF_S, 4 * BACKOFF_S]
    assert pauses == expected


def test_a_server_that_keeps_failing_is_an_environment_fault() -> None:
    pauses: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with make_client(handler, pauses, retries=3) as client, pytest.raises(ServerUnavailableError) as caught:
        client.close_dataset("ds1")
    assert caught.value.exit_code == 1
    assert "after 4 attempts" in caught.value.message
    assert "ReadTimeout" in caught.value.message
    assert len(pauses) == 3
    assert all(p <= MAX_PAUSE_S for p in pauses)


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, UnauthenticatedError, "refused the token"),
        (403, GlucoshareError, "refused the upload"),
        (404, NotFoundError, "upload token"),
        (409, ConflictError, "closed"),
        (422, InputError, "closed"),
    ],
)
def test_refusals_map_to_the_error_tree_without_the_token(
    status: int, error: type[GlucoshareError], words: str
) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": "x", "message": "the data set is closed"}})

    with make_client(handler) as client, pytest.raises(error) as caught:
        client.open_dataset(
            name="n", device={"manufacturer": "a", "model": "b"}, source_format=None, timezone=None
        )
    assert caught.value.exit_code == 2
    assert words in caught.value.message
    assert TOKEN not in caught.value.message
    assert TOKEN not in repr(client)


def test_an_answer_that_is_not_the_api_is_an_internal_error() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>a login page</html>")

    with make_client(handler) as client, pytest.raises(InternalError, match="Glucoshare server"):
        client.close_dataset("ds1")


def test_a_batch_placed_elsewhere_is_a_conflict() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"accepted": 2, "new": None, "first_line": 99, "repeated": False})

    with make_client(handler) as client, pytest.raises(ConflictError, match="another upload"):
        client.append_records("ds1", records(2), first_line=1)


@given(st.lists(st.integers(min_value=0, max_value=MAX_BODY_BYTES // 100), max_size=60))
def test_batches_keep_order_and_stay_within_both_limits(sizes: list[int]) -> None:
    sent = [{"text": "x" * (size * 100)} for size in sizes]
    batches = _batches(sent)
    assert [json.loads(item) for batch in batches for item in batch] == sent
    for batch in batches:
        assert len(batch) <= 1000
        assert len(batch) == 1 or sum(len(item) + 1 for item in batch) <= MAX_BODY_BYTES


def test_batches_hold_at_most_a_thousand_records() -> None:
    assert [len(b) for b in _batches(records(2500))] == [1000, 1000, 500]


@pytest.mark.parametrize(
    ("url", "insecure", "expected"),
    [
        ("https://gs.example.org/", False, "https://gs.example.org"),
        ("https://gs.example.org:8443/glucoshare/", False, "https://gs.example.org:8443/glucoshare"),
        ("http://127.0.0.1:8000", False, "http://127.0.0.1:8000"),
        ("http://localhost:8000/", False, "http://localhost:8000"),
        ("http://[::1]:8000", False, "http://[::1]:8000"),
        ("http://gs.lan:8000", True, "http://gs.lan:8000"),
    ],
)
def test_usable_server_addresses(url: str, insecure: bool, expected: str) -> None:
    assert check_server(url, insecure_http=insecure) == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://gs.example.org", "plain http"),
        ("ftp://gs.example.org", "https://host"),
        ("gs.example.org", "https://host"),
        ("https://", "https://host"),
        ("https://user:pw@gs.example.org", "user name or password"),
        ("https://gs.example.org/?token=abc", "query"),
    ],
)
def test_unusable_server_addresses(url: str, words: str) -> None:
    with pytest.raises(InputError, match=words):
        check_server(url)


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}\.(org|net|lan)", fullmatch=True))
def test_plain_http_leaves_this_machine_only_when_allowed(host: str) -> None:
    with pytest.raises(InputError):
        check_server(f"http://{host}/")
    assert check_server(f"http://{host}/", insecure_http=True) == f"http://{host}"
    assert check_server(f"https://{host}/") == f"https://{host}"


def test_a_redirect_is_not_followed() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"Location": "https://other.example.org/v1/datasets"})

    with make_client(handler) as client, pytest.raises(InputError, match="redirects to https://other"):
        client.close_dataset("ds1")
