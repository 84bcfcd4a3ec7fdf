"""The compensation workflow, step by step: propose (compute a run from the journal) ->
approve (a second operator) -> pay (into the venue, exactly once, resumable) -> statements
(each paid account told in Japanese and English) and the public note on the status page.

Each step reads what the previous one stored and nothing else: a run's lines are computed
once (:mod:`compute`, pure) from inputs gathered here (the policies and reference trades
named in the proposal; from the journal, in one read through
:func:`haltguard.impact.journal_facts.read_journal_facts`: the cut-off balances, the
affected accounts, each refused order's prices, the fees paid in the window and the VWAPs of
the venue's own markets), and everything after that works on the stored lines. The venue is
reached only through :class:`~haltguard.venue.control.VenueControl`.

A refused order whose market has no trade before the refusal, or never traded again within
the journal, has no loss that can be valued: it gets no part, and the run's ``window``
record lists it with the reason (``refused_orders.not_computed``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape
from pathlib import Path
from typing import Any, Final

import msgspec
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock
from haltguard.common.units import NS_PER_S
from haltguard.compensation import service, texts
from haltguard.compensation.compute import (
    FeePaid,
    MarketAssets,
    RefusedOrder,
    RunInputs,
    RunResult,
    compute_run,
    minor_units_per_unit,
)
from haltguard.compensation.errors import ProposalError, RunStateError
from haltguard.compensation.models import (
    CompensationRun,
    CompensationStatement,
    Contact,
    ReferenceSource,
    RunProposal,
    StatementCounts,
    StatementStatus,
)
from haltguard.compensation.payout import PayoutLine, PayoutReport, pay
from haltguard.compensation.policies import (
    AssetLoss,
    FeeRefund,
    FixedAmount,
    PolicySet,
    RefusedOrders,
    load_policies,
)
from haltguard.compensation.reference import (
    ReferencePrice,
    load_trades_csv,
    vwap,
    vwap_of_market,
)
from haltguard.compensation.settings import CompensationSettings
from haltguard.db.session import session_scope
from haltguard.impact.journal_facts import read_journal_facts
from haltguard.impact.models import FactsRequest, ImpactWindow, JournalFacts, MarketVwapRequest
from haltguard.impact.state import journal_range
from haltguard.incidents import service as incidents
from haltguard.incidents.models import Incident, PublicUpdateCreate
from haltguard.incidents.rules import IncidentStatus
from haltguard.journal.recovery import gc_paused
from haltguard.notify import service as notify
from haltguard.notify.channels import DeliveryError, SmtpConnection
from haltguard.notify.messages import MailIdentity, compose, header_value
from haltguard.notify.models import Language
from haltguard.notify.settings import NotifySettings
from haltguard.notify.texts import texts_for
from haltguard.venue.control import VenueControl
from haltguard.venue.types import Side

log = logging.getLogger(__name__)

STATEMENT_WRITE_BATCH_MAX = 5_000
"""Accounts whose statements are written per flush."""


def _ns(moment: datetime) -> int:
    """A zoned time as the journal's nanoseconds since the epoch (exact to the microsecond)."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1_000


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_S, UTC).isoformat()


# --- propose: gather the inputs, compute, store ----------------------------------------


def _named_file(directory: Path, name: str, what: str, setting: str) -> Path:
    path = directory / name
    if path.parent != directory or not path.is_file():
        raise ProposalError(
            f"there is no {what} {name!r} in {directory}",
            next_step=f"put the file in {directory} (setting {setting}) or name one that is "
            "there",
            message_ja=f"{directory} に{what} {name!r} がありません",
        )
    return path


def policy_records(policy_set: PolicySet, files: list[str]) -> list[dict[str, Any]]:
    """Each policy as the run keeps it: what a reader and the statements quote."""
    records = []
    for item in (*policy_set.policies, *policy_set.caps):
        record = msgspec.to_builtins(item)
        assert isinstance(record, dict)
        record["files"] = files
        records.append(record)
    return records


def _csv_reference(settings: CompensationSettings, source: ReferenceSource) -> ReferencePrice:
    assert source.csv is not None
    path = _named_file(settings.reference_dir, source.csv, "reference trades file",
                       "compensation.reference_dir")
    trades = load_trades_csv(path, gap_ns_max=source.gap_s_max * NS_PER_S)
    return vwap(trades, _ns(source.from_time), _ns(source.to_time),
                price_places=source.price_places)


