"""Second factor: time-based one-time passwords (RFC 6238) and single-use recovery codes.

* TOTP with SHA-1, 6 digits, 30-second steps (what every authenticator app speaks); a code of the
  current step or of one step before or after is accepted (clock skew), and each step's code is
  accepted once: the last step used is kept and no code of that step or an earlier one is taken
  again (NIST SP 800-63B §5.1.4.2; ASVS 5.0 6.5.1, 6.5.5).
* Recovery codes: ten random codes of 10 characters (about 50 bits each) from an alphabet without
  look-alike characters, shown once and stored as SHA-256 digests (they are random, so a slow
  hash adds nothing); each one works once (ASVS 5.0 6.5.2).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pyotp

STEP_SECONDS = 30
DIGITS = 6
SKEW_STEPS = 1
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_RECOVERY_LENGTH = 10
ISSUER = "Glucoshare"


def new_secret() -> str:
    """A new random TOTP secret (base32, 160 bits)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (from a QR code) for ``account``."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def code_at(secret: str, unix_seconds: float) -> str:
    """The code of ``secret`` at a moment (for tests and operators)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(int(unix_seconds))


def accepted_step(secret: str, code: str, *, now: float, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to, if it is valid now and not used before; else ``None``.

    The caller stores the returned step as the new ``last_step``.
    """
    candidate = code.strip().replace(" ", "")
    if len(candidate) != DIGITS or not (candidate.isascii() and candidate.isdigit()):  # "\u00b2" isdigit()
        return None
    current = int(now) // STEP_SECONDS
    try:
        totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
        expected = {
            step: totp.at(step * STEP_SECONDS)
            for step in range(current - SKEW_STEPS, current + SKEW_STEPS + 1)
        }
    except ValueError:  # a secret offered at enrolment that is not base32 of at least 112 bits
        return None
    for step, code_then in expected.items():
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(code_then, candidate):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten fresh recovery codes, formatted ``XXXXX-XXXXX``."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def recovery_digest(code: str) -> str:
    """The stored form of a recovery code (SHA-256 of the code without spaces or dashes)."""
    canonical = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(canonical.encode()).hexdigest()
