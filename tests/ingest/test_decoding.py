"""Bytes → text: encodings and refusals."""

from __future__ import annotations

import codecs

import pytest

from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import BinaryFileError, EmptyFileError, EncodingError

TEXT = "Gerät,Wert\nLibre,5.5\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode(), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode(), "utf-8-sig"),
        (TEXT.encode("utf-16"), "utf-16"),
        (TEXT.encode("utf-16-le"), "utf-16-le"),
        (TEXT.encode("utf-16-be"), "utf-16-be"),
        (TEXT.encode("cp1252"), "cp1252"),
    ],
)
def test_encodings(data: bytes, encoding: str) -> None:
    decoded = decode_text(data, "f.csv")
    assert decoded.text == TEXT
    assert decoded.encoding == encoding


@pytest.mark.parametrize("data", [b"", b"   \n\r\n"])
def test_empty(data: bytes) -> None:
    with pytest.raises(EmptyFileError, match=r"f\.csv: the file is empty"):
        decode_text(data, "f.csv")


def test_binary() -> None:
    with pytest.raises(BinaryFileError, match="binary file"):
        decode_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "f.csv")


def test_control_characters_name_the_line() -> None:
    with pytest.raises(BinaryFileError, match="line 2: control character 0x01"):
        decode_text(b"a,b\nc\x01,d\n", "f.csv")


def test_undecodable_bytes_name_the_line() -> None:
    with pytest.raises(EncodingError, match=r"line 2: .*neither UTF-8 nor Windows-1252"):
        decode_text(b"a,b\nc\x81\x8d,d\n", "f.csv")


def test_truncated_utf16() -> None:
    data = TEXT.encode("utf-16")[:-1] + b"\xd8"
    with pytest.raises(EncodingError, match="invalid UTF-16"):
        decode_text(data, "f.csv")
