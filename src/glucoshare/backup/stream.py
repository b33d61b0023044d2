"""Authenticated encryption of one stream of bytes, a chunk at a time: STREAM over AES-256-GCM.

The construction is STREAM (Hoang, Reyhanitabar, Rogaway and Vizár, "Online
Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015): the plaintext is cut
into chunks of a fixed size, each sealed with one AEAD under one key, with a nonce made of a
per-stream prefix and the chunk's index, and the last chunk marked as the last. Here the AEAD is
AES-256-GCM (NIST SP 800-38D) and a stream is laid out as::

    prefix (8 random bytes) || chunk 0 || chunk 1 || ... || chunk n

* chunk ``i`` is the GCM ciphertext and 16-byte tag of ``chunk_bytes`` plaintext bytes, except the
  last, which always holds fewer (possibly none): a full-size chunk is never the last one, so a
  stream cut at a chunk boundary lacks its last chunk and is refused;
* nonce of chunk ``i`` = ``prefix || i`` (4 bytes, big-endian): no two chunks of a stream share a
  nonce, and two streams under one key share a prefix with a chance of 2^-64;
* associated data of chunk ``i`` = the stream's name, ``i`` and whether it is the last chunk
  (``len(name) || name || i || final``): a chunk moved within its stream or into another stream,
  or a last chunk passed off as an inner one (or the reverse), fails authentication. (The paper
  puts the last-chunk flag in the nonce; GCM authenticates it as well in the associated data.)

So a changed byte, a removed, repeated or reordered chunk, a cut-off stream, a stream renamed or
swapped with another, and a stream under another key (another backup's) are all refused, naming
the stream and the chunk. Plaintext is never released before its chunk is authenticated. What is
not hidden: each stream's length, to within one chunk's tag.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from glucoshare.backup.errors import StreamDamagedError
from glucoshare.errors import InternalError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

KEY_BYTES = 32
"""AES-256."""
PREFIX_BYTES = 8
"""The random part of every nonce of a stream, written before its first chunk."""
TAG_BYTES = 16
"""GCM's authentication tag, after each chunk's ciphertext."""
CUT_SHORT = "is missing (the member is cut short)"
MAX_CHUNKS = 1 << 32
"""Chunks per stream: the nonce's counter has 4 bytes (4 PiB per stream at 1 MiB chunks)."""


def associated_data(name: str, index: int, *, final: bool) -> bytes:
    """The associated data of chunk ``index`` of stream ``name``: ``len(name) || name || index || final``."""
    encoded = name.encode("utf-8")
    flag = b"\x01" if final else b"\x00"
    return len(encoded).to_bytes(2, "big") + encoded + index.to_bytes(4, "big") + flag


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def _check(key: bytes, chunk_bytes: int) -> None:
    if len(key) != KEY_BYTES:
        msg = f"a stream key must have {KEY_BYTES} bytes"
        raise InternalError(msg)
    if chunk_bytes < 1:
        msg = "a stream's chunks must hold at least one byte"
        raise InternalError(msg)


class StreamWriter:
    """Encrypts what is written to it into ``sink``: whole chunks as they fill, the last on :meth:`close`.

    Holds at most one chunk of plaintext. Without :meth:`close` the stream has no last chunk and
    never opens: a writer interrupted by an error leaves nothing readable.
    """

    def __init__(self, sink: IO[bytes], key: bytes, name: str, *, chunk_bytes: int) -> None:
        _check(key, chunk_bytes)
        self._sink = sink
        self._aead = AESGCM(key)
        self._name = name
        self._chunk_bytes = chunk_bytes
        self._prefix = os.urandom(PREFIX_BYTES)
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        sink.write(self._prefix)

    def write(self, data: bytes) -> int:
        """Encrypt ``data`` (after what came before); returns its length."""
        if self._closed:
            msg = f"stream {self._name} is already closed"
            raise InternalError(msg)
        view = memoryview(data)
        while view:
            room = self._chunk_bytes - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == self._chunk_bytes:  # a full chunk is never the last one
                self._seal(final=False)
        return len(data)

    def close(self) -> None:
        """Write the last chunk (the plaintext left over, fewer than ``chunk_bytes`` bytes, maybe none)."""
        if not self._closed:
            self._seal(final=True)
            self._closed = True

    def _seal(self, *, final: bool) -> None:
        if self._index >= MAX_CHUNKS:
            msg = f"stream {self._name} is longer than {MAX_CHUNKS} chunks"
            raise InternalError(msg)
        aad = associated_data(self._name, self._index, final=final)
        self._sink.write(self._aead.encrypt(_nonce(self._prefix, self._index), bytes(self._buffer), aad))
        self._buffer.clear()
        self._index += 1


