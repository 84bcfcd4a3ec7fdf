"""Signed acknowledgement links: a responder acks a page from a phone without logging in.

The token is HMAC-SHA256 over (page id, responder, expiry) with a server secret, so it cannot
be forged, cannot be moved to another page, and stops working at its expiry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from haltguard.common.clock import require_aware

SECRET_BYTES_MIN = 32
TOKEN_LENGTH_MAX = 1024
_PURPOSE = b"haltguard-page-ack-v1"


class AckTokenError(ValueError):
    """The link cannot acknowledge this page; the message says why (never which byte)."""


@dataclass(frozen=True)
class AckGrant:
    """What a valid token allows: ``responder`` may acknowledge page ``page_id``."""

    page_id: int
    responder: str
    expires_at: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, page_id: int, responder: str, expires_unix: int) -> bytes:
    message = b"|".join(
        (_PURPOSE, str(page_id).encode(), responder.encode(), str(expires_unix).encode())
    )
    return hmac.new(secret, message, hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    if len(secret) < SECRET_BYTES_MIN:
        raise ValueError(f"the ack-link secret must be at least {SECRET_BYTES_MIN} bytes")


def sign_ack_token(secret: bytes, *, page_id: int, responder: str, expires_at: datetime) -> str:
    _check_secret(secret)
    require_aware(expires_at, "expires_at")
    expires_unix = int(expires_at.timestamp())
    signature = _signature(secret, page_id, responder, expires_unix)
    return f"{page_id}.{expires_unix}.{_b64(responder.encode())}.{_b64(signature)}"


def verify_ack_token(secret: bytes, token: str, *, page_id: int, now: datetime) -> AckGrant:
    """The grant in ``token`` if it was signed with ``secret`` for ``page_id`` and has not
    expired at ``now``; otherwise :class:`AckTokenError`."""
    _check_secret(secret)
    require_aware(now, "now")
    if len(token) > TOKEN_LENGTH_MAX:
        raise AckTokenError("the link is malformed")
    parts = token.split(".")
    if len(parts) != 4:
        raise AckTokenError("the link is malformed")
    page_text, expires_text, responder_b64, signature_b64 = parts
    try:
        token_page_id = int(page_text)
        expires_unix = int(expires_text)
        responder = _unb64(responder_b64).decode("utf-8")
        signature = _unb64(signature_b64)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise AckTokenError("the link is malformed") from exc
    expected = _signature(secret, token_page_id, responder, expires_unix)
    if not hmac.compare_digest(expected, signature):
        raise AckTokenError("the link's signature is not valid")
    if token_page_id != page_id:
        raise AckTokenError("the link belongs to another page")
    expires_at = datetime.fromtimestamp(expires_unix, UTC)
    if now >= expires_at:
        raise AckTokenError("the link has expired; acknowledge with the CLI or the API")
    return AckGrant(page_id=page_id, responder=responder, expires_at=expires_at)
