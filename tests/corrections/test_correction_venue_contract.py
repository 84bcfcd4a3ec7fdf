"""Corrections through the venue contract, in process and over the venue's admin HTTP API:
the same events come back, a refusal carries the venue's reason, and the public trades feed
shows the correction."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from corrections_support import MARKET, TEST_POLICY, Story, flash_crash

from haltguard.app.venue_app import create_venue_app
from haltguard.corrections.policy import parse_policy
from haltguard.corrections.review import ReviewRequest, review
from haltguard.gateway.control import HttpVenueControl, InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.venue.commands import AdjustTrade, BustTrade
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.venue.events import TradeAdjusted, TradeBusted

TOKEN = "corrections-admin-token"
POLICY = parse_policy(TEST_POLICY)


class _Server:
    """uvicorn serving the venue app on a free local port, in a background thread."""

    def __init__(self, runtime: VenueRuntime) -> None:
        config = uvicorn.Config(create_venue_app(runtime, TOKEN), host="127.0.0.1", port=0,
                                log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(params=["in_process", "http"])
def crashed(request: pytest.FixtureRequest, tmp_path: Path
            ) -> Iterator[tuple[VenueControl, VenueRuntime, Story, str]]:
    runtime = VenueRuntime(tmp_path / "venue").start()
    try:
        story = flash_crash(runtime)
        if request.param == "in_process":
            yield InProcessVenueControl(runtime), runtime, story, ""
            return
        with _Server(runtime) as url, HttpVenueControl(url, TOKEN) as http:
            yield http, runtime, story, url
    finally:
        runtime.stop()


def test_a_bust_and_an_adjustment_go_through_the_contract_with_their_events(
    crashed: tuple[VenueControl, VenueRuntime, Story, str], tmp_path: Path,
) -> None:
    control, runtime, story, _ = crashed
    from_ns = int(story.crash_from.timestamp() * 1e6) * 1_000
    to_ns = int(story.crash_to.timestamp() * 1e6) * 1_000
    found, venue = review(tmp_path / "venue", ReviewRequest(from_ns, to_ns), POLICY)
    first, second = (f.trade for f in found.findings)
    cursor = control.correction_cursor()

    busted = control.correct_trades(BustTrade([first], "alice", "carol", "crash", POLICY.name))
    adjusted = control.correct_trades(AdjustTrade(
        second, venue.markets[MARKET].to_ticks("15000000"), "alice", "carol", "re-price",
        POLICY.name))

    assert [type(e) for e in busted] == [TradeBusted] and busted[0].trade_id == first.trade_id
    assert isinstance(adjusted[0], TradeAdjusted) and adjusted[0].new_price == 15_000_000
    assert control.correction_cursor().corrections_applied == cursor.corrections_applied + 2
    with pytest.raises(VenueControlError, match="already_busted"):
        control.correct_trades(BustTrade([first], "alice", "carol", "again", POLICY.name))
    assert runtime.read(lambda v: v.check_invariants()) == []


@pytest.mark.parametrize("crashed", ["http"], indirect=True)  # the feed is the HTTP API's
def test_the_public_trades_feed_shows_busted_and_re_priced_trades(
    crashed: tuple[VenueControl, VenueRuntime, Story, str], tmp_path: Path,
) -> None:
    control, _, story, url = crashed
    from_ns = int(story.crash_from.timestamp() * 1e6) * 1_000
    to_ns = int(story.crash_to.timestamp() * 1e6) * 1_000
    found, _ = review(tmp_path / "venue", ReviewRequest(from_ns, to_ns), POLICY)
    first, second = (f.trade for f in found.findings)
    control.correct_trades(BustTrade([first], "alice", "carol", "crash", POLICY.name))
    control.correct_trades(AdjustTrade(second, 14_000_000, "alice", "carol", "re-price",
                                       POLICY.name))

    trades = httpx.get(f"{url}/v1/markets/{MARKET}/trades").json()["trades"]

    shown = {t["trade_id"]: t for t in trades}
    assert shown[first.trade_id]["correction"] == "busted"
    assert shown[second.trade_id]["correction"] == "adjusted"
    assert shown[second.trade_id]["corrected_price"] == "14000000"
    assert "correction" not in shown[story.steady_trade_ids[0]]