def _read_exact(source: IO[bytes], size: int) -> bytes:
    """``size`` bytes of ``source``, or fewer only at its end."""
    parts = []
    wanted = size
    while wanted:
        part = source.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


class StreamReader(io.RawIOBase):
    """Decrypts a stream that :class:`StreamWriter` wrote, a chunk at a time, as it is read.

    Each chunk is authenticated before any of its bytes is returned; the end of the stream is
    reported only after its last chunk was authenticated. Any failure raises
    :class:`~glucoshare.backup.errors.StreamDamagedError` naming the stream (and ``what`` it holds,
    when given) and the chunk. ``faults``: exceptions of ``source`` that mean it
    is damaged (e.g. a zip member's bad CRC), each with the reason to give, reported likewise.
    """

    def __init__(
        self,
        source: IO[bytes],
        key: bytes,
        name: str,
        *,
        chunk_bytes: int,
        what: str | None = None,
        faults: Mapping[type[Exception], str] | None = None,
    ) -> None:
        super().__init__()
        _check(key, chunk_bytes)
        self._source = source
        self._aead = AESGCM(key)
        self._name = name
        self._what = what
        self._chunk_bytes = chunk_bytes
        self._faults = dict(faults or {})
        self._prefix: bytes | None = None
        self._index = 0
        self._plain = b""
        self._offset = 0
        self._done = False

    def readable(self) -> bool:
        """A reader reads."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` with decrypted bytes; 0 only at the authenticated end of the stream."""
        view = memoryview(buffer).cast("B")
        while self._offset == len(self._plain):
            if self._done:
                return 0
            self._next_chunk()
        size = min(len(view), len(self._plain) - self._offset)
        view[:size] = memoryview(self._plain)[self._offset : self._offset + size]
        self._offset += size
        return size

    def _damaged(self, reason: str) -> StreamDamagedError:
        return StreamDamagedError(self._name, self._index, reason, what=self._what)

    def _read(self, size: int) -> bytes:
        try:
            return _read_exact(self._source, size)
        except tuple(self._faults) as exc:
            reason = next(text for kind, text in self._faults.items() if isinstance(exc, kind))
            raise self._damaged(reason) from exc

    def _next_chunk(self) -> None:
        if self._prefix is None:
            self._prefix = self._read(PREFIX_BYTES)
            if len(self._prefix) < PREFIX_BYTES:
                raise self._damaged(CUT_SHORT)
        if self._index >= MAX_CHUNKS:
            raise self._damaged("is beyond the last possible chunk")
        sealed = self._read(self._chunk_bytes + TAG_BYTES)
        if not sealed:
            raise self._damaged(CUT_SHORT)
        final = len(sealed) < self._chunk_bytes + TAG_BYTES
        aad = associated_data(self._name, self._index, final=final)
        try:
            self._plain = self._aead.decrypt(_nonce(self._prefix, self._index), sealed, aad)
        except InvalidTag as exc:
            raise self._damaged("fails authentication") from exc
        self._offset = 0
        self._index += 1
        self._done = final
