"""The encrypted members of a backup: each holds the STREAM ciphertext of its zlib-compressed payload.

Every member except the marker and the header (both in clear) is written through
:meth:`MemberCipher.create` and read through :meth:`MemberCipher.open`, whatever it holds (a table's
rows, a data file, the manifest)::

    payload  ->  zlib (level 1)  ->  STREAM, AES-256-GCM (glucoshare.backup.stream)  ->  zip member (stored)

Compression comes first, since ciphertext does not compress; the zip archive stores the
ciphertext as it is. Both directions stream: at most a chunk of each layer is held in memory.
The member's name is the stream's name, so it is bound to every chunk's associated data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from glucoshare.backup.errors import BackupDamagedError
from glucoshare.backup.stream import StreamReader, StreamWriter

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

COMPRESS_LEVEL = 1
"""zlib level of every member: the fastest (a third of level 6's time for a fifth more bytes),
since the database's snapshot stays open while the tables are written."""
READ_BYTES = 1 << 20
"""Ciphertext read, and plaintext buffered, at a time."""
ZIP_FAULTS: dict[type[Exception], str] = {
    # A stored member's CRC is checked as its last byte is read: a change in the last chunk shows
    # there, before the chunk is whole and can fail its authentication.
    zipfile.BadZipFile: "fails the zip's checksum",
    EOFError: "is cut short",
    OSError: "cannot be read",
}
"""What reading a stored member of a damaged zip archive may raise, and what it means."""
_OPEN_FAULTS: tuple[type[Exception], ...] = (*ZIP_FAULTS, ValueError, NotImplementedError)
"""What opening a member of a damaged zip archive may raise (a broken local header)."""


class MemberWriter:
    """Compresses what is written to it and hands it to the member's encrypting stream."""

    def __init__(self, sealed: StreamWriter) -> None:
        self._sealed = sealed
        self._zlib = zlib.compressobj(COMPRESS_LEVEL)

    def write(self, data: bytes) -> None:
        """Add ``data`` to the member's payload."""
        if packed := self._zlib.compress(data):
            self._sealed.write(packed)

    def finish(self) -> None:
        """End the compressed stream and write the member's last chunk."""
        self._sealed.write(self._zlib.flush())
        self._sealed.close()


class _Inflating(io.RawIOBase):
    """The decompressed payload of a decrypted member; its end only after the member's last chunk."""

    def __init__(self, source: StreamReader, describe: str) -> None:
        super().__init__()
        self._source = source
        self._describe = describe
        self._zlib = zlib.decompressobj()

    def readable(self) -> bool:
        """A reader reads."""
        return True

    def _damaged(self, reason: str) -> BackupDamagedError:
        return BackupDamagedError(f"the backup is damaged or was altered: member {self._describe} {reason}")

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` with payload bytes (at most its size); 0 only at the authenticated end."""
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        while True:
            if self._zlib.eof:
                if self._zlib.unused_data or self._source.read(1):
                    raise self._damaged("holds bytes after its end")
                return 0
            data = self._zlib.unconsumed_tail or self._source.read(READ_BYTES)
            if not data:
                raise self._damaged("ends inside its compressed data")
            try:
                out = self._zlib.decompress(data, len(view))
            except zlib.error as exc:
                raise self._damaged("does not decompress") from exc
            if out:
                view[: len(out)] = out
                return len(out)


@dataclasses.dataclass(frozen=True, slots=True)
class MemberCipher:
    """How the members of one backup are encrypted: its backup key and its chunk size."""

    key: bytes = dataclasses.field(repr=False)
    chunk_bytes: int

    @contextlib.contextmanager
    def create(self, archive: zipfile.ZipFile, name: str) -> Iterator[MemberWriter]:
        """A new member ``name`` of ``archive`` (opened for writing, stored); complete when the block ends.

        A block that raises leaves the member without its last chunk: it would never open.
        """
        with archive.open(name, "w", force_zip64=True) as raw:
            writer = MemberWriter(StreamWriter(raw, self.key, name, chunk_bytes=self.chunk_bytes))
            yield writer
            writer.finish()

    @contextlib.contextmanager
    def open(self, archive: zipfile.ZipFile, name: str, *, what: str | None = None) -> Iterator[IO[bytes]]:
        """The payload of member ``name``, decrypted and decompressed as it is read.

        ``what`` says in messages what the member holds (``table records``). A member that is
        missing, damaged, altered or cut short raises
        :class:`~glucoshare.backup.errors.BackupDamagedError` (for a chunk:
        :class:`~glucoshare.backup.errors.StreamDamagedError`, naming the member and the chunk).
        """
        describe = f"{name} ({what})" if what else name
        try:
            raw = archive.open(name)
        except KeyError as exc:
            msg = f"the backup has no member {describe} (truncated or damaged)"
            raise BackupDamagedError(msg) from exc
        except _OPEN_FAULTS as exc:
            msg = f"the backup is damaged: member {describe} cannot be opened ({type(exc).__name__})"
            raise BackupDamagedError(msg) from exc
        with raw:
            stream = StreamReader(
                raw, self.key, name, chunk_bytes=self.chunk_bytes, what=what, faults=ZIP_FAULTS
            )
            yield io.BufferedReader(_Inflating(stream, describe), READ_BYTES)