def _market_reference(facts: JournalFacts, source: ReferenceSource) -> ReferencePrice:
    sums = facts.vwaps[source.name]
    spec = facts.markets[sums.market]
    return vwap_of_market(notional_ticks_lots=sums.notional_ticks_lots,
                          volume_lots=sums.volume_lots, trades=sums.trades, tick=spec.tick,
                          lot=spec.lot, from_ts_ns=sums.from_ts_ns, to_ts_ns=sums.to_ts_ns,
                          price_places=source.price_places)


def _references(
    settings: CompensationSettings, proposal: RunProposal, facts: JournalFacts | None
) -> tuple[dict[str, ReferencePrice], list[dict[str, Any]]]:
    """Each reference price the proposal names (CSV sources when ``facts`` is None, the
    venue's markets from ``facts``), with the record that explains it."""
    prices: dict[str, ReferencePrice] = {}
    records: list[dict[str, Any]] = []
    for source in proposal.references:
        if (source.market is None) != (facts is None):
            continue
        price = (_csv_reference(settings, source) if facts is None
                 else _market_reference(facts, source))
        prices[source.name] = price
        records.append({
            "name": source.name, "source": "csv" if source.csv else "venue",
            "csv": source.csv or "", "market": source.market or "",
            "from": source.from_time.isoformat(), "to": source.to_time.isoformat(),
            "price": str(price.price), "price_places": price.price_places,
            "rounding": price.rounding.value, "trades_used": price.trades_used,
            "volume": str(price.volume),
        })
    return prices, records


def _window(
    incident: Incident, proposal: RunProposal, now: datetime, journal_dir: Path
) -> ImpactWindow:
    """The proposal's window, else the incident's (started or detected, until resolved or
    now), starting no earlier than the journal's first record."""
    start = proposal.from_time or incident.started_at or incident.detected_at
    end = proposal.to_time or incident.resolved_at or now
    first_ts_ns = journal_range(journal_dir).first_ts_ns
    return ImpactWindow(from_ts_ns=max(_ns(start), first_ts_ns), to_ts_ns=_ns(end))


REFUSED_PRICE_RULE: Final = {
    "price_at_refusal": "the price of the market's last trade at or before the refusal",
    "price_at_refusal_ja": "注文が受け付けられなかった時点以前の、その市場の最後の約定価格",
    "price_at_reopen": "the price of the market's first trade after the refusal, once it "
                       "traded again",
    "price_at_reopen_ja": "取引再開後、その市場で最初に成立した約定価格",
}
"""How a refused order's two prices are found, as the run's explanation states it."""
NOT_COMPUTED_LISTED_MAX: Final = 1_000
"""Refused orders without a price listed in the run's record (the count is the total)."""


def _refused_orders(
    facts: JournalFacts, policy_set: PolicySet
) -> tuple[tuple[RefusedOrder, ...], dict[str, MarketAssets], dict[str, Any]]:
    """The refused orders of the markets the ``refused_orders`` policies cover, priced from
    the journal; those that cannot be priced are left out and listed with the reason."""
    covered = {market for policy in policy_set.policies if isinstance(policy, RefusedOrders)
               for market in policy.markets}
    orders: list[RefusedOrder] = []
    not_computed: list[dict[str, Any]] = []
    for priced in facts.refused_order_prices:
        order = priced.order
        if order.market not in covered:
            continue
        spec = facts.markets[order.market]
        at_refusal, at_reopen = priced.price_at_refusal_ticks, priced.price_at_reopen_ticks
        if at_refusal is None or at_reopen is None:
            en, ja = (("the market had no trade before the refusal",
                       "受付拒否の時点までにその市場で約定がありません") if at_refusal is None
                      else ("the market did not trade again within the journal",
                            "記録の範囲内で取引が再開されていません"))
            not_computed.append({"account": order.account, "market": order.market,
                                 "seq": order.seq, "reason": en, "reason_ja": ja})
            continue
        orders.append(RefusedOrder(
            account=order.account, market=order.market, side=Side(order.side),
            qty_minor=order.qty_lots * spec.base_per_lot, ts_ns=order.ts_ns,
            price_at_refusal=spec.tick * at_refusal, price_at_reopen=spec.tick * at_reopen))
    assets = {market: MarketAssets(facts.markets[market].base, facts.markets[market].quote)
              for market in sorted(covered) if market in facts.markets}
    record = {**REFUSED_PRICE_RULE, "computed": len(orders),
              "not_computed_count": len(not_computed),
              "not_computed": not_computed[:NOT_COMPUTED_LISTED_MAX]}
    return tuple(orders), assets, record


