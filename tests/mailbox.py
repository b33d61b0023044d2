"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what arrives, for tests that send mail."""

from __future__ import annotations

import email
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import Message

from aiosmtpd.controller import Controller


class _Receiver:
    """The SMTP server's handler (kept apart from :class:`Inbox`, whose reads run jobs: aiosmtpd
    looks at every attribute of its handler)."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages

    async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.content))  # type: ignore[attr-defined]
        return "250 OK"


class Inbox:
    """The messages the server received, in order.

    On PostgreSQL mail is a background job: give the inbox a ``drain`` (run the queued jobs) and
    every read of :attr:`messages` first lets a worker send what waits.
    """

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self.drain: Callable[[], None] | None = None

    @property
    def messages(self) -> list[Message]:
        """What arrived, after the waiting mail jobs have run."""
        if self.drain is not None:
            self.drain()
        return self._messages

    def to(self, address: str) -> list[Message]:
        """The messages sent to ``address``."""
        return [m for m in self.messages if m["To"] == address]


@contextmanager
def smtp_server() -> Iterator[tuple[str, Inbox]]:
    """Run a server on a free port: yields its ``smtp://`` URL and its inbox."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(_Receiver(inbox._messages), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", inbox
    finally:
        controller.stop()


def link_token(message: Message, path: str) -> str:
    """The token of the first link to ``path`` (e.g. ``/invitations/accept``) in a message."""
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    match = re.search(re.escape(path) + r"\?token=([\w-]+)", body.decode())
    assert match is not None, body.decode()
    return match.group(1)
