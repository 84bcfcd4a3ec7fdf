"""Signed link tokens for confirm and unsubscribe: the link itself is the credential.

A token is ``<purpose>.<subscriber id>.<generation>.<expires, unix s>.<mac>``, the MAC being
HMAC-SHA256 over the first four fields, cut to 128 bits and base64url-encoded. Confirmation
links expire and die when the subscriber re-subscribes (the generation moves on);
unsubscribe links never expire, so the link in a year-old email still works.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

MAC_BYTES = 16
TOKEN_LENGTH_MAX = 200
NEVER = 0


class TokenPurpose(StrEnum):
    CONFIRM = "c"
    UNSUBSCRIBE = "u"


class TokenError(ValueError):
    """The link is damaged, forged, for something else, or expired."""


@dataclass(frozen=True)
class LinkToken:
    purpose: TokenPurpose
    subscriber_id: int
    generation: int
    expires_at_s: int


def _mac(secret: bytes, fields: str) -> str:
    digest = hmac.new(secret, fields.encode("ascii"), hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def sign(secret: bytes, token: LinkToken) -> str:
    assert secret, "an empty secret would let anyone forge links"
    assert token.subscriber_id > 0 and token.generation >= 0 and token.expires_at_s >= 0
    fields = (
        f"{token.purpose.value}.{token.subscriber_id}.{token.generation}.{token.expires_at_s}"
    )
    return f"{fields}.{_mac(secret, fields)}"


def verify(secret: bytes, text: str, purpose: TokenPurpose, now_s: int) -> LinkToken:
    """The token's contents if ``text`` is genuine, for ``purpose`` and not expired."""
    if not text or len(text) > TOKEN_LENGTH_MAX:
        raise TokenError("the link is incomplete: open it exactly as it is in the email")
    fields, _, mac = text.rpartition(".")
    parts = fields.split(".")
    if len(parts) != 4 or not all(part.isdigit() for part in parts[1:]):
        raise TokenError("the link is damaged: open it exactly as it is in the email")
    if not hmac.compare_digest(mac, _mac(secret, fields)):
        raise TokenError("the link is not one we sent: open the link from the email again")
    if parts[0] != purpose.value:
        raise TokenError("this link is for something else: use the other link in the email")
    token = LinkToken(purpose, int(parts[1]), int(parts[2]), int(parts[3]))
    if token.expires_at_s != NEVER and token.expires_at_s < now_s:
        raise TokenError("the link has expired: subscribe again to get a new one")
    return token
