"""STREAM over AES-256-GCM: what goes in comes out, and any change of the ciphertext is refused."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.backup.errors import StreamDamagedError
from glucoshare.backup.stream import PREFIX_BYTES, TAG_BYTES, StreamReader, StreamWriter

KEY = bytes(range(32))
CHUNK = 16
NAME = "parts/000001"


def seal(payload: bytes, *, key: bytes = KEY, name: str = NAME, pieces: int = 1) -> bytes:
    """``payload`` encrypted as one stream, written in ``pieces`` calls."""
    sink = io.BytesIO()
    writer = StreamWriter(sink, key, name, chunk_bytes=CHUNK)
    step = max(1, -(-len(payload) // pieces))
    for start in range(0, len(payload), step):
        writer.write(payload[start : start + step])
    writer.close()
    return sink.getvalue()


def open_all(sealed: bytes, *, key: bytes = KEY, name: str = NAME, read: int = 7) -> bytes:
    """Everything a reader gives of ``sealed``, ``read`` bytes at a time."""
    reader = StreamReader(io.BytesIO(sealed), key, name, chunk_bytes=CHUNK)
    parts = []
    while part := reader.read(read):
        parts.append(part)
    return b"".join(parts)


def chunks(sealed: bytes) -> list[bytes]:
    """The sealed chunks of a stream, after its prefix."""
    body = sealed[PREFIX_BYTES:]
    size = CHUNK + TAG_BYTES
    return [body[start : start + size] for start in range(0, len(body), size)]


around_boundaries = st.one_of(
    st.integers(min_value=0, max_value=5 * CHUNK + 1),
    st.sampled_from([CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1]),
)


@given(size=around_boundaries, pieces=st.integers(min_value=1, max_value=9), read=st.integers(1, 3 * CHUNK))
def test_any_payload_comes_back_as_it_went_in(size: int, pieces: int, read: int) -> None:
    payload = os.urandom(size)
    sealed = seal(payload, pieces=pieces)
    # A full chunk is never the last: the stream always ends with a chunk of fewer than CHUNK bytes.
    assert len(sealed) == PREFIX_BYTES + (size // CHUNK + 1) * TAG_BYTES + size
    assert open_all(sealed, read=read) == payload


@given(
    size=around_boundaries,
    position=st.integers(min_value=0),
    delta=st.integers(min_value=1, max_value=255),
)
def test_any_changed_byte_is_refused(size: int, position: int, delta: int) -> None:
    sealed = bytearray(seal(os.urandom(size)))
    sealed[position % len(sealed)] ^= delta
    with pytest.raises(StreamDamagedError, match="fails authentication"):
        open_all(bytes(sealed))


@given(size=around_boundaries, keep=st.integers(min_value=0))
def test_a_cut_off_stream_is_refused(size: int, keep: int) -> None:
    sealed = seal(os.urandom(size))
    with pytest.raises(StreamDamagedError):
        open_all(sealed[: keep % len(sealed)])


@given(size=around_boundaries, extra=st.binary(min_size=1, max_size=2 * CHUNK))
def test_bytes_after_the_end_are_refused(size: int, extra: bytes) -> None:
    with pytest.raises(StreamDamagedError):
        open_all(seal(os.urandom(size)) + extra)


def test_a_stream_cut_at_a_chunk_boundary_lacks_its_last_chunk() -> None:
    sealed = seal(os.urandom(3 * CHUNK + 5))
    without_last = sealed[: PREFIX_BYTES + 3 * (CHUNK + TAG_BYTES)]
    with pytest.raises(StreamDamagedError, match="chunk 3 is missing") as caught:
        open_all(without_last)
    assert (caught.value.member, caught.value.chunk) == (NAME, 3)


def test_reordered_repeated_or_removed_chunks_are_refused() -> None:
    sealed = seal(os.urandom(4 * CHUNK + 3))
    prefix, parts = sealed[:PREFIX_BYTES], chunks(sealed)
    swapped = [parts[0], parts[2], parts[1], *parts[3:]]
    repeated = [parts[0], parts[0], *parts[1:]]
    removed = [parts[0], *parts[2:]]
    for order, chunk in ((swapped, 1), (repeated, 1), (removed, 1)):
        with pytest.raises(StreamDamagedError, match="fails authentication") as caught:
            open_all(prefix + b"".join(order))
        assert caught.value.chunk == chunk


def test_another_key_another_name_or_another_prefix_is_refused() -> None:
    sealed = seal(b"glucose 120 mg/dL")
    with pytest.raises(StreamDamagedError, match="chunk 0 fails authentication"):
        open_all(sealed, key=bytes(32))
    with pytest.raises(StreamDamagedError, match="chunk 0 fails authentication"):
        open_all(sealed, name="parts/000002")
    with pytest.raises(StreamDamagedError, match="chunk 0 fails authentication"):
        open_all(os.urandom(PREFIX_BYTES) + sealed[PREFIX_BYTES:])


def test_two_streams_of_one_payload_differ() -> None:
    """A fresh nonce prefix per stream: the same payload under the same key and name never repeats."""
    payload = b"A" * (3 * CHUNK)
    first, second = seal(payload), seal(payload)
    assert first != second
    assert payload[:CHUNK] not in first


def test_an_unclosed_writer_leaves_nothing_that_opens() -> None:
    sink = io.BytesIO()
    writer = StreamWriter(sink, KEY, NAME, chunk_bytes=CHUNK)
    writer.write(os.urandom(3 * CHUNK))
    with pytest.raises(StreamDamagedError, match="is missing"):
        open_all(sink.getvalue())
