"""What customers read: update templates in Japanese and English (golden text), times in
JST and UTC, component names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from status_support import check_golden

from haltguard.status.rules import MaintenanceStatus, UpdateStatus
from haltguard.status.texts import (
    Bilingual,
    IncidentFacts,
    MaintenanceFacts,
    component_name,
    incident_name,
    incident_update_text,
    maintenance_update_text,
    time_en,
    time_ja,
)

STARTED = datetime(2025, 1, 6, 0, 30, tzinfo=UTC)  # 09:30 JST
FACTS = IncidentFacts(
    components=["market:BTC-JPY", "withdrawals:JPY", "order-api"],
    started_at=STARTED,
    now=STARTED + timedelta(minutes=40),
    cause=Bilingual("注文データベースの障害", "a failure of the order database"),
    expected_recovery_at=STARTED + timedelta(hours=2),
    next_update_at=STARTED + timedelta(minutes=70),
)


def test_times_are_given_in_jst_and_utc_and_name_the_utc_date_when_it_differs() -> None:
    assert time_ja(STARTED) == "2025年1月6日 09:30 (JST) / 00:30 (UTC)"
    assert time_en(STARTED) == "6 Jan 2025 09:30 JST (00:30 UTC)"
    early = datetime(2025, 1, 5, 23, 15, tzinfo=UTC)  # 08:15 JST on the 6th
    assert time_ja(early) == "2025年1月6日 08:15 (JST) / 1月5日 23:15 (UTC)"
    assert time_en(early) == "6 Jan 2025 08:15 JST (5 Jan 23:15 UTC)"


def test_component_names_read_naturally_in_both_languages() -> None:
    assert component_name("market:BTC-JPY") == Bilingual("BTC/JPY 取引", "BTC/JPY trading")
    assert component_name("withdrawals:JPY") == Bilingual("日本円 出金", "JPY withdrawals")
    assert component_name("mobile-app").ja == "スマートフォンアプリ"
    assert incident_name(["market:BTC-JPY"]).ja == "BTC/JPY 取引の障害について"


def test_identified_update_fills_markets_times_cause_and_expected_recovery() -> None:
    text = incident_update_text(UpdateStatus.IDENTIFIED, FACTS)
    check_golden("update_identified.ja.txt", text.ja.encode())
    check_golden("update_identified.en.txt", text.en.encode())


def test_investigating_update_without_a_cause_says_it_is_under_investigation() -> None:
    facts = IncidentFacts(components=["market:ETH-JPY"], started_at=STARTED, now=STARTED,
                          cause=None, expected_recovery_at=None, next_update_at=None)
    text = incident_update_text(UpdateStatus.INVESTIGATING, facts)
    assert "【原因】調査中" in text.ja
    assert "【復旧見込み】未定" in text.ja
    assert "Cause: under investigation" in text.en
    assert "次回更新" not in text.ja


def test_resolved_update_gives_the_recovery_time_and_no_next_update() -> None:
    text = incident_update_text(UpdateStatus.RESOLVED, FACTS)
    check_golden("update_resolved.ja.txt", text.ja.encode())
    assert "Resolved: 6 Jan 2025 10:10 JST (01:10 UTC)" in text.en
    assert "Next update" not in text.en and "Expected recovery" not in text.en


def test_maintenance_announcement_gives_the_window_in_both_zones() -> None:
    facts = MaintenanceFacts(components=["withdrawals:BTC"], scheduled_for=STARTED,
                             scheduled_until=STARTED + timedelta(hours=2),
                             details=Bilingual("ウォレットの更新", "a wallet upgrade"))
    text = maintenance_update_text(MaintenanceStatus.SCHEDULED, facts)
    check_golden("maintenance_scheduled.ja.txt", text.ja.encode())
    assert ("When: 6 Jan 2025 09:30 JST (00:30 UTC) to 6 Jan 2025 11:30 JST (02:30 UTC)"
            in text.en)
