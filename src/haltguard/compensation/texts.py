"""What customers and the public read about a compensation run, in Japanese and English.

Pure functions of the stored run: a statement per paid account (what happened, which policy,
the inputs, the amount) and the public note on the status page's incident (the rules and
the total paid, no personal data). The figures are the run's own, formatted exactly from
minor units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SUBJECT_LENGTH_MAX = 200
INPUTS_SHOWN_MAX = 12
"""Inputs listed per policy part in a statement; ``explain`` gives them all."""


@dataclass(frozen=True)
class Bilingual:
    ja: str
    en: str


def format_minor(amount_minor: int, scale: int, *, grouped: bool = True) -> str:
    """``amount_minor`` as an exact decimal of the whole unit, with thousands separators
    unless ``grouped`` is off (``123456`` at 100 per unit -> ``1,234.56``; at 1 -> ``123,456``).
    A scale that is not a power of ten shows the whole units and the remainder in minor."""
    assert scale >= 1, "a currency has at least one minor unit per whole unit"
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), scale)
    digits = len(str(scale - 1)) if scale > 1 else 0
    text = f"{whole:,}" if grouped else str(whole)
    if digits:
        text += "." + str(fraction).rjust(digits, "0")
    return sign + text


def amount_text(currency: str, amount_minor: int, scales: Mapping[str, int]) -> str:
    return f"{currency} {format_minor(amount_minor, scales.get(currency, 1))}"


def _policy_named(policies: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    return next((policy for policy in policies if policy.get("id") == name), {})


def _inputs_text(inputs: object, scales: Mapping[str, int], currency: str) -> str:
    """A part's inputs as ``name=value`` pairs: quantities as decimals of their asset,
    amounts as decimals of the line's currency."""
    items = inputs if isinstance(inputs, list) else [inputs]
    shown: list[str] = []
    for item in items[:INPUTS_SHOWN_MAX]:
        if not isinstance(item, Mapping):
            shown.append(str(item))
            continue
        pairs = []
        for key, value in item.items():
            if key == "kind":
                continue
            if key == "orders" and isinstance(value, list):
                pairs.append(_orders_text(value, scales))
                continue
            if key == "qty_minor" and isinstance(value, int) and "asset" in item:
                asset = str(item["asset"])
                pairs.append(f"qty={format_minor(value, scales.get(asset, 1))} {asset}")
            elif key.endswith("_minor") and isinstance(value, int):
                pairs.append(f"{key.removesuffix('_minor')}={amount_text(currency, value, scales)}")
            else:
                pairs.append(f"{key}={value}")
        shown.append(" ".join(pairs))
    if len(items) > INPUTS_SHOWN_MAX:
        shown.append(f"(+{len(items) - INPUTS_SHOWN_MAX})")
    return "; ".join(shown)


def _orders_text(orders: list[Any], scales: Mapping[str, int]) -> str:
    """Refused orders as ``BTC-JPY buy 0.0065 BTC 14965499 -> 14965535``: market, side,
    quantity, the price at the refusal and the price after reopening."""
    shown = []
    for order in orders[:INPUTS_SHOWN_MAX]:
        market = str(order.get("market", ""))
        base = market.split("-", maxsplit=1)[0]
        qty = order.get("qty_minor", 0)
        quantity = (f"{format_minor(qty, scales[base])} {base}" if base in scales
                    else f"qty_minor={qty}")
        shown.append(f"{market} {order.get('side')} {quantity} "
                     f"{order.get('price_at_refusal')} -> {order.get('price_at_reopen')}")
    if len(orders) > INPUTS_SHOWN_MAX:
        shown.append(f"(+{len(orders) - INPUTS_SHOWN_MAX})")
    return ", ".join(shown)


def statement(
    *, incident_ref: str, incident_title: str, run_id: int, account: int,
    lines: Sequence[Mapping[str, Any]], policies: Sequence[Mapping[str, Any]],
    cutoff: Mapping[str, Any], scales: Mapping[str, int],
) -> tuple[Bilingual, Bilingual]:
    """The subject and body of one account's statement; ``lines`` are its stored lines
    (``line_no``, ``currency``, ``amount_minor``, ``parts``)."""
    totals = ", ".join(amount_text(str(line["currency"]), int(line["amount_minor"]), scales)
                       for line in lines)
    subject = Bilingual(
        ja=f"【補償のお知らせ】{incident_ref} に関する補償 {totals}"[:SUBJECT_LENGTH_MAX],
        en=f"Compensation for {incident_ref}: {totals}"[:SUBJECT_LENGTH_MAX],
    )
    cut = f"seq {cutoff.get('seq')}" + (f" ({cutoff['time']})" if cutoff.get("time") else "")
    parts_ja: list[str] = []
    parts_en: list[str] = []
    for line in lines:
        currency = str(line["currency"])
        for part in line["parts"]:
            policy = _policy_named(policies, str(part.get("policy", "")))
            description = policy.get("description", {})
            amount = amount_text(currency, int(part.get("amount_minor", 0)), scales)
            inputs = _inputs_text(part.get("inputs", []), scales, currency)
            version = policy.get("version", "?")
            parts_ja.append(f"・{amount}（補償方針 {part.get('policy')} 第{version}版: "
                            f"{description.get('ja', '')}）\n  計算の根拠: {inputs}")
            parts_en.append(f"- {amount} (policy {part.get('policy')} version {version}: "
                            f"{description.get('en', '')})\n"
                            f"  inputs: {inputs}")
    refs = ", ".join(str(line["line_no"]) for line in lines)
    body = Bilingual(
        ja=(f"お客様各位（口座番号 {account}）\n\n"
            f"当取引所で障害が発生しました: {incident_title}（{incident_ref}）。"
            "公表した補償方針に基づき、以下の金額をお客様の口座に入金いたしました。\n\n"
            + "\n".join(parts_ja)
            + f"\n\n合計: {totals}\n基準時点: {cut}\n"
            f"照会番号: 補償ラン {run_id}、明細 {refs}（お問い合わせの際にお伝えください）\n\n"
            + "当社がパスワードや送金をお願いすることはありません。"),
        en=(f"Dear customer (account {account}),\n\n"
            f"Our exchange had an interruption: {incident_title} ({incident_ref}). Under our "
            "published compensation rules we have credited your account as follows.\n\n"
            + "\n".join(parts_en)
            + f"\n\nTotal: {totals}\nCut-off: {cut}\n"
            f"Reference: compensation run {run_id}, line(s) {refs} (quote it when you "
            "contact us)\n\n"
            + "We never ask for your password or for a transfer in return."),
    )
    return subject, body


def public_note(
    *, policies: Sequence[Mapping[str, Any]], totals: Mapping[str, int],
    scales: Mapping[str, int], account_count: int,
) -> Bilingual:
    """The status page's note: the rules as published and the total paid. Counts only,
    never an account or a person."""
    paid = ", ".join(amount_text(currency, total, scales)
                     for currency, total in sorted(totals.items()))
    rules_ja = "\n".join(f"・{policy.get('description', {}).get('ja', '')}" for policy in policies)
    rules_en = "\n".join(f"- {policy.get('description', {}).get('en', '')}" for policy in policies)
    return Bilingual(
        ja=(f"本障害の補償を実施しました。対象 {account_count:,} 口座、支払総額 {paid}。\n"
            f"補償方針:\n{rules_ja}\n対象のお客様には個別に明細をお送りしています。"),
        en=(f"Compensation for this incident has been paid: {account_count:,} accounts, "
            f"{paid} in total.\nThe rules applied:\n{rules_en}\nEach customer concerned has "
            "been sent a statement of their own."),
    )
