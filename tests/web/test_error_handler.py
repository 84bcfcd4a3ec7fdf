"""The one HTTP handler: a domain error's kind picks the status, the body keeps one shape."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.incidents.errors import ErrorKind as IncidentErrorKind
from haltguard.incidents.errors import IncidentError
from haltguard.notify.errors import LinkRefusedError
from haltguard.responders.errors import AckRefusedError
from haltguard.security.errors import LoginThrottledError, NotAuthenticatedError
from haltguard.status.errors import conflict
from haltguard.web.errors import KIND_STATUS, ApiError, install_error_handlers
from haltguard.web.ratelimit import RateLimitedError

RAISED: dict[str, HaltguardError] = {
    "throttled": LoginThrottledError("too many failed logins; wait 30 s", 30),
    "unauthenticated": NotAuthenticatedError("log in first: haltguard incident login"),
    "incident": IncidentError(IncidentErrorKind.VENUE, "venue_unavailable", "no venue"),
    "status": conflict("not_a_draft", "only a draft can be edited"),
    "link": LinkRefusedError("this link has expired; subscribe again"),
    "rate": RateLimitedError("too many requests; wait 5 s", 5),
    "ack": AckRefusedError("the link is for another page"),
    "explained": HaltguardError("the market is halted", kind=ErrorKind.CONFLICT,
                                code="market_halted", next_step="wait for it to reopen",
                                message_ja="市場は停止中です"),
    "api": ApiError(409, "market_halted", "BTC-JPY is halted", seq=17),
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{name}")
    def raise_it(name: str) -> None:
        raise RAISED[name]

    return TestClient(app)


def test_every_error_kind_answers_exactly_one_http_status() -> None:
    assert set(KIND_STATUS) == set(ErrorKind)
    assert len(set(KIND_STATUS.values())) == len(KIND_STATUS)


@pytest.mark.parametrize(("name", "status"), [
    ("throttled", 429), ("unauthenticated", 401), ("incident", 502), ("status", 409),
    ("link", 400), ("rate", 429), ("ack", 403), ("explained", 409), ("api", 409),
])
def test_each_domain_error_is_answered_with_the_status_of_its_kind(
    client: TestClient, name: str, status: int
) -> None:
    response = client.get(f"/raise/{name}")

    assert response.status_code == status
    assert response.json()["error"]["code"] == RAISED[name].code


def test_a_plain_domain_error_keeps_the_two_field_body(client: TestClient) -> None:
    response = client.get("/raise/status")

    assert response.json() == {
        "error": {"code": "not_a_draft", "message": "only a draft can be edited"}}


def test_the_next_step_and_japanese_text_join_the_body_only_when_given(
    client: TestClient,
) -> None:
    assert client.get("/raise/explained").json() == {"error": {
        "code": "market_halted", "message": "the market is halted",
        "next_step": "wait for it to reopen", "message_ja": "市場は停止中です"}}


def test_a_refusal_sends_the_headers_it_carries(client: TestClient) -> None:
    assert client.get("/raise/throttled").headers["Retry-After"] == "30"
    assert client.get("/raise/rate").headers["Retry-After"] == "5"
    assert client.get("/raise/unauthenticated").headers["WWW-Authenticate"] == "Bearer"


def test_an_api_errors_details_are_fields_beside_code_and_message(client: TestClient) -> None:
    assert client.get("/raise/api").json() == {
        "error": {"code": "market_halted", "message": "BTC-JPY is halted", "seq": 17}}


def test_an_api_error_with_a_status_no_kind_answers_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="no error kind answers HTTP 418"):
        ApiError(418, "teapot", "short and stout")
