"""Random tokens that are handed out once and stored only as digests (sessions, e-mailed links)."""

from __future__ import annotations

import hashlib
import secrets

from glucoshare.config import Settings

TOKEN_BYTES = 32
"""256 bits: far beyond guessing (ASVS 5.0 7.2.3 asks for at least 128)."""


def digest(token: str) -> str:
    """The stored form of a token: its SHA-256 in hex (tokens are random, so a fast hash suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh URL-safe token and its digest."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, digest(token)


def public_url(settings: Settings, path: str) -> str:
    """An absolute link into the web app (``GLUCOSHARE_BASE_URL``), for e-mails."""
    return f"{settings.base_url.rstrip('/')}/{path.lstrip('/')}"
