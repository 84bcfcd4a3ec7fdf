"""The only contact between the gateway's load shedding and detection: what the gateway
measures and offers, and the shapes of what detection plugs in.

The gateway sheds load and limits clients on its own; turning what it saw into signals is
detection's job. So the gateway closes a :class:`LoadWindow` every ``window_ms`` and hands
it to a :class:`LoadDetecting` (detection's ``LoadDetector``), asks a
:class:`FloodLimiting` (detection's ``RequestFloodDetector``) about every request, and puts
whatever signals they return into a :class:`SignalQueue`, never looking inside them (``S``
is detection's signal type). Detection registers its client actions (``block_client``,
``rate_limit_client``) with the gateway through :class:`ClientActions`. Detection reads the
venue's state through :class:`RuntimeStatusLike`. The gateway imports nothing of detection;
the app wires the two together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from haltguard.common.network import IPNetwork
from haltguard.common.units import NS_PER_MS
from haltguard.gateway.limits import Admission, ClientLimiter, FloodSettings

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)
S_contra = TypeVar("S_contra", contravariant=True)

BLOCK_CLIENT = "block_client"
RATE_LIMIT_CLIENT = "rate_limit_client"
CLIENT_ACTION_KINDS = (BLOCK_CLIENT, RATE_LIMIT_CLIENT)
"""The rule actions the gateway enforces (detection's ``ActionKind`` values)."""


class RuntimeStatusLike(Protocol):
    """The fields of :class:`haltguard.gateway.runtime.RuntimeStatus` the checks read."""

    running: bool
    failure: str
    queue_depth: int
    queue_depth_max: int
    commands: int
    overloads: int


# --- what the gateway measures ---------------------------------------------------------

# Upper bounds (ms) of the latency buckets the detector's p99 is read from.
LATENCY_BOUNDS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
                      1_000, 1_500, 2_000, 3_000, 5_000, 10_000)


def latency_bucket(latency_ns: int) -> int:
    latency_ms = latency_ns // NS_PER_MS
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if latency_ms < bound:
            return index
    return len(LATENCY_BOUNDS_MS)


@dataclass
class LoadWindow:
    """What happened to new orders during one window."""

    start_ns: int
    offered: int = 0
    admitted: int = 0
    shed_429: int = 0
    shed_503: int = 0
    in_flight_refused: int = 0  # of shed_503: refused because the in-flight bound was reached
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS)
                                                                     + 1))

    def observe_latency(self, latency_ns: int) -> None:
        self.latency_counts[latency_bucket(latency_ns)] += 1

    def latency_p99_ms(self) -> int | None:
        """The bucket bound holding the 99th percentile (an upper bound), or None if empty."""
        return latency_percentile_ms(self.latency_counts, 99)


def latency_percentile_ms(counts: list[int], percent: int) -> int | None:
    """The bucket bound (ms) holding the ``percent``-th percentile of latency bucket
    ``counts`` (an upper bound; 60 000 past the last bucket), or None for no sample."""
    total = sum(counts)
    if total == 0:
        return None
    rank = -(-total * percent // 100)
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else 60_000
    return None


LATENCY_SAMPLES_MIN = 20  # fewer acknowledgements in a window say nothing about p99


# --- what detection plugs in -----------------------------------------------------------


class LoadDetecting(Protocol[S]):
    """Turns each closed window into signals (detection's ``LoadDetector``)."""

    @property
    def raised(self) -> bool:
        """Whether any of its signals is raised now (the window thread keeps running)."""
        ...

    def evaluate(
        self, window: LoadWindow, end_ns: int, queue_depth: int, queue_depth_max: int
    ) -> list[S]: ...


class FloodVerdictLike(Protocol[S_co]):
    """Admit or refuse one request, and a signal if the refusal blocked its client."""

    @property
    def admission(self) -> Admission: ...

    @property
    def signal(self) -> S_co | None: ...


class FloodLimiting(Protocol[S]):
    """Per-client request limits with blocks (detection's ``RequestFloodDetector``).

    ``limiter`` holds the buckets and blocks the gateway enforces; ``check`` is asked about
    every request, ``expire`` once a window; ``block`` is a person's or a drill's block.
    """

    limiter: ClientLimiter

    @property
    def settings(self) -> FloodSettings: ...

    def check(self, client: str, address: str, now_ns: int) -> FloodVerdictLike[S]: ...

    def expire(self, now_ns: int) -> list[S]: ...

    def block(self, client: str, duration_s: int, reason: str, now_ns: int, *,
              address: str = "", observed: int = 0) -> S: ...

    def set_exempt_networks(self, networks: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]: ...


class SignalQueue(Protocol[S_contra]):
    """Where the gateway puts signals; delivered off the event loop (``SignalOutbox``)."""

    def put(self, signal: S_contra) -> None: ...


class LoadSignals(Protocol[S]):
    """Everything detection plugs into one venue's load guard (``venue_load_signals``)."""

    @property
    def detector(self) -> LoadDetecting[S]: ...

    @property
    def flood(self) -> FloodLimiting[S]: ...

    @property
    def outbox(self) -> SignalQueue[S] | None: ...


class NamedSignal(Protocol):
    @property
    def name(self) -> str: ...


class ClientDecision(Protocol):
    """What the gateway reads of a rule's decision to explain a client action."""

    @property
    def rule_id(self) -> str: ...

    @property
    def signal(self) -> NamedSignal: ...

    @property
    def observed(self) -> str: ...


class ClientAction(Protocol):
    """A planned ``block_client`` or ``rate_limit_client``: ``kind`` is one of
    :data:`CLIENT_ACTION_KINDS`, ``params`` are strings as written in the rules file."""

    @property
    def kind(self) -> str: ...

    @property
    def target(self) -> str: ...

    @property
    def params(self) -> Mapping[str, str]: ...


ClientEnforcer = Callable[[ClientDecision, ClientAction], None]


class ClientActions(Protocol):
    """Who decides on client actions (detection's ``DetectionService``)."""

    def add_client_enforcer(self, enforcer: ClientEnforcer) -> None: ...
