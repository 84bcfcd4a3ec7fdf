"""What a failover drill and its benchmark measure: customers that follow ``/v1/health`` to
whichever venue node serves and remember every order it acknowledged (its seq and client
order id, and when), and the checks after: every acknowledged order in the survivor's
journal at the seq it was acknowledged with, and the nodes' states equal by hash.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from haltguard.journal import JournalReader, recover
from haltguard.replication.processes import NodeProcess
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.engine import hash_state

_customer_sets = itertools.count(1)


@dataclass(frozen=True)
class Ack:
    node: str
    seq: int
    client_order_id: str
    at: float  # time.monotonic() of the answer


class Customers:
    """Paced orders (about ``rate_per_s``, on XRP-JPY of the demo, never crossing) to
    whichever node answers ``/v1/health`` with 200; each answer recorded."""

    def __init__(self, nodes: list[NodeProcess], rate_per_s: float = 150.0,
                 workers: int = 3, timeout_s: float = 1.0) -> None:
        self.nodes = nodes
        self.interval_s = workers / rate_per_s
        self.timeout_s = timeout_s  # a customer gives up on a node that does not answer
        self.acks: list[Ack] = []
        self.refusals: list[tuple[str, int, float]] = []  # node, status (0: none), when
        self._numbers = itertools.count(1)
        self.prefix = f"c{next(_customer_sets)}"  # client order ids unique across instances
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, daemon=True)
                         for _ in range(workers)]

    def start(self) -> Customers:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _primary(self) -> NodeProcess | None:
        for node in self.nodes:
            if node.health() == 200:
                return node
        return None

    def _work(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            node = None
            while not self._stop.is_set():
                node = node or self._primary()
                if node is None:
                    self._stop.wait(0.02)
                    continue
                number = next(self._numbers)
                body = {"account": 1 + number % 50, "side": "buy" if number % 2 else "sell",
                        "qty": "1000", "price": "80" if number % 2 else "100",
                        "client_order_id": f"{self.prefix}-{number}"}
                try:
                    answer = client.post(f"{node.url}/v1/markets/XRP-JPY/orders", json=body)
                except httpx.HTTPError:
                    with self._lock:
                        self.refusals.append((node.name, 0, time.monotonic()))
                    node = None
                    continue
                with self._lock:
                    if answer.status_code == 201:
                        self.acks.append(Ack(node.name, int(answer.json()["seq"]),
                                             str(body["client_order_id"]), time.monotonic()))
                    else:
                        self.refusals.append((node.name, answer.status_code, time.monotonic()))
                        node = None
                self._stop.wait(self.interval_s)


def journal_orders(data_dir: Path) -> dict[int, str]:
    """seq -> client order id of every order in a node's journal (it may be running)."""
    found: dict[int, str] = {}
    reader = JournalReader(data_dir)
    try:
        reader.seek(1)
        while entries := reader.read_available():
            for sequenced, _ in entries:
                if type(sequenced.command) is PlaceOrder:
                    found[sequenced.seq] = sequenced.command.client_order_id
    finally:
        reader.close()
    return found


def lost(acks: list[Ack], data_dir: Path) -> list[Ack]:
    """The acknowledged orders a node's journal does not hold at the seq acknowledged."""
    held = journal_orders(data_dir)
    return [ack for ack in acks if held.get(ack.seq) != ack.client_order_id]


def hashes_at_common_seq(*data_dirs: Path) -> set[str]:
    """The state hashes of (live) nodes' journals at the last seq all of them hold."""
    last = min(recover(path, repair=False)[0].last_seq for path in data_dirs)
    return {hash_state(recover(path, repair=False, through_seq=last)[0].export_state())
            for path in data_dirs}


def failover_s(acks: list[Ack], old: str, new: str) -> float | None:
    """From the old primary's last acknowledgement to the new one's first."""
    last_old = max((ack.at for ack in acks if ack.node == old), default=None)
    first_new = min((ack.at for ack in acks if ack.node == new and
                     (last_old is None or ack.at > last_old)), default=None)
    if last_old is None or first_new is None:
        return None
    return first_new - last_old
