"""Share and invitation codes: ``XXXX-XXXX-XXXX`` from 32 characters without 0, O, 1 and I.

60 bits of randomness; typed codes are accepted in any case, with or without dashes and spaces
(Tidepool's share codes use the same alphabet and shape).
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_GROUPS, _GROUP = 3, 4
_TYPED = re.compile(rf"^[{ALPHABET}]{{{_GROUPS * _GROUP}}}$")


def new_code() -> str:
    """A fresh random code."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(_GROUPS * _GROUP))
    return "-".join(raw[i : i + _GROUP] for i in range(0, len(raw), _GROUP))


def normalise_code(typed: str) -> str | None:
    """The canonical form of a typed code, or ``None`` when it cannot be one."""
    raw = re.sub(r"[\s\-]", "", typed).upper()
    if not _TYPED.match(raw):
        return None
    return "-".join(raw[i : i + _GROUP] for i in range(0, len(raw), _GROUP))
