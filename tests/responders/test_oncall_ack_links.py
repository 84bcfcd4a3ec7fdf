"""Signed ack links: valid for one page and one responder until they expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from haltguard.responders.ack_links import AckTokenError, sign_ack_token, verify_ack_token

SECRET = b"k" * 32
NOW = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def token_for(page_id: int = 7, responder: str = "tanaka", secret: bytes = SECRET) -> str:
    return sign_ack_token(secret, page_id=page_id, responder=responder,
                          expires_at=NOW + timedelta(hours=1))


def test_valid_token_names_the_responder_it_was_made_for() -> None:
    grant = verify_ack_token(SECRET, token_for(), page_id=7, now=NOW)
    assert grant.responder == "tanaka"
    assert grant.expires_at == NOW + timedelta(hours=1)


def test_token_for_one_page_cannot_acknowledge_another() -> None:
    with pytest.raises(AckTokenError, match="another page"):
        verify_ack_token(SECRET, token_for(page_id=7), page_id=8, now=NOW)


def test_token_stops_working_at_its_expiry() -> None:
    verify_ack_token(SECRET, token_for(), page_id=7, now=NOW + timedelta(minutes=59))
    with pytest.raises(AckTokenError, match="expired"):
        verify_ack_token(SECRET, token_for(), page_id=7, now=NOW + timedelta(hours=1))


def test_token_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(AckTokenError, match="signature"):
        verify_ack_token(SECRET, token_for(secret=b"x" * 32), page_id=7, now=NOW)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_editing_any_signed_part_breaks_the_signature(part: int) -> None:
    pieces = token_for().split(".")
    replacement = {0: "8", 1: str(int(pieces[1]) + 3600), 2: "c3V6dWtp"}[part]
    pieces[part] = replacement
    with pytest.raises(AckTokenError, match="signature"):
        verify_ack_token(SECRET, ".".join(pieces), page_id=int(pieces[0]), now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "1.2.3", "x.y.z.w", "7.9.@@.!!"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(AckTokenError):
        verify_ack_token(SECRET, token, page_id=7, now=NOW)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        sign_ack_token(b"short", page_id=1, responder="a", expires_at=NOW)
