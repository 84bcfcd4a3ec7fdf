"""The edge where notices leave the process: SMTP, webhooks and apprise URLs.

Social and chat channels are apprise URLs an operator sets: X/Twitter ``x://``, Mastodon
``mastodon://`` / ``mastodons://``, Slack ``slack://``, Discord ``discord://``, Telegram
``tgram://``, LINE ``line://`` (all in the installed apprise), or any other it knows.

SMTP connections are opened with paging's ``open_smtp`` (one place knows TLS and login) and
kept open across messages; apprise goes through paging's ``send_apprise``. Every failure is
sorted into :class:`PermanentError` (do not retry: the address is refused) or
:class:`TransientError` (retry later), so the outbox never guesses from message text.
"""

from __future__ import annotations

import ipaddress
import re
import smtplib
import socket
import time
from urllib.parse import urlsplit, urlunsplit

import httpx

from haltguard.db import keys
from haltguard.notify.models import SubscriberKind
from haltguard.responders.channels import (
    ChannelError,
    ChannelKind,
    check_address,
    open_smtp,
    redact,
    send_apprise,
)
from haltguard.responders.settings import SmtpSettings
from haltguard.responders.texts import PageMessage

IDLE_CHECK_S = 10.0
"""A connection idle this long is checked with NOOP before use: servers drop idle clients."""
WEBHOOK_RESPONSE_BYTES_MAX = 4_096
ERROR_LENGTH_MAX = 500


class DeliveryError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message[:ERROR_LENGTH_MAX])


class PermanentError(DeliveryError):
    """The receiver refused for good (unknown mailbox, 4xx from a webhook): no retry."""


class TransientError(DeliveryError):
    """Worth another attempt later: timeouts, refused connections, 4xx/5xx meaning busy."""


class AddressError(ValueError):
    """An address that cannot work; the message says what to write instead."""


# --- addresses ----------------------------------------------------------------------------


def check_email(address: str) -> str:
    """The cleaned address, or :class:`AddressError` saying why it cannot receive email."""
    cleaned = address.strip()
    if not cleaned.isascii():
        raise AddressError(
            f"{cleaned!r} has non-ASCII characters; use the ASCII form of the address"
        )
    try:
        return check_address(ChannelKind.EMAIL, cleaned).lower()
    except ChannelError as exc:
        raise AddressError(str(exc)) from exc


def check_apprise_url(url: str) -> str:
    try:
        return check_address(ChannelKind.APPRISE, url)
    except ChannelError as exc:
        raise AddressError(str(exc)) from exc


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
        or ip.is_multicast or ip.is_unspecified
    )


def check_webhook_url(url: str, *, allow_private_hosts: bool) -> str:
    """An http(s) URL whose host resolves to public addresses only (unless allowed), so a
    subscriber cannot make the service POST into the exchange's own network."""
    cleaned = url.strip()
    parts = urlsplit(cleaned)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise AddressError(f"a webhook must be an https:// URL, got {redact_webhook(cleaned)!r}")
    if parts.username or parts.password:
        raise AddressError("a webhook URL must not carry a user name or password")
    if allow_private_hosts:
        return cleaned
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except (OSError, UnicodeError) as exc:
        raise AddressError(
            f"the webhook host {parts.hostname!r} cannot be resolved; check the name"
        ) from exc
    if not resolved or not all(_is_public(str(address)) for address in resolved):
        raise AddressError(
            f"the webhook host {parts.hostname!r} is not a public internet address"
        )
    return cleaned


def redact_webhook(url: str) -> str:
    """Scheme, host and path only: webhook URLs often carry a secret in the query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return shown + ("?****" if parts.query else "")


def redact_apprise(url: str) -> str:
    return redact(ChannelKind.APPRISE, url)


def stored_address(keyring: keys.Keyring, kind: str, address_digest: str, address: str) -> str:
    """How a subscriber's address is stored: webhook and apprise URLs carry tokens, so they
    are sealed with the secrets key, bound to the subscription; email addresses as given."""
    if kind == SubscriberKind.EMAIL.value:
        return address
    return keys.seal(keyring, address, context=keys.subscriber_address_context(address_digest))


def clear_address(keyring: keys.Keyring, kind: str, address_digest: str, stored: str) -> str:
    """The address :func:`stored_address` stored; :class:`keys.KeyringError` if the secrets
    key does not open it."""
    if kind == SubscriberKind.EMAIL.value:
        return stored
    return keys.open_sealed(keyring, stored,
                            context=keys.subscriber_address_context(address_digest))


# --- senders ------------------------------------------------------------------------------


def _smtp_failure(exc: Exception) -> DeliveryError:
    """Connecting, logging in, or the connection dropping: the server's problem or ours,
    never the recipient's, so always worth a retry."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return TransientError(f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}")
    return TransientError(f"{type(exc).__name__}: {exc}")


