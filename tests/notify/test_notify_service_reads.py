"""Reads other domains make of the outbox through the service: the notices queued under
given keys and how their deliveries stand (how a drill counts the notices it caused)."""

from __future__ import annotations

from notify_support import START, add_confirmed
from sqlalchemy import update
from sqlalchemy.orm import Session

from haltguard.notify.models import Delivery, DeliveryStatus, Notice, NoticeKind, NoticeText
from haltguard.notify.service import enqueue_notice, notices_by_key


def a_notice(key: str) -> Notice:
    return Notice(
        key=key, kind=NoticeKind.INCIDENT_UPDATE, affected_component_ids=[],
        ja=NoticeText(subject="【障害】取引を停止しました", body="取引を一時停止しました。"),
        en=NoticeText(subject="[Incident] Trading halted", body="We halted trading."),
        link="https://status.example.test/incidents/1",
    )


def test_notices_by_key_counts_only_the_named_notices_and_their_deliveries_by_state(
    session: Session,
) -> None:
    add_confirmed(session, 3)
    first = enqueue_notice(session, a_notice("status-update-1"), now=START)
    enqueue_notice(session, a_notice("status-update-2"), now=START)
    enqueue_notice(session, a_notice("maintenance-9"), now=START)
    session.execute(update(Delivery).where(Delivery.notice_id == first.id)
                    .values(status=DeliveryStatus.SENT.value))
    session.commit()
    keyed = notices_by_key(session, ["status-update-1", "status-update-2", "status-update-3"])
    assert keyed.notices == 2
    assert (keyed.deliveries.sent, keyed.deliveries.pending) == (3, 3)
    assert keyed.deliveries.failed == keyed.deliveries.sending == keyed.deliveries.skipped == 0


def test_notices_by_key_of_no_key_or_an_unknown_key_is_nothing(session: Session) -> None:
    assert notices_by_key(session, []).notices == 0
    unknown = notices_by_key(session, ["status-update-404"])
    assert unknown.notices == 0 and unknown.deliveries.pending == 0
