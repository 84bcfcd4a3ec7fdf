"""The customers' test bench: a real venue (demo accounts funded), the operations service
and the venue's public API behind the customer gateway on one ASGI app, a manual clock,
and a client that signs requests as a customer's key does."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import ManualClock
from haltguard.customers import service
from haltguard.customers.flows import CustomerProtection
from haltguard.customers.gateway import CustomerGateway
from haltguard.customers.signing import signed_headers
from haltguard.db.session import session_scope
from haltguard.detection.signals import Signal
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.security import totp
from haltguard.security.testing import ProvisionedOperator
from haltguard.web.context import context_of

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
HOLD_S = 3_600
REVIEW_LIMIT_BTC_MINOR = 100_000_000  # 1 BTC
TOTP_STEP = timedelta(seconds=30)
BYSTANDER = 50


@dataclass
class Key:
    key_id: str
    secret: str
    account: int


@dataclass
class Bench:
    client: TestClient
    clock: ManualClock
    runtime: VenueRuntime
    operators: dict[str, ProvisionedOperator]
    session_factory: sessionmaker[Session]
    signals: list[Signal]
    venue_dir: Path
    totp_secrets: dict[int, str] = field(default_factory=dict)
    accounts_used: int = 0

    @property
    def protection(self) -> CustomerProtection:
        return context_of(self.client.app.operations).part(CustomerProtection)  # type: ignore[attr-defined]

    @property
    def gateway(self) -> CustomerGateway:
        gateway = self.protection.gateway
        assert gateway is not None
        return gateway

    def protection_venue(self) -> InProcessVenueControl:
        """The venue's own control, as the operations service holds it."""
        return InProcessVenueControl(self.runtime)

    def now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def signed(self, key: Key, method: str, url: str, body: Any = None, *,
               timestamp_ms: int | None = None, secret: str | None = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
        """One request signed with ``key`` (or a forged ``secret``), as a client library
        sends it: the exact body bytes are what is signed."""
        if timestamp_ms is None:  # a client signs each request at its own moment
            self.clock.advance(timedelta(milliseconds=1))
        content = b"" if body is None else json.dumps(body).encode()
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = signed_headers(key.key_id, (secret or key.secret).encode(),
                              timestamp_ms=self.now_ms() if timestamp_ms is None
                              else timestamp_ms, method=method, target=target, body=content)
        if body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        return self.client.request(method, url, content=content, headers=sent)

    def operator(self, name: str) -> dict[str, str]:
        return self.operators[name].headers

    def fresh_account(self) -> int:
        """A funded demo account no other test of the module has used (1..49; 50 is left
        to every test as a bystander that is never a customer)."""
        self.accounts_used += 1
        assert self.accounts_used < BYSTANDER, "the demo has no more funded accounts"
        return self.accounts_used

    def new_customer(self, account: int | None = None, phrase: str = "") -> Key:
        """A customer with a first (read, trade) key, as support's route makes them (that
        route itself is tested once; here the service is called directly, which is quicker
        than an operator's authenticated request)."""
        account = self.fresh_account() if account is None else account
        with session_scope(self.session_factory) as session:
            service.create_customer(session, account=account, email=f"c{account}@example.com",
                                    phrase=phrase, actor="operator:sam", now=self.clock.now())
            key, secret = service.create_key(
                session, account, label="first key", permissions=["read", "trade"],
                networks=[], expires_in_days=0, code="", actor="operator:sam",
                now=self.clock.now())
            key_id = key.key_id
        self.protection.keys_changed()
        return Key(key_id, secret, account)

    def code(self, account: int) -> str:
        """The authenticator's code now; the clock moves on a step so each is fresh."""
        self.clock.advance(TOTP_STEP)
        return totp.code_at(self.totp_secrets[account], self.clock.now())

    def turn_on_2fa(self, key: Key) -> list[str]:
        enrolment = self.signed(key, "POST", "/api/customers/me/2fa", {"code": ""})
        assert enrolment.status_code == 200, enrolment.text
        self.totp_secrets[key.account] = enrolment.json()["secret"]
        confirmed = self.signed(key, "POST", "/api/customers/me/2fa/confirm",
                                {"code": self.code(key.account)})
        assert confirmed.status_code == 204, confirmed.text
        codes: list[str] = enrolment.json()["recovery_codes"]
        return codes

    def new_key(self, key: Key, permissions: list[str], code: str = "") -> Key:
        response = self.signed(key, "POST", "/api/customers/me/keys",
                               {"permissions": permissions, "code": code})
        assert response.status_code == 201, response.text
        data = response.json()
        return Key(data["key_id"], data["secret"], key.account)

    def wait_for(self, found: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        """Until ``found()`` (the gateway's observations are handled on worker threads)."""
        deadline = time.monotonic() + timeout_s
        while not found():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def balance(self, account: int, asset: str) -> tuple[int, int]:
        balances: dict[str, tuple[int, int]] = self.runtime.read(
            lambda venue: venue.balances(account))
        return balances.get(asset, (0, 0))

    def order(self, key: Key, body: dict[str, Any], market: str = "BTC-JPY") -> httpx.Response:
        return self.signed(key, "POST", f"/v1/markets/{market}/orders", body)
