"""Turn uploaded bytes into text, and refuse binary files.

BOM sniffing, UTF-8, UTF-16 (with or without BOM) and the Windows code page Excel writes when it
re-saves a CSV.

Vendor exports are UTF-8 (Dexcom Clarity with a BOM), UTF-16 (older LibreView) or, after Excel
re-saved them on Windows, cp1252 (see research/formats.md §0 rule 6).
"""

from __future__ import annotations

import codecs
import dataclasses
import re

from glucoshare.ingest.errors import BinaryFileError, EmptyFileError, EncodingError

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SNIFF_BYTES = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class DecodedText:
    """Decoded file content and the encoding it was read with."""

    text: str
    encoding: str


def _looks_like_utf16(data: bytes) -> str | None:
    """Guess UTF-16 without a BOM from the NUL bytes that ASCII text leaves in every other byte."""
    sample = data[:_SNIFF_BYTES]
    if len(sample) < 4:  # noqa: PLR2004 - two UTF-16 code units
        return None
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    half = len(sample) / 2
    if odd_nuls > 0.4 * half and even_nuls < 0.05 * half:
        return "utf-16-le"
    if even_nuls > 0.4 * half and odd_nuls < 0.05 * half:
        return "utf-16-be"
    return None


_SCAN_CHUNK = 1 << 20
_CONTROL_BYTES = bytes([*range(0x09), *range(0x0E, 0x20), 0x7F])


def _first_bad_line(text: str, body: bytes, encoding: str) -> tuple[int, str] | None:
    if encoding in ("utf-8", "utf-8-sig", "cp1252") and not any(
        len(piece := body[start : start + _SCAN_CHUNK]) != len(piece.translate(None, _CONTROL_BYTES))
        for start in range(0, len(body), _SCAN_CHUNK)
    ):
        return None  # fast path: in these encodings a control character is a control byte
    match = _CONTROL.search(text)
    if match is None:
        return None
    return text.count("\n", 0, match.start()) + 1, f"control character 0x{ord(match.group()):02X}"


def decode_text(data: bytes, file_name: str) -> DecodedText:
    """Decode ``data`` or raise a specific :class:`~glucoshare.errors.UnreadableFileError`."""
    if not data or data.isspace():
        msg = f"{file_name}: the file is empty"
        raise EmptyFileError(msg)
    encoding: str
    body = data  # never sliced or copied: exports reach hundreds of megabytes
    if data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = _looks_like_utf16(data) or "utf-8"
    if encoding == "utf-8" and b"\x00" in data[:_SNIFF_BYTES]:
        msg = f"{file_name}: this is a binary file, not a text export"
        raise BinaryFileError(msg)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding != "utf-8":
            line = body[: exc.start].count(b"\n" if encoding == "utf-8-sig" else b"\n\x00") + 1
            label = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
            msg = f"{file_name}: line {line}: invalid {label} text; the file is damaged"
            raise EncodingError(msg) from exc
        try:
            text = body.decode("cp1252")
        except UnicodeDecodeError:
            line = body[: exc.start].count(b"\n") + 1
            msg = (
                f"{file_name}: line {line}: the file is neither UTF-8 nor Windows-1252 text "
                f"(byte 0x{body[exc.start]:02X}); export it again or save it as UTF-8"
            )
            raise EncodingError(msg) from exc
        encoding = "cp1252"
    text = text.removeprefix("\ufeff")
    bad = _first_bad_line(text, body, encoding)
    if bad is not None:
        msg = f"{file_name}: line {bad[0]}: {bad[1]}; this is a binary file, not a text export"
        raise BinaryFileError(msg)
    return DecodedText(text=text, encoding=encoding)
