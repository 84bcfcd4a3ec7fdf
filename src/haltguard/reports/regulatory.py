"""The system-failure report (システム障害報告書) an exchange sends its regulator, in Japanese,
filled from the incident record as a draft for the operator to check, complete and send.

Its headings follow what such a report asks: 発生日時, 検知日時, 影響範囲, 原因, 対応状況,
復旧日時, 再発防止策. Every time is shown in Japan time with UTC beside it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from haltguard.impact.models import ImpactFigures
from haltguard.incidents.models import Incident, TimelineEntry, TimelineKind
from haltguard.incidents.rules import CATEGORIES, SEVERITY_DEFINITIONS, CategoryGroup
from haltguard.reports import document
from haltguard.reports.document import Bullets, Document, Paragraph, Section, Table
from haltguard.reports.facts import IncidentFacts, gather
from haltguard.reports.timefmt import duration_text_ja, jst_utc_ja

GROUP_JA = {
    CategoryGroup.SYSTEM: "システム障害",
    CategoryGroup.SECURITY: "セキュリティ侵害",
    CategoryGroup.EXTERNAL: "外部要因",
}
STATUS_JA = {
    "detected": "検知",
    "investigating": "調査中",
    "identified": "原因特定",
    "mitigating": "対応中",
    "monitoring": "経過観察中",
    "resolved": "復旧",
    "closed": "完了",
}
MARKET_STATE_JA = {
    "open": "通常取引",
    "halted": "取引停止",
    "cancel_only": "取消のみ受付",
    "post_only": "メイカー注文のみ受付",
    "limit_only": "指値注文のみ受付",
    "auction": "板寄せ",
    "closed": "取引終了",
}
TO_BE_WRITTEN = "(記入してください)"
DRAFT_NOTE = (
    "本報告書はインシデント記録から自動作成した草案です。"
    "提出前に記載内容を確認し、必要な事項を追記してください。"
)


def build(
    session: Session, incident: Incident, figures: ImpactFigures | None = None
) -> Document:
    return compose(gather(session, incident, figures))


def _state_ja(details: dict[str, Any]) -> str:
    return MARKET_STATE_JA.get(str(details.get("state", "")), str(details.get("state", "")))


def _action_ja(entry: TimelineEntry) -> str | None:
    """One line in Japanese for an entry the regulator should see, else ``None``."""
    details = entry.details
    target = str(details.get("target", ""))
    refused = "(取引所システムが拒否)" if details.get("ok") is False else ""
    action = details.get("action")
    texts: dict[object, str] = {
        "market.halt": f"{target} の取引を停止",
        "market.set_state": f"{target} を「{_state_ja(details)}」に変更",
        "market.resume": f"{target} の取引を再開",
        "kill_switch.engage": "全市場の取引を一括停止(キルスイッチ)",
        "kill_switch.release": "キルスイッチを解除(各市場は個別に再開)",
        "withdrawals.freeze": f"{target} の出金を停止",
        "withdrawals.unfreeze": f"{target} の出金を再開",
        "trades.propose": f"約定の訂正({target})を提案し、第二の担当者へ承認を依頼",
        "trades.approve": f"第二の担当者が約定の訂正({target})を承認",
        "trades.bust": f"誤った価格の約定(約定番号 {target})を取消し",
        "trades.adjust": f"誤った価格の約定(約定番号 {target})の価格を訂正",
        "trades.rollback": f"取引所の状態を記録 {target} の時点に巻き戻し",
    }
    if action in texts:
        reason = details.get("reason")
        return texts[action] + refused + (f"(理由: {reason})" if reason else "")
    kind = entry.kind
    if kind == TimelineKind.OPENED:
        return "障害を検知し、インシデントとして対応を開始"
    if kind == TimelineKind.STATUS_CHANGED:
        old = STATUS_JA.get(str(details.get("old")), "")
        new = STATUS_JA.get(str(details.get("new")), "")
        return f"対応状況を「{old}」から「{new}」に変更"
    if kind == TimelineKind.SEVERITY_CHANGED:
        return f"重大度を {details.get('old')} から {details.get('new')} に変更"
    if kind == TimelineKind.COMMANDER_ASSIGNED:
        return f"インシデントコマンダーに {details.get('incident_commander')} を指名"
    if kind == TimelineKind.PUBLIC_UPDATE:
        return f"顧客へ公表: {details.get('message_ja', entry.message)}"
    if kind == TimelineKind.PAGE:
        return str(details.get("message_ja") or "担当者を呼び出し")
    if kind == TimelineKind.TASK_DONE and details.get("title_ja"):
        return f"対応手順を完了: {details['title_ja']}"
    if kind == TimelineKind.APPROVAL_REQUESTED:
        return "取引再開またはキルスイッチ解除について、第二の担当者へ承認を依頼"
    if kind == TimelineKind.APPROVAL_DECIDED:
        decided = "承認" if details.get("status") in {"executed", "failed"} else "却下"
        return f"第二の担当者が依頼を{decided}"
    if kind == TimelineKind.HANDOFF:
        return f"{details.get('hold')} の管理を {details.get('to')} に引き継ぎ"
    return None


def _scope(facts: IncidentFacts) -> Section:
    impact, incident = facts.impact, facts.incident
    markets = "、".join(impact.markets_halted) or "なし"
    if impact.all_markets_halted:
        markets = f"全市場(キルスイッチによる一括停止)。対象: {markets}"
    customers = (f"約 {impact.customers_affected:,} 名(推定)"
                 if impact.customers_affected is not None else TO_BE_WRITTEN)
    orders = (f"{impact.orders_rejected:,} 件" if impact.orders_rejected is not None
              else TO_BE_WRITTEN)
    figures = facts.figures
    if figures is not None:
        customers = f"{figures.affected_accounts:,} 名(取引記録から集計)"
        orders = f"{figures.orders_refused:,} 件(取引記録から集計)"
    rows: tuple[tuple[str, str], ...] = (
        ("取引停止・制限した市場", markets),
        ("出金を停止した暗号資産", "、".join(impact.withdrawals_frozen) or "なし"),
        ("影響を受けた機能・構成要素", "、".join(incident.affected_components) or TO_BE_WRITTEN),
        ("影響を受けた顧客数", customers),
        ("受付できなかった注文数", orders),
        ("影響時間", duration_text_ja(impact.duration_s)),
    )
    if figures is not None:
        rows += (
            ("取消できなかった注文数", f"{figures.cancels_refused:,} 件"),
            ("受付できなかった出金数", f"{figures.withdrawals_refused:,} 件"),
            ("集計元の記録", figures.journal.describe_ja()),
            ("影響を受けた顧客の一覧(CSV)", figures.csv_path),
        )
    return Section("3. 影響範囲", (Table(("項目", "内容"), rows),))


def compose(facts: IncidentFacts) -> Document:
    incident, written = facts.incident, facts.postmortem
    category = CATEGORIES[incident.category]
    cause = (written.cause if written else incident.cause) or TO_BE_WRITTEN
    actions = tuple(
        (jst_utc_ja(entry.at), text)
        for entry in facts.timeline
        if (text := _action_ja(entry)) is not None
    )
    prevention = list(written.recurrence_prevention) if written else []
    prevention += [
        f"{item.get('description', '')}(担当: {item.get('owner', '')}"
        + (f"、期限: {item['due']}" if item.get("due") else "") + ")"
        for item in (written.action_items if written else [])
    ]
    preamble = (
        Paragraph(DRAFT_NOTE),
        Table(("項目", "内容"), (
            ("インシデント番号", incident.ref),
            ("件名", incident.title),
            ("障害の区分", f"{GROUP_JA[category.group]}({category.label_ja})"),
            ("重大度", f"{incident.peak_severity}: "
                     f"{SEVERITY_DEFINITIONS[incident.peak_severity].ja}"),
            ("現在の状況", STATUS_JA[incident.status.value]),
            ("報告者", incident.incident_commander or TO_BE_WRITTEN),
        )),
    )
    sections = (
        Section("1. 発生日時", (Paragraph(jst_utc_ja(facts.impact.started_at)),)),
        Section("2. 検知日時", (Paragraph(jst_utc_ja(incident.detected_at)),)),
        _scope(facts),
        Section("4. 原因", (Paragraph(cause),)),
        Section("5. 対応状況", (
            Paragraph(f"現在の状況: {STATUS_JA[incident.status.value]}"),
            Table(("日時", "対応内容"), actions),
        )),
        Section("6. 復旧日時", (Paragraph(jst_utc_ja(incident.resolved_at,
                                                   missing="未復旧(対応中)")),)),
        Section("7. 再発防止策", (Bullets(tuple(prevention), empty=TO_BE_WRITTEN),)),
    )
    return Document(title=f"システム障害報告書(草案){incident.ref}", lang="ja",
                    sections=sections, preamble=preamble)


def render_markdown(doc: Document) -> str:
    return document.render_markdown(doc)


def render_html(doc: Document) -> str:
    return document.render_html(doc)
