"""Where the current action came from: the request's origin, carried in a context variable.

The web layer wraps every HTTP request in :func:`request_origin` (a pure ASGI middleware; context
variables propagate into FastAPI's thread pool), so :func:`glucoshare.audit.service.record_event`
finds the caller's IP address and user agent without every service passing them along. The command
line has no origin: outside a request :func:`current_origin` is ``None``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from, as the server saw it (either part may be unknown)."""

    ip: str | None
    user_agent: str | None


_current: contextvars.ContextVar[Origin | None] = contextvars.ContextVar("glucoshare_origin", default=None)


def current_origin() -> Origin | None:
    """The origin of the request being handled, or ``None`` outside a request (the command line)."""
    return _current.get()


@contextlib.contextmanager
def request_origin(origin: Origin | None) -> Iterator[Origin | None]:
    """Make ``origin`` the current origin inside the ``with`` block; the previous one comes back after."""
    token = _current.set(origin)
    try:
        yield origin
    finally:
        _current.reset(token)
