"""Outgoing email over SMTP, and signed unsubscribe links.

Sending distinguishes a message the server certainly did not take (connection refused, sender or
recipient refused, an error reply to DATA) from one whose fate is unknown (the connection broke
while the server was answering DATA): only the first may be retried automatically.
"""

from __future__ import annotations

import secrets
import smtplib
import ssl
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr

from itsdangerous import BadSignature, URLSafeSerializer

from leadflow.config import Settings, get_settings, installation_secret


class SendError(Exception):
    """The server did not take the message. ``permanent``: a 5xx answer, retrying is pointless."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class UncertainDelivery(Exception):
    """The connection failed while the server handled DATA: it may or may not have the message."""


@dataclass(frozen=True)
class OutgoingEmail:
    to_name: str | None
    to_addr: str
    subject: str
    body: str
    unsubscribe_url: str
    message_id: str
    headers: tuple[tuple[str, str], ...] = ()


def new_message_id(settings: Settings | None = None) -> str:
    s = settings or get_settings()
    domain = parseaddr(s.mail_from)[1].rpartition("@")[2] or "leadflow.local"
    return make_msgid(idstring=secrets.token_hex(4), domain=domain)


def build(mail: OutgoingEmail, settings: Settings | None = None) -> EmailMessage:
    s = settings or get_settings()
    # Lines up to RFC 5322's 998 characters: a long unsubscribe URL stays one readable token.
    msg = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))
    msg["From"] = s.mail_from
    msg["To"] = formataddr((mail.to_name or "", mail.to_addr))
    msg["Subject"] = mail.subject
    msg["Message-ID"] = mail.message_id
    # RFC 2369 / RFC 8058: mail clients show an unsubscribe button that POSTs to the link.
    msg["List-Unsubscribe"] = f"<{mail.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in mail.headers:
        msg[name] = value
    footer = f"\n\n--\nTo stop receiving these emails: {mail.unsubscribe_url}\n"
    msg.set_content(mail.body.rstrip("\n") + footer)
    return msg


def send(mail: OutgoingEmail, settings: Settings | None = None) -> None:
    """Hand one message to the configured SMTP server (raises SendError or UncertainDelivery)."""

    s = settings or get_settings()
    msg = build(mail, s)
    sender = parseaddr(s.mail_from)[1]
    try:
        if s.smtp_ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
    except OSError as exc:
        raise SendError(f"cannot connect to {s.smtp_host}:{s.smtp_port}: {exc}", permanent=False) from exc
    try:
        try:
            smtp.ehlo()
            if s.smtp_starttls and not s.smtp_ssl:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
            code, reply = smtp.mail(sender)
            if code != 250:
                raise SendError(f"sender refused: {code} {reply!r}", permanent=code >= 500)
            code, reply = smtp.rcpt(mail.to_addr)
            if code not in (250, 251):
                raise SendError(f"recipient refused: {code} {reply!r}", permanent=code >= 500)
        except smtplib.SMTPResponseException as exc:
            raise SendError(f"{exc.smtp_code} {exc.smtp_error!r}", permanent=exc.smtp_code >= 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise SendError(f"before the message was sent: {exc}", permanent=False) from exc
        try:
            code, reply = smtp.data(msg.as_bytes())
        except smtplib.SMTPDataError as exc:  # the server answered with an error: not taken
            raise SendError(f"{exc.smtp_code} {exc.smtp_error!r}", permanent=exc.smtp_code >= 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise UncertainDelivery(f"connection failed during DATA: {exc}") from exc
        if code != 250:  # smtplib returns, rather than raises, the answer to the message itself
            raise SendError(f"message refused: {code} {reply!r}", permanent=code >= 500)
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


# ------------------------------------------------------------------------------- unsubscribe


def _serializer(settings: Settings | None = None) -> URLSafeSerializer:
    return URLSafeSerializer(installation_secret(settings or get_settings()), salt="leadflow-unsubscribe")


def unsubscribe_token(lead_id: int, settings: Settings | None = None) -> str:
    return str(_serializer(settings).dumps({"lead": lead_id}))


def unsubscribe_url(lead_id: int, settings: Settings | None = None) -> str:
    s = settings or get_settings()
    return f"{s.public_url.rstrip('/')}/unsubscribe/{unsubscribe_token(lead_id, s)}"


def read_unsubscribe_token(token: str, settings: Settings | None = None) -> int | None:
    try:
        data = _serializer(settings).loads(token)
    except BadSignature:
        return None
    lead = data.get("lead") if isinstance(data, dict) else None
    return lead if isinstance(lead, int) else None
