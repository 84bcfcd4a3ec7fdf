"""The story the compensation workflow tests share (imported by name; pytest puts this
folder on the path): a real venue with the demo's 50 funded accounts, an incident that
halted BTC-JPY, an order refused by the halt, and the policies and reference trades a run
names.

The golden figures, worked by hand:

- The reference CSV's trades in the window are 15,000,000.5 JPY x 1 BTC and 15,000,001.5 x 3
  BTC: VWAP = (15,000,000.5 + 45,000,004.5) / 4 = 15,000,001.25 JPY per BTC.
- Every demo account holds 100 BTC at the cut-off: 100 x 15,000,001.25 = 1,500,000,125 JPY.
  The demo's JPY has 4 decimals, so that is 15,000,001,250,000 minor units.
- Account 3's order was refused by the halt, so it is affected: +1,000 JPY goodwill.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from haltguard.compensation.settings import CompensationSettings
from haltguard.db.session import session_scope
from haltguard.gateway.control import InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.incidents import flows as incident_flows
from haltguard.incidents.models import IncidentCreate
from haltguard.incidents.rules import Category, Severity
from haltguard.responders.service import ManualClock, SmtpSettings
from haltguard.security.testing import ProvisionedOperator
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.types import MarketState, Side

JPY_MINOR_PER_YEN = 10_000
BTC_HOLDING_JPY = 1_500_000_125 * JPY_MINOR_PER_YEN
GOODWILL_JPY = 1_000 * JPY_MINOR_PER_YEN
REFUSED_ACCOUNT = 3
ACCOUNTS = 50
VWAP_TEXT = "15000001.250"

REFERENCE_CSV = """\
time,price,qty
2026-01-01T09:00:00+09:00,14000000,5
2026-01-01T10:00:00+09:00,15000000.5,1
2026-01-01T10:30:00+09:00,15000001.5,3
2026-01-01T11:30:00+09:00,16000000,9
"""
REFERENCE = {"name": "btc-jpy-vwap", "csv": "btc_trades.csv",
             "from_time": "2026-01-01T10:00:00+09:00", "to_time": "2026-01-01T11:00:00+09:00"}

TEST_POLICIES = {
    "btc-loss.yaml": """\
id: btc-asset-loss
version: 1
kind: asset_loss
description:
  ja: >-
    締め時点で BTC を保有していたお客様に、保有数量 × 参照価格を日本円でお支払いします。
    円の最小単位（0.0001 円）未満は切り捨てます。
  en: >-
    Customers who held BTC at the cut-off are paid their holding times the reference
    price, in yen, rounded down to the ledger's smallest unit of yen (0.0001).
currency: JPY
asset: BTC
reference: btc-jpy-vwap
""",
    "goodwill.yaml": """\
id: goodwill-jpy
version: 1
kind: fixed_amount
description:
  ja: 障害の影響を受けたお客様に一律 1,000 円をお支払いします。
  en: Every affected customer receives 1,000 yen.
currency: JPY
amount_minor: 10000000
""",
}


class Mailbox:
    """An SMTP server's inbox: every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.smtp = SmtpSettings()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if address in str(message["To"])]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


@dataclass
class Setup:
    """The incident story on a real venue, ready for a run to be proposed."""

    session_factory: sessionmaker[Session]
    runtime: VenueRuntime
    venue: InProcessVenueControl
    settings: CompensationSettings
    mailbox: Mailbox
    incident_id: int
    cutoff_seq: int
    now: datetime
    clock: ManualClock = field(init=False)

    def __post_init__(self) -> None:
        self.clock = ManualClock(self.now)

    @classmethod
    def make(cls, session_factory: sessionmaker[Session], runtime: VenueRuntime,
             venue: InProcessVenueControl, settings: CompensationSettings,
             mailbox: Mailbox) -> Setup:
        now = datetime.now(UTC)
        with session_scope(session_factory) as session:
            created = IncidentCreate(title="Matching engine stalled",
                                     category=Category.SOFTWARE_BUG, severity=Severity.SEV2,
                                     affected_markets=["BTC-JPY"])
            incident = incident_flows.open_incident(session, created, actor="alice",
                                                    clock=ManualClock(now))
            incident_id, ref = incident.id, incident.ref
        venue.set_market_state("BTC-JPY", MarketState.HALTED, actor="operator:alice",
                               reason="engine stalled", incident_id=ref)
        runtime.submit(PlaceOrder("BTC-JPY", REFUSED_ACCOUNT, Side.BUY, 10, 15_000_000)).result()
        cutoff_seq = runtime.read(lambda state: state.last_seq)
        venue.set_market_state("BTC-JPY", MarketState.LIMIT_ONLY, actor="operator:alice",
                               reason="engine back", incident_id=ref)
        return cls(session_factory, runtime, venue, settings, mailbox, incident_id, cutoff_seq,
                   now)

    def proposal(self, **overrides: Any) -> dict[str, Any]:
        """The API body of the golden run (both policies, the BTC reference)."""
        return {"incident_id": self.incident_id, "policies": ["btc-loss.yaml", "goodwill.yaml"],
                "cutoff_seq": self.cutoff_seq, "references": [REFERENCE],
                "from_time": (self.now.replace(microsecond=0)).isoformat(), **overrides}

    def jpy_of(self, account: int) -> int:
        """The account's JPY in the venue's ledger (available + locked), minor units."""
        balances = self.runtime.read(lambda state: state.balances(account))
        available, locked = balances.get("JPY", (0, 0))
        return available + locked


@dataclass
class Api:
    client: TestClient
    operators: dict[str, ProvisionedOperator]
    setup: Setup

    def as_(self, username: str) -> dict[str, str]:
        return self.operators[username].headers
