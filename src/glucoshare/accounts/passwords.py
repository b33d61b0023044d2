"""Password rules (NIST SP 800-63B rev 4, OWASP ASVS 5.0 §6.2) and their storage (argon2id).

Rules, and nothing else (no composition rules, no expiry, paste and password managers allowed):

* length in characters (Unicode code points, after NFC normalisation): at least 15 when the
  password is the only factor, at least 8 when the account has a second factor, at most 128;
* not on the blocklist: the 30,000 most common passwords of breach corpora (the frequency list
  shipped with ``zxcvbn``; no network is used), also with the digits and symbols people append
  stripped from either end, compared case-insensitively;
* not a single character or a short pattern repeated, and not an ascending or descending run
  (``aaaaaaaaaaaaaaa``, ``abcabcabcabcabc``, ``123456789012345``);
* not built from context words: the service's name, the parts of the e-mail address and of the
  person's name; what is left after removing them must still be 8 characters long.

Storage: argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile: t=3, m=64 MiB, p=4,
16-byte salt), above ASVS 5.0 Appendix C's floor; a hash made with weaker parameters is replaced
at the next successful login (:func:`verify_password` says so).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH_SINGLE_FACTOR = 15
MIN_LENGTH_WITH_SECOND_FACTOR = 8
MAX_LENGTH = 128
CONTEXT_REMAINDER = 8
SERVICE_WORDS = ("glucoshare", "gluco", "diabetes")

_HASHER = PasswordHasher()
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_WORDS = re.compile(r"[^\W\d_]{3,}")


class PasswordRejectedError(ValueError):
    """A password that breaks a rule; the message names the rule (never the password)."""


@functools.cache
def _blocklist() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]  # noqa: PLC0415

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def normalise(password: str) -> str:
    """The password as it is checked and hashed: Unicode NFC (NIST 800-63B §3.1.1.2)."""
    return unicodedata.normalize("NFC", password)


def _repetitive(text: str) -> bool:
    for size in range(1, 5):
        unit = text[:size]
        if len(text) >= 2 * size and (unit * (len(text) // size + 1))[: len(text)] == text:
            return True
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(text)}
    if text.isdigit():  # 1234567890123…: runs of digits wrap around
        steps = {step % 10 for step in steps}
        return steps in ({1}, {9})
    return steps in ({1}, {-1})


def _context_words(email: str | None, name: str | None) -> list[str]:
    words = list(SERVICE_WORDS)
    for text in (email or "", name or ""):
        words.extend(word.lower() for word in _WORDS.findall(text))
    return sorted(set(words), key=len, reverse=True)


def check_password(
    password: str, *, second_factor: bool, email: str | None = None, name: str | None = None
) -> str:
    """Return the normalised password, or raise :class:`PasswordRejectedError` naming the rule."""
    text = normalise(password)
    minimum = MIN_LENGTH_WITH_SECOND_FACTOR if second_factor else MIN_LENGTH_SINGLE_FACTOR
    if len(text) < minimum:
        qualifier = "with a second factor" if second_factor else "without a second factor"
        msg = f"a password needs at least {minimum} characters {qualifier}"
        raise PasswordRejectedError(msg)
    if len(text) > MAX_LENGTH:
        msg = f"a password can have at most {MAX_LENGTH} characters"
        raise PasswordRejectedError(msg)
    folded = text.casefold()
    core = _EDGES.sub("", folded)
    if folded in _blocklist() or core in _blocklist():
        msg = "this password is among the most common ones and easy to guess; choose another"
        raise PasswordRejectedError(msg)
    if _repetitive(folded):
        msg = "a password must not be a repeated character, pattern or sequence"
        raise PasswordRejectedError(msg)
    remainder = folded
    for word in _context_words(email, name):
        remainder = remainder.replace(word, "")
    remainder = _EDGES.sub("", remainder)
    if len(remainder) < CONTEXT_REMAINDER:
        msg = "a password must not be made of your name, e-mail address or the service's name"
        raise PasswordRejectedError(msg)
    return text


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of a password already checked by :func:`check_password`."""
    return _HASHER.hash(normalise(password))


@dataclasses.dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking a password against its stored hash."""

    ok: bool
    needs_rehash: bool = False


def verify_password(stored_hash: str | None, password: str) -> Verification:
    """Check ``password`` against ``stored_hash``; with no hash, spend the same time and fail.

    The equal time keeps a missing account or password from showing (ASVS 5.0 6.3.8).
    """
    if stored_hash is None:
        _dummy_verify(password)
        return Verification(ok=False)
    try:
        _HASHER.verify(stored_hash, normalise(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return Verification(ok=False)
    return Verification(ok=True, needs_rehash=_HASHER.check_needs_rehash(stored_hash))


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash("glucoshare timing equaliser")


def _dummy_verify(password: str) -> None:
    try:
        _HASHER.verify(_dummy_hash(), normalise(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return
