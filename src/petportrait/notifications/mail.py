"""Sending a built message: over SMTP (smtp://, smtp+starttls://, smtps://) or as an .eml file.

Both are idempotent per Message-ID as far as they can be: the file transport writes `<outbox id>.eml`
atomically (a re-send replaces the same file); an SMTP re-send carries the same Message-ID, which receiving
servers and mail clients use to recognise a duplicate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from petportrait.files import private_dir

log = logging.getLogger(__name__)


class Transport(Protocol):
    """Sends messages; `close` ends a connection it may keep between messages of a batch."""

    name: str

    def send(self, message: EmailMessage, *, outbox_id: str) -> str | None: ...

    def close(self) -> None: ...


class FileTransport:
    """Writes each message to `<root>/<outbox id>.eml`; returns the path."""

    name = "file"

    def __init__(self, root: Path) -> None:
        self.root = root

    def send(self, message: EmailMessage, *, outbox_id: str) -> str | None:
        private_dir(self.root)
        target = self.root / f"{outbox_id}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(message.as_bytes())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("email %s written to %s (no SMTP server is configured)", message["Message-ID"], target)
        return str(target)

    def close(self) -> None:
        return None


class SmtpTransport:
    """One SMTP connection per batch; plain, STARTTLS or implicit TLS as the URL says."""

    name = "smtp"

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[self.scheme]
        self.port = parts.port or default_port
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        context = ssl.create_default_context()
        conn: smtplib.SMTP
        if self.scheme == "smtps":
            conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.scheme == "smtp+starttls":
                conn.starttls(context=context)
        if self.username:
            conn.login(self.username, self.password or "")
        self._conn = conn
        return conn

    def send(self, message: EmailMessage, *, outbox_id: str) -> str | None:
        try:
            self._connect().send_message(message)
        except (smtplib.SMTPServerDisconnected, OSError):
            self.close()
            raise
        return None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            self._conn = None


def transport_for(smtp_url: str | None, *, outbox_dir: Path, timeout: float) -> Transport:
    """SMTP when a URL is set, else the .eml folder."""
    if smtp_url:
        return SmtpTransport(smtp_url, timeout=timeout)
    return FileTransport(outbox_dir)


def build(
    *,
    message_id: str,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    date: object,
) -> EmailMessage:
    """A multipart/alternative message (plain text first, then HTML); no attachments, ever."""
    message = EmailMessage()
    message["Message-ID"] = f"<{message_id}>"
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date)  # type: ignore[arg-type]
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


__all__ = ["FileTransport", "SmtpTransport", "Transport", "build", "make_msgid", "transport_for"]
