"""Claiming a queued request for a run: the first step of every request a worker runs.

A request that runs in the background (an import of :mod:`glucoshare.ingest.queued`, a report
render of :mod:`glucoshare.reports.renders`) is a row with a ``state`` (``queued``, ``running``,
``done``, ``failed``) and a count of ``attempts``. Before a worker runs one it claims it: the row
is locked for the transaction (``SELECT ... FOR UPDATE`` on PostgreSQL), marked ``running`` and
counted as one more attempt. A ``running`` row is claimed again: its worker died before the
outcome committed, and the run starts over. A finished row is never claimed.
"""

from __future__ import annotations

from typing import Final, Protocol, TypeVar

from sqlalchemy.orm import Session

FINISHED: Final = frozenset({"done", "failed"})
"""The states of a request that has its outcome: it is never run again."""


class Claimable(Protocol):
    """A request row (a mapped class whose primary key is one id): its state and how many runs it had."""

    state: str
    attempts: int


ClaimableT = TypeVar("ClaimableT", bound=Claimable)


def claim(session: Session, model: type[ClaimableT], row_id: str) -> ClaimableT | None:
    """Lock the ``model`` row ``row_id`` and mark it ``running``, one more attempt.

    Returns the row; ``None`` when there is no such row or it is finished already (:data:`FINISHED`).
    The change is flushed, not committed: the caller's transaction holds the lock until it ends.
    """
    row = session.get(model, row_id, with_for_update=True)  # never the identity map's copy unlocked
    if row is None or row.state in FINISHED:
        return None
    row.state = "running"
    row.attempts += 1
    session.flush()
    return row
