"""The customers' multi-step work: withdrawals through the venue contract, the self-lock
that freezes the account's withdrawals at the venue, and what the gateway observed turned
into device notices and detection signals.

:class:`CustomerProtection` is the one object the operations service and the gateway share
(a part of the operations context): the settings, the key cache, the detectors and where
their signals go.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp

from haltguard.common.clock import Clock
from haltguard.customers import service
from haltguard.customers.detectors import CustomerDetectors
from haltguard.customers.errors import CustomerError
from haltguard.customers.gateway import CustomerGateway, ExecutorObserver, KeyCache
from haltguard.customers.models import (
    Customer,
    CustomerWithdrawal,
    NoticeKind,
    WithdrawalStatus,
)
from haltguard.customers.settings import AuthMode, CustomerSettings, resolved_mode
from haltguard.customers.signing import Refusal, ReplayGuard
from haltguard.db.session import session_scope
from haltguard.detection.monitors import SignalSink, deliver
from haltguard.detection.signals import Signal
from haltguard.security import audit
from haltguard.venue.control import VenueControl, VenueControlError
from haltguard.web.context import context_of

log = logging.getLogger(__name__)

LOCATION_PARTS = 2
MICRODEGREES = 1_000_000


def _no_signals(signal: Signal) -> object:
    return None


@dataclass
class CustomerProtection:
    """What the customers' routes and the gateway share in one process."""

    settings: CustomerSettings
    session_factory: sessionmaker[Session]
    clock: Clock
    signal_sink: SignalSink = _no_signals
    keys: KeyCache = field(init=False)
    detectors: CustomerDetectors = field(init=False)
    replay: ReplayGuard = field(init=False)  # the customer API's (the gateway has its own)
    mode: AuthMode = AuthMode.AUTO  # as resolved by customer_front for serve
    mode_reason: str = "not serving /v1 from this process"
    gateway: CustomerGateway | None = None

    def __post_init__(self) -> None:
        self.keys = KeyCache(self._load_grants, self._keys_version,
                             refresh_s=self.settings.key_refresh_s)
        self.detectors = CustomerDetectors(self.settings)
        self.replay = ReplayGuard(self.settings.receive_window_ms,
                                  self.settings.replay_entries_max)

    def _load_grants(self) -> list[Any]:
        with session_scope(self.session_factory) as session:
            return service.key_grants(session)

    def _keys_version(self) -> object:
        with session_scope(self.session_factory) as session:
            return service.keys_version(session)

    def keys_changed(self) -> None:
        """After a commit that changed keys or a lock: the gateway sees it at once."""
        self.keys.refresh(force=True)

    def emit(self, signals: list[Signal]) -> None:
        for signal in signals:
            deliver(self.signal_sink, signal)

    # -- what the gateway observed ------------------------------------------------------

    def observe(self, item: tuple[Any, ...]) -> None:
        """One observation of :class:`~haltguard.customers.gateway.QueuedObserver`."""
        kind, account, *rest = item
        if kind == "refused":
            refusal, _address, ts_ns = rest
            if account is not None and isinstance(refusal, Refusal):
                self.emit(self.detectors.signature_refused(account, refusal.value, ts_ns))
            return
        address, location, ts_ns = rest
        place = parse_location(location)
        if place is not None:
            self.emit(self.detectors.seen_at(account, place[0], place[1], ts_ns))
        with session_scope(self.session_factory) as session:
            located = None if place is None else (int(place[0] * MICRODEGREES),
                                                  int(place[1] * MICRODEGREES))
            service.record_device(session, account, address, self.clock.now(), located)


def parse_location(text: str) -> tuple[float, float] | None:
    """``"35.68,139.76"`` as (latitude, longitude); None when absent or not a place."""
    parts = text.split(",")
    if len(parts) != LOCATION_PARTS:
        return None
    try:
        latitude, longitude = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return latitude, longitude


# --- withdrawals ------------------------------------------------------------------------


def _venue_of(venue: VenueControl | None) -> VenueControl:
    if venue is None:
        raise CustomerError("withdrawals are not available now: no venue is connected",
                            message_ja="現在出金できません（取引所システムに接続していません）",
                            code="venue_unavailable")
    return venue


def request_withdrawal(session: Session, venue: VenueControl | None, settings: CustomerSettings,
                       *, account: int, asset: str, amount_minor: int, address: str, code: str,
                       now: datetime) -> CustomerWithdrawal:
    """The customer's checks (unlocked, second factor, allow-listed address past its hold),
    then either held for review (above the asset's limit) or debited at the venue through
    the contract; every outcome is recorded and the customer told."""
    customer = service.check_withdrawal(session, account, asset=asset,
                                        amount_minor=amount_minor, address=address, code=code,
                                        now=now)
    service.notify(session, customer, NoticeKind.WITHDRAWAL_REQUESTED,
                   (f"{asset} の出金（{amount_minor} 最小単位、宛先 {address}）を受け付けました。",
                    f"A withdrawal of {amount_minor} minor units of {asset} to {address} was "
                    "requested."), now)
    limit = settings.review_limit_minor(asset)
    if limit is not None and amount_minor > limit:
        return service.record_withdrawal(
            session, customer, asset=asset, amount_minor=amount_minor, address=address,
            status=WithdrawalStatus.HELD,
            detail=f"above the review limit of {limit} minor units: held for review", now=now)
    row = service.record_withdrawal(session, customer, asset=asset, amount_minor=amount_minor,
                                    address=address, status=WithdrawalStatus.SENT, detail="",
                                    now=now)
    return _send(session, _venue_of(venue), row, now)