@dataclass(frozen=True)
class ComputedRun:
    """A run computed and ready to store, with the records that explain its inputs."""

    result: RunResult
    inputs: RunInputs
    policies: list[dict[str, Any]]
    references: list[dict[str, Any]]
    window: dict[str, Any]


def _facts_request(
    policy_set: PolicySet, proposal: RunProposal, window: ImpactWindow
) -> FactsRequest:
    """What the run needs from the journal, and only that (each part costs time)."""
    policies = policy_set.policies
    return FactsRequest(
        window=window, cutoff_seq=proposal.cutoff_seq,
        cutoff_ts_ns=_ns(proposal.cutoff_time) if proposal.cutoff_time else None,
        holdings_assets=frozenset(p.asset for p in policies if isinstance(p, AssetLoss)),
        refused_order_prices=any(isinstance(p, RefusedOrders) for p in policies),
        fees=any(isinstance(p, FeeRefund) for p in policies),
        vwaps=tuple(MarketVwapRequest(source.name, source.market, _ns(source.from_time),
                                      _ns(source.to_time))
                    for source in proposal.references if source.market is not None),
        caught_order_rows=False,
    )


def compute_proposal(
    session: Session, proposal: RunProposal, *, settings: CompensationSettings, now: datetime
) -> ComputedRun:
    """Read the policies, reference trades and, in one read of the journal, everything the
    policies need from it; compute the run. Nothing is stored."""
    incident = incidents.get(session, proposal.incident_id)
    files = [str(_named_file(settings.policies_dir, name, "policy file",
                             "compensation.policies_dir")) for name in proposal.policies]
    policy_set = load_policies(files)
    window = _window(incident, proposal, now, settings.journal_dir)
    return compute_from_journal(settings, proposal, policy_set, window)


def compute_from_journal(
    settings: CompensationSettings, proposal: RunProposal, policy_set: PolicySet,
    window: ImpactWindow,
) -> ComputedRun:
    """The run of ``policy_set`` over ``window``: the proposal's CSV reference prices first
    (a bad file is refused before the journal is read), then one read of the journal for
    everything else, then the computation."""
    prices, reference_records = _references(settings, proposal, None)
    facts = read_journal_facts(settings.journal_dir,
                               _facts_request(policy_set, proposal, window))
    market_prices, market_records = _references(settings, proposal, facts)
    prices |= market_prices
    order = {source.name: index for index, source in enumerate(proposal.references)}
    reference_records = sorted(reference_records + market_records,
                               key=lambda record: order[record["name"]])
    affected: frozenset[int] = frozenset()
    if any(isinstance(policy, FixedAmount) for policy in policy_set.policies):
        affected = frozenset(item.account for item in facts.report.affected)
    refused, market_assets, refused_record = _refused_orders(facts, policy_set)
    cutoff = facts.cutoff
    fees = tuple(FeePaid(item.account, item.asset, item.fees_minor, item.trades)
                 for item in facts.fees)
    inputs = RunInputs(
        policy_set=policy_set, cut_off_seq=cutoff.seq, cut_off_ts_ns=cutoff.ts_ns,
        holdings=cutoff.holdings,
        minor_units_per_unit={asset: minor_units_per_unit(decimals)
                              for asset, decimals in cutoff.asset_decimals.items()},
        refused_orders=refused, fees=fees, affected_accounts=affected,
        reference_prices=prices, market_assets=market_assets,
    )
    del facts  # the impact lists and the venue's copies: free them before computing
    window_record: dict[str, Any] = {
        "from_ts_ns": window.from_ts_ns, "to_ts_ns": window.to_ts_ns,
        "from": _iso(window.from_ts_ns or 0), "to": _iso(window.to_ts_ns or 0),
        "affected_accounts": len(affected)}
    if any(isinstance(policy, RefusedOrders) for policy in policy_set.policies):
        window_record["refused_orders"] = refused_record
    if fees:
        window_record["fees"] = {"accounts": len({fee.account for fee in fees}),
                                 "trades": sum(fee.trades for fee in fees)}
    with gc_paused():  # a million lines are long-lived objects: see gc_paused
        result = compute_run(inputs)
    return ComputedRun(
        result=result, inputs=inputs,
        policies=policy_records(policy_set, list(proposal.policies)),
        references=reference_records, window=window_record,
    )


