"""The two steps of a protective action at the console: review, then confirm.

Review changes nothing: it says what the action will do with the venue's own numbers
("BTC-JPY: 1,234 resting orders, new orders refused"). Confirm runs the incidents domain's
own flow (``incidents.flows``), the one the API's route runs, with the request model the API
takes; the permission each needs is the API route's (:data:`PROTECTIVE_ACTIONS`). A resume
after a SEV1 or a kill-switch release comes back as a pending approval for a second operator,
as it does through the API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from haltguard.common.errors import ErrorKind
from haltguard.console.errors import ConsoleError, FormValueError
from haltguard.console.forms import Form
from haltguard.console.venue_watch import VenueSummary
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import (
    ActionOutcome,
    ApprovalStatus,
    HaltRequest,
    KillSwitchRequest,
    MarketStateRequest,
    ResumeRequest,
    WithdrawalsRequest,
)
from haltguard.security.permissions import Action
from haltguard.venue.control import VenueControl
from haltguard.venue.types import MarketState

RESUME_AUCTION_SECONDS_DEFAULT = 180


@dataclass(frozen=True)
class ProtectiveAction:
    """One protective action of the incident page: the permission the API's route demands,
    the text key of what it does, and what it is aimed at (``markets``, ``asset`` or all)."""

    permission: Action
    effect_key: str
    target: str


PROTECTIVE_ACTIONS: dict[str, ProtectiveAction] = {
    "halt": ProtectiveAction(Action.MARKET_HALT, "effect_halt", "markets"),
    "cancel_only": ProtectiveAction(Action.MARKET_SET_STATE, "effect_cancel_only", "markets"),
    "resume": ProtectiveAction(Action.MARKET_RESUME, "effect_resume", "markets"),
    "kill_switch": ProtectiveAction(Action.KILL_SWITCH_ENGAGE, "effect_kill_switch", ""),
    "kill_switch_release": ProtectiveAction(Action.KILL_SWITCH_RELEASE,
                                            "effect_kill_switch_release", ""),
    "freeze": ProtectiveAction(Action.WITHDRAWALS_FREEZE, "effect_freeze", "asset"),
    "unfreeze": ProtectiveAction(Action.WITHDRAWALS_UNFREEZE, "effect_unfreeze", "asset"),
}


@dataclass(frozen=True)
class ActionRequest:
    """A protective action as the form asked for it, checked before anything is done."""

    name: str
    action: ProtectiveAction
    markets: list[str]
    asset: str
    reason: str
    auction_seconds: int

    @classmethod
    def from_form(cls, form: Form) -> ActionRequest:
        name = form.get("action")
        action = PROTECTIVE_ACTIONS.get(name)
        if action is None:
            raise FormValueError(f"no protective action {name!r}; choose one on the incident "
                                 "page", message_ja="保護操作を選んでください")
        request = cls(name=name, action=action, markets=form.all("markets"),
                      asset=form.get("asset").strip().upper(), reason=form.get("reason").strip(),
                      auction_seconds=form.integer("auction_seconds",
                                                   RESUME_AUCTION_SECONDS_DEFAULT))
        if action.target == "markets" and not request.markets:
            raise FormValueError("choose at least one market", message_ja="市場を選んでください")
        if action.target == "asset" and not request.asset:
            raise FormValueError("name the asset", message_ja="通貨を入力してください")
        if not request.reason:
            raise FormValueError(
                "give a reason; it goes to the journal, the timeline and the audit chain",
                message_ja="理由を入力してください(ジャーナル・タイムライン・監査ログに記録されます)")
        return request


def effects(request: ActionRequest, venue: VenueSummary,
            say: Callable[..., str]) -> list[str]:
    """What the action will do, one line per target, with the venue's numbers; ``say`` is
    the operator's language (``Viewer.t``)."""
    if request.action.target == "markets":
        lines = []
        for market in request.markets:
            row = venue.market(market)
            count = row.resting_orders if row is not None else None
            orders = f"{count:,}" if count is not None else say("unknown")
            lines.append(say(request.action.effect_key, market=market, orders=orders,
                             seconds=request.auction_seconds))
        return lines
    if request.action.target == "asset":
        return [say(request.action.effect_key, asset=request.asset)]
    return [say(request.action.effect_key)]


def run(session: Session, venue: VenueControl | None, request: ActionRequest, *,
        incident_id: int, actor: str, now: datetime) -> ActionOutcome:
    """Run the confirmed action through the incidents domain's flow."""
    incident = incidents.get(session, incident_id)
    if request.name == "kill_switch_release":  # only asks: the venue is worked on approval
        return incident_flows.release_kill_switch(
            session, incident, KillSwitchRequest(reason=request.reason), actor=actor, now=now)
    if venue is None:
        raise ConsoleError(
            "this service has no venue connection, so no protective action can be taken; "
            "start it with a venue", kind=ErrorKind.UNAVAILABLE, code="venue_not_connected",
            message_ja="取引所に接続していないため、保護操作はできません。取引所とともに起動してください。")
    markets, reason = request.markets, request.reason
    if request.name == "halt":
        return incident_flows.halt_markets(
            session, venue, incident, HaltRequest(markets=markets, reason=reason),
            actor=actor, now=now)
    if request.name == "cancel_only":
        return incident_flows.set_market_state(
            session, venue, incident,
            MarketStateRequest(markets=markets, state=MarketState.CANCEL_ONLY, reason=reason),
            actor=actor, now=now)
    if request.name == "resume":
        resume = ResumeRequest(markets=markets, reason=reason,
                               auction_seconds=request.auction_seconds)
        return incident_flows.resume_markets(session, venue, incident, resume, actor=actor,
                                             now=now)
    if request.name == "kill_switch":
        return incident_flows.engage_kill_switch(
            session, venue, incident, KillSwitchRequest(reason=reason), actor=actor, now=now)
    return incident_flows.freeze_withdrawals(
        session, venue, incident, WithdrawalsRequest(asset=request.asset, reason=reason),
        actor=actor, now=now, frozen=request.name == "freeze")


class VenueRefusedError(ConsoleError):
    """The venue took none of the action; the refusals are kept in the timeline."""

    kind = ErrorKind.CONFLICT
    code = "venue_refused"


def outcome_notice(outcome: ActionOutcome) -> str:
    """``waiting_second`` while a second operator must approve, else ``done_ok``; a refusal of
    every target by the venue raises :class:`VenueRefusedError` (as the API's 409)."""
    if outcome.approval is not None and outcome.approval.status == ApprovalStatus.PENDING:
        return "waiting_second"
    if outcome.results and not any(result.ok for result in outcome.results):
        details = "; ".join(f"{result.target}: {result.detail}" for result in outcome.results)
        raise VenueRefusedError(f"the venue refused {outcome.action}: {details}",
                                message_ja=f"取引所が操作を拒否しました: {details}")
    return "done_ok"
