"""Security detectors (manual chapter 1.2): each watches one pattern of an attack and emits
a ``security.*`` signal when it appears; the policy engine decides what to do about it.

* Failed-login bursts per account and per source address, and credential stuffing (many
  accounts tried from one address). Fed from the audit chain, where the security domain
  already records every refused login with the client address (``operator.login_failed``):
  reading it needs no change to the login flow, sees logins from every process that shares
  the database, and cannot miss a failure the login committed. :class:`AuditSecurityFeed`
  polls it (run it as a monitor; it starts at the chain's end, so history raises nothing).
* The ``block_login`` action (:class:`LoginBlockEnforcer`): what a rule does about failed
  logins acts where the attack is, the operators' login route, through the operations
  service's login throttle; never on customers' trading, which behind a TLS proxy may share
  the attacker's address.
* Request floods per API key or address: a token bucket per client, ``429`` beyond it, and
  a client refused ``refusals_to_block`` times within a window is blocked for ``block_s``
  (the load middleware enforces both; a policy's ``block_client`` uses the same limiter).
* Withdrawals unusual for the account (amount against its own history, a destination it
  never used, too many in a short time) and hot-wallet outflow per asset above a rate,
  fed by the venue's ``Withdrawn`` events read from the journal (:class:`WithdrawalFeed`).
* Operator actions from outside an allow-list of networks: attempts the security layer
  refused (``security.network_denied`` in the audit chain), logins from outside the
  detection allow-list, and every authenticated request seen by
  :class:`OperatorNetworkMiddleware` on the operations API.

Detectors are pure (time is passed in, nothing is read from a clock or a database); the
feeds and the middleware at the bottom connect them to the outside.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from haltguard.common.clock import utc_now
from haltguard.common.network import IPNetwork, address_allowed
from haltguard.common.units import NS_PER_S
from haltguard.detection.decisions import ActionKind
from haltguard.detection.monitors import (
    CheckResult,
    Monitor,
    MonitorScheduler,
    MonitorSettings,
    ProcessCheck,
    SignalOutbox,
    SignalSink,
    deliver,
)
from haltguard.detection.signals import Signal
from haltguard.gateway.limits import (
    ADMITTED,
    Admission,
    ClientLimiter,
    FloodSettings,
    RateLimit,
    retry_after_s,
)
from haltguard.journal import JournalReader
from haltguard.security import audit
from haltguard.venue.events import Withdrawn
from haltguard.web.metrics import route_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from haltguard.detection.decisions import Decision, PlannedAction
    from haltguard.detection.service import DetectionService
    from haltguard.security.throttle import LoginThrottle

log = logging.getLogger(__name__)

KEYS_MAX_DEFAULT = 10_000


class SlidingWindow:
    """Per key, the events of the last ``window_ns``; bounded in keys and in events per key.

    A key's count saturates at ``events_max``: thresholds must stay below it. The least
    recently touched key is forgotten when ``keys_max`` is reached.
    """

    def __init__(self, window_ns: int, *, events_max: int = 1_000,
                 keys_max: int = KEYS_MAX_DEFAULT) -> None:
        self.window_ns = window_ns
        self.events_max = events_max
        self.keys_max = keys_max
        self._events: OrderedDict[str, deque[tuple[int, str]]] = OrderedDict()

    def add(self, key: str, now_ns: int, item: str = "") -> deque[tuple[int, str]]:
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque(maxlen=self.events_max)
            if len(self._events) > self.keys_max:
                self._events.popitem(last=False)
        self._events.move_to_end(key)
        events.append((now_ns, item))
        self._prune(events, now_ns)
        return events

    def events(self, key: str, now_ns: int) -> deque[tuple[int, str]]:
        events = self._events.get(key)
        if events is None:
            return deque()
        self._prune(events, now_ns)
        return events

    def _prune(self, events: deque[tuple[int, str]], now_ns: int) -> None:
        horizon = now_ns - self.window_ns
        while events and events[0][0] <= horizon:
            events.popleft()


def _distinct(events: Iterable[tuple[int, str]]) -> int:
    return len({item for _, item in events})


# --- failed logins -------------------------------------------------------------------


@dataclass(frozen=True)
class LoginSettings:
    window_s: int = 300
    account_failures_max: int = 5  # failed logins of one account within the window
    address_failures_max: int = 20  # failed logins from one address within the window
    address_accounts_max: int = 5  # distinct accounts tried from one address: stuffing
    keys_max: int = KEYS_MAX_DEFAULT

    def __post_init__(self) -> None:
        for name in ("window_s", "account_failures_max", "address_failures_max",
                     "address_accounts_max", "keys_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"LoginSettings.{name} must be at least 1")


class FailedLoginDetector:
    """Bursts of failed logins per account and per address, and credential stuffing.

    Each condition fires once when its count reaches the threshold and resolves (from
    :meth:`expire`) once the window holds fewer than the threshold again. Signals about an
    address also carry ``client`` (``address:<ip>``), the name a ``block_client`` takes.
    """

    def __init__(self, settings: LoginSettings | None = None) -> None:
        self.settings = settings = settings or LoginSettings()
        window_ns = settings.window_s * NS_PER_S
        self._by_account = SlidingWindow(window_ns, keys_max=settings.keys_max)
        self._by_address = SlidingWindow(window_ns, keys_max=settings.keys_max)
        self._raised: dict[tuple[str, str], Signal] = {}

    def login_failed(self, account: str, address: str, now_ns: int) -> list[Signal]:
        settings = self.settings
        signals = []
        account_events = self._by_account.add(account, now_ns, address)
        if len(account_events) >= settings.account_failures_max:
            signals += self._raise(
                "security.failed_logins", "account", account, len(account_events),
                threshold=f">= {settings.account_failures_max} failed logins within "
                f"{settings.window_s} s", now_ns=now_ns,
                extra={"source_addresses": ",".join(sorted({a for _, a in account_events}))[:500]},
            )
        address_events = self._by_address.add(address or "unknown", now_ns, account)
        if len(address_events) >= settings.address_failures_max:
            signals += self._raise(
                "security.failed_logins", "source_address", address, len(address_events),
                threshold=f">= {settings.address_failures_max} failed logins within "
                f"{settings.window_s} s", now_ns=now_ns, extra={},
            )
        accounts = _distinct(address_events)
        if accounts >= settings.address_accounts_max:
            signals += self._raise(
                "security.credential_stuffing", "source_address", address, accounts,
                threshold=f">= {settings.address_accounts_max} accounts tried from one "
                f"address within {settings.window_s} s", now_ns=now_ns,
                extra={"accounts": ",".join(sorted({a for _, a in address_events}))[:500]},
            )
        return signals

    def _raise(self, name: str, label: str, key: str, value: int, *, threshold: str,
               now_ns: int, extra: dict[str, str]) -> list[Signal]:
        if (name, key) in self._raised:
            return []
        signal = Signal(
            source="security", name=name, value=Decimal(value), ts_ns=now_ns,
            labels=({label: key, "client": f"address:{key}"} if label == "source_address"
                    else {label: key}),
            details={"threshold": threshold, "window_s": str(self.settings.window_s), **extra},
        )
        self._raised[(name, key)] = signal
        return [signal]

    def expire(self, now_ns: int) -> list[Signal]:
        """Resolve the conditions whose window no longer holds enough failures."""
        settings = self.settings
        resolved = []
        for (name, key), raised in list(self._raised.items()):
            if "account" in raised.labels:
                still = len(self._by_account.events(key, now_ns)) >= settings.account_failures_max
            elif name == "security.credential_stuffing":
                events = self._by_address.events(key, now_ns)
                still = _distinct(events) >= settings.address_accounts_max
            else:
                still = len(self._by_address.events(key, now_ns)) >= settings.address_failures_max
            if still:
                continue
            del self._raised[(name, key)]
            resolved.append(Signal(
                source="security", name=name, value=Decimal(0), ts_ns=now_ns,
                labels=raised.labels, details=raised.details, resolved=True,
            ))
        return resolved


class LoginBlockEnforcer:
    """Enforces ``block_login`` on the operations service's login throttle.

    The target is ``address:<ip>`` (the ``client`` label of the login signals) or a bare IP
    address. The block keeps that address away from ``/api/auth/login`` only; operators
    list and lift it with ``GET /api/login-blocks`` / ``haltguard operator login-blocks``.
    The executor writes the rule, values and outcome to the timeline and the audit chain.
    """

    def __init__(self, throttle: LoginThrottle,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.throttle = throttle
        self.clock = clock

    def enforce(self, decision: Decision, action: PlannedAction) -> None:
        if action.kind is not ActionKind.BLOCK_LOGIN:
            raise ValueError(f"{action.kind} is not block_login")
        duration_s = int(action.params.get("duration_s", "0"))
        reason = f"rule {decision.rule_id} ({decision.signal.name} = {decision.observed})"
        block = self.throttle.block(action.target, duration_s, reason=reason,
                                    actor="system:detection", now=self.clock())
        log.warning("login blocked for %s until %s: %s", block.address,
                    block.until.isoformat(), reason)

    def attach(self, service: DetectionService) -> None:
        service.add_enforcer(ActionKind.BLOCK_LOGIN, self.enforce)


# --- operators from outside the allowed networks -------------------------------------

class OperatorNetworkDetector:
    """Operator actions from addresses outside ``allowed_networks``.

    The same operator from the same address is reported once per ``repeat_after_s``: an
    operator working from a hotel raises one signal, not one per click. With no networks
    configured only attempts the security layer itself refused are reported.
    """

    def __init__(self, allowed_networks: tuple[IPNetwork, ...] = (), *,
                 repeat_after_s: int = 600, keys_max: int = KEYS_MAX_DEFAULT) -> None:
        self.allowed_networks = allowed_networks
        self.repeat_after_ns = repeat_after_s * NS_PER_S
        self.keys_max = keys_max
        self._last: OrderedDict[tuple[str, str], int] = OrderedDict()

    def operator_action(self, actor: str, address: str, action: str, now_ns: int,
                        *, refused: bool = False) -> Signal | None:
        """``refused``: the security layer already turned it away (its own allow-list)."""
        if not refused and (
            not self.allowed_networks or address_allowed(address or None, self.allowed_networks)
        ):
            return None
        key = (actor, address)
        last = self._last.get(key)
        if last is not None and now_ns - last < self.repeat_after_ns:
            return None
        self._last[key] = now_ns
        self._last.move_to_end(key)
        if len(self._last) > self.keys_max:
            self._last.popitem(last=False)
        allowed = ", ".join(str(n) for n in self.allowed_networks) or "(the security allow-list)"
        return Signal(
            source="security", name="security.operator_outside_network", value=Decimal(1),
            ts_ns=now_ns, labels={"actor": actor, "source_address": address or "unknown"},
            details={"action": action, "allowed_networks": allowed,
                     "refused": "true" if refused else "false"},
        )


class OperatorNetworkMiddleware:
    """On the operations API: after each request that an operator authenticated (the
    security dependency leaves them on ``request.state.operator``), checks the address."""

    def __init__(self, app: ASGIApp, detector: OperatorNetworkDetector,
                 outbox: SignalOutbox, clock: Callable[[], int] = time.time_ns) -> None:
        self.app = app
        self.detector = detector
        self.outbox = outbox
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] != "http" or not self.detector.allowed_networks:
            return
        operator = scope.get("state", {}).get("operator")
        actor = getattr(operator, "actor", None)
        if not isinstance(actor, str):
            return
        client = scope.get("client")
        address = str(client[0]) if client else ""
        action = f"{scope.get('method', '')} {route_of(scope)}"
        signal = self.detector.operator_action(actor, address, action, self.clock())
        if signal is not None:
            self.outbox.put(signal)


# --- the audit chain as a feed -------------------------------------------------------

AUDIT_LOGIN_FAILED = "operator.login_failed"
AUDIT_LOGIN_SUCCEEDED = "operator.login_succeeded"
AUDIT_NETWORK_DENIED = "security.network_denied"
AUDIT_BATCH_MAX = 500  # the audit list's own page bound


def _ns(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp()) * NS_PER_S + moment.microsecond * 1_000


class AuditSecurityFeed:
    """Reads new audit entries and feeds the login and operator-network detectors.

    Use :meth:`poll` as an in-process health check (``ProcessCheck(feed.poll)``): it reads
    at most ``batch_max`` entries a run, and a database it cannot read is a failed check.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        sink: SignalSink,
        *,
        logins: FailedLoginDetector | None = None,
        operators: OperatorNetworkDetector | None = None,
        batch_max: int = AUDIT_BATCH_MAX,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not 1 <= batch_max <= AUDIT_BATCH_MAX:
            raise ValueError(f"batch_max must be 1..{AUDIT_BATCH_MAX}")
        self.session_factory = session_factory
        self.sink = sink
        self.logins = logins or FailedLoginDetector()
        self.operators = operators or OperatorNetworkDetector()
        self.batch_max = batch_max
        self.clock = clock
        self.position = 0  # the index of the last entry read

    def start_at_end(self) -> AuditSecurityFeed:
        """Skip the history: only entries written from now on raise signals."""
        with self.session_factory() as session:
            _, total = audit.list_entries(session, limit=1)
        self.position = total
        return self

    def poll(self) -> CheckResult:
        with self.session_factory() as session:
            entries, _ = audit.list_entries(
                session, offset=self.position, limit=self.batch_max, newest_first=False
            )
            rows = [(e.index, e.action, e.actor, e.target, e.created_at,
                     audit.entry_details(e)) for e in entries]
        signals: list[Signal] = []
        for index, action, actor, target, created_at, details in rows:
            self.position = index
            signals += self._observe(action, actor, target, _ns(created_at), details)
        signals += self.logins.expire(self.clock())
        for signal in signals:
            deliver(self.sink, signal)
        return CheckResult(True, f"read {len(rows)} audit entries up to index {self.position}",
                           Decimal(len(rows)))

    def _observe(self, action: str, actor: str, target: str, ts_ns: int,
                 details: dict[str, object]) -> list[Signal]:
        address = str(details.get("client_address") or "")
        if action == AUDIT_LOGIN_FAILED:
            account = target.removeprefix("operator:")
            return self.logins.login_failed(account, address, ts_ns)
        if action == AUDIT_LOGIN_SUCCEEDED:
            signal = self.operators.operator_action(actor, address, "login", ts_ns)
            return [signal] if signal is not None else []
        if action == AUDIT_NETWORK_DENIED:
            signal = self.operators.operator_action(
                actor, address, str(details.get("action") or target), ts_ns, refused=True
            )
            return [signal] if signal is not None else []
        return []