_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _refusal(what: str, code: int, reply: bytes) -> DeliveryError:
    """5xx is final for this message; anything else is worth a retry."""
    message = f"{what}: SMTP {code} {_text(reply)}"
    if 500 <= code < 600:
        return PermanentError(message)
    return TransientError(message)


class SmtpConnection:
    """One SMTP connection reused for many messages. Not thread-safe: one per sender."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self._smtp = smtp
        self._client: smtplib.SMTP | None = None
        self._last_used = 0.0

    def _ready_client(self) -> smtplib.SMTP:
        client = self._client
        if client is not None and time.monotonic() - self._last_used > IDLE_CHECK_S:
            try:
                client.noop()
            except (smtplib.SMTPException, OSError):
                self.close()
                client = None
        if client is None:
            try:
                client = open_smtp(self._smtp)
                client.ehlo_or_helo_if_needed()
            except (smtplib.SMTPException, OSError) as exc:
                raise _smtp_failure(exc) from exc
            self._client = client
        return client

    def send(self, to_address: str, message: bytes) -> None:
        """Hand ``message`` (ASCII, CRLF line ends, as :mod:`messages` writes it) to the
        server for ``to_address``; raises a DeliveryError saying whether to retry.

        Speaks MAIL, RCPT and DATA itself rather than through ``sendmail``, which parses
        both addresses and rewrites line ends on every call, and sends the three in one
        packet when the server offers PIPELINING (RFC 2920): two round trips per message
        instead of four. At fan-out rates both showed up as most of the sender's time.
        """
        client = self._ready_client()
        try:
            if client.has_extn("pipelining"):
                self._envelope_pipelined(client, to_address)
            else:
                self._envelope_step_by_step(client, to_address)
            client.send(_LEADING_DOT.sub(b"..", message) + b".\r\n")
            code, reply = client.getreply()
            if code != 250:
                raise _refusal("message refused", code, reply)
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise _smtp_failure(exc) from exc
        finally:
            self._last_used = time.monotonic()

    def _envelope_step_by_step(self, client: smtplib.SMTP, to_address: str) -> None:
        code, reply = client.docmd("MAIL", f"FROM:<{self._smtp.sender}>")
        if code != 250:
            self._reset_after_refusal()
            raise TransientError(f"sender refused: SMTP {code} {_text(reply)}")
        code, reply = client.docmd("RCPT", f"TO:<{to_address}>")
        if code not in (250, 251):
            self._reset_after_refusal()
            raise _refusal("recipient refused", code, reply)
        code, reply = client.docmd("DATA")
        if code != 354:
            self._reset_after_refusal()
            raise _refusal("DATA refused", code, reply)

    def _envelope_pipelined(self, client: smtplib.SMTP, to_address: str) -> None:
        client.send(f"MAIL FROM:<{self._smtp.sender}>\r\nRCPT TO:<{to_address}>\r\nDATA\r\n")
        mail_code, mail_reply = client.getreply()
        rcpt_code, rcpt_reply = client.getreply()
        data_code, data_reply = client.getreply()
        if mail_code == 250 and rcpt_code in (250, 251) and data_code == 354:
            return
        if data_code == 354:
            # A server that opened DATA for a refused envelope: close it empty, send nothing.
            client.send(b".\r\n")
            client.getreply()
        self._reset_after_refusal()
        if mail_code != 250:
            raise TransientError(f"sender refused: SMTP {mail_code} {_text(mail_reply)}")
        if rcpt_code not in (250, 251):
            raise _refusal("recipient refused", rcpt_code, rcpt_reply)
        raise _refusal("DATA refused", data_code, data_reply)

    def _reset_after_refusal(self) -> None:
        if self._client is None:
            return
        try:
            self._client.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


class WebhookClient:
    """POSTs signed JSON; one HTTP connection pool per sender. Redirects are not followed,
    so the signed body cannot be bounced to an address nobody checked."""

    def __init__(self, timeout_s: float, *, allow_private_hosts: bool) -> None:
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._allow_private_hosts = allow_private_hosts

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            check_webhook_url(url, allow_private_hosts=self._allow_private_hosts)
        except AddressError as exc:
            raise PermanentError(str(exc)) from exc
        try:
            response = self._client.post(
                url, content=body, headers={"Content-Type": "application/json", **headers}
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= response.status_code < 300:
            return
        detail = response.text[:WEBHOOK_RESPONSE_BYTES_MAX]
        message = f"webhook answered {response.status_code}: {detail}"
        if 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429):
            raise PermanentError(message)
        raise TransientError(message)

    def close(self) -> None:
        self._client.close()


def send_to_apprise(url: str, title: str, body: str, timeout_s: float) -> None:
    """Post through one apprise URL (X, Mastodon, Slack, Discord, Telegram, LINE ...)."""
    try:
        send_apprise(url, PageMessage(subject=title, body=body), timeout_s)
    except ChannelError as exc:
        raise TransientError(str(exc)) from exc
    except Exception as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc
