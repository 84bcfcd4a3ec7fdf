"""Helpers of the replication tests: links, a venue with markets, orders."""

from __future__ import annotations

from pathlib import Path

from haltguard.gateway.demo import demo_setup_commands
from haltguard.gateway.runtime import VenueRuntime
from haltguard.replication.link import StreamLink
from haltguard.replication.models import ReplicationSettings
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.engine import Venue, hash_state
from haltguard.venue.types import Side


def open_link(opened: list[StreamLink], settings: ReplicationSettings, url: str,
              name: str = "test") -> StreamLink:
    link = StreamLink(settings, url, name=name).connect()
    opened.append(link)
    return link


def set_up_markets(runtime: VenueRuntime) -> None:
    """The demo's assets, markets and funded accounts, through the runtime."""
    for future in [runtime.submit(c) for c in runtime.read(demo_setup_commands)]:
        future.result(10)


def order(number: int) -> PlaceOrder:
    """A resting limit order on XRP-JPY (one of the demo's markets), never crossing."""
    side = Side.BUY if number % 2 else Side.SELL
    price = 80_000 - number % 50 if side is Side.BUY else 100_000 + number % 50
    return PlaceOrder("XRP-JPY", 1 + number % 50, side, 10_000, price,
                      client_order_id=f"o-{number}")


def state_hash(venue: Venue) -> str:
    return hash_state(venue.export_state())


def runtime_hash(runtime: VenueRuntime) -> str:
    return runtime.read(state_hash)


def folder(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(parents=True, exist_ok=True)
    return path
