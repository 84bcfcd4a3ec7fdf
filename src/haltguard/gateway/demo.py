"""The demo venue: JPY markets, funded accounts and a steady synthetic order flow.

Only ``haltguard serve --demo`` uses this, so a newcomer sees a living exchange. Setup is
idempotent: restarting the demo on its data directory lists and funds nothing twice. The
flow is the benchmark workload's mix (``haltguard.venue.workload``) moved onto each demo
market's grid around a slowly drifting mid price, submitted through the runtime like any
other client's orders, so every demo order is journaled and recoverable.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Iterator

import msgspec

from haltguard.gateway.runtime import OverloadedError, VenueRuntime, VenueUnavailableError
from haltguard.venue.commands import (
    AddAsset,
    AddMarket,
    CancelOrder,
    Command,
    Deposit,
    PlaceOrder,
)
from haltguard.venue.engine import Venue
from haltguard.venue.events import OrderAccepted
from haltguard.venue.markets import DEMO_ASSETS, MarketSpec, demo_markets
from haltguard.venue.types import MarketState
from haltguard.venue.workload import order_flow

log = logging.getLogger(__name__)

DEMO_ACCOUNTS = 50
# Opening funds per demo account, in whole units of each asset.
DEMO_FUNDING = {"JPY": 2_000_000_000, "BTC": 100, "ETH": 2_000, "XRP": 5_000_000}
# Mid prices the flow starts from, in quote per base (JPY).
DEMO_MIDS = {"BTC-JPY": "15000000", "ETH-JPY": "500000", "XRP-JPY": "90"}
DEMO_RATE_PER_S_DEFAULT = 20.0
FLOW_CHUNK = 200  # orders per generator; the mid moves between chunks
FLOW_ORDER_IDS_MAX = 10_000  # workload ids remembered so its cancels find real orders
MID_STEP_BPS_MAX = 30  # how far the mid may drift between chunks


def demo_setup_commands(venue: Venue) -> list[Command]:
    """What a fresh demo venue needs: assets, open markets, funded accounts 1..50.

    Anything already present (a restarted demo) is left alone.
    """
    commands: list[Command] = []
    assets = venue.assets
    commands.extend(AddAsset(asset) for asset in DEMO_ASSETS if asset.code not in assets)
    markets = venue.markets
    commands.extend(
        AddMarket(spec, MarketState.OPEN) for spec in demo_markets() if spec.symbol not in markets
    )
    if not venue.balances(1):
        for account in range(1, DEMO_ACCOUNTS + 1):
            for asset in DEMO_ASSETS:
                amount = asset.to_minor(str(DEMO_FUNDING[asset.code]))
                commands.append(Deposit(account, asset.code, amount, "demo funding"))
    return commands


def set_up_demo(runtime: VenueRuntime) -> int:
    """Submit the demo's setup; returns how many commands it took."""
    commands = runtime.read(demo_setup_commands)
    futures = [runtime.submit(command) for command in commands]
    for future in futures:
        future.result()
    return len(commands)


class DemoFlow:
    """A background thread placing and cancelling demo orders at about ``rate_per_s``."""

    def __init__(
        self, runtime: VenueRuntime, *, rate_per_s: float = DEMO_RATE_PER_S_DEFAULT, seed: int = 1
    ) -> None:
        if not 0 < rate_per_s <= 10_000:
            raise ValueError("the demo rate must be between 0 and 10000 orders per second")
        self.runtime = runtime
        self.interval_s = 1.0 / rate_per_s
        self.submitted = 0
        self._rng = random.Random(seed)
        # (market, chunk, the workload's order id) -> the venue's order id, for cancels
        self._order_ids: OrderedDict[tuple[str, int, int], int] = OrderedDict()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-flow", daemon=True)

    def start(self) -> DemoFlow:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        specs = self.runtime.read(lambda venue: venue.markets)
        mids = {s: specs[s].to_ticks(p) for s, p in DEMO_MIDS.items() if s in specs}
        chunk = 0
        try:
            while mids and not self._stop.is_set():
                chunk += 1
                flows = [self._flow(specs[symbol], mid, chunk) for symbol, mid in mids.items()]
                for steps in zip(*flows, strict=False):
                    for command, key in steps:
                        if command is None:
                            continue
                        if self._stop.wait(self.interval_s):
                            return
                        self._submit(command, key)
                for symbol, mid in mids.items():
                    step_bps = self._rng.randint(-MID_STEP_BPS_MAX, MID_STEP_BPS_MAX)
                    mids[symbol] = max(1_000, mid + mid * step_bps // 10_000)
        except VenueUnavailableError:
            log.warning("demo flow stopped: the venue is not taking commands")

    def _flow(
        self, spec: MarketSpec, mid: int, chunk: int
    ) -> Iterator[tuple[Command | None, tuple[str, int, int]]]:
        """One chunk of the workload moved onto ``spec``'s market and size; each command
        comes with the key its venue order id is remembered under."""
        seed = self._rng.randrange(1 << 30)
        flow = order_flow(seed, FLOW_CHUNK, first_seq=1, accounts=DEMO_ACCOUNTS, mid=mid)
        for workload_id, command in enumerate(flow, start=1):
            key = (spec.symbol, chunk, workload_id)
            if isinstance(command, PlaceOrder):
                qty = command.qty * max(1, spec.min_qty)
                yield msgspec.structs.replace(command, market=spec.symbol, qty=qty), key
            elif isinstance(command, CancelOrder):
                real_id = self._order_ids.get((spec.symbol, chunk, command.order_id))
                cancel = CancelOrder(spec.symbol, command.account, order_id=real_id or 0)
                yield (None if real_id is None else cancel), key

    def _submit(self, command: Command, key: tuple[str, int, int]) -> None:
        try:
            result = self.runtime.submit_and_wait(command)
        except OverloadedError:
            return
        self.submitted += 1
        for event in result.events:
            if type(event) is OrderAccepted and event.order_id == result.seq:
                self._order_ids[key] = event.order_id
                if len(self._order_ids) > FLOW_ORDER_IDS_MAX:
                    self._order_ids.popitem(last=False)