def _send(session: Session, venue: VenueControl, row: CustomerWithdrawal,
          now: datetime) -> CustomerWithdrawal:
    customer = service.get_customer(session, row.account)
    try:
        venue.withdraw(row.account, row.asset, row.amount_minor, destination=row.address,
                       reference=f"customer-withdrawal:{row.id}")
    except VenueControlError as exc:
        row.status = WithdrawalStatus.REFUSED.value
        row.detail = str(exc)
        row.decided_at = now
        return row
    row.status = WithdrawalStatus.SENT.value
    row.decided_at = now
    service.notify(session, customer, NoticeKind.WITHDRAWAL_SENT,
                   (f"{row.asset} の出金（{row.amount_minor} 最小単位、宛先 {row.address}）を"
                    "実行しました。",
                    f"A withdrawal of {row.amount_minor} minor units of {row.asset} to "
                    f"{row.address} was sent."), now)
    return row


def approve_held(session: Session, venue: VenueControl | None, withdrawal_id: int, *,
                 actor: str, now: datetime) -> CustomerWithdrawal:
    """Support's review passed: send a held withdrawal (a locked account's stays held)."""
    row = service.held_withdrawal(session, withdrawal_id)
    customer = service.get_customer(session, row.account)
    if customer.status == "locked":
        raise CustomerError("the account is locked: a held withdrawal is not sent until "
                            "support has unlocked it", message_ja="口座がロック中のため送金でき"
                                                                "ません", code="account_locked")
    audit.record(session, actor=actor, action="customer.withdrawal_approved",
                 target=f"customer-withdrawal:{row.id}",
                 details={"account": row.account, "asset": row.asset,
                          "amount_minor": row.amount_minor}, at=now)
    return _send(session, _venue_of(venue), row, now)


# --- the self-lock ----------------------------------------------------------------------


def lock_account(session: Session, venue: VenueControl | None, *, account: int, reason: str,
                 actor: str, now: datetime) -> list[str]:
    """Lock the account and freeze its withdrawals at the venue (journaled with the
    actor), in that order: the lock holds here even when the venue cannot be reached, and
    the answer says so."""
    service.lock(session, account, reason=reason, actor=actor, now=now)
    problems = []
    if venue is None:
        problems.append("no venue connected: withdrawals are refused here, not at the venue")
    else:
        try:
            venue.freeze_account_withdrawals(account, True, actor=actor,
                                             reason=reason or "locked by the customer")
        except VenueControlError as exc:
            problems.append(f"the venue did not freeze the account's withdrawals ({exc}); "
                            "they are refused here while the account is locked")
    return problems


def unlock_account(session: Session, venue: VenueControl | None, *, account: int,
                   verification: str, actor: str, now: datetime) -> None:
    """Support's unlock after verification; the venue's freeze is lifted first, so a
    failure leaves the account locked (nothing half-done)."""
    service.get_customer(session, account)
    if venue is not None:
        try:
            venue.freeze_account_withdrawals(account, False, actor=actor,
                                             reason=f"unlocked after verification: "
                                                    f"{verification}"[:1000])
        except VenueControlError as exc:
            raise CustomerError(f"the venue did not lift the account's withdrawal freeze "
                                f"({exc}); the account stays locked, try again",
                                message_ja="取引所システムで出金凍結を解除できませんでした。"
                                           "口座はロックされたままです",
                                code="venue_unavailable") from exc
    service.unlock(session, account, verification=verification, actor=actor, now=now)



# --- the gateway in front of /v1 -------------------------------------------------------


def customer_front(front: ASGIApp | None, operations: FastAPI, *, host: str, demo: bool,
                   receive_s_max: float) -> ASGIApp | None:
    """``front`` (what answers ``/v1``) behind the customer gateway in ``keys`` mode, or as
    it is in ``open`` mode; the mode and why are kept on the operations service's
    :class:`CustomerProtection` (``serve`` prints them, ``/api/customers/mode`` shows them)."""
    operations_context = context_of(operations)
    protection = operations_context.part(CustomerProtection)
    protection.mode, protection.mode_reason = resolved_mode(protection.settings.auth,
                                                            demo=demo, host=host)
    if demo:
        demo_customers(protection, operations_context.settings.data_dir / DEMO_KEYS_FILE_NAME)
    if front is None or protection.mode is AuthMode.OPEN:
        return front
    protection.keys.refresh(force=True)
    clock = protection.clock
    protection.gateway = CustomerGateway(
        front, protection.keys, protection.settings,
        observer=ExecutorObserver(protection.observe), receive_s_max=receive_s_max,
        clock_ms=lambda: int(clock.now().timestamp() * 1000))
    return protection.gateway


DEMO_CUSTOMERS = 3
DEMO_KEYS_FILE_NAME = "demo-customers.json"


def demo_customers(protection: CustomerProtection, keys_file: Path) -> list[int]:
    """The demo's customers (accounts 1..3, funded by the demo) with a read-and-trade key
    each, written once to ``keys_file`` (0600): a secret is shown only when it is made.
    Returns the accounts created now (none on a restarted demo)."""
    created: list[int] = []
    keys: dict[str, dict[str, str | int]] = {}
    now = protection.clock.now()
    with session_scope(protection.session_factory) as session:
        for account in range(1, DEMO_CUSTOMERS + 1):
            if session.get(Customer, account) is not None:
                continue
            service.create_customer(session, account=account, email=f"demo{account}@example.com",
                                    phrase=f"demo phrase {account}", actor="system:demo",
                                    now=now)
            key, secret = service.create_key(
                session, account, label="demo key", permissions=["read", "trade"],
                networks=[], expires_in_days=0, code="", actor="system:demo", now=now)
            keys[str(account)] = {"account": account, "key_id": key.key_id, "secret": secret}
            created.append(account)
    if keys:
        descriptor = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(keys, handle, indent=2)
        protection.keys_changed()
    return created
