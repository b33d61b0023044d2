"""Open the zip archives vendors export (Glooko, Tandem Source, xDrip+) without trusting them.

An archive is only a container: its member files are imported one by one, each recognised from its
own content. Opening one is where a hostile upload would strike, so every member is checked before
a byte of it is used, and its bytes are counted as they are inflated rather than taken from the
archive's own (forgeable) size fields:

* at most :attr:`ArchiveLimits.max_members` files, each at most :attr:`ArchiveLimits.max_member_bytes`
  inflated and all together at most :attr:`ArchiveLimits.max_total_bytes`;
* no member inflating to more than :data:`MAX_RATIO` times its compressed size (a zip bomb; real
  exports compress about 10:1);
* no absolute path, drive letter, ``..`` step or backslash (path traversal), no symbolic link, no
  device or other special file, no encrypted member, no archive inside the archive, no two members
  with the same name;
* a corrupt member (CRC mismatch, truncated stream) refuses the whole archive.

Nothing is ever extracted to disk: members are read into memory (within the limits above) and handed
to the importers. The operating system's own files (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``) are
left out silently.
"""

from __future__ import annotations

import dataclasses
import lzma
import stat
import struct
import zipfile
import zlib
from io import BytesIO
from pathlib import PurePosixPath

from glucoshare.ingest.errors import ArchiveRefusedError, FileTooLargeError
from glucoshare.ingest.schemas import IncomingFile

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
"""The first bytes of a zip archive (a local file header, or the end record of an empty archive)."""

MAX_RATIO = 200
"""The most a member may inflate, as a multiple of its compressed size."""

_READ_CHUNK = 1 << 20
_SYSTEM_JUNK = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_SYSTEM_FOLDERS = frozenset({"__macosx"})
_ENCRYPTED_FLAG = 0x1
_RATIO_GRACE_BYTES = 1 << 16
"""Members smaller than this are never refused for their ratio (tiny files compress oddly)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """How much one archive (or folder) may hold."""

    max_members: int
    max_member_bytes: int
    max_total_bytes: int


def is_archive(data: bytes) -> bool:
    """True when ``data`` is a zip archive (by its first bytes, never its name)."""
    return data.startswith(ZIP_MAGIC)


def _is_system_junk(path: PurePosixPath) -> bool:
    return path.name.lower() in _SYSTEM_JUNK or any(p.lower() in _SYSTEM_FOLDERS for p in path.parts)


def _checked_path(archive: str, info: zipfile.ZipInfo) -> PurePosixPath:
    """The member's relative path, or :class:`ArchiveRefusedError` when it could escape or mislead."""
    name = info.filename
    problem = None
    if "\\" in name:
        problem = "has a backslash in its path"
    elif name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        problem = "has an absolute path"
    elif any(part == ".." for part in name.split("/")):
        problem = "climbs out of the archive (..)"
    elif any(ord(c) < 0x20 or c == "\x7f" for c in name):  # noqa: PLR2004 - C0 control characters
        problem = "has a control character in its name"
    if problem is not None:
        msg = f"{archive}: a file in the archive {problem}; the archive is refused"
        raise ArchiveRefusedError(msg)
    return PurePosixPath(name)


def _check_kind(archive: str, info: zipfile.ZipInfo, path: PurePosixPath) -> None:
    mode = info.external_attr >> 16
    if info.flag_bits & _ENCRYPTED_FLAG:
        msg = f"{archive}: {path} is encrypted (password protected); export the data again without a password"
        raise ArchiveRefusedError(msg)
    if mode and stat.S_ISLNK(mode):
        msg = f"{archive}: {path} is a symbolic link; links are refused"
        raise ArchiveRefusedError(msg)
    if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        msg = f"{archive}: {path} is not a regular file; the archive is refused"
        raise ArchiveRefusedError(msg)


