"""The linking rules alone: which open incident a question is about, and its topic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from haltguard.common.taxonomy import Category
from haltguard.support import linking
from haltguard.support.models import TicketCategory


def test_the_best_scoring_incident_wins_and_one_outside_its_window_is_skipped() -> None:
    now = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)
    network = linking.OpenIncident(1, Category.NETWORK, (), now - timedelta(hours=1), None)
    btc = linking.OpenIncident(2, Category.SOFTWARE_BUG, ("BTC-JPY",),
                               now - timedelta(minutes=10), None)
    later = linking.OpenIncident(3, Category.SOFTWARE_BUG, ("ETH-JPY",),
                                 now + timedelta(hours=2), None)
    found = linking.link("BTCの注文がおかしい", "", now, [network, btc, later], grace_s=3600)
    assert found is not None and found.incident_id == 2
    assert linking.link("ETH-JPY が止まっています", "", now, [later], grace_s=3600) is None


def test_a_question_before_the_incident_window_is_not_linked() -> None:
    now = datetime(2026, 12, 8, 2, 0, tzinfo=UTC)
    resolved = linking.OpenIncident(4, Category.SOFTWARE_BUG, ("BTC-JPY",),
                                    now - timedelta(days=3), now - timedelta(days=2))
    assert linking.link("BTC-JPY が止まっています", "", now, [resolved], grace_s=3600) is None
    assert linking.link("BTC-JPY が止まっています", "", now, [resolved],
                        grace_s=3 * 86_400) is not None


def test_topics_come_from_the_words_of_the_question() -> None:
    assert linking.topic("出金が届きません") is TicketCategory.DEPOSIT_WITHDRAWAL
    assert linking.topic("補償はありますか") is TicketCategory.COMPENSATION
    assert linking.topic("こんにちは") is TicketCategory.OTHER
