"""``haltguard trades ...``: review erroneous trades, bust or re-price them, roll back.

Everything goes through the operations API (``--url``/``HALTGUARD_URL``, ``HALTGUARD_TOKEN``
or the saved login), so the permission table, the policy's roles, the four-eyes rule and the
audit chain apply as they do to any client. ``--dry-run`` shows exactly what would change and
stores and sends nothing. A walk-through is in ``docs/corrections.md``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from haltguard.cli.client import Api, api_of, connect, fail
from haltguard.cli.timefmt import line_time
from haltguard.corrections.texts import amount_text

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Trade corrections: review, bust, adjust, rollback-plan, rollback.")
console = Console(markup=False, highlight=False, soft_wrap=True)
app.callback()(connect)

BALANCE_LINES_SHOWN_MAX = 40

FromOption = Annotated[str, typer.Option("--from", help="Window start (ISO 8601 with a zone).")]
ToOption = Annotated[str, typer.Option("--to", help="Window end (ISO 8601 with a zone).")]
MarketOption = Annotated[str | None, typer.Option("--market", help="Only this market.")]
AccountOption = Annotated[int | None, typer.Option("--account", help="Only this account.")]
DeviationOption = Annotated[int, typer.Option(
    "--min-deviation-bps", help="Flag trades further than this from the reference (0: the "
    "policy's band per market).")]
ReferenceOption = Annotated[Path | None, typer.Option(
    "--reference-csv", help="An imported reference series: CSV with market,time,price.")]
IncidentOption = Annotated[int, typer.Option("--incident", help="The incident's id.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (shown to customers).")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Show what would change; store and send nothing.")]


def _series(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    if rows and set(rows[0]) != {"market", "time", "price"}:
        fail(f"{path}: the header must be market,time,price")
    return [{"market": r["market"], "time": r["time"], "price": r["price"]} for r in rows]


def _window(from_time: str, to_time: str, *, market: str | None, account: int | None,
            deviation: int, reference: Path | None) -> dict[str, Any]:
    body: dict[str, Any] = {"from_time": from_time, "to_time": to_time,
                            "deviation_bps_min": deviation,
                            "reference_series": _series(reference)}
    if market:
        body["market"] = market
    if account is not None:
        body["account"] = account
    return body


def _printed(api: Api, data: Any) -> bool:
    if api.as_json:
        console.print_json(data=data)
    return api.as_json


def _show_trade(trade: dict[str, Any]) -> None:
    new = f" -> {trade['new_price_text']}" if "new_price_text" in trade else ""
    console.print(
        f"  trade {trade['trade_id']} {trade['market']} {line_time(trade['time'])} "
        f"seq {trade['seq']}: "
        f"{trade['qty_text']} @ {trade['price_text']}{new} (reference "
        f"{trade['reference_price_text']}, {trade['deviation_bps']} bps off) taker "
        f"{trade['taker_account']} ({trade['taker_side']}) maker {trade['maker_account']} "
        f"[{trade['status']}]"
    )


def _show_changes(changes: list[dict[str, Any]], decimals: dict[str, int]) -> None:
    for change in changes[:BALANCE_LINES_SHOWN_MAX]:
        console.print(f"    account {change['account']}: {change['asset']} "
                      f"{amount_text(change['amount'], decimals.get(change['asset'], 0))}")
    if len(changes) > BALANCE_LINES_SHOWN_MAX:
        console.print(f"    ... and {len(changes) - BALANCE_LINES_SHOWN_MAX} more "
                      "(--json shows all)")


@app.command("review")
def review(
    ctx: typer.Context, *, from_time: FromOption, to_time: ToOption,
    market: MarketOption = None, account: AccountOption = None, deviation: DeviationOption = 0,
    reference: ReferenceOption = None,
) -> None:
    """List the window's trades outside the band around the reference, with both sides'
    accounts and the effect on balances."""
    api = api_of(ctx)
    data = api.json("POST", "/api/corrections/review",
                    body=_window(from_time, to_time, market=market, account=account,
                                 deviation=deviation, reference=reference))
    if _printed(api, data):
        return
    window = data["window"]
    console.print(f"reviewed / 確認 {data['trades_reviewed']} trades, seq {window['from_seq']} "
                  f"to {window['to_seq']}, policy {data['policy']['name']}")
    for market_name, price in data["references"].items():
        console.print(f"  reference / 基準価格 {market_name}: {price} (VWAP before the window)")
    console.print(f"erroneous / 異常約定: {len(data['findings'])}"
                  + (" (list truncated)" if data["truncated"] else ""))
    for finding in data["findings"]:
        _show_trade(finding)
        _show_changes(finding["changes"], data["asset_decimals"])


def _show_request(data: dict[str, Any]) -> None:
    name = "DRY RUN / 試行 (nothing stored or sent)" if data["id"] is None else (
        f"correction {data['id']}: {data['status']}")
    console.print(f"{name} — {data['kind']} for incident {data['incident_id']}")
    console.print(f"  digest: {data['digest']}")
    console.print(f"  proposed by {data['proposed_by']}"
                  + (f"; approved by {data['approved_by']}" if data.get("approved_by") else ""))
    console.print(f"  policy / 規程: {data['policy']['name']}; reason / 理由: {data['reason']}")
    plan = data["plan"]
    if data["kind"] == "rollback":
        when = line_time(plan["target_time"])
        console.print(f"  roll back to seq {plan['target_seq']} ({when}): "
                      f"{plan['orders_to_cancel']} resting orders cancelled, "
                      f"{plan['trades_to_bust']} trades busted (ids {plan['first_trade_id']}"
                      f"..{plan['last_trade_id']}), planned at seq {plan['planned_at_seq']}")
    for trade in plan.get("trades", []):
        _show_trade(trade)
    console.print(f"  balances that change / 残高の変更 ({len(plan['balance_changes'])}):")
    _show_changes(plan["balance_changes"], plan["asset_decimals"])
    console.print(f"  accounts notified / 通知する口座: {len(data['accounts'])}")
    if data.get("detail"):
        console.print(f"  venue / 取引所: {data['detail']}")


def _propose(api: Api, path: str, body: dict[str, Any]) -> None:
    data = api.json("POST", path, body=body)
    if _printed(api, data):
        return
    _show_request(data)
    if data["id"] is not None:
        console.print(f"next / 次: another operator approves it with `haltguard trades approve "
                      f"{data['id']} --digest {data['digest']}`")


@app.command("bust")
def bust(
    ctx: typer.Context, *, incident: IncidentOption, reason: ReasonOption,
    from_time: FromOption, to_time: ToOption,
    trade: Annotated[list[int] | None, typer.Option(
        "--trade", help="Bust only this trade of the review (repeatable).")] = None,
    market: MarketOption = None, account: AccountOption = None,
    deviation: DeviationOption = 0, reference: ReferenceOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Propose busting the erroneous trades the review of the window finds."""
    body = _window(from_time, to_time, market=market, account=account, deviation=deviation,
                   reference=reference)
    body.update(incident_id=incident, reason=reason, trade_ids=trade or [], dry_run=dry_run)
    _propose(api_of(ctx), "/api/corrections/busts", body)