def _inflate(
    archive: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits, *, left: int
) -> bytes:
    """Read one member, counting its bytes as they come; ``left`` is what the archive may still hold."""
    path = info.filename
    bomb_limit = MAX_RATIO * max(info.compress_size, 1) + _RATIO_GRACE_BYTES
    limit = min(left, limits.max_member_bytes, bomb_limit)
    chunks: list[bytes] = []
    size = 0
    try:
        with zf.open(info) as stream:
            while chunk := stream.read(_READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    break
                chunks.append(chunk)
    except (
        zipfile.BadZipFile,
        zlib.error,
        lzma.LZMAError,
        EOFError,
        ValueError,
        NotImplementedError,
        RuntimeError,
        OSError,
        struct.error,
    ) as exc:
        msg = f"{archive}: {path} cannot be read ({exc}); the archive is damaged"
        raise ArchiveRefusedError(msg) from exc
    if size <= limit:
        return b"".join(chunks)
    if limit == bomb_limit:
        msg = (
            f"{archive}: {path} inflates to more than {MAX_RATIO} times its packed size; "
            "this is not an export (a zip bomb?), so the archive is refused"
        )
        raise ArchiveRefusedError(msg)
    if limit == limits.max_member_bytes:
        msg = (
            f"{archive}: {path} is more than the limit of {limits.max_member_bytes / 1e6:.0f} MB "
            "(GLUCOSHARE_MAX_UPLOAD_BYTES)"
        )
        raise FileTooLargeError(msg)
    msg = (
        f"{archive}: the files inside add up to more than the limit of "
        f"{limits.max_total_bytes / 1e6:.0f} MB (GLUCOSHARE_MAX_UNPACKED_BYTES)"
    )
    raise FileTooLargeError(msg)


def expand_archive(name: str, data: bytes, limits: ArchiveLimits) -> list[IncomingFile]:
    """The member files of a zip archive, named ``<archive name>/<path inside>``, in archive order.

    Raises :class:`ArchiveRefusedError` (or :class:`FileTooLargeError` for size limits) naming the
    archive and the member, when the archive breaks any rule of this module; nothing is returned
    then, so one bad member refuses the whole archive.
    """
    try:
        zf = zipfile.ZipFile(BytesIO(data))
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        ValueError,
        NotImplementedError,
        OSError,
        struct.error,
    ) as exc:
        msg = f"{name}: the zip archive is damaged or truncated ({exc})"
        raise ArchiveRefusedError(msg) from exc
    with zf:
        entries = zf.infolist()
        if len(entries) > limits.max_members:
            msg = (
                f"{name}: the archive holds {len(entries)} entries, more than the limit of "
                f"{limits.max_members} (GLUCOSHARE_MAX_ARCHIVE_MEMBERS)"
            )
            raise ArchiveRefusedError(msg)
        seen: set[str] = set()
        members: list[IncomingFile] = []
        left = limits.max_total_bytes
        for info in entries:
            path = _checked_path(name, info)
            _check_kind(name, info, path)
            if info.is_dir() or _is_system_junk(path):
                continue
            key = str(path).casefold()
            if key in seen:
                msg = f"{name}: {path} appears twice in the archive; the archive is refused"
                raise ArchiveRefusedError(msg)
            seen.add(key)
            if info.file_size > limits.max_member_bytes:
                msg = (
                    f"{name}: {path} is {info.file_size / 1e6:.1f} MB, more than the limit of "
                    f"{limits.max_member_bytes / 1e6:.0f} MB (GLUCOSHARE_MAX_UPLOAD_BYTES)"
                )
                raise FileTooLargeError(msg)
            content = _inflate(name, zf, info, limits, left=left)
            if is_archive(content):
                msg = f"{name}: {path} is an archive inside the archive; unpack it and upload its files"
                raise ArchiveRefusedError(msg)
            left -= len(content)
            members.append(IncomingFile(name=f"{name}/{path}", data=content))
    return members
