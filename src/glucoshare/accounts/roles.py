"""Nightscout roles and permissions of an API token (research/nightscout.md §1.9).

Nightscout names permissions ``api:<collection>:<action>`` (Shiro style, ``*`` a wildcard) and
groups them into roles. A Glucoshare token acts for exactly one patient; its roles say what it may
do with that patient's data. A token without roles of its own has the roles of its kind:
``nightscout`` tokens are ``admin`` (read and write everything of the patient, as the API secret
does in Nightscout), ``read`` tokens are ``readable``, ``upload`` tokens are ``uploader`` (create,
update and delete documents, read nothing).

Unlike Nightscout there is no default role for callers without a credential: nothing of a
patient is readable without one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

Action = Literal["read", "create", "update", "delete"]

COLLECTIONS: Final = ("entries", "treatments", "devicestatus", "profile", "activity", "food", "settings")
"""The collections of the Nightscout API."""

ROLES: Final[dict[str, frozenset[str]]] = {
    "admin": frozenset({"*"}),
    "readable": frozenset({"*:*:read"}),
    "careportal": frozenset({"api:treatments:create", "api:treatments:update", "api:treatments:delete"}),
    "devicestatus-upload": frozenset({"api:devicestatus:create"}),
    "activity": frozenset({"api:activity:create"}),
    "uploader": frozenset(
        f"api:{collection}:{action}"
        for collection in COLLECTIONS
        for action in ("create", "update", "delete")
    ),
    "status-only": frozenset({"api:status:read"}),
}
"""Each role's permissions (Nightscout's roles, plus ``uploader`` for upload tokens)."""

KIND_ROLES: Final[dict[str, tuple[str, ...]]] = {
    "nightscout": ("admin",),
    "read": ("readable",),
    "upload": ("uploader",),
}
"""The roles of a token without roles of its own, by its kind."""


class UnknownRoleError(ValueError):
    """A role name that is not in :data:`ROLES`."""


def check_roles(names: Iterable[str]) -> list[str]:
    """The role names, sorted and unique; :class:`UnknownRoleError` names one that does not exist."""
    chosen = sorted(set(names))
    for name in chosen:
        if name not in ROLES:
            msg = f"unknown role {name!r}; roles: {', '.join(ROLES)}"
            raise UnknownRoleError(msg)
    return chosen


def token_roles(kind: str, roles: Iterable[str] | None) -> tuple[str, ...]:
    """The roles a token holds: its own, else those of its kind."""
    if roles is not None:
        return tuple(roles)
    return KIND_ROLES.get(kind, ())


def permissions(roles: Iterable[str]) -> frozenset[str]:
    """Every permission the roles grant."""
    granted: set[str] = set()
    for role in roles:
        granted |= ROLES.get(role, frozenset())
    return frozenset(granted)


def _part_matches(pattern: str, part: str) -> bool:
    return pattern in ("*", part)


def implies(granted: str, wanted: str) -> bool:
    """True when permission ``granted`` (with ``*`` wildcards) covers ``wanted``.

    Shiro semantics: parts are separated by ``:``; ``*`` matches any part, and a granted
    permission with fewer parts covers everything below it (``*`` alone covers all).
    """
    have, want = granted.split(":"), wanted.split(":")
    if len(have) > len(want):
        return False
    return all(_part_matches(h, w) for h, w in zip(have, want, strict=False))


def allows(granted: Iterable[str], wanted: str) -> bool:
    """True when any of the granted permissions covers ``wanted``."""
    return any(implies(permission, wanted) for permission in granted)
