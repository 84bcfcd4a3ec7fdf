"""The workflow on a real venue and journal: propose (computed from the journal), approve,
pay exactly once, statements in both languages with the anti-phishing phrase, the public
note. Golden figures: see comp_service_support."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from comp_service_support import (
    ACCOUNTS,
    BTC_HOLDING_JPY,
    GOODWILL_JPY,
    REFUSED_ACCOUNT,
    VWAP_TEXT,
    Setup,
    text_of,
)
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from haltguard.compensation import flows, service
from haltguard.compensation.errors import (
    ProposalError,
    ReferenceDataError,
    RunInputError,
    RunStateError,
)
from haltguard.compensation.models import (
    CompensationRun,
    Contact,
    RunProposal,
    RunState,
    StatementStatus,
)
from haltguard.db.session import session_scope
from haltguard.impact.errors import OutsideJournalError
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineKind
from haltguard.notify.models import Subscriber
from haltguard.notify.settings import NotifySettings
from haltguard.security.models import AuditEntry

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _proposal(setup: Setup, **overrides: object) -> RunProposal:
    body = setup.proposal(to_time=(setup.now + timedelta(hours=1)).isoformat(), **overrides)
    return RunProposal.model_validate(body)


def _propose(setup: Setup, **overrides: object) -> int:
    with session_scope(setup.session_factory) as session:
        run = flows.propose_run(session, _proposal(setup, **overrides), settings=setup.settings,
                                actor="alice", now=setup.clock.now())
        return run.id


def _approve(setup: Setup, run_id: int, approver: str = "carol") -> None:
    with session_scope(setup.session_factory) as session:
        digest = service.get_run(session, run_id).digest
        service.approve(session, run_id, approver=approver, digest=digest, note="",
                        now=setup.clock.now())


def _pay(setup: Setup, run_id: int) -> flows.PayoutReport:
    flows.begin_payout(setup.session_factory, run_id, actor="carol", now=setup.clock.now())
    return flows.pay_run(setup.session_factory, run_id, setup.venue, settings=setup.settings,
                         actor="operator:carol", clock=setup.clock)


def test_a_run_pays_holders_at_the_cut_off_times_the_vwap_rounded_down(setup: Setup) -> None:
    run_id = _propose(setup)
    with session_scope(setup.session_factory) as session:
        run = service.get_run(session, run_id)
        assert run.cutoff["seq"] == setup.cutoff_seq
        assert run.references[0]["price"] == VWAP_TEXT
        assert run.references[0]["trades_used"] == 2
        assert run.line_count == ACCOUNTS
        assert run.totals == {"JPY": ACCOUNTS * BTC_HOLDING_JPY + GOODWILL_JPY}
        explained = service.explain(session, run_id, REFUSED_ACCOUNT)
        assert [line.amount_minor for line in explained.lines] == [BTC_HOLDING_JPY + GOODWILL_JPY]
        assert {part["policy"] for part in explained.lines[0].parts} == {
            "btc-asset-loss", "goodwill-jpy"}
        assert service.explain(session, run_id, 1).lines[0].amount_minor == BTC_HOLDING_JPY
        assert service.run_state(session, run) is RunState.COMPUTED


def test_a_recomputation_is_a_new_run_with_the_same_digest(setup: Setup) -> None:
    first = _propose(setup)
    second = _propose(setup, supersedes_run_id=first)
    with session_scope(setup.session_factory) as session:
        one, two = service.get_run(session, first), service.get_run(session, second)
        assert second != first and two.supersedes_run_id == first
        assert one.digest == two.digest


def test_a_computed_run_cannot_be_changed_in_the_database(setup: Setup) -> None:
    run_id = _propose(setup)
    for statement in (f"UPDATE compensation_lines SET amount_minor = 1 WHERE run_id = {run_id}",
                      f"UPDATE compensation_runs SET digest = 'x' WHERE id = {run_id}",
                      f"DELETE FROM compensation_lines WHERE run_id = {run_id}"):
        with pytest.raises(DBAPIError, match="immutable"), \
                session_scope(setup.session_factory) as session:
            session.execute(text(statement))


def test_proposing_writes_the_digest_in_the_timeline_and_audit_chain(setup: Setup) -> None:
    run_id = _propose(setup)
    _approve(setup, run_id)
    with session_scope(setup.session_factory) as session:
        digest = service.get_run(session, run_id).digest
        entries = [entry for entry in incidents.timeline(session, setup.incident_id)
                   if entry.details.get("run_id") == run_id]
        assert [entry.kind for entry in entries] == [TimelineKind.APPROVAL_REQUESTED,
                                                     TimelineKind.APPROVAL_DECIDED]
        assert all(entry.details["digest"] == digest for entry in entries)
        actions = list(session.scalars(
            select(AuditEntry.action).where(AuditEntry.details_json.like(f"%{digest}%"))
            .order_by(AuditEntry.index)))
        assert actions == ["compensation.run.propose", "compensation.run.approve"]


def test_the_payout_credits_each_line_once_and_a_second_pay_is_refused(setup: Setup) -> None:
    run_id = _propose(setup)
    _approve(setup, run_id)
    before = {account: setup.jpy_of(account) for account in (1, REFUSED_ACCOUNT)}
    report = _pay(setup, run_id)
    assert report.complete and report.lines_credited == ACCOUNTS
    assert setup.jpy_of(1) - before[1] == BTC_HOLDING_JPY
    assert setup.jpy_of(REFUSED_ACCOUNT) - before[REFUSED_ACCOUNT] \
        == BTC_HOLDING_JPY + GOODWILL_JPY
    with session_scope(setup.session_factory) as session:
        payout = service.payout_read(session, run_id)
        assert payout.state is RunState.PAID
        assert payout.lines_paid == ACCOUNTS
        assert payout.amounts_paid == {"JPY": ACCOUNTS * BTC_HOLDING_JPY + GOODWILL_JPY}
    with pytest.raises(RunStateError, match="paid in full"):
        flows.begin_payout(setup.session_factory, run_id, actor="carol", now=setup.clock.now())
    assert setup.jpy_of(1) - before[1] == BTC_HOLDING_JPY


def test_a_payout_resumed_after_an_interruption_pays_nobody_twice(setup: Setup) -> None:
    """A payout that stopped (here: the venue refused the run's lines while it was down,
    simulated by crediting part of the run under the same references first) continues with
    the unpaid lines only."""
    run_id = _propose(setup)
    _approve(setup, run_id)
    before = setup.jpy_of(1)
    flows.begin_payout(setup.session_factory, run_id, actor="carol", now=setup.clock.now())
    with session_scope(setup.session_factory) as session:
        first_lines = [flows.PayoutLine(run_id, line.line_no, line.account, line.currency,
                                        line.amount_minor)
                       for line in list(service.lines_in_order(session, run_id))[:20]]
    partial = flows.pay(first_lines, setup.venue, batch_lines_max=5)
    assert partial.lines_credited == 20
    report = flows.pay_run(setup.session_factory, run_id, setup.venue, settings=setup.settings,
                           actor="operator:carol", clock=setup.clock)
    assert report.lines_already_credited == 20 and report.lines_credited == ACCOUNTS - 20
    assert setup.jpy_of(1) - before == BTC_HOLDING_JPY
    with session_scope(setup.session_factory) as session:
        assert service.payout_read(session, run_id).state is RunState.PAID


def test_a_run_is_not_paid_before_a_second_operator_approves_it(setup: Setup) -> None:
    run_id = _propose(setup)
    with pytest.raises(RunStateError, match="not approved"):
        flows.begin_payout(setup.session_factory, run_id, actor="carol", now=setup.clock.now())
    with session_scope(setup.session_factory) as session:
        assert service.payout_of(session, run_id) is None


def test_statements_go_out_in_the_customers_language_with_their_phrase(setup: Setup) -> None:
    run_id = _propose(setup)
    _approve(setup, run_id)
    _pay(setup, run_id)
    with session_scope(setup.session_factory) as session:
        session.execute(insert(Subscriber).values(
            kind="email", address="three@example.test",
            address_digest=hashlib.sha256(b"email:three@example.test").hexdigest(),
            label="", language="ja", status="confirmed", all_components=True,
            anti_phishing_phrase="blue heron at dawn", created_by="test",
            created_at=setup.now))
    contacts = [Contact(account=REFUSED_ACCOUNT, email="three@example.test", language="ja"),
                Contact(account=1, email="one@example.test", language="en")]
    notify_settings = NotifySettings(smtp=setup.mailbox.smtp)
    with session_scope(setup.session_factory) as session:
        counts = flows.statements(session, run_id, contacts, actor="carol",
                                  notify_settings=notify_settings, now=setup.clock.now())
    assert counts.written_now == ACCOUNTS and counts.sent == 2 and counts.stored == ACCOUNTS - 2
    three = text_of(setup.mailbox.to("three@example.test")[0])
    assert "blue heron at dawn" in three and "1,500,001,125" in three and "補償" in three
    one = text_of(setup.mailbox.to("one@example.test")[0])
    assert "blue heron" not in one and "JPY 1,500,000,125" in one and "btc-asset-loss" in one
    assert "qty=100.00000000 BTC" in one and "price=15000001.250" in one
    assert "amount=JPY 1,000.0000" in three
    with session_scope(setup.session_factory) as session:
        rows, _ = service.list_statements(session, run_id, account=REFUSED_ACCOUNT)
        assert rows[0].status is StatementStatus.SENT and rows[0].phrase_shown is True
        again = flows.statements(session, run_id, contacts, actor="carol",
                                 notify_settings=notify_settings, now=setup.clock.now())
    assert again.written_now == 0 and again.sent_now == 0
    assert len(setup.mailbox.messages) == 2


def test_the_public_note_gives_the_rules_and_the_total_and_no_account(setup: Setup) -> None:
    run_id = _propose(setup)
    _approve(setup, run_id)
    _pay(setup, run_id)
    with session_scope(setup.session_factory) as session:
        flows.statements(session, run_id, [], actor="carol",
                         notify_settings=NotifySettings(), now=setup.clock.now())
        flows.statements(session, run_id, [], actor="carol",
                         notify_settings=NotifySettings(), now=setup.clock.now())
        updates = incidents.public_updates_since(session, None, incident_id=setup.incident_id)
    assert len(updates) == 1
    note = updates[0].details
    assert "JPY 75,000,007,250" in str(note["message_en"]) and "50 accounts" in str(
        note["message_en"])
    assert "参照価格" in str(note["message_ja"])
    assert "account 3" not in str(note["message_en"])


def test_statements_wait_for_the_payout_to_finish(setup: Setup) -> None:
    run_id = _propose(setup)
    _approve(setup, run_id)
    with pytest.raises(RunStateError, match="not paid in full"), \
            session_scope(setup.session_factory) as session:
        flows.statements(session, run_id, [], actor="carol", notify_settings=NotifySettings(),
                         now=setup.clock.now())


def test_a_cut_off_outside_the_journal_computes_and_stores_nothing(setup: Setup) -> None:
    with pytest.raises(OutsideJournalError), session_scope(setup.session_factory) as session:
        flows.propose_run(session, _proposal(setup, cutoff_seq=10_000_000),
                          settings=setup.settings, actor="alice", now=setup.clock.now())
    with session_scope(setup.session_factory) as session:
        assert session.scalars(select(CompensationRun)).all() == []


def test_a_reference_window_without_trades_is_refused_whole(setup: Setup) -> None:
    empty = {"name": "btc-jpy-vwap", "csv": "btc_trades.csv",
             "from_time": "2026-02-01T00:00:00+09:00", "to_time": "2026-02-02T00:00:00+09:00"}
    with pytest.raises(ReferenceDataError), session_scope(setup.session_factory) as session:
        flows.propose_run(session, _proposal(setup, references=[empty]),
                          settings=setup.settings, actor="alice", now=setup.clock.now())


def test_a_policy_or_reference_file_outside_its_directory_is_refused(setup: Setup) -> None:
    with pytest.raises(ProposalError, match="no policy file"), \
            session_scope(setup.session_factory) as session:
        flows.propose_run(session, _proposal(setup, policies=["missing.yaml"]),
                          settings=setup.settings, actor="alice", now=setup.clock.now())
    with pytest.raises(ValueError, match=r"should match pattern"):
        _proposal(setup, policies=["../secrets.yaml"])


def test_a_refused_orders_policy_on_a_market_the_venue_does_not_list_is_refused(
        setup: Setup) -> None:
    (setup.settings.policies_dir / "refused.yaml").write_text(
        "id: refused\nversion: 1\nkind: refused_orders\ndescription: {ja: 損失を補償します。, "
        "en: Losses are paid.}\ncurrency: JPY\nmarkets: [SOL-JPY]\n", encoding="utf-8")
    with pytest.raises(RunInputError, match="SOL-JPY has no base and quote"), \
            session_scope(setup.session_factory) as session:
        flows.propose_run(session, _proposal(setup, policies=["refused.yaml"]),
                          settings=setup.settings, actor="alice", now=setup.clock.now())
    with session_scope(setup.session_factory) as session:
        assert session.scalars(select(CompensationRun)).all() == []
