"""Request bodies as Nightscout clients send them: JSON (an object or an array), forms, gzip."""

from __future__ import annotations

import json
import zlib
from typing import Any, Final

from glucoshare.nightscout.errors import BodyUnreadableError
from glucoshare.nightscout.query import parse_query_string

MAX_INFLATED: Final = 16 * 1024 * 1024
"""Largest body after gzip is undone (a small compressed body must not inflate without bound)."""


def inflate(data: bytes, encoding: str | None) -> bytes:
    """The body without its ``Content-Encoding`` (``gzip``, ``deflate``), at most :data:`MAX_INFLATED`."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return data
    if name not in ("gzip", "x-gzip", "deflate"):
        msg = f"Content-Encoding {name!r} is not supported (gzip and deflate are)"
        raise BodyUnreadableError(msg)
    wbits = 16 + zlib.MAX_WBITS if name != "deflate" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, MAX_INFLATED + 1)
    except zlib.error:
        msg = "the compressed body is broken"
        raise BodyUnreadableError(msg) from None
    if len(out) > MAX_INFLATED or inflater.unconsumed_tail:
        msg = f"the body is larger than {MAX_INFLATED:,} bytes once uncompressed"
        raise BodyUnreadableError(msg)
    return out


def documents(data: bytes, content_type: str | None) -> list[Any]:
    """The documents of a body: a JSON array, one JSON object, or one form-encoded document."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if not data.strip():
        return []
    if kind == "application/x-www-form-urlencoded":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            msg = "the form body is not UTF-8"
            raise BodyUnreadableError(msg) from None
        return [parse_query_string(text)]
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        msg = "the body is not JSON (a document or an array of documents)"
        raise BodyUnreadableError(msg) from None
    if isinstance(parsed, list):
        return parsed
    if isinstance(parsed, dict):
        return [parsed]
    msg = "the body is neither a JSON object nor an array of objects"
    raise BodyUnreadableError(msg)


def credentials_of(docs: list[Any]) -> tuple[str | None, str | None]:
    """``(secret, token)`` fields of the first document, where some clients put their credential."""
    if docs and isinstance(docs[0], dict):
        secret, token = docs[0].get("secret"), docs[0].get("token")
        return (secret if isinstance(secret, str) else None, token if isinstance(token, str) else None)
    return None, None
