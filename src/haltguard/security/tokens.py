"""Random bearer secrets for sessions and API tokens, stored only as hashes.

The secrets carry 256 bits of randomness, so a plain SHA-256 is enough to store them: there
is nothing to brute-force, unlike a password.
"""

from __future__ import annotations

import hashlib
import secrets

API_TOKEN_PREFIX = "hgt_"
API_TOKEN_PREFIX_SHOWN_CHARS = 12
"""How much of an API token is kept in clear so operators can tell their tokens apart."""
SECRET_BYTES = 32


def new_session_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def shown_prefix(api_token: str) -> str:
    return api_token[:API_TOKEN_PREFIX_SHOWN_CHARS]


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