def propose_run(
    session: Session, proposal: RunProposal, *, settings: CompensationSettings, actor: str,
    now: datetime,
) -> CompensationRun:
    """Compute a run for ``proposal`` and store it, waiting for a second operator."""
    computed = compute_proposal(session, proposal, settings=settings, now=now)
    result, inputs = computed.result, computed.inputs
    currencies = set(result.totals_minor)
    data = service.RunToStore(
        incident_id=proposal.incident_id, proposed_by=actor, note=proposal.note,
        policies=computed.policies,
        cutoff={"seq": inputs.cut_off_seq, "ts_ns": inputs.cut_off_ts_ns,
                "time": _iso(inputs.cut_off_ts_ns)},
        window=computed.window, references=computed.references, digest=result.digest,
        totals=dict(result.totals_minor),
        currency_scales={asset: inputs.minor_units_per_unit.get(asset, 1)
                         for asset in currencies | set(inputs.holdings)
                         | {assets.base for assets in inputs.market_assets.values()}},
        histogram=[msgspec.to_builtins(bucket) for bucket in result.histogram],
        top_accounts=[msgspec.to_builtins(top) for top in result.top_accounts],
        supersedes_run_id=proposal.supersedes_run_id,
    )
    lines = [
        service.LineToStore(line_no=line.line_no, account=line.account, currency=line.currency,
                            amount_minor=line.amount_minor,
                            parts=msgspec.to_builtins(line.parts))
        for line in result.lines
    ]
    return service.store_run(session, data, lines, now=now)


# --- pay ---------------------------------------------------------------------------------


def _payout_lines(session: Session, run_id: int) -> Iterator[PayoutLine]:
    for line_no, account, currency, amount_minor in service.amounts_in_order(session, run_id):
        yield PayoutLine(run_id=run_id, line_no=line_no, account=account, asset=currency,
                         amount_minor=amount_minor)


def begin_payout(
    session_factory: sessionmaker[Session], run_id: int, *, actor: str, now: datetime
) -> None:
    """Record the start (or the resumption) of a run's payout, committed before any credit
    is sent, so a crash mid-payout leaves the run visibly ``paying``."""
    with session_scope(session_factory) as session:
        service.start_payout(session, run_id, actor=actor, now=now)


def pay_run(
    session_factory: sessionmaker[Session], run_id: int, venue: VenueControl, *,
    settings: CompensationSettings, actor: str, clock: Clock,
    on_progress: Callable[[PayoutReport], None] | None = None,
) -> PayoutReport:
    """Credit every unpaid line of a run whose payout was begun (:func:`begin_payout`), and
    record the progress after each batch and the outcome at the end. Safe to run again:
    the venue refuses a line it credited already, and :func:`pay` skips those."""

    def progress(report: PayoutReport) -> None:
        with session_scope(session_factory) as progress_session:
            service.record_progress(progress_session, run_id, lines_paid=report.lines_paid,
                                    amounts_paid=report.amounts_paid_minor, now=clock.now())
        if on_progress is not None:
            on_progress(report)

    with session_scope(session_factory) as read_session:
        report = pay(_payout_lines(read_session, run_id), venue,
                     batch_lines_max=settings.payout_batch_lines_max, on_progress=progress,
                     actor=actor, reason=f"compensation run {run_id}")
    error = report.error
    if not error and report.lines_refused:
        first = report.refused[0]
        error = (f"the venue refused {report.lines_refused} line(s), e.g. line "
                 f"{first.line_no}: {first.reason} {first.detail}".strip())
    with session_scope(session_factory) as session:
        service.finish_payout(session, run_id, actor=actor, error=error, now=clock.now())
    return report


