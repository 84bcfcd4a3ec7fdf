"""The edge where pages leave the process: SMTP email and apprise URLs.

Each delivery is isolated: it has a timeout, every error becomes a :class:`DeliveryResult`
instead of an exception, and deliveries run side by side so one slow or broken channel
neither blocks nor delays the others.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from enum import StrEnum
from typing import Any

import apprise

from haltguard.responders.settings import SmtpSecurity, SmtpSettings
from haltguard.responders.texts import PageMessage

DELIVERY_WORKERS_MAX = 8
ADDRESS_LENGTH_MAX = 2000
ERROR_LENGTH_MAX = 500
_EMAIL_PATTERN = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$|^[^@\s<>]+@localhost$")


class ChannelKind(StrEnum):
    EMAIL = "email"
    """An address reached through the configured SMTP server."""
    APPRISE = "apprise"
    """Any apprise URL: slack://, discord://, tgram://, mailto://, json://, jsons:// ..."""


class ChannelError(ValueError):
    """A contact address that cannot be used; the message says what to write instead."""


@dataclass(frozen=True)
class DeliveryJob:
    kind: ChannelKind
    address: str
    message: PageMessage
    problem: str = ""
    """Why this job cannot be attempted (e.g. its address does not open): recorded as the
    delivery's failure instead of sending."""


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    error: str
    duration_ms: int


def check_address(kind: ChannelKind, address: str) -> str:
    """The cleaned address, or :class:`ChannelError` saying why it cannot work."""
    cleaned = address.strip()
    if not cleaned or len(cleaned) > ADDRESS_LENGTH_MAX:
        raise ChannelError(f"a {kind.value} address must be 1..{ADDRESS_LENGTH_MAX} characters")
    if kind is ChannelKind.EMAIL:
        if not _EMAIL_PATTERN.match(cleaned):
            raise ChannelError(f"{cleaned!r} is not an email address like name@example.com")
        return cleaned
    if apprise.Apprise.instantiate(cleaned) is None:
        raise ChannelError(
            f"apprise does not understand {redact(kind, cleaned)!r}; write a URL such as "
            "slack://..., discord://..., tgram://..., mailto://... or json://host/path"
        )
    return cleaned


def redact(kind: ChannelKind, address: str) -> str:
    """A form of the address safe to show and store beside results: apprise URLs carry
    tokens and passwords, which are masked."""
    if kind is ChannelKind.EMAIL:
        return address
    plugin: Any = apprise.Apprise.instantiate(address)
    if plugin is None:
        scheme, _, _ = address.partition("://")
        return f"{scheme}://****"
    return str(plugin.url(privacy=True))


def _short(error: BaseException | str) -> str:
    text = str(error) if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text[:ERROR_LENGTH_MAX]


def send_email(smtp: SmtpSettings, to_address: str, message: PageMessage) -> None:
    """Send one plain-text UTF-8 email; raises on any failure."""
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = smtp.sender
    email["To"] = to_address
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = make_msgid(domain="haltguard")
    email.set_content(message.body, charset="utf-8")
    with open_smtp(smtp) as client:
        client.send_message(email)


def open_smtp(smtp: SmtpSettings) -> smtplib.SMTP:
    """A connected, secured and logged-in SMTP client for ``smtp``; the caller closes it.

    Shared with the customer notices (``haltguard.notify``), which keep one open across many
    messages; raises on any failure.
    """
    if smtp.security is SmtpSecurity.SSL:
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            smtp.host, smtp.port, timeout=smtp.timeout_s, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
    try:
        if smtp.security is SmtpSecurity.STARTTLS:
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password)
    except BaseException:
        client.close()
        raise
    return client


def send_apprise(url: str, message: PageMessage, timeout_s: float) -> None:
    """Send through one apprise URL; raises with apprise's own explanation on failure."""
    sender = apprise.Apprise()
    if not sender.add(url):
        raise ChannelError(f"apprise does not understand {redact(ChannelKind.APPRISE, url)!r}")
    problems: list[str] = []
    result = sender.notify(
        body=message.body,
        title=message.subject,
        timeout=timeout_s,
        log_callback=lambda entry, _plugin: problems.append(entry.message),
        log_level=30,
    )
    if not result:
        raise ChannelError("; ".join(problems) or "apprise reported the notification failed")


def deliver(job: DeliveryJob, smtp: SmtpSettings, timeout_s: float) -> DeliveryResult:
    """Attempt one delivery; never raises, so a broken channel is a recorded result."""
    if job.problem:
        return DeliveryResult(False, _short(job.problem), 0)
    started = time.monotonic()
    try:
        if job.kind is ChannelKind.EMAIL:
            send_email(smtp, job.address, job.message)
        else:
            send_apprise(job.address, job.message, timeout_s)
    except Exception as exc:
        return DeliveryResult(False, _short(exc), int((time.monotonic() - started) * 1000))
    return DeliveryResult(True, "", int((time.monotonic() - started) * 1000))


def deliver_all(
    jobs: list[DeliveryJob], smtp: SmtpSettings, timeout_s: float
) -> list[DeliveryResult]:
    """Attempt every job side by side; results come back in the jobs' order."""
    if not jobs:
        return []
    if len(jobs) == 1:
        return [deliver(jobs[0], smtp, timeout_s)]
    with ThreadPoolExecutor(max_workers=min(DELIVERY_WORKERS_MAX, len(jobs))) as pool:
        return list(pool.map(lambda job: deliver(job, smtp, timeout_s), jobs))