# --- request floods ------------------------------------------------------------------


@dataclass(frozen=True)
class FloodVerdict:
    admission: Admission
    signal: Signal | None = None


class RequestFloodDetector:
    """Rate limits per client, then blocks with an expiry; emits ``security.request_flood``
    when it blocks a client and the same signal resolved when the block runs out."""

    def __init__(self, settings: FloodSettings | None = None) -> None:
        self.settings = settings = settings or FloodSettings()
        self.limiter = ClientLimiter(RateLimit(settings.rate_per_s, settings.burst),
                                     clients_max=settings.clients_max)
        self._refusals: OrderedDict[str, tuple[int, int]] = OrderedDict()  # start, count
        self._block_signals: dict[str, Signal] = {}

    def check(self, client: str, address: str, now_ns: int) -> FloodVerdict:
        """A block (the detector's or a rule's) applies to every client; the exempt
        networks only skip the automatic rate limit."""
        settings = self.settings
        block = self.limiter.blocked(client, now_ns)
        if block is not None:
            wait_s = retry_after_s(block.until_ns - now_ns, settings.retry_after_s_max)
            return FloodVerdict(Admission(
                429, "client_blocked",
                f"this client is blocked for {wait_s} s more ({block.reason}); requests are "
                "refused until then", wait_s,
            ))
        if (
            client.startswith("address:")
            and settings.exempt_networks
            and address_allowed(address, settings.exempt_networks)
        ):
            return FloodVerdict(ADMITTED)
        wait_ns = self.limiter.take(client, now_ns)
        if not wait_ns:
            return FloodVerdict(ADMITTED)
        refusals = self._count_refusal(client, now_ns)
        wait_s = retry_after_s(wait_ns, settings.retry_after_s_max)
        admission = Admission(
            429, "rate_limited",
            f"more than {settings.rate_per_s} requests/s (burst {settings.burst}) from this "
            f"client; slow down and retry in {wait_s} s", wait_s,
        )
        if refusals < settings.refusals_to_block:
            return FloodVerdict(admission)
        reason = (f"{refusals} requests over the rate limit within {settings.window_s} s "
                  f"(limit {settings.rate_per_s}/s, burst {settings.burst})")
        signal = self.block(client, settings.block_s, reason, now_ns, address=address,
                            observed=refusals)
        return FloodVerdict(admission, signal)

    def set_exempt_networks(self, networks: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
        """Replace the networks whose addresses are not rate limited; returns the previous
        ones so the caller can put them back (a drill whose loopback addresses stand for the
        internet does this). The caller holds the gateway's lock."""
        previous = self.settings.exempt_networks
        self.settings = replace(self.settings, exempt_networks=tuple(networks))
        return previous

    def _count_refusal(self, client: str, now_ns: int) -> int:
        start, count = self._refusals.get(client, (now_ns, 0))
        if now_ns - start >= self.settings.window_s * NS_PER_S:
            start, count = now_ns, 0
        self._refusals[client] = (start, count + 1)
        self._refusals.move_to_end(client)
        if len(self._refusals) > self.settings.clients_max:
            self._refusals.popitem(last=False)
        return count + 1

    def block(self, client: str, duration_s: int, reason: str, now_ns: int, *,
              address: str = "", observed: int = 0) -> Signal:
        """Block ``client`` for ``duration_s`` (the detector's own decision or a policy's
        ``block_client``); the signal says who, why and until when."""
        if not 1 <= duration_s <= 30 * 86_400:
            raise ValueError(f"a block lasts 1 s to 30 days, not {duration_s} s")
        until_ns = now_ns + duration_s * NS_PER_S
        self.limiter.block(client, until_ns, reason)
        self._refusals.pop(client, None)
        labels = {"client": client}
        if address:
            labels["source_address"] = address
        signal = Signal(
            source="security", name="security.request_flood", value=Decimal(observed),
            ts_ns=now_ns, labels=labels,
            details={"reason": reason, "block_s": str(duration_s),
                     "blocked_until_ns": str(until_ns),
                     "rate_limit": f"{self.settings.rate_per_s}/s burst {self.settings.burst}"},
        )
        self._block_signals[client] = signal
        return signal

    def expire(self, now_ns: int) -> list[Signal]:
        """End the blocks that ran out; each one's signal comes back resolved."""
        resolved = []
        for client, _ in self.limiter.expire_blocks(now_ns):
            raised = self._block_signals.pop(client, None)
            if raised is not None:
                resolved.append(Signal(
                    source="security", name=raised.name, value=Decimal(0), ts_ns=now_ns,
                    labels=raised.labels, details=raised.details, resolved=True,
                ))
        return resolved


# --- withdrawals ---------------------------------------------------------------------


@dataclass(frozen=True)
class WithdrawalSettings:
    """Amounts are in the asset's minor units (integers, ADR 0002).

    ``hot_wallet_outflow_max`` maps an asset to the most that may leave within
    ``hot_wallet_window_s``; assets not listed are not watched for outflow.
    """

    history_min: int = 5  # withdrawals of an asset before its amounts are judged
    history_max: int = 50  # amounts remembered per account and asset
    amount_multiple_max: int = 10  # an amount above this many times the median is unusual
    destinations_max: int = 100  # destinations remembered per account and asset
    burst_max: int = 5  # more withdrawals than this within burst_window_s is unusual
    burst_window_s: int = 600
    hot_wallet_outflow_max: tuple[tuple[str, int], ...] = ()
    hot_wallet_window_s: int = 3_600
    accounts_max: int = 100_000

    def __post_init__(self) -> None:
        for name in ("history_min", "history_max", "amount_multiple_max", "destinations_max",
                     "burst_max", "burst_window_s", "hot_wallet_window_s", "accounts_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"WithdrawalSettings.{name} must be at least 1")
        for asset, limit in self.hot_wallet_outflow_max:
            if limit < 1:
                raise ValueError(f"hot_wallet_outflow_max for {asset} must be positive")


@dataclass
class _AccountHistory:
    amounts: deque[int]
    destinations: OrderedDict[str, None]


class WithdrawalDetector:
    """Unusual withdrawals per account and outflow per asset."""

    def __init__(self, settings: WithdrawalSettings | None = None) -> None:
        self.settings = settings = settings or WithdrawalSettings()
        self._history: OrderedDict[tuple[int, str], _AccountHistory] = OrderedDict()
        self._recent = SlidingWindow(settings.burst_window_s * NS_PER_S,
                                     events_max=max(100, settings.burst_max * 4),
                                     keys_max=settings.accounts_max)
        self._outflow_max = dict(settings.hot_wallet_outflow_max)
        self._outflow: dict[str, deque[tuple[int, int]]] = {}
        self._outflow_sum: dict[str, int] = {}
        self._outflow_raised: set[str] = set()
        self._burst_raised: set[int] = set()

    def withdrawn(self, account: int, asset: str, amount: int, destination: str,
                  now_ns: int, *, learn_only: bool = False) -> list[Signal]:
        """Observe one withdrawal (in time order); ``learn_only`` records it as history
        (amounts, destinations, recent counts and outflow) without judging it."""
        history = self._history_of(account, asset)
        if learn_only:
            self._remember(history, amount, destination)
            self._recent.add(str(account), now_ns, asset)
            if asset in self._outflow_max:
                self._add_outflow(asset, amount, now_ns)
            return []
        signals = self._judge_amount(account, asset, amount, history, now_ns)
        signals += self._judge_destination(account, asset, destination, history, now_ns)
        self._remember(history, amount, destination)
        signals += self._judge_burst(account, asset, now_ns)
        return signals + self._judge_outflow(asset, amount, now_ns)

    def _remember(self, history: _AccountHistory, amount: int, destination: str) -> None:
        history.amounts.append(amount)
        if destination:
            history.destinations[destination] = None
            history.destinations.move_to_end(destination)
            if len(history.destinations) > self.settings.destinations_max:
                history.destinations.popitem(last=False)

    def _history_of(self, account: int, asset: str) -> _AccountHistory:
        key = (account, asset)
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = _AccountHistory(
                deque(maxlen=self.settings.history_max), OrderedDict()
            )
            if len(self._history) > self.settings.accounts_max:
                self._history.popitem(last=False)
        self._history.move_to_end(key)
        return history

    def _signal(self, name: str, value: int, now_ns: int, labels: dict[str, str],
                details: dict[str, str], *, resolved: bool = False) -> Signal:
        return Signal(source="security", name=name, value=Decimal(value), ts_ns=now_ns,
                      labels=labels, details=details, resolved=resolved)

    def _judge_amount(self, account: int, asset: str, amount: int,
                      history: _AccountHistory, now_ns: int) -> list[Signal]:
        settings = self.settings
        if len(history.amounts) < settings.history_min:
            return []
        median = int(statistics.median_low(history.amounts))
        limit = median * settings.amount_multiple_max
        if amount <= limit:
            return []
        return [self._signal(
            "security.withdrawal_unusual_amount", amount, now_ns,
            {"account": str(account), "asset": asset},
            {"amount_minor": str(amount), "median_minor": str(median),
             "threshold": f"> {settings.amount_multiple_max} x the median of the last "
                          f"{len(history.amounts)} withdrawals ({limit} minor units)"},
        )]

    def _judge_destination(self, account: int, asset: str, destination: str,
                           history: _AccountHistory, now_ns: int) -> list[Signal]:
        if not destination or not history.amounts or destination in history.destinations:
            return []
        return [self._signal(
            "security.withdrawal_new_destination", 1, now_ns,
            {"account": str(account), "asset": asset},
            {"destination": destination[:256],
             "known_destinations": str(len(history.destinations)),
             "previous_withdrawals": str(len(history.amounts)),
             "threshold": "a destination this account never withdrew to"},
        )]

    def _judge_burst(self, account: int, asset: str, now_ns: int) -> list[Signal]:
        settings = self.settings
        events = self._recent.add(str(account), now_ns, asset)
        count = len(events)
        if count <= settings.burst_max:
            self._burst_raised.discard(account)
            return []
        if account in self._burst_raised:
            return []
        self._burst_raised.add(account)
        return [self._signal(
            "security.withdrawal_burst", count, now_ns, {"account": str(account)},
            {"threshold": f"> {settings.burst_max} withdrawals within "
                          f"{settings.burst_window_s} s",
             "assets": ",".join(sorted({a for _, a in events}))},
        )]

    def _judge_outflow(self, asset: str, amount: int, now_ns: int) -> list[Signal]:
        limit = self._outflow_max.get(asset)
        if limit is None:
            return []
        total = self._add_outflow(asset, amount, now_ns)
        if total <= limit or asset in self._outflow_raised:
            return []
        self._outflow_raised.add(asset)
        return [self._signal(
            "security.hot_wallet_outflow", total, now_ns, {"asset": asset},
            {"outflow_minor": str(total),
             "threshold": f"> {limit} minor units within {self.settings.hot_wallet_window_s} s",
             "window_s": str(self.settings.hot_wallet_window_s)},
        )]

    def _add_outflow(self, asset: str, amount: int, now_ns: int) -> int:
        window = self._outflow.setdefault(asset, deque())
        window.append((now_ns, amount))
        self._outflow_sum[asset] = self._outflow_sum.get(asset, 0) + amount
        return self._prune_outflow(asset, now_ns)

    def _prune_outflow(self, asset: str, now_ns: int) -> int:
        window = self._outflow.get(asset, deque())
        horizon = now_ns - self.settings.hot_wallet_window_s * NS_PER_S
        while window and window[0][0] <= horizon:
            self._outflow_sum[asset] -= window.popleft()[1]
        return self._outflow_sum.get(asset, 0)

    def expire(self, now_ns: int) -> list[Signal]:
        """Resolve outflow alarms whose window dropped back under the limit."""
        resolved = []
        for asset in sorted(self._outflow_raised):
            total = self._prune_outflow(asset, now_ns)
            if total <= self._outflow_max[asset]:
                self._outflow_raised.discard(asset)
                resolved.append(self._signal(
                    "security.hot_wallet_outflow", total, now_ns, {"asset": asset},
                    {"outflow_minor": str(total), "window_s":
                     str(self.settings.hot_wallet_window_s)}, resolved=True,
                ))
        return resolved


class WithdrawalFeed:
    """Follows a venue's journal and feeds every ``Withdrawn`` event to the detector.

    Reads from ``from_seq``; withdrawals up to ``learn_through_seq`` only teach the
    detector each account's habits (no signals), so a restart does not re-alarm on history.
    Use :meth:`poll` as an in-process health check; it reads at most ``records_max`` records
    a run, and an unreadable journal is a failed check.
    """

    def __init__(self, data_dir: Path | str, sink: SignalSink, *,
                 detector: WithdrawalDetector | None = None, from_seq: int = 1,
                 learn_through_seq: int = 0, records_max: int = 10_000,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.reader = JournalReader(data_dir)
        self.reader.seek(from_seq)
        self.sink = sink
        self.detector = detector or WithdrawalDetector()
        self.learn_through_seq = learn_through_seq
        self.records_max = records_max
        self.clock = clock

    @property
    def next_seq(self) -> int:
        return self.reader.next_seq

    def poll(self) -> CheckResult:
        entries = self.reader.read_available(self.records_max)
        signals: list[Signal] = []
        withdrawals = 0
        for sequenced, events in entries:
            for event in events:
                if type(event) is not Withdrawn:
                    continue
                withdrawals += 1
                signals += self.detector.withdrawn(
                    event.account, event.asset, event.amount, event.destination,
                    sequenced.ts, learn_only=sequenced.seq <= self.learn_through_seq,
                )
        signals += self.detector.expire(self.clock())
        for signal in signals:
            deliver(self.sink, signal)
        return CheckResult(
            True, f"read {len(entries)} journal records ({withdrawals} withdrawals); next seq "
            f"{self.reader.next_seq}", Decimal(len(entries)),
        )

    def close(self) -> None:
        self.reader.close()


def add_security_feeds(
    scheduler: MonitorScheduler,
    sink: SignalSink,
    *,
    session_factory: sessionmaker[Session] | None = None,
    venue_data_dir: Path | None = None,
    venue_last_seq: int = 0,
    interval_ms: int = 1_000,
    withdrawals: WithdrawalSettings | None = None,
    logins: LoginSettings | None = None,
    operator_networks: tuple[IPNetwork, ...] = (),
) -> list[Monitor]:
    """Run the audit feed (logins, operator networks) and the withdrawal feed on
    ``scheduler``, each as an in-process check of the ``detection`` component, so a feed
    that cannot read its source raises ``health.failed`` like any other component.

    ``operator_networks`` is the detection allow-list (from the configuration); empty: every
    address is expected. The withdrawal feed learns the journal up to ``venue_last_seq``
    without judging it."""
    every = MonitorSettings(interval_ms=interval_ms, timeout_ms=interval_ms)
    added = []
    if session_factory is not None:
        audit_feed = AuditSecurityFeed(
            session_factory, sink, logins=FailedLoginDetector(logins),
            operators=OperatorNetworkDetector(operator_networks),
        ).start_at_end()
        added.append(scheduler.add("detection", "audit_feed", ProcessCheck(audit_feed.poll),
                                   every))
    if venue_data_dir is not None:
        withdrawal_feed = WithdrawalFeed(venue_data_dir, sink,
                                         detector=WithdrawalDetector(withdrawals),
                                         learn_through_seq=venue_last_seq)
        added.append(scheduler.add("detection", "withdrawal_feed",
                                   ProcessCheck(withdrawal_feed.poll), every))
    return added