@app.command("adjust")
def adjust(
    ctx: typer.Context, *, incident: IncidentOption, reason: ReasonOption,
    from_time: FromOption, to_time: ToOption,
    trade: Annotated[int, typer.Option("--trade", help="The trade to re-price.")],
    price: Annotated[str, typer.Option("--price", help="The price it settles at instead.")],
    deviation: DeviationOption = 0, reference: ReferenceOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Propose re-pricing one erroneous trade of the window."""
    body = _window(from_time, to_time, market=None, account=None, deviation=deviation,
                   reference=reference)
    body.update(incident_id=incident, reason=reason, trade_id=trade, price=price,
                dry_run=dry_run)
    _propose(api_of(ctx), "/api/corrections/adjustments", body)


SeqOption = Annotated[int, typer.Option("--seq", help="Roll back to the state after this seq.")]


@app.command("rollback-plan")
def rollback_plan(
    ctx: typer.Context, *, incident: IncidentOption, reason: ReasonOption, seq: SeqOption,
) -> None:
    """Show what rolling back to a seq would undo (a dry run: nothing stored or sent)."""
    _propose(api_of(ctx), "/api/corrections/rollbacks",
             {"incident_id": incident, "reason": reason, "target_seq": seq, "dry_run": True})


@app.command("rollback")
def rollback(
    ctx: typer.Context, *, incident: IncidentOption, reason: ReasonOption, seq: SeqOption,
) -> None:
    """Propose rolling the venue back to a seq; a second operator approves it."""
    _propose(api_of(ctx), "/api/corrections/rollbacks",
             {"incident_id": incident, "reason": reason, "target_seq": seq})


@app.command("approve")
def approve(
    ctx: typer.Context, request_id: Annotated[int, typer.Argument(help="The correction.")],
    *, digest: Annotated[str, typer.Option("--digest", help="The digest you reviewed.")],
) -> None:
    """Approve a correction another operator proposed: the venue journals it."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/corrections/requests/{request_id}/approve",
                    body={"digest": digest})
    if not _printed(api, data):
        _show_request(data)


@app.command("show")
def show(ctx: typer.Context,
         request_id: Annotated[int, typer.Argument(help="The correction.")]) -> None:
    """A correction's plan, status and decision."""
    api = api_of(ctx)
    data = api.json("GET", f"/api/corrections/requests/{request_id}")
    if not _printed(api, data):
        _show_request(data)


@app.command("notices")
def notices(
    ctx: typer.Context, request_id: Annotated[int, typer.Argument(help="The correction.")],
    account: AccountOption = None,
) -> None:
    """What the affected accounts are told (ja/en)."""
    api = api_of(ctx)
    params: dict[str, Any] = {"limit": 200}
    if account is not None:
        params["account"] = account
    data = api.json("GET", f"/api/corrections/requests/{request_id}/notices", params=params)
    if _printed(api, data):
        return
    for item in data["items"]:
        console.print(f"--- account {item['account']}")
        console.print(f"{item['subject_ja']}\n{item['body_ja']}\n")
        console.print(f"{item['subject_en']}\n{item['body_en']}")
