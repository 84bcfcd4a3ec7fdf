"""The customer gateway: signed requests in front of the public ``/v1`` API.

    client ─► CustomerGateway ─► (body limits, load shedding, forwarder / fast lane) ─► venue
               │ signature, receive window, replay guard (signing.check_signed)
               │ key -> account: the request's account (path, query or body) must be the
               │ key's own; a missing ``account`` is filled in with it
               └ permission of the route (read / trade); a locked account only reads

What needs a signature: anything that names an account or changes something (orders,
cancels, balances, open orders) and every route not known to be public market data. Public
market data (markets, assets, depth, trades, auction, health) passes unsigned, as on every
exchange. ``/v1/admin`` passes untouched: the venue checks its admin token itself.

Keys are held in memory (:class:`KeyCache`), reloaded when the keys' version in the database
moves (looked at on a worker thread at most every ``key_refresh_s`` as requests arrive, and
at once by the customer API that changed them), so a request costs no database round trip.
A refused request is answered here, counted by reason, and reported to
:class:`GatewayObserver` off the event loop. The check costs about 10-20 µs a request
(``benchmarks/bench_signing.py``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl, urlencode

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from haltguard.customers.errors import SignatureRefusedError
from haltguard.customers.settings import CustomerSettings
from haltguard.customers.signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    KeyGrant,
    Permission,
    Refusal,
    ReplayGuard,
    check_signed,
    permits,
)
from haltguard.web.asgi import BODY_RECEIVE_S_MAX_DEFAULT, receive_body, replay, replaying
from haltguard.web.errors import KIND_STATUS, error_body

log = logging.getLogger(__name__)

GATEWAY_BODY_BYTES_MAX = 64 * 1024
"""The most a signed request's body may be (the venue's routes take less)."""
PUBLIC_SEGMENTS = frozenset({"depth", "trades", "auction"})
OBSERVATIONS_MAX = 10_000

_encode = msgspec.json.Encoder().encode
_JSON = [(b"content-type", b"application/json")]


class _AccountField(msgspec.Struct):
    account: object = None


_decode_account = msgspec.json.Decoder(_AccountField).decode


def route_need(method: str, path: str) -> tuple[Permission | None, int | None]:
    """What the route needs: (None, None) for public market data, else the permission and
    the account named in the path (None when the path names none)."""
    if method != "GET":
        return Permission.TRADE, None
    parts = path[4:].split("/")  # after "/v1/"
    if method == "GET":
        head = parts[0]
        if head == "accounts" and len(parts) >= 2 and parts[1].isdigit():
            return Permission.READ, int(parts[1])
        if head in {"assets", "health"} and len(parts) == 1:
            return None, None
        if head == "markets" and (len(parts) <= 2 or (len(parts) == 3
                                                       and parts[2] in PUBLIC_SEGMENTS)):
            return None, None
        return Permission.READ, None
    return Permission.TRADE, None


class GatewayObserver(Protocol):
    """Hears of every refusal and every accepted request (never blocks the loop)."""

    def refused(self, account: int | None, refusal: Refusal, address: str) -> None: ...

    def accepted(self, grant: KeyGrant, address: str, location: str) -> None: ...


class KeyCache:
    """The usable keys in memory, reloaded when ``version()`` moves."""

    def __init__(self, load: Callable[[], list[KeyGrant]], version: Callable[[], object], *,
                 refresh_s: float) -> None:
        self._load = load
        self._version = version
        self.refresh_s = refresh_s
        self._grants: dict[str, KeyGrant] = {}
        self._seen_version: object = None
        self.reloads = 0
        self._lock = threading.Lock()
        self._looked_at = time.monotonic()
        self._looking = False

    def get(self, key_id: str) -> KeyGrant | None:
        return self._grants.get(key_id)

    def __len__(self) -> int:
        return len(self._grants)

    def refresh(self, *, force: bool = False) -> bool:
        """Reload when the version moved (or ``force``); True when it reloaded."""
        with self._lock:
            version = self._version()
            if not force and version == self._seen_version:
                return False
            grants = {grant.key_id: grant for grant in self._load()}
            self._grants = grants  # one reference swap: readers see old or new, whole
            self._seen_version = version
            self.reloads += 1
            return True

    def refresh_soon(self) -> None:
        """From the event loop: look for changes on a worker thread when ``refresh_s`` has
        passed since the last look (never waits, never two looks at once)."""
        now = time.monotonic()
        if self._looking or now - self._looked_at < self.refresh_s:
            return
        self._looked_at = now
        self._looking = True
        future = asyncio.get_running_loop().run_in_executor(None, self.refresh)
        future.add_done_callback(self._looked)

    def _looked(self, future: asyncio.Future[bool]) -> None:
        self._looking = False
        if not future.cancelled() and future.exception() is not None:
            log.error("reloading the customers' API keys failed (%s); the keys loaded "
                      "before stay in use; trying again", future.exception())


class CustomerGateway:
    """Plain ASGI in front of the public venue API (see the module docstring)."""

    def __init__(self, app: ASGIApp, keys: KeyCache, settings: CustomerSettings, *,
                 observer: GatewayObserver | None = None,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 receive_s_max: float = BODY_RECEIVE_S_MAX_DEFAULT) -> None:
        self.app = app
        self.keys = keys
        self.settings = settings
        self.observer = observer
        self.clock_ms = clock_ms
        self.receive_s_max = receive_s_max
        self.replay = ReplayGuard(settings.receive_window_ms, settings.replay_entries_max)
        self.location_header = settings.location_header.lower().encode()
        self.refused: Counter[str] = Counter()
        self.accepted = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/") or path.startswith(
                "/v1/admin/"):
            await self.app(scope, receive, send)
            return
        self.keys.refresh_soon()
        needed, path_account = route_need(scope["method"], path)
        credentials = self._credentials(scope)
        if needed is None and not credentials[0]:
            await self.app(scope, receive, send)
            return
        if not credentials[0]:
            await self._refuse(send, Refusal.MISSING, None, _address(scope))
            return
        body = await self._body(receive, send)
        if body is None:
            return
        judged = self._check(scope, body, needed, path_account, credentials)
        if isinstance(judged, _Refused):
            await self._refuse(send, *judged)
            return
        scope, body = judged
        await self.app(scope, replay(body, receive), send)

    def judge(self, scope: Scope, body: bytes) -> tuple[Scope, bytes] | GatewayAnswer:
        """What :meth:`__call__` decides, for a request whose body is already whole (the
        public port's front door, ``gateway/front.py``, reads orders itself): the request
        bound to the key's account, to pass on, or the refusal to answer (counted and
        observed as here)."""
        self.keys.refresh_soon()
        needed, path_account = route_need(scope["method"], scope["path"])
        credentials = self._credentials(scope)
        if needed is None and not credentials[0]:
            return scope, body
        judged: tuple[Scope, bytes] | _Refused
        if not credentials[0]:
            judged = _Refused(Refusal.MISSING, None, _address(scope))
        else:
            judged = self._check(scope, body, needed, path_account, credentials)
        if isinstance(judged, _Refused):
            return self._refusal_answer(*judged)
        return judged

    def _credentials(self, scope: Scope) -> tuple[bytes, bytes, bytes, bytes]:
        """(key id, timestamp, signature, location) from the request's headers."""
        key_id = timestamp = signature = location = b""
        for name, value in scope["headers"]:
            if name == KEY_HEADER:
                key_id = value
            elif name == TIMESTAMP_HEADER:
                timestamp = value
            elif name == SIGNATURE_HEADER:
                signature = value
            elif name == self.location_header:
                location = value
        return key_id, timestamp, signature, location

    def _check(self, scope: Scope, body: bytes, needed: Permission | None,
               path_account: int | None,
               credentials: tuple[bytes, bytes, bytes, bytes]) -> tuple[Scope, bytes] | _Refused:
        """A signed request checked: bound to its key's account, or why it is refused."""
        key_id, timestamp, signature, location = credentials
        address = _address(scope)
        grant = self.keys.get(key_id.decode("latin-1"))
        query = scope.get("query_string", b"")
        raw_path = scope.get("raw_path") or scope["path"].encode()
        target = (raw_path + b"?" + query if query else raw_path).decode("latin-1")
        verdict = check_signed(grant, timestamp=timestamp, signature=signature,
                               method=scope["method"], target=target, body=body,
                               address=address, now_ms=self.clock_ms(),
                               window_ms=self.settings.receive_window_ms, replay=self.replay)
        if verdict.grant is None:
            assert verdict.refusal is not None
            return _Refused(verdict.refusal, grant.account if grant else None, address)
        grant = verdict.grant
        refusal = permits(grant, needed or Permission.READ)
        if refusal is None and path_account is not None and path_account != grant.account:
            refusal = Refusal.ACCOUNT
        if refusal is not None:
            return _Refused(refusal, grant.account, address)
        bound = _bind_account(scope, body, grant.account)
        if bound is None:
            return _Refused(Refusal.ACCOUNT, grant.account, address)
        self.accepted += 1
        if self.observer is not None:
            self.observer.accepted(grant, address, location.decode("latin-1"))
        return bound

    async def _body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body: at once when it came in one message (no timer for the usual
        case), else within the receive deadline; None after answering 413 or 408."""
        first = await receive()
        if first["type"] == "http.request" and not first.get("more_body", False):
            body: bytes = first.get("body", b"")
            if len(body) <= GATEWAY_BODY_BYTES_MAX:
                return body
        return await receive_body(replaying(first, receive), send, GATEWAY_BODY_BYTES_MAX,
                                  self.receive_s_max)

    async def _refuse(self, send: Send, refusal: Refusal, account: int | None,
                      address: str) -> None:
        answer = self._refusal_answer(refusal, account, address)
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})

    def _refusal_answer(self, refusal: Refusal, account: int | None,
                        address: str) -> GatewayAnswer:
        self.refused[refusal.value] += 1
        if self.observer is not None:
            self.observer.refused(account, refusal, address)
        error = SignatureRefusedError(refusal)
        payload = _encode(error_body(error))
        return GatewayAnswer(KIND_STATUS[error.kind],
                             [*_JSON, (b"content-length", str(len(payload)).encode())], payload)


class _Refused(NamedTuple):
    refusal: Refusal
    account: int | None
    address: str


@dataclass(frozen=True)
class GatewayAnswer:
    """A refusal the gateway answers itself, as bytes for servers that write them."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


