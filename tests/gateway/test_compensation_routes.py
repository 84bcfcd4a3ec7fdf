"""Compensation credits through the venue contract (in process and over HTTP) and the admin
routes: batched, each line judged on its own, a paid line never paid again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from gateway_support import ADMIN, LiveServer

from haltguard.gateway.control import HttpVenueControl, InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.commands import COMPENSATION_LINES_MAX, CompensationLine
from haltguard.venue.control import VenueControl, VenueControlError

JPY_MINOR = 10_000  # the demo JPY has 4 decimals


@pytest.fixture(params=["in_process", "http"])
def control(request: pytest.FixtureRequest, runtime: VenueRuntime) -> Iterator[VenueControl]:
    if request.param == "in_process":
        yield InProcessVenueControl(runtime)
        return
    with LiveServer(runtime) as server, HttpVenueControl(server.url, "test-admin-token") as http:
        yield http


def jpy_available(runtime: VenueRuntime, account: int) -> int:
    return runtime.read(lambda venue: venue.balances(account)["JPY"][0])


def test_each_line_is_credited_once_however_often_it_is_sent(
    control: VenueControl, runtime: VenueRuntime
) -> None:
    lines = [CompensationLine(1, "JPY", 500 * JPY_MINOR, 12, n) for n in range(3)]
    before = jpy_available(runtime, 1)

    first = control.credit_compensation(lines, actor="payout", reason="run 12")
    second = control.credit_compensation(lines, actor="payout", reason="run 12, retried")

    assert [o.outcome for o in first] == ["credited"] * 3
    assert [o.outcome for o in second] == ["already_credited"] * 3
    assert all(o.paid for o in first + second)
    assert jpy_available(runtime, 1) == before + 1_500 * JPY_MINOR
    assert control.credited_line_ranges(12) == [(0, 2)]
    assert control.credited_line_ranges(13) == []


def test_a_bad_line_is_refused_alone_with_its_reason(control: VenueControl) -> None:
    lines = [
        CompensationLine(2, "JPY", 100, 5, 1),
        CompensationLine(2, "DOGE", 100, 5, 2),
        CompensationLine(2, "JPY", 0, 5, 3),
        CompensationLine(2, "JPY", 100, 5, 4),
    ]

    outcomes = control.credit_compensation(lines, actor="payout")

    assert [(o.line_no, o.outcome) for o in outcomes] == [
        (1, "credited"), (2, "unknown_asset"), (3, "invalid_amount"), (4, "credited"),
    ]
    assert not outcomes[1].paid
    assert "DOGE" in outcomes[1].detail
    assert control.credited_line_ranges(5) == [(1, 1), (4, 4)]


def test_a_batch_over_the_limit_is_refused_and_nothing_is_credited(
    control: VenueControl,
) -> None:
    lines = [CompensationLine(1, "JPY", 1, 6, n) for n in range(COMPENSATION_LINES_MAX + 1)]

    with pytest.raises(VenueControlError):
        control.credit_compensation(lines, actor="payout")

    assert control.credited_line_ranges(6) == []


def test_a_full_batch_crosses_http_in_one_call(control: VenueControl) -> None:
    lines = [
        CompensationLine(1 + n % 3, "JPY", 1 + n, 8, n) for n in range(COMPENSATION_LINES_MAX)
    ]

    outcomes = control.credit_compensation(lines, actor="payout")

    assert [o.outcome for o in outcomes] == ["credited"] * COMPENSATION_LINES_MAX
    assert control.credited_line_ranges(8) == [(0, COMPENSATION_LINES_MAX - 1)]


def credit_body(*lines: dict[str, Any]) -> dict[str, Any]:
    return {"actor": "payout", "reason": "run 9", "lines": list(lines)}


LINE = {"account": 3, "asset": "JPY", "amount_minor": 250, "run_id": 9, "line_no": 0}


def test_the_credit_route_answers_each_line_and_counts_them(client: TestClient) -> None:
    client.post("/v1/admin/compensation/credits", json=credit_body(LINE), headers=ADMIN)

    response = client.post(
        "/v1/admin/compensation/credits",
        json=credit_body(LINE, {**LINE, "line_no": 1}), headers=ADMIN,
    )

    assert response.status_code == 200
    data = response.json()
    assert data["counts"] == {"already_credited": 1, "credited": 1}
    assert data["not_credited"] == [{
        "index": 0, "run_id": 9, "line_no": 0, "outcome": "already_credited",
        "detail": "run 9 line 0 was credited before; it is paid",
    }]
    assert data["seq"] > 0
    credited = client.get("/v1/admin/compensation/runs/9/credited", headers=ADMIN).json()
    assert credited == {"run_id": 9, "ranges": [[0, 1]], "lines": 2}


def test_the_credit_routes_need_the_admin_token(client: TestClient) -> None:
    posted = client.post("/v1/admin/compensation/credits", json=credit_body(LINE))
    read = client.get("/v1/admin/compensation/runs/9/credited")

    assert posted.status_code == 401
    assert read.status_code == 401
    assert client.get(
        "/v1/admin/compensation/runs/9/credited", headers=ADMIN
    ).json()["ranges"] == []


@pytest.mark.parametrize(
    "line",
    [
        {**LINE, "amount_minor": "250"},
        {**LINE, "amount_minor": 2.5},
        {**LINE, "asset": "A" * 17},
        {**LINE, "run_id": 2**63},
        {**LINE, "extra": 1},
        {k: v for k, v in LINE.items() if k != "line_no"},
    ],
)
def test_a_malformed_line_refuses_the_request_naming_the_field(
    client: TestClient, line: dict[str, Any]
) -> None:
    response = client.post(
        "/v1/admin/compensation/credits", json=credit_body(LINE, line), headers=ADMIN
    )

    assert response.status_code == 422
    assert "lines.1" in response.json()["error"]["message"]
    credited = client.get("/v1/admin/compensation/runs/9/credited", headers=ADMIN).json()
    assert credited["ranges"] == []


def test_an_asset_outside_the_grammar_refuses_only_its_line(client: TestClient) -> None:
    response = client.post(
        "/v1/admin/compensation/credits",
        json=credit_body(LINE, {**LINE, "asset": "jpy", "line_no": 1}), headers=ADMIN,
    )

    data = response.json()
    assert data["counts"] == {"credited": 1, "unknown_asset": 1}
    assert [(o["index"], o["outcome"]) for o in data["not_credited"]] == [(1, "unknown_asset")]


def test_a_run_id_in_the_path_must_be_plain_digits(client: TestClient) -> None:
    response = client.get("/v1/admin/compensation/runs/+9/credited", headers=ADMIN)

    assert response.status_code == 422


@pytest.mark.parametrize(
    "answer",
    [
        {"counts": {"credited": 1}, "not_credited": []},
        {"counts": {"credited": 1}, "not_credited": [
            {"index": 5, "run_id": 9, "line_no": 5, "outcome": "already_credited"}]},
        {"counts": {}, "not_credited": [
            {"index": 0, "run_id": 9, "line_no": 7, "outcome": "already_credited"},
            {"index": 1, "run_id": 9, "line_no": 1, "outcome": "already_credited"}]},
        {"outcomes": []},
    ],
)
def test_an_answer_that_does_not_fit_the_lines_sent_is_an_error_not_a_payment(
    answer: dict[str, Any],
) -> None:
    """Only what the venue clearly credited may count as paid."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    lines = [CompensationLine(1, "JPY", 10, 9, n) for n in range(2)]

    with HttpVenueControl("http://venue", "t", transport=transport) as control, \
            pytest.raises(VenueControlError, match="does not fit"):
        control.credit_compensation(lines, actor="payout")
