"""What a job carries: names of the tasks and the sealed form of sensitive arguments."""

from __future__ import annotations

import base64
import json
import os
from typing import Final

from pydantic import BaseModel

from glucoshare.vault.cipher import new_key, seal, unseal
from glucoshare.vault.keyfile import KeyRing

NAMESPACE: Final = "glucoshare"
"""The tasks' blueprint is added to a worker's app under this namespace (``glucoshare:<task>``)."""

REFRESH_SUMMARIES: Final = "summaries.refresh"
SWEEP_SUMMARIES: Final = "summaries.sweep"
DELIVER_MAIL: Final = "mail.deliver"
RETRY_STALLED: Final = "jobs.retry_stalled"
REMOVE_OLD_JOBS: Final = "jobs.remove_old"
RUN_IMPORT: Final = "imports.run"
RENDER_REPORT: Final = "reports.render"


def queued_name(task: str) -> str:
    """The name a job of ``task`` carries in the queue (the task's name within :data:`NAMESPACE`)."""
    return f"{NAMESPACE}:{task}"


_PLACE = "jobs:payload"


class SealedPayload(BaseModel):
    """Arguments a job must not keep in clear (an e-mail address, a link with a token).

    The job table holds only this: a fresh data key wrapped by the master key, and the JSON of the
    arguments sealed (AES-256-GCM) with that data key.
    """

    master_key_id: str
    wrapped_key: str
    sealed: str
    subject: str

    @classmethod
    def seal(cls, ring: KeyRing, value: dict[str, str]) -> SealedPayload:
        """Seal ``value`` under a fresh data key wrapped by the ring's primary master key."""
        subject = f"job:{os.urandom(12).hex()}"
        data_key = new_key()
        master_key_id, wrapped = ring.wrap(data_key, subject)
        sealed = seal(data_key, json.dumps(value).encode(), f"{_PLACE}:{subject}")
        return cls(
            master_key_id=master_key_id,
            wrapped_key=base64.b64encode(wrapped).decode(),
            sealed=base64.b64encode(sealed).decode(),
            subject=subject,
        )

    def open(self, ring: KeyRing) -> dict[str, str]:
        """The sealed arguments (raises the vault's errors when the key or the bytes are wrong)."""
        data_key = ring.unwrap(self.master_key_id, base64.b64decode(self.wrapped_key), self.subject)
        plain = unseal(data_key, base64.b64decode(self.sealed), f"{_PLACE}:{self.subject}")
        value = json.loads(plain)
        if not isinstance(value, dict):
            msg = "a sealed job payload is not an object"
            raise TypeError(msg)
        return {str(k): str(v) for k, v in value.items()}


class QueueCount(BaseModel):
    """How many jobs of one task are in one state (``todo``, ``doing``, ``succeeded``, ``failed``...)."""

    task: str
    status: str
    count: int
