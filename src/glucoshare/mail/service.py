"""Send e-mail through SMTP (``GLUCOSHARE_SMTP_URL``) or, without it, into the outbox folder.

Messages are queued on the database session and delivered only after its transaction commits, so
a request that fails sends nothing. On PostgreSQL with SMTP configured a message becomes a
background job (sealed with the master key in the job table), which a ``glucoshare worker`` sends
with retries, so no request waits for a mail server; otherwise it is delivered right after the
commit. Delivery problems never undo what was committed: a message that cannot be sent (after the
last retry) is written to the outbox instead and the failure is logged without the message's
content or address. Outbox files (``$GLUCOSHARE_DATA_DIR/outbox/*.eml``) are owner-only (0600).
"""

from __future__ import annotations

import dataclasses
import logging
import smtplib
import ssl
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy.orm import Session

from glucoshare.config import Settings
from glucoshare.db.session import after_commit
from glucoshare.files import private_binary_file
from glucoshare.jobs.schemas import DELIVER_MAIL, SealedPayload
from glucoshare.jobs.service import defer, queue_available
from glucoshare.vault.service import keyring_of

LOG = logging.getLogger(__name__)
SENDER = "Glucoshare <no-reply@glucoshare.invalid>"
TIMEOUT_S = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Mail:
    """One plain-text message."""

    to: str
    subject: str
    body: str


def _message(mail: Mail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(time.time(), usegmt=True)
    message["Message-ID"] = make_msgid(domain="glucoshare.invalid")
    message.set_content(mail.body)
    return message


def _write_outbox(message: EmailMessage, settings: Settings) -> Path:
    outbox = settings.data_dir / "outbox"
    # Named by the time in nanoseconds, so that the files sort in the order they were written.
    path = outbox / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.eml"
    # All or nothing: a full disk leaves no empty or cut-off message behind.
    with private_binary_file(path) as handle:
        handle.write(message.as_bytes())
    return path


def _send_smtp(message: EmailMessage, url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, port or 465, timeout=TIMEOUT_S, context=ssl.create_default_context()
        )
    elif parts.scheme == "smtp":
        client = smtplib.SMTP(host, port or 25, timeout=TIMEOUT_S)
    else:
        msg = "GLUCOSHARE_SMTP_URL must start with smtp:// or smtps://"
        raise ValueError(msg)
    with client:
        if parts.scheme == "smtp" and client.has_extn("starttls"):
            client.starttls(context=ssl.create_default_context())
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)


def write_outbox(mail: Mail, settings: Settings) -> Path:
    """Keep ``mail`` in the outbox folder (owner-only file); its path."""
    return _write_outbox(_message(mail), settings)


def send_now(mail: Mail, settings: Settings) -> None:
    """Send ``mail`` by SMTP now; raise the transport's error when that fails (no outbox fallback)."""
    if not settings.smtp_url:
        msg = "GLUCOSHARE_SMTP_URL is not set"
        raise ValueError(msg)
    _send_smtp(_message(mail), settings.smtp_url)


def deliver(mail: Mail, settings: Settings) -> None:
    """Send one message now: by SMTP when configured, else (or when SMTP fails) into the outbox."""
    message = _message(mail)
    if settings.smtp_url:
        try:
            _send_smtp(message, settings.smtp_url)
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            LOG.warning("mail not sent (%s); kept in the outbox", type(exc).__name__)
        else:
            return
    _write_outbox(message, settings)


def queue_mail(session: Session, settings: Settings, mail: Mail) -> None:
    """Deliver ``mail`` once the session's transaction has committed (nothing if it rolls back).

    With SMTP on PostgreSQL: a sealed job in the same transaction, sent by a worker with retries.
    """
    if settings.smtp_url and queue_available(session):
        payload = SealedPayload.seal(keyring_of(session), dataclasses.asdict(mail))
        defer(session, DELIVER_MAIL, payload=payload.model_dump())
        return
    after_commit(session, lambda: deliver(mail, settings))