@dataclass
class PayoutRunner:
    """Payouts running on their own threads, at most one per run in this process, so the
    API can answer at once and the CLI follows the progress."""

    session_factory: sessionmaker[Session]
    settings: CompensationSettings
    clock: Clock
    _threads: dict[int, threading.Thread] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, run_id: int, venue: VenueControl, *, actor: str) -> None:
        """Begin or resume the payout of ``run_id`` in the background; a payout of the same
        run already running here is refused."""
        with self._lock:
            running = self._threads.get(run_id)
            if running is not None and running.is_alive():
                raise RunStateError(
                    f"run {run_id} is being paid now",
                    next_step=f"follow it with `haltguard compensation pay {run_id} --follow`",
                    message_ja=f"ラン {run_id} は支払い処理中です",
                )
            begin_payout(self.session_factory, run_id, actor=actor, now=self.clock.now())
            thread = threading.Thread(
                target=self._pay, name=f"compensation-payout-{run_id}", daemon=True,
                args=(run_id, venue, actor),
            )
            self._threads[run_id] = thread
            thread.start()

    def _pay(self, run_id: int, venue: VenueControl, actor: str) -> None:
        """The thread's body: a failure outside the venue's answers (the database, a defect)
        is kept on the payout as its error, so nobody waits for a payout that stopped."""
        try:
            pay_run(self.session_factory, run_id, venue, settings=self.settings, actor=actor,
                    clock=self.clock)
        except Exception as exc:
            log.exception("the payout of compensation run %d stopped", run_id)
            with session_scope(self.session_factory) as session:
                service.finish_payout(session, run_id, actor=actor,
                                      error=f"{type(exc).__name__}: {exc}", now=self.clock.now())

    def running(self, run_id: int) -> bool:
        """Whether this process is paying ``run_id`` now."""
        with self._lock:
            thread = self._threads.get(run_id)
        return thread is not None and thread.is_alive()

    def wait(self, run_id: int, timeout_s: float) -> bool:
        """Wait for this process's payout of ``run_id``; True when none is running."""
        with self._lock:
            thread = self._threads.get(run_id)
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()


# --- statements and the public note ------------------------------------------------------


def write_statements(session: Session, run_id: int, *, now: datetime) -> int:
    """Write each paid account's statement (ja and en) once; returns how many were new."""
    run = service.get_run(session, run_id)
    payout = service.payout_of(session, run_id)
    if payout is None or payout.finished_at is None:
        raise RunStateError(
            f"run {run_id} is not paid in full yet; statements tell customers what was paid",
            next_step=f"finish the payout with `haltguard compensation pay {run_id}`",
            message_ja=f"ラン {run_id} の支払いが完了していないため明細を作成できません",
        )
    if service.statements_written(session, run_id) > 0:
        return 0
    incident = service.incident_of(session, run)
    batch: list[dict[str, Any]] = []
    written = 0

    def statement_of(account: int, lines: list[dict[str, Any]]) -> dict[str, Any]:
        subject, body = texts.statement(
            incident_ref=incident.ref, incident_title=incident.title, run_id=run_id,
            account=account, lines=lines, policies=run.policies, cutoff=run.cutoff,
            scales=run.currency_scales,
        )
        return {"run_id": run_id, "account": account,
                "line_nos": [line["line_no"] for line in lines], "subject_ja": subject.ja,
                "subject_en": subject.en, "body_ja": body.ja, "body_en": body.en,
                "status": StatementStatus.STORED.value, "language": None, "phrase_shown": None,
                "created_at": now, "sent_at": None, "last_error": ""}

    # Lines are numbered by account, then currency: an account's lines are consecutive.
    account: int | None = None
    lines: list[dict[str, Any]] = []
    for line in service.lines_in_order(session, run_id):
        if line.account != account and lines:
            assert account is not None
            batch.append(statement_of(account, lines))
            lines = []
            if len(batch) >= STATEMENT_WRITE_BATCH_MAX:
                service.add_statements(session, batch)
                written += len(batch)
                batch = []
        account = line.account
        lines.append({"line_no": line.line_no, "currency": line.currency,
                      "amount_minor": line.amount_minor, "parts": line.parts})
    if lines:
        assert account is not None
        batch.append(statement_of(account, lines))
    service.add_statements(session, batch)
    return written + len(batch)


