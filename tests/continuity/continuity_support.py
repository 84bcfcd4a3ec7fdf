"""Shared pieces of the continuity tests: a plan and a register small enough to read in a
test, drill records written by the drill's own report writer, and people in the on-call
directory to own things."""

from __future__ import annotations

import email
import email.policy
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from haltguard.continuity.models import InsuranceCreate
from haltguard.drill.report import write_files
from haltguard.drill.scenario import Check, DrillResult, Measurements, Targets
from haltguard.responders import service as responders
from haltguard.responders.contacts import INCIDENT_CATEGORIES, contact_tree_from_data
from haltguard.responders.models import ContactMethodIn, PersonIn
from haltguard.status.texts import Bilingual

PLAN_TEXT = """\
plan:
  title: {ja: テスト計画, en: Test plan}
  version: 2
  approved_by:
    name: Taro Yamada
    title: {ja: 代表取締役, en: Representative Director}
    board_approved_on: 2026-10-01
  review_every_days: 365
evidence:
  drill_age_days_max: 30
  backup_age_hours_max: 24
  restore_verified_age_days_max: 7
services:
  - id: trading
    name: {ja: 売買, en: Trading}
    rto_s: 600
    rpo_s: 0
    scenarios: [server-down]
  - id: ledger
    name: {ja: 台帳, en: Ledger}
    rto_s: 3600
    rpo_s: 60
    scenarios: [server-down]
    restored_from_backup: true
scenarios:
  - id: server-down
    name: {ja: サーバーダウン, en: Server down}
    runbook: server_down
    drill: server-down
alternate_site:
  name: {ja: 大阪, en: Osaka}
  location: {ja: 大阪府, en: Osaka prefecture}
  activation: {ja: 代表取締役が承認, en: Approved by the representative director}
"""

REGISTER_TEXT = """\
version: 1
risks:
  - id: R-01
    title: {ja: サーバー停止, en: Server stops}
    cause: server_down
    likelihood: 3
    impact: 5
    owner: alice
    controls: [{kind: drill, ref: server-down}]
    residual: {likelihood: 2, impact: 3}
    review_by: 2026-11-30
  - id: R-02
    title: {ja: DDoS, en: DDoS}
    cause: ddos
    likelihood: 3
    impact: 5
    owner: bob
    residual: {likelihood: 1, impact: 2}
    review_by: 2027-06-30
  - id: R-03
    title: {ja: 地震, en: Earthquake}
    cause: natural_disaster
    likelihood: 1
    impact: 5
    owner: bob
    residual: {likelihood: 1, impact: 4}
    review_by: 2027-06-30
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def drill_record(report_dir: Path, scenario: str, finished_at: datetime, *,
                 passed: bool = True, recovery_time_s: float = 12.5,
                 orders_lost: int = 0) -> DrillResult:
    """A finished drill's result written by the drill's own report writer (Markdown, HTML
    and the JSON record continuity reads)."""
    result = DrillResult(
        scenario=scenario, incident_id=7,
        measurements=Measurements(recovery_time_s=recovery_time_s,
                                  acknowledged_orders_lost=orders_lost,
                                  ledger_invariant_ok=True),
        checks=[Check("ledger", passed, "holds", "holds" if passed else "broken")],
        started_at=finished_at, finished_at=finished_at)
    write_files(result, Targets(), Bilingual("訓練", "Drill"), report_dir)
    return result


def add_person(session: Session, handle: str) -> None:
    responders.put_person(session, PersonIn(
        handle=handle, display_name=handle.title(),
        contacts=[ContactMethodIn(kind="email", address=f"{handle}@example.com")]),
        actor="test", clock=responders.SystemClock())


def fill_contact_tree(session: Session, person: str, backup: str) -> None:
    """Everyone to call for every category: the plan's contact tree has no gap."""
    tree = contact_tree_from_data({category: [{"person": person, "backup": backup}]
                                   for category in INCIDENT_CATEGORIES})
    responders.replace_contact_tree(session, tree, actor="test",
                                    clock=responders.SystemClock())


class Mailbox:
    """An SMTP server's inbox: every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if address in str(message["To"])]


PIP_AUDIT = {
    "dependencies": [
        {"name": "jinja2", "version": "3.1.2", "vulns": [
            {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"],
             "aliases": ["CVE-2024-22195"], "description": "HTML attribute injection"}]},
        {"name": "requests", "version": "2.31.0", "vulns": [
            {"id": "GHSA-9wx4-h78v-vm56", "fix_versions": ["2.32.0"], "aliases": [],
             "description": "Session verify=False persists"},
            {"id": "PYSEC-2023-74", "fix_versions": [], "aliases": []}]},
        {"name": "haltguard", "skip_reason": "not on PyPI"},
        {"name": "msgspec", "version": "0.18.6", "vulns": []},
    ],
    "fixes": [],
}

SARIF = {
    "version": "2.1.0",
    "runs": [{
        "tool": {"driver": {"name": "trivy", "rules": [
            {"id": "CVE-2024-0001", "shortDescription": {"text": "openssl overflow"},
             "properties": {"security-severity": "9.8"}},
            {"id": "CVE-2024-0002", "properties": {"security-severity": "5.3"}},
            {"id": "weak-hash", "defaultConfiguration": {"level": "note"}},
        ]}},
        "results": [
            {"ruleId": "CVE-2024-0001", "message": {"text": "libssl3 3.0.2"},
             "locations": [{"physicalLocation": {"artifactLocation": {"uri": "Dockerfile"},
                                                 "region": {"startLine": 1}}}]},
            {"ruleIndex": 1, "message": {"text": "zlib"}, "level": "warning"},
            {"ruleId": "weak-hash", "message": {"text": "md5 used"},
             "partialFingerprints": {"primaryLocationLineHash": "abc123"}},
            {"ruleId": "unlisted", "level": "error", "message": {"text": "something"}},
        ],
    }],
}


def policy(**changes: object) -> InsuranceCreate:
    values: dict[str, object] = {
        "name": "Cyber liability", "insurer": "Tokio Example", "policy_number": "CY-001",
        "cover_ja": "不正アクセスによる損害", "cover_en": "Losses from unauthorized access",
        "categories": ["unauthorized_access", "malware"], "limit_minor": 500_000_000,
        "currency": "JPY", "owner": "alice",
        "contacts": [{"name": "Claims desk", "phone": "+81-3-0000-0000"}],
        "starts_on": date(2026, 4, 1), "expires_on": date(2027, 3, 31)}
    values.update(changes)
    return InsuranceCreate.model_validate(values)
