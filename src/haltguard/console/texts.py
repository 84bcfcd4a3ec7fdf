"""Every text of the console in Japanese and English, and how times are shown.

Templates call ``t("key")``; a key missing here is a mistake a test finds (every key used by
a template exists, in both languages). Times are Japan time first with UTC beside, to the
second; durations until a due time read "in 4 min" / "4分後".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Final, Literal

Language = Literal["ja", "en"]
LANGUAGES: Final = ("ja", "en")
JST: Final = timezone(timedelta(hours=9), "JST")

TEXTS: Final[dict[str, tuple[str, str]]] = {
    "app_name": ("haltguard 運用コンソール", "haltguard operator console"),
    "login_title": ("ログイン", "Log in"),
    "username": ("ユーザー名", "Username"),
    "password": ("パスワード", "Password"),
    "totp_code": ("確認コード(TOTP 6桁)", "Verification code (TOTP, 6 digits)"),
    "log_in": ("ログイン", "Log in"),
    "log_out": ("ログアウト", "Log out"),
    "logged_out_idle": ("一定時間操作がなかったため、ログアウトしました。",
                        "You were logged out after a period without activity."),
    "not_logged_in": ("ログインしてください。", "Please log in."),
    "language": ("English", "日本語"),
    "overview": ("概要", "Overview"),
    "incidents": ("インシデント", "Incidents"),
    "status_admin": ("ステータスページ", "Status page"),
    "oncall": ("オンコール", "On-call"),
    "audit": ("監査ログ", "Audit"),
    "drills": ("訓練", "Drills"),
    "rules": ("検知ルール", "Detection rules"),
    "compensation": ("補償", "Compensation"),
    "markets": ("市場", "Markets"),
    "market": ("市場", "Market"),
    "state": ("状態", "State"),
    "since": ("変更時刻", "Since"),
    "by": ("実行者", "By"),
    "resting_orders": ("板上の注文", "Resting orders"),
    "kill_switch": ("キルスイッチ", "Kill switch"),
    "engaged": ("作動中", "Engaged"),
    "released": ("解除", "Released"),
    "withdrawal_freezes": ("出金停止", "Withdrawal freezes"),
    "none": ("なし", "None"),
    "open_incidents": ("対応中のインシデント", "Open incidents"),
    "severity": ("重大度", "Severity"),
    "status": ("ステータス", "Status"),
    "title": ("件名", "Title"),
    "detected": ("検知時刻", "Detected"),
    "commander": ("指揮者", "Commander"),
    "on_call_now": ("現在のオンコール", "On call now"),
    "unacknowledged_pages": ("未応答の呼び出し", "Unacknowledged pages"),
    "latest_decisions": ("最新の検知判定", "Latest detection decisions"),
    "venue_health": ("取引所の稼働状況", "Venue health"),
    "last_journal_seq": ("最終ジャーナル番号", "Last journal seq"),
    "journal_lag": ("ジャーナル遅延", "Journal lag"),
    "control_latency": ("制御応答時間", "Control round trip"),
    "queue_depth": ("キュー長", "Queue depth"),
    "unknown": ("不明", "unknown"),
    "live": ("自動更新中", "Live"),
    "live_off": ("自動更新停止(再読み込みしてください)", "Live updates off (reload the page)"),
    "summary": ("概要", "Summary"),
    "timeline": ("タイムライン", "Timeline"),
    "tasks": ("ランブックのタスク", "Runbook tasks"),
    "owner": ("担当", "Owner"),
    "due": ("期限", "Due"),
    "done": ("完了", "Done"),
    "mark_done": ("完了にする", "Mark done"),
    "market_actions": ("市場への操作", "Market actions"),
    "halt": ("取引停止", "Halt"),
    "cancel_only": ("取消のみ", "Cancel-only"),
    "resume": ("再開(オークション経由)", "Resume (through an auction)"),
    "auction_seconds": ("オークション秒数", "Auction seconds"),
    "engage_kill_switch": ("キルスイッチ作動", "Engage the kill switch"),
    "release_kill_switch": ("キルスイッチ解除を申請", "Ask to release the kill switch"),
    "freeze_withdrawals": ("出金停止", "Freeze withdrawals"),
    "unfreeze_withdrawals": ("出金再開", "Unfreeze withdrawals"),
    "asset": ("通貨", "Asset"),
    "reason": ("理由", "Reason"),
    "prepare": ("確認へ進む", "Review"),
    "confirm": ("実行する", "Confirm"),
    "cancel": ("やめる", "Cancel"),
    "confirm_title": ("操作の確認", "Confirm the action"),
    "approvals": ("承認待ち(4つの目)", "Pending approvals (four eyes)"),
    "requested_by": ("申請者", "Requested by"),
    "approve": ("承認", "Approve"),
    "reject": ("却下", "Reject"),
    "note": ("メモ", "Note"),
    "comment": ("コメント", "Comment"),
    "add_comment": ("コメントを追加", "Add a comment"),
    "public_update": ("公開情報の更新", "Public update"),
    "update_status": ("更新の段階", "Update stage"),
    "cause_ja": ("原因(日本語)", "Cause (Japanese)"),
    "cause_en": ("原因(英語)", "Cause (English)"),
    "draft": ("下書きを作成", "Draft from the template"),
    "publish": ("公開する", "Publish"),
    "discard": ("破棄", "Discard"),
    "drafts": ("下書き", "Drafts"),
    "preview_ja": ("日本語(プレビュー)", "Japanese (preview)"),
    "preview_en": ("英語(プレビュー)", "English (preview)"),
    "next_update_due": ("次の公開更新の期限", "Next public update due"),
    "overdue": ("期限超過", "overdue"),
    "transition": ("ステータス変更", "Change status"),
    "move": ("変更する", "Move"),
    "open_incident": ("インシデントを起票", "Open an incident"),
    "category": ("分類", "Category"),
    "affected_markets": ("影響を受ける市場", "Affected markets"),
    "create": ("起票する", "Open"),
    "paging": ("呼び出し", "Paging"),
    "page_overdue": ("期限超過タスクでオンコールを呼び出す",
                     "Page the on-call about overdue tasks"),
    "handoff": ("引き継ぎ", "Hand off"),
    "to_incident": ("引き継ぎ先インシデント番号", "To incident id"),
    "verify_chain": ("監査チェーンを検証", "Verify the chain"),
    "search": ("検索", "Search"),
    "actor": ("実行者", "Actor"),
    "action": ("操作", "Action"),
    "target": ("対象", "Target"),
    "at": ("日時", "At"),
    "components": ("コンポーネント", "Components"),
    "shown_status": ("表示中の状態", "Shown status"),
    "override": ("手動設定", "Override"),
    "maintenances": ("計画メンテナンス", "Scheduled maintenance"),
    "published_updates": ("公開済みの更新", "Published updates"),
    "schedules": ("当番表", "Schedules"),
    "decisions": ("判定", "Decisions"),
    "dry_run": ("試行(実行なし)", "dry run"),
    "rule": ("ルール", "Rule"),
    "runs": ("補償の実行", "Compensation runs"),
    "proposed_by": ("提案者", "Proposed by"),
    "approved_by": ("承認者", "Approved by"),
    "accounts": ("口座数", "Accounts"),
    "lines": ("明細", "lines"),
    "totals": ("合計", "Totals"),
    "payout": ("支払い", "Payout"),
    "pay": ("支払いを開始", "Start the payout"),
    "clear_override": ("手動設定を解除", "Clear the override"),
    "set_override": ("手動設定する", "Override"),
    "schedule_maintenance": ("メンテナンスを予定", "Schedule maintenance"),
    "name_ja": ("名称(日本語)", "Name (Japanese)"),
    "name_en": ("名称(英語)", "Name (English)"),
    "starts": ("開始(ISO 8601、タイムゾーン付き)", "Starts (ISO 8601 with zone)"),
    "ends": ("終了(ISO 8601、タイムゾーン付き)", "Ends (ISO 8601 with zone)"),
    "drill_reports": ("訓練の記録", "Drill records"),
    "forbidden": ("この操作の権限がありません。", "Your role does not allow this."),
    "error": ("操作できませんでした", "The action was not done"),
    "back": ("戻る", "Back"),
    "done_ok": ("実行しました。", "Done."),
    "waiting_second": ("2人目の承認待ちです。別のオペレーターが承認すると実行されます。",
                       "Waiting for a second operator: it runs when another operator "
                       "approves it."),
    "effect_halt": ("{market}: 板上の注文 {orders} 件、新規注文は受け付けません",
                    "{market}: {orders} resting orders, new orders refused"),
    "effect_cancel_only": ("{market}: 板上の注文 {orders} 件、取消のみ受け付けます",
                           "{market}: {orders} resting orders, only cancels accepted"),
    "effect_resume": ("{market}: {seconds} 秒のオークションの後に取引を再開します(板上の注文 "
                      "{orders} 件)",
                      "{market}: reopens after a {seconds} s auction ({orders} resting "
                      "orders)"),
    "effect_kill_switch": ("全市場: 新規注文をすべて拒否します", "All markets: every new order "
                           "refused"),
    "effect_kill_switch_release": ("全市場: キルスイッチを解除します(2人目の承認が必要)",
                                   "All markets: the kill switch is released (a second "
                                   "operator must approve)"),
    "effect_freeze": ("{asset}: 出金を停止します", "{asset}: withdrawals stop"),
    "effect_unfreeze": ("{asset}: 出金を再開します", "{asset}: withdrawals resume"),
    "chain_ok": ("監査チェーンは正常です", "The audit chain is intact"),
    "chain_bad": ("監査チェーンに問題があります", "The audit chain is broken"),
    "no_journal": ("ジャーナルを読めません", "journal not readable"),
    "preview": ("プレビュー", "Preview"),
    "preview_title": ("公開前のプレビュー", "Preview before publishing"),
    "preview_nothing_saved": ("まだ何も公開・保存していません。"
                              "公開すると、このとおりに表示・送信されます。",
                              "Nothing is published or saved yet; publishing shows and sends "
                              "exactly this."),
    "preview_notice": ("購読者への通知", "The notice to subscribers"),
    "preview_page": ("公開ステータスページ", "The public status page"),
    "preview_open": ("別のタブで開く", "Open in a new tab"),
    "announcement_draft": ("告知の下書き", "Announcement draft"),
    "propose_run": ("補償の実行を提案", "Propose a compensation run"),
    "incident_id": ("インシデント番号", "Incident id"),
    "policies": ("補償ポリシー", "Policies"),
    "cutoff": ("締め(ジャーナル番号、またはタイムゾーン付き時刻)",
               "Cut-off (a journal seq, or a time with its zone)"),
    "from_time": ("対象期間の開始(省略可)", "Window from (optional)"),
    "to_time": ("対象期間の終了(省略可)", "Window to (optional)"),
    "reference": ("参照価格(任意)", "Reference price (optional)"),
    "reference_name": ("参照名(ポリシーが参照する名前)", "Name (as the policies refer to it)"),
    "reference_source": ("参照元(CSV ファイル名、または市場)",
                         "Source (a CSV file name, or a market)"),
    "propose": ("提案する(2人目が承認します)", "Propose (a second operator approves)"),
    "edit_schedule": ("当番表の作成・変更", "Create or change a schedule"),
    "schedule_name": ("当番表の名前", "Schedule name"),
    "description": ("説明", "Description"),
    "timezone": ("タイムゾーン", "Time zone"),
    "start_date": ("開始日", "Start date"),
    "handoff_time": ("交代時刻(HH:MM)", "Hand-off time (HH:MM)"),
    "rotation_days": ("交代間隔(日)", "Rotation days"),
    "members": ("メンバー(カンマ区切り、順番どおり)", "Members (comma-separated, in order)"),
    "save": ("保存する", "Save"),
    "overrides": ("代行", "Overrides"),
    "add_override": ("代行を追加", "Add an override"),
    "remove": ("削除", "Remove"),
    "person": ("担当者", "Person"),
    "page_person": ("担当者を呼び出す", "Page a responder"),
    "page": ("呼び出す", "Page"),
    "drill_start": ("訓練を開始", "Start a drill"),
    "drill_start_effect": ("訓練はこのシステムそのものに対して行われます"
                           "(市場の停止、構成要素の停止など)。"
                           "同時に実行できる訓練は1つです。",
                           "A drill acts on this very system (it halts markets, stops parts of "
                           "it); one drill runs at a time."),
    "drills_disabled": ("このシステムでは訓練が許可されていません(drill.enabled)。"
                        "過去の記録は下にあります。",
                        "Drills are not allowed on this system (drill.enabled); past reports "
                        "are below."),
    "drill_scenario": ("シナリオ", "Scenario"),
    "drill_scale": ("規模", "Scale"),
    "drill_runs": ("このサービスで実行した訓練", "Drills run by this service"),
    "drill_running": ("実行中", "running"),
    "drill_passed": ("合格", "passed"),
    "drill_failed": ("不合格", "failed"),
    "drill_finished": ("終了時刻", "Finished"),
    "drill_result": ("結果", "Result"),
    "drill_recovery": ("復旧時間", "Recovery time"),
    "drill_check": ("確認項目", "Check"),
}

STATE_LABELS: Final[dict[str, tuple[str, str]]] = {
    "open": ("取引中", "open"),
    "halted": ("停止中", "halted"),
    "cancel_only": ("取消のみ", "cancel-only"),
    "post_only": ("メイカーのみ", "post-only"),
    "limit_only": ("指値のみ", "limit-only"),
    "auction": ("オークション", "auction"),
    "closed": ("閉鎖", "closed"),
}


def text(key: str, language: str) -> str:
    """The text of ``key`` in ``language`` (Japanese unless ``en``)."""
    ja, en = TEXTS[key]
    return en if language == "en" else ja


def state_label(state: str, language: str) -> str:
    ja, en = STATE_LABELS.get(state, (state, state))
    return en if language == "en" else ja


def jst_utc(moment: datetime | None) -> str:
    """``2025-01-06 09:30:05 JST (00:30:05 UTC)``; the UTC date too when it differs."""
    if moment is None:
        return "-"
    local = moment.astimezone(JST)
    utc = moment.astimezone(UTC)
    utc_text = f"{utc:%H:%M:%S}" if utc.date() == local.date() else f"{utc:%Y-%m-%d %H:%M:%S}"
    return f"{local:%Y-%m-%d %H:%M:%S} JST ({utc_text} UTC)"


def until_text(due: datetime, now: datetime, language: str) -> str:
    """How long until ``due``: ``in 4 min`` / ``4分後``, or ``2 min overdue`` / ``2分超過``."""
    seconds = int((due - now).total_seconds())
    amount = abs(seconds)
    if amount < 60:
        ja_amount, en_amount = f"{amount}秒", f"{amount} s"
    elif amount < 3600:
        ja_amount, en_amount = f"{amount // 60}分", f"{amount // 60} min"
    else:
        hours, minutes = divmod(amount // 60, 60)
        ja_amount, en_amount = f"{hours}時間{minutes}分", f"{hours} h {minutes} min"
    if seconds >= 0:
        return f"in {en_amount}" if language == "en" else f"{ja_amount}後"
    return f"{en_amount} overdue" if language == "en" else f"{ja_amount}超過"