_ONE_ORDER = re.compile(r"/v1/markets/[^/]+/orders/[^/]+")


def _bind_account(scope: Scope, body: bytes, account: int) -> tuple[Scope, bytes] | None:
    """The request bound to ``account``: an ``account`` in the query or the body must be
    it (None when it is another), a missing one is filled in (in the query of a cancel and
    of reading one order, whose route then answers only for that account's order). Fields
    other than ``account`` are left exactly as sent."""
    query = scope.get("query_string", b"")
    named: list[str] = []
    if query:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        named = [value for name, value in pairs if name == "account"]
        if any(value != str(account) for value in named):
            return None
    if not named and (scope["method"] == "DELETE" or _ONE_ORDER.fullmatch(scope["path"])):
        joined = (query + b"&" if query else b"") + urlencode({"account": account}).encode()
        scope = {**scope, "query_string": joined}
    if not body:
        return scope, body
    named_in_body: object = None
    if b'"account"' in body or b"\\u" in body:  # else no key of the body can be "account"
        try:
            named_in_body = _decode_account(body).account
        except msgspec.DecodeError:
            return scope, body  # not a JSON object: the route refuses it in its own words
    elif not body.lstrip().startswith(b"{"):
        return scope, body
    if named_in_body is None:
        stripped = body.lstrip()
        inner = stripped[1:].lstrip()
        filled = b'{"account":%d%s' % (account, b"}" if inner.startswith(b"}") else b",")
        body = filled + (inner[1:] if inner.startswith(b"}") else inner)
        scope = {**scope, "headers": _with_length(scope["headers"], len(body))}
    elif type(named_in_body) is not int or named_in_body != account:
        return None
    return scope, body


