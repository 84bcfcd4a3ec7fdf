"""What an affected account is told about a correction, in Japanese and English.

Pure functions of a stored request's plan: the trades corrected (market, id, time, price,
quantity, and what happened to each), why (the reason and the policy's published text) and
what changed in the account's balances, exact from minor units.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

SUBJECT_EN = "Correction of your trades"
SUBJECT_JA = "お取引の訂正のお知らせ"
TRADES_LISTED_MAX = 50
"""Trades listed per notice; the rest are counted (support gives the full list)."""


def amount_text(amount_minor: int, decimals: int) -> str:
    """``amount_minor`` as an exact signed decimal of the whole unit."""
    value = Decimal(amount_minor).scaleb(-decimals)
    text = f"{value:f}"
    return f"+{text}" if amount_minor > 0 else text


def notice_for(
    account: int, plan: dict[str, Any], *, reason: str, policy: dict[str, Any], kind: str
) -> tuple[str, str, str, str]:
    """``(subject_en, body_en, subject_ja, body_ja)`` for ``account``."""
    decimals: dict[str, int] = plan["asset_decimals"]
    changes = [c for c in plan.get("balance_changes", []) if c["account"] == account]
    lines_en = [f"Account {account}.", ""]
    lines_ja = [f"口座番号 {account} のお客様", ""]
    if kind == "rollback":
        lines_en.append(
            f"We restored the exchange to its state at {plan['target_time']} (journal seq "
            f"{plan['target_seq']}): every order placed after that time was cancelled and "
            f"every trade after it was cancelled."
        )
        lines_ja.append(
            f"取引所の状態を {plan['target_time']}（記録番号 {plan['target_seq']}）"
            "時点に戻しました。"
            "この時点より後のご注文はすべて取り消し、約定もすべて取り消しました。"
        )
    else:
        trades = [t for t in plan.get("trades", [])
                  if account in (t["taker_account"], t["maker_account"])]
        lines_en.append("The following trades of yours were corrected:")
        lines_ja.append("以下のお取引を訂正しました。")
        for trade in trades[:TRADES_LISTED_MAX]:
            done_en = ("cancelled" if kind == "bust"
                       else f"re-priced to {trade['new_price_text']}")
            done_ja = ("取消し" if kind == "bust"
                       else f"約定価格を {trade['new_price_text']} に訂正")
            lines_en.append(
                f"- {trade['market']} trade {trade['trade_id']} at {trade['time']}: "
                f"{trade['qty_text']} at {trade['price_text']}, {done_en}"
            )
            lines_ja.append(
                f"- {trade['market']} 約定番号 {trade['trade_id']}（{trade['time']}）: "
                f"数量 {trade['qty_text']}、価格 {trade['price_text']} → {done_ja}"
            )
        if len(trades) > TRADES_LISTED_MAX:
            more = len(trades) - TRADES_LISTED_MAX
            lines_en.append(f"- and {more} more trades")
            lines_ja.append(f"- ほか {more} 件")
    lines_en += ["", f"Why: {reason}", f"Rule ({policy['name']}): {policy['text']['en']}"]
    lines_ja += ["", f"理由: {reason}", f"規程（{policy['name']}）: {policy['text']['ja']}"]
    if changes:
        lines_en += ["", "Change to your balances:"]
        lines_ja += ["", "残高の変更:"]
        for change in changes:
            text = amount_text(change["amount"], decimals.get(change["asset"], 0))
            lines_en.append(f"- {change['asset']} {text}")
            lines_ja.append(f"- {change['asset']} {text}")
    return SUBJECT_EN, "\n".join(lines_en), SUBJECT_JA, "\n".join(lines_ja)


def public_note(kind: str, plan: dict[str, Any], policy: dict[str, Any]) -> tuple[str, str]:
    """``(ja, en)`` for the incident's public update once a correction is applied: what was
    corrected and under which published rule; no account, no amount."""
    if kind == "rollback":
        en = (f"We restored trading to its state at {plan['target_time']}: orders placed "
              f"after that time ({plan['orders_to_cancel']} still open) were cancelled and "
              f"{plan['trades_to_bust']} trades after it were cancelled.")
        ja = (f"取引の状態を {plan['target_time']} 時点に戻しました。この時点より後のご注文"
              f"（未約定 {plan['orders_to_cancel']} 件）と約定 {plan['trades_to_bust']} 件を"
              "取り消しました。")
    else:
        trades = plan.get("trades", [])
        markets = ", ".join(sorted({t["market"] for t in trades}))
        done_en = "cancelled" if kind == "bust" else "re-priced"
        done_ja = "取り消し" if kind == "bust" else "価格を訂正し"
        en = f"We {done_en} {len(trades)} trade(s) in {markets} executed at erroneous prices."
        ja = f"{markets} で誤った価格で成立した約定 {len(trades)} 件を{done_ja}ました。"
    en += f" Rule ({policy['name']}): {policy['text']['en']} Affected customers are notified."
    ja += f"規程（{policy['name']}）: {policy['text']['ja']} 対象のお客様には個別にお知らせします。"
    return ja, en
