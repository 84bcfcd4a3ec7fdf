"""The fast order lane answers every order request exactly as the route would, byte for byte,
and leaves to the route every request it is not sure of."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from gateway_support import TOKEN, start_runtime

from haltguard.app.venue_app import create_venue_app
from haltguard.gateway.fastlane import OrderFastLane, order_symbol, with_fast_lane
from haltguard.gateway.limits import SheddingSettings
from haltguard.gateway.runtime import VenueRuntime

ORDERS = "/v1/markets/BTC-JPY/orders"
JSON = {"content-type": "application/json"}

# Each request in turn, on two venues with the same history: one with the lane, one without.
REQUESTS: list[tuple[str, Any]] = [
    (ORDERS, {"account": 1, "side": "sell", "qty": "0.5", "price": "5000000"}),
    (ORDERS, {"account": 1, "side": "sell", "qty": "0.25", "price": "5000100",
              "client_order_id": "ask-2"}),
    (ORDERS, {"account": 2, "side": "buy", "qty": "0.6", "price": "5000100"}),  # sweeps two
    (ORDERS, {"account": 2, "side": "buy", "qty": "0.01", "type": "market", "tif": "ioc"}),
    (ORDERS, {"account": 1, "side": "sell", "qty": "0.25", "price": "5000100",
              "client_order_id": "ask-2"}),  # a retry: 200 with the original outcome
    (ORDERS, {"account": 1, "side": "sell", "qty": "0.3", "price": "5000100",
              "client_order_id": "ask-2"}),  # the same id, other terms: 409
    (ORDERS, {"account": 3, "side": "buy", "qty": "0.1", "price": "4000000",
              "post_only": True}),
    (ORDERS, {"account": 2, "side": "sell", "qty": "0.1", "price": "3999999",
              "post_only": True}),  # would cross: 409
    (ORDERS, {"account": 3, "side": "buy", "qty": "1000", "price": "5000000"}),  # funds
    (ORDERS, {"account": 99, "side": "buy", "qty": "0.1", "price": "5000000"}),  # unknown
    (ORDERS, {"account": 1, "side": "buy", "qty": "0.00001", "price": "5000000"}),  # off grid
    (ORDERS, {"account": 1, "side": "buy", "qty": "0.1", "price": "5000000.5"}),  # off grid
    (ORDERS, {"account": 1, "side": "buy", "qty": "0.1"}),  # a limit order without a price
    (ORDERS, {"account": 1, "side": "buy", "qty": "0.1", "price": "1", "type": "market"}),
    (ORDERS, {"account": 1, "side": "buy", "qty": "1e-1", "price": "5000000"}),  # grammar
    (ORDERS, {"account": 1, "side": "buy", "qty": "0.1\n", "price": "5000000"}),
    (ORDERS, {"account": 1, "side": "buy", "qty": 0.1, "price": "5000000"}),  # a number
    (ORDERS, {"account": True, "side": "buy", "qty": "0.1", "price": "5000000"}),
    (ORDERS, {"account": 1.0, "side": "buy", "qty": "0.1", "price": "5000000"}),
    (ORDERS, {"account": 0, "side": "buy", "qty": "0.1", "price": "5000000"}),
    (ORDERS, {"account": 2**63, "side": "buy", "qty": "0.1", "price": "5000000"}),
    (ORDERS, {"account": 1, "side": "hold", "qty": "0.1", "price": "5000000"}),
    (ORDERS, {"account": 1, "side": "buy", "qty": "0.1", "price": "5000000", "extra": 1}),
    (ORDERS, {"side": "buy", "qty": "0.1", "price": "5000000"}),
    (ORDERS, {"account": 1, "side": "buy", "qty": "0.1", "price": "5000000",
              "client_order_id": "x" * 65}),
    (ORDERS, {"account": 1, "side": "buy", "qty": "0.1", "price": "5000000",
              "client_order_id": "注文-é-\u2028"}),
    (ORDERS, {"account": 1, "side": "buy", "qty": "0.1", "price": None}),
    (ORDERS, [1, 2]),
    (ORDERS, "not an object"),
    ("/v1/markets/NOPE-JPY/orders", {"account": 1, "side": "buy", "qty": "1", "price": "1"}),
    ("/v1/markets/bad symbol/orders", {"account": 1, "side": "buy", "qty": "1", "price": "1"}),
    ("/v1/markets/ETH-JPY/orders", {"account": 3, "side": "buy", "qty": "0.5",
                                    "price": "300000", "tif": "fok"}),  # nothing to fill
]
_TS = re.compile(rb'"ts":\d+')


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, OrderFastLane]]:
    """(with the lane, without it, the lane): two venues with the same history."""
    runtimes: list[VenueRuntime] = [start_runtime(tmp_path / "lane"),
                                    start_runtime(tmp_path / "route")]
    lane = with_fast_lane(create_venue_app(runtimes[0], TOKEN))
    try:
        with TestClient(lane) as fast, \
                TestClient(create_venue_app(runtimes[1], TOKEN)) as plain:
            yield fast, plain, lane
    finally:
        for runtime in runtimes:
            runtime.stop()


def _post(client: TestClient, path: str, body: Any) -> tuple[int, bytes]:
    response = client.post(path, content=json.dumps(body).encode(), headers=JSON)
    return response.status_code, _TS.sub(b'"ts":0', response.content)


def test_every_order_request_is_answered_byte_for_byte_as_the_route_answers_it(
    twins: tuple[TestClient, TestClient, OrderFastLane],
) -> None:
    fast, plain, lane = twins

    for path, body in REQUESTS:
        assert _post(fast, path, body) == _post(plain, path, body), (path, body)

    assert lane.answered >= 12  # the plain orders, refused by the venue or not, took the lane


def test_a_body_the_lane_is_not_sure_of_goes_to_the_route_untouched(
    twins: tuple[TestClient, TestClient, OrderFastLane],
) -> None:
    fast, _, lane = twins
    order = {"account": 1, "side": "buy", "qty": "0.1", "price": "4000000"}

    without_type = fast.post(ORDERS, content=json.dumps(order).encode())
    as_text = fast.post(ORDERS, content=json.dumps(order).encode(),
                        headers={"content-type": "text/plain"})
    unreadable = fast.post(ORDERS, content=b'{"account": 1, "side": ', headers=JSON)

    assert lane.answered == 0
    assert without_type.status_code == 422  # the route reads only a body declared JSON
    assert as_text.status_code == 422
    assert unreadable.status_code == 422
    assert unreadable.json()["error"]["code"] == "invalid_request"


def test_orders_the_lane_answers_are_counted_under_the_route_in_the_metrics(
    twins: tuple[TestClient, TestClient, OrderFastLane],
) -> None:
    fast, _, lane = twins
    fast.post(ORDERS, content=b'{"account":1,"side":"buy","qty":"0.1","price":"4000000"}',
              headers=JSON)
    fast.post(ORDERS, content=b'{"account":99,"side":"buy","qty":"0.1","price":"4000000"}',
              headers=JSON)

    metrics = fast.get("/metrics").text

    assert lane.answered == 2
    assert ('haltguard_http_requests_total{method="POST",route="/v1/markets/{symbol}/orders",'
            'status="201"} 1.0') in metrics
    assert ('haltguard_http_requests_total{method="POST",route="/v1/markets/{symbol}/orders",'
            'status="404"} 1.0') in metrics
    assert ('haltguard_http_request_duration_seconds_count{method="POST",'
            'route="/v1/markets/{symbol}/orders"} 2.0') in metrics


def test_the_lane_sheds_orders_over_capacity_as_the_route_does(tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path / "venue")
    app = create_venue_app(runtime, TOKEN,
                           load_shedding=SheddingSettings(order_capacity_per_s=1,
                                                          client_burst=1, capacity_burst_ms=1))
    lane = with_fast_lane(app)
    try:
        with TestClient(lane) as client:
            statuses = [client.post(ORDERS, headers=JSON, content=json.dumps(
                {"account": 1, "side": "buy", "qty": "0.1", "price": "4000000"}).encode(),
            ).status_code for _ in range(3)]
    finally:
        runtime.stop()

    assert statuses[0] == 201
    assert set(statuses[1:]) <= {429, 503}
    assert 429 in statuses[1:] or 503 in statuses[1:]


@pytest.mark.parametrize(("path", "symbol"), [
    ("/v1/markets/BTC-JPY/orders", "BTC-JPY"),
    ("/v1/markets//orders", None),
    ("/v1/markets/BTC-JPY/orders/1", None),
    ("/v1/markets/a/b/orders", None),
    ("/v2/markets/BTC-JPY/orders", None),
])
def test_only_the_place_order_path_names_a_market_for_the_lane(
    path: str, symbol: str | None
) -> None:
    assert order_symbol(path) == symbol