def _statement_email(
    statement: CompensationStatement, contact: Contact, *, phrase: str | None,
    identity: MailIdentity, date_header: str,
) -> bytes:
    language = contact.language
    words = texts_for(language).notice
    subject = statement.subject_ja if language is Language.JA else statement.subject_en
    body = statement.body_ja if language is Language.JA else statement.body_en
    top = f"{words.phrase_label}: {phrase}\r\n\r\n" if phrase else ""
    text = (top + body).replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n"
    html_text = (f'<!DOCTYPE html><html lang="{language.value}"><head><meta charset="utf-8">'
                 f"<title>{escape(subject)}</title></head><body>"
                 + (f"<p><strong>{escape(words.phrase_label)}:</strong> {escape(phrase)}</p>"
                    if phrase else "")
                 + "".join(f"<p>{escape(paragraph)}</p>" for paragraph in body.split("\n\n"))
                 + "</body></html>")
    headers = [
        ("From", identity.from_header),
        ("To", contact.email),
        ("Subject", header_value("Subject", subject)),
        ("Date", date_header),
        ("Message-ID", f"<compensation-{statement.run_id}.{statement.account}@{identity.domain}>"),
        ("Content-Language", language.value),
        ("Auto-Submitted", "auto-generated"),
    ]
    return compose(headers, text, html_text, f"hg_comp_{statement.run_id}_{statement.account}")


def send_statements(
    session: Session, run_id: int, contacts: list[Contact], *, notify_settings: NotifySettings,
    now: datetime,
) -> int:
    """Email the statements of the accounts in ``contacts`` not sent yet, each in the
    contact's language with their anti-phishing phrase when they subscribed to our notices
    with that address. Returns how many went out; a refusal is kept on the statement."""
    by_account = {contact.account: contact for contact in contacts}
    pending = service.statements_for_accounts(session, run_id, by_account)
    if not pending:
        return 0
    identity = MailIdentity(sender_address=notify_settings.smtp.sender,
                            service_name=notify_settings.service_name,
                            domain=notify_settings.link_host)
    connection = SmtpConnection(notify_settings.smtp)
    sent = 0
    try:
        for statement in pending:
            contact = by_account[statement.account]
            phrase = notify.anti_phishing_phrase(session, contact.email)
            message = _statement_email(statement, contact, phrase=phrase, identity=identity,
                                       date_header=format_datetime(now))
            try:
                connection.send(contact.email, message)
            except DeliveryError as exc:
                statement.status = StatementStatus.FAILED.value
                statement.last_error = str(exc)[:500]
                continue
            statement.status = StatementStatus.SENT.value
            statement.language = contact.language.value
            statement.phrase_shown = phrase is not None
            statement.sent_at = now
            statement.last_error = ""
            sent += 1
    finally:
        connection.close()
    session.flush()
    return sent


def post_public_note(session: Session, run_id: int, *, actor: str, now: datetime) -> bool:
    """Post the compensation rules and the total paid on the incident's public updates
    (the status page publishes them), once. False when it was posted before."""
    run = service.get_run(session, run_id)
    payout = service.payout_of(session, run_id)
    assert payout is not None and payout.finished_at is not None
    if payout.public_note_posted_at is not None:
        return False
    incident = service.incident_of(session, run)
    if incident.status == IncidentStatus.CLOSED:
        raise RunStateError(
            f"{incident.ref} is closed, so its public page takes no new update",
            next_step="post the compensation note as a status page notice instead",
            message_ja=f"{incident.ref} はクローズ済みのため公開の更新を追加できません",
        )
    note = texts.public_note(policies=run.policies, totals=run.totals,
                             scales=run.currency_scales, account_count=run.account_count)
    incidents.post_public_update(
        session, incident, PublicUpdateCreate(message_ja=note.ja, message_en=note.en),
        actor=actor, now=now,
    )
    service.mark_public_note(session, run_id, now=now)
    return True


def statements(
    session: Session, run_id: int, contacts: list[Contact], *, actor: str,
    notify_settings: NotifySettings, now: datetime,
) -> StatementCounts:
    """The last step of a paid run: write the statements (once), email those whose contact
    is given, and post the public note (once)."""
    written = write_statements(session, run_id, now=now)
    sent = send_statements(session, run_id, contacts, notify_settings=notify_settings,
                           now=now) if contacts else 0
    counts = service.statement_counts(session, run_id)
    service.note_statements(session, run_id, actor=actor, written=written, sent=sent,
                            counts=counts, now=now)
    post_public_note(session, run_id, actor=actor, now=now)
    return StatementCounts(run_id=run_id, stored=counts.get(StatementStatus.STORED.value, 0),
                           sent=counts.get(StatementStatus.SENT.value, 0),
                           failed=counts.get(StatementStatus.FAILED.value, 0),
                           written_now=written, sent_now=sent)
