"""Errors of the background jobs."""

from __future__ import annotations

from glucoshare.errors import InputError


class JobsUnavailableError(InputError):
    """The configured database cannot hold a job queue (SQLite runs its work in process)."""

    code = "jobs_unavailable"