def _with_length(headers: Any, length: int) -> list[tuple[bytes, bytes]]:
    kept = [(name, value) for name, value in headers if name != b"content-length"]
    return [*kept, (b"content-length", str(length).encode())]


class ExecutorObserver:
    """A :class:`GatewayObserver` that handles each observation on a worker thread (at most
    ``OBSERVATIONS_MAX`` at once; beyond that they are dropped and counted, never waited
    for). An accepted request is reported once per (account, address) unless it carries a
    location (impossible-travel detection needs each one)."""

    def __init__(self, handle: Callable[[tuple[Any, ...]], None]) -> None:
        self._handle = handle
        self._seen_devices: set[tuple[int, str]] = set()
        self.in_flight = 0
        self.dropped = 0
        self.failed = 0

    def refused(self, account: int | None, refusal: Refusal, address: str) -> None:
        self._submit(("refused", account, refusal, address, time.time_ns()))

    def accepted(self, grant: KeyGrant, address: str, location: str) -> None:
        device = (grant.account, address)
        if device in self._seen_devices and not location:
            return
        if len(self._seen_devices) < OBSERVATIONS_MAX * 10:
            self._seen_devices.add(device)
        self._submit(("accepted", grant.account, address, location, time.time_ns()))

    def _submit(self, item: tuple[Any, ...]) -> None:
        if self.in_flight >= OBSERVATIONS_MAX:
            self.dropped += 1
            return
        self.in_flight += 1
        future = asyncio.get_running_loop().run_in_executor(None, self._handle, item)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[None]) -> None:
        self.in_flight -= 1
        if not future.cancelled() and future.exception() is not None:
            self.failed += 1
            log.error("a customer gateway observation could not be handled: %s",
                      future.exception())
