"""Corrections end to end: review -> propose (or dry run) -> a second operator approves ->
the venue journals the command -> the affected accounts' notices and the timeline.

A proposal reads the journal (``review.py``) and checks everything the venue would refuse
before anything is stored or sent: an unknown trade, one busted before, one the policy says
stands (outside its band or past its correction window), a price off the tick grid, a
rollback target the journal cannot rebuild, a proposer the policy does not allow. A dry run
is the same proposal, returned and not stored. Approval sends exactly the stored command
(with the approver's name) through :class:`~haltguard.venue.control.VenueControl`; the
venue's own checks (balances, a plan gone stale) are the last word, and a refusal is
recorded as such with nothing changed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy.orm import Session

from haltguard.common.units import NS_PER_S
from haltguard.corrections import service
from haltguard.corrections.errors import (
    AlreadyBustedError,
    NotAllowedError,
    OffGridPriceError,
    TradeStandsError,
    UnknownTradeError,
)
from haltguard.corrections.models import (
    AdjustBody,
    BustBody,
    CorrectionKind,
    CorrectionRequest,
    CorrectionStatus,
    RequestRead,
    ReviewBody,
    RollbackBody,
)
from haltguard.corrections.policy import CorrectionPolicy, load_policy
from haltguard.corrections.review import (
    BUSTED,
    Finding,
    ReferencePoint,
    ReviewRequest,
    ReviewResult,
    plan_rollback,
    review,
)
from haltguard.corrections.settings import CorrectionsSettings
from haltguard.corrections.texts import public_note
from haltguard.impact.models import iso_utc
from haltguard.incidents import service as incidents
from haltguard.incidents.models import PublicUpdateCreate
from haltguard.incidents.rules import IncidentStatus
from haltguard.venue.commands import AdjustTrade, BustTrade, RollbackTo
from haltguard.venue.control import TradeCorrection, VenueControl, VenueControlError
from haltguard.venue.corrections import fees_at, settlement
from haltguard.venue.engine import Venue
from haltguard.venue.markets import GridError, MarketSpec

PENDING_APPROVER = ""
"""The approver of a stored command until a second operator approves it."""
_CORRECTION = BustTrade | AdjustTrade | RollbackTo


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS_PER_S + moment.microsecond * 1_000


def review_request(body: ReviewBody, venue_specs: dict[str, MarketSpec] | None = None
                   ) -> ReviewRequest:
    """The review's request in the venue's units (a series price off its market's grid is a
    clear error)."""
    series: list[ReferencePoint] = []
    for point in body.reference_series:
        spec = (venue_specs or {}).get(point.market)
        if spec is None:
            continue
        series.append(ReferencePoint(point.market, _ns(point.time),
                                     _ticks(spec, point.price, "reference price")))
    return ReviewRequest(
        from_ts_ns=_ns(body.from_time), to_ts_ns=_ns(body.to_time), market=body.market or "",
        account=body.account or 0, deviation_bps_min=body.deviation_bps_min,
        reference_series=series,
    )


def run_review(settings: CorrectionsSettings, body: ReviewBody) -> dict[str, Any]:
    """The review as the API shows it: each erroneous trade with both accounts, deviation,
    status and the effect on balances, prices and amounts as decimals."""
    policy, policy_sha = load_policy(settings.policy_file)
    result, venue = _review(settings.journal_dir, body, policy)
    return {"window": {"from_seq": result.from_seq, "to_seq": result.to_seq},
            "policy": _policy_record(policy, policy_sha),
            "trades_reviewed": result.trades_reviewed, "truncated": result.truncated,
            "references": {market: venue.markets[market].price_text(price)
                           for market, price in result.references.items()},
            "findings": [_trade_row(venue, f) for f in result.findings],
            "asset_decimals": result.asset_decimals}


def _review(journal_dir: Path, body: ReviewBody, policy: CorrectionPolicy
            ) -> tuple[ReviewResult, Venue]:
    request = review_request(body)
    if body.reference_series:  # the series needs the market grids: read them first
        _, venue = review(journal_dir, request, policy)
        request = review_request(body, venue.markets)
    return review(journal_dir, request, policy)


def _ticks(spec: MarketSpec, price: str, what: str) -> int:
    try:
        return spec.to_ticks(price)
    except GridError as exc:
        raise OffGridPriceError(
            f"the {what} {price} is not on {spec.symbol}'s grid ({exc})",
            message_ja=f"{what} {price} は {spec.symbol} の呼値の単位に合っていません",
            next_step=f"give a multiple of the tick size {spec.tick_size}",
        ) from None


def _policy_record(policy: CorrectionPolicy, sha256: str) -> dict[str, Any]:
    return {"id": policy.id, "version": policy.version, "name": policy.name,
            "sha256": sha256, "text": {"en": policy.text.en, "ja": policy.text.ja},
            "allow_debit": policy.allow_debit}


def _trade_row(venue: Venue, finding: Finding) -> dict[str, Any]:
    spec = venue.markets[finding.trade.market]
    trade = finding.trade
    return {
        "trade_id": trade.trade_id, "market": trade.market, "seq": finding.seq,
        "ts_ns": finding.ts_ns, "time": iso_utc(finding.ts_ns), "price": trade.price,
        "price_text": spec.price_text(trade.price), "qty": trade.qty,
        "qty_text": spec.qty_text(trade.qty), "taker_side": trade.taker_side.value,
        "taker_account": trade.taker_account, "maker_account": trade.maker_account,
        "reference_price_text": spec.price_text(finding.reference_price),
        "deviation_bps": finding.deviation_bps, "status": finding.status,
        "settled_price_text": spec.price_text(finding.settled_price),
        "changes": [{"asset": c.asset, "account": c.account, "amount": c.amount}
                    for c in finding.changes],
    }


def _allowed(policy: CorrectionPolicy, role: str, *, approving: bool) -> None:
    chosen = policy.may_approve if approving else policy.may_propose
    if role not in chosen:
        what = "approve" if approving else "propose"
        raise NotAllowedError(
            f"the policy {policy.name} lets {', '.join(chosen)} {what} trade corrections, "
            f"not the {role} role",
            message_ja=f"ポリシー {policy.name} では、{role} は取引訂正を{what}できません",
            next_step="ask an operator of a role the policy names",
        )


def _chosen_findings(
    result: ReviewResult, trade_ids: list[int], policy: CorrectionPolicy, now: datetime
) -> list[Finding]:
    """The findings to correct: all of the review's that stand, or exactly ``trade_ids``,
    each checked against the policy (erroneous, not busted, inside the window)."""
    by_id = {finding.trade.trade_id: finding for finding in result.findings}
    if trade_ids:
        missing = [trade_id for trade_id in trade_ids if trade_id not in by_id]
        if missing:
            raise UnknownTradeError(
                f"trade(s) {', '.join(map(str, missing))} are not erroneous trades of seq "
                f"{result.from_seq} to {result.to_seq} (unknown there, or inside the band, "
                "so they stand)",
                message_ja=f"約定 {', '.join(map(str, missing))} は"
                "対象期間の異常約定ではありません",
                next_step="review the window with `haltguard trades review` and name trades "
                "it lists",
            )
        chosen = [by_id[trade_id] for trade_id in trade_ids]
    else:
        chosen = [f for f in result.findings if f.status != BUSTED]
    busted = [f.trade.trade_id for f in chosen if f.status == BUSTED]
    if busted:
        raise AlreadyBustedError(
            f"trade(s) {', '.join(map(str, busted))} are busted already; a trade is busted once",
            message_ja=f"約定 {', '.join(map(str, busted))} は取消し済みです",
            next_step="leave them out",
        )
    limit_ns = policy.correct_within_minutes * 60 * NS_PER_S
    late = [f.trade.trade_id for f in chosen if _ns(now) - f.ts_ns > limit_ns]
    if late:
        raise TradeStandsError(
            f"trade(s) {', '.join(map(str, late))} are older than the policy's "
            f"{policy.correct_within_minutes} minutes: under {policy.name} they stand",
            message_ja=f"約定 {', '.join(map(str, late))} は訂正期限"
            f"（{policy.correct_within_minutes}分）を過ぎているため、そのまま有効です",
            next_step="leave them out (compensation, not a correction, is the remedy then)",
        )
    if not chosen:
        raise UnknownTradeError(
            f"the review of seq {result.from_seq} to {result.to_seq} found no erroneous trade "
            "to correct",
            message_ja="対象期間に訂正すべき異常約定はありません",
            next_step="widen the window or check the band with `haltguard trades review`",
        )
    return chosen


def propose_bust(
    session: Session, body: BustBody, *, settings: CorrectionsSettings, actor: str, role: str,
    now: datetime,
) -> RequestRead:
    policy, policy_sha = load_policy(settings.policy_file)
    _allowed(policy, role, approving=False)
    result, venue = _review(settings.journal_dir, body, policy)
    chosen = _chosen_findings(result, list(body.trade_ids), policy, now)
    command = BustTrade(
        [f.trade for f in chosen], actor, PENDING_APPROVER, body.reason, policy.name,
        str(body.incident_id), policy.allow_debit,
    )
    changes: dict[tuple[str, int], int] = defaultdict(int)
    for finding in chosen:
        spec = venue.markets[finding.trade.market]
        terms = venue.corrections.terms(finding.trade)
        for key, amount in settlement(spec, finding.trade, terms, -1).items():
            changes[key] += amount
    plan = {"trades": [_trade_row(venue, f) for f in chosen],
            "balance_changes": _changes_rows(changes),
            "asset_decimals": result.asset_decimals,
            "window": {"from_seq": result.from_seq, "to_seq": result.to_seq}}
    return _propose(session, CorrectionKind.BUST, body.incident_id, body.reason, actor, now,
                    policy, policy_sha, plan, command, dry_run=body.dry_run)


def propose_adjust(
    session: Session, body: AdjustBody, *, settings: CorrectionsSettings, actor: str,
    role: str, now: datetime,
) -> RequestRead:
    policy, policy_sha = load_policy(settings.policy_file)
    _allowed(policy, role, approving=False)
    result, venue = _review(settings.journal_dir, body, policy)
    (finding,) = _chosen_findings(result, [body.trade_id], policy, now)
    spec = venue.markets[finding.trade.market]
    price = _ticks(spec, body.price, "adjusted price")
    old = venue.corrections.terms(finding.trade)
    if price == old.price:
        raise OffGridPriceError(
            f"trade {body.trade_id} already settles at {body.price}",
            message_ja=f"約定 {body.trade_id} の価格はすでに {body.price} です",
            next_step="give the price the trade should settle at",
        )
    command = AdjustTrade(finding.trade, price, actor, PENDING_APPROVER, body.reason,
                          policy.name, str(body.incident_id), policy.allow_debit)
    changes = settlement(spec, finding.trade, fees_at(spec, finding.trade.qty, price), 1)
    for key, amount in settlement(spec, finding.trade, old, -1).items():
        changes[key] += amount
    row = {**_trade_row(venue, finding), "new_price": price,
           "new_price_text": spec.price_text(price)}
    plan = {"trades": [row], "balance_changes": _changes_rows(changes),
            "asset_decimals": result.asset_decimals,
            "window": {"from_seq": result.from_seq, "to_seq": result.to_seq}}
    return _propose(session, CorrectionKind.ADJUST, body.incident_id, body.reason, actor, now,
                    policy, policy_sha, plan, command, dry_run=body.dry_run)


def propose_rollback(
    session: Session, body: RollbackBody, *, settings: CorrectionsSettings, actor: str,
    role: str, now: datetime,
) -> RequestRead:
    policy, policy_sha = load_policy(settings.policy_file)
    _allowed(policy, role, approving=False)
    planned = plan_rollback(
        settings.journal_dir, body.target_seq, actor=actor, approver=PENDING_APPROVER,
        reason=body.reason, rule=policy.name, incident_id=str(body.incident_id),
        allow_debit=policy.allow_debit,
    )
    command = planned.command
    plan = {
        "target_seq": planned.target_seq, "target_time": iso_utc(planned.target_ts_ns),
        "planned_at_seq": planned.planned_at_seq, "orders_to_cancel": planned.orders_to_cancel,
        "trades_to_bust": planned.trades_to_bust, "first_trade_id": command.first_trade_id,
        "last_trade_id": command.last_trade_id,
        "balance_changes": [{"asset": c.asset, "account": c.account, "amount": c.amount}
                            for c in command.reversals],
        "asset_decimals": planned.asset_decimals,
    }
    return _propose(session, CorrectionKind.ROLLBACK, body.incident_id, body.reason, actor,
                    now, policy, policy_sha, plan, command, dry_run=body.dry_run,
                    accounts=planned.accounts)


def _changes_rows(changes: dict[tuple[str, int], int]) -> list[dict[str, Any]]:
    return [{"asset": asset, "account": account, "amount": amount}
            for (asset, account), amount in sorted(changes.items()) if amount]


def _propose(  # noqa: PLR0917 - one private helper of the three proposals
    session: Session, kind: CorrectionKind, incident_id: int, reason: str, actor: str,
    now: datetime, policy: CorrectionPolicy, policy_sha: str, plan: dict[str, Any],
    command: TradeCorrection, *, dry_run: bool, accounts: list[int] | None = None,
) -> RequestRead:
    policy_record = _policy_record(policy, policy_sha)
    commands = [msgspec.to_builtins(command)]
    if accounts is None:
        accounts = sorted({int(c["account"]) for c in plan["balance_changes"]} - {0})
    else:
        accounts = [account for account in accounts if account != 0]
    digest = hashlib.sha256(msgspec.json.encode(
        {"kind": kind.value, "incident_id": incident_id, "proposed_by": actor,
         "reason": reason, "policy": policy_record, "plan": plan, "commands": commands},
        order="sorted",
    )).hexdigest()
    request = CorrectionRequest(
        incident_id=incident_id, kind=kind.value, proposed_by=actor, proposed_at=now,
        reason=reason, policy=policy_record, plan=plan, commands=commands, accounts=accounts,
        digest=digest, allow_debit=policy.allow_debit,
    )
    if dry_run:
        return RequestRead(
            id=None, incident_id=incident_id, kind=kind, status=None, proposed_by=actor,
            proposed_at=now, reason=reason, policy=policy_record, plan=plan,
            accounts=accounts, digest=digest, allow_debit=policy.allow_debit,
        )
    return service.read(session, service.store(session, request, now=now))


def approve(
    session: Session, request_id: int, *, digest: str, approver: str, role: str,
    settings: CorrectionsSettings, venue: VenueControl, now: datetime,
) -> RequestRead:
    """The second operator's approval: the stored command goes to the venue with their name;
    what the venue did (applied, or refused with its reason) is recorded either way."""
    request = service.get(session, request_id)
    service.check_approval(session, request, approver=approver, digest=digest)
    policy, _ = load_policy(settings.policy_file)
    _allowed(policy, role, approving=True)
    commands = [msgspec.convert({**data, "approver": approver}, _CORRECTION)
                for data in request.commands]
    events: list[dict[str, Any]] = []
    outcome, detail = CorrectionStatus.APPLIED, ""
    try:
        for command in commands:
            events += [msgspec.to_builtins(e) for e in venue.correct_trades(command)]
    except VenueControlError as exc:
        outcome, detail = CorrectionStatus.REFUSED, str(exc)
    service.decide(session, request, approver=approver, now=now, outcome=outcome,
                   detail=detail, venue_events=_correction_events(events))
    incident = incidents.get(session, request.incident_id)
    if outcome is CorrectionStatus.APPLIED and incident.status != IncidentStatus.CLOSED:
        ja, en = public_note(request.kind, request.plan, request.policy)
        incidents.post_public_update(session, incident, PublicUpdateCreate(
            message_ja=ja, message_en=en), actor=approver, now=now)
    return service.read(session, request)


def reject(
    session: Session, request_id: int, *, digest: str, rejecter: str, role: str, reason: str,
    settings: CorrectionsSettings, now: datetime,
) -> RequestRead:
    """The second operator declines the correction they reviewed (the same checks as an
    approval: never the proposer, only the digest shown, a role the policy lets approve)."""
    request = service.get(session, request_id)
    service.check_approval(session, request, approver=rejecter, digest=digest)
    policy, _ = load_policy(settings.policy_file)
    _allowed(policy, role, approving=True)
    service.reject(session, request, rejecter=rejecter, reason=reason, now=now)
    return service.read(session, request)


def _correction_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events worth keeping with the decision (not every cancelled order)."""
    kept = {"trade_busted", "trade_adjusted", "venue_rolled_back"}
    return [event for event in events if event.get("type") in kept]
