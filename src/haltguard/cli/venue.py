"""``haltguard venue ...``: run a venue, check a data directory, work a running venue's brakes,
trade by hand.

``run`` serves a venue on a data directory (what ``haltguard serve`` supervises as its own
process). ``verify``, ``inspect`` and ``state-at`` (the venue as it stood at a seq or a time)
read a data directory and change nothing; ``repair`` cuts
damage after the commit mark of a stopped venue's journal on your decision. The other
commands talk to a running venue over HTTP (``--url`` or ``HALTGUARD_VENUE_URL``; the admin
token from ``HALTGUARD_VENUE_TOKEN`` or ``--token-file``); every brake records who pulled it
and why.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from haltguard.app.venue_process import VenueStartError, lock_data_dir, run_command
from haltguard.cli.client import UNSAFE_FLAG, secret_from
from haltguard.cli.conformance import conformance_command
from haltguard.cli.venue_standby import standby_command
from haltguard.common.errors import HaltguardError
from haltguard.common.units import NS_PER_S
from haltguard.gateway.control import HttpVenueControl
from haltguard.impact.models import parse_time_ns
from haltguard.impact.state import point_in_time_summary, state_at
from haltguard.journal import JournalError, recover, verify
from haltguard.journal.repair import apply_repair, plan_repair
from haltguard.venue.commands import ResumePhase
from haltguard.venue.control import VenueControlError
from haltguard.venue.events import Event
from haltguard.venue.types import MarketState

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()
errors = Console(stderr=True)

URL_DEFAULT = "http://127.0.0.1:8000"
DEFAULT_RESUME_PLAN = "cancel_only:60,auction:180,open:0"

UrlOption = Annotated[
    str, typer.Option("--url", envvar="HALTGUARD_VENUE_URL", help="The running venue's URL.")
]
TokenOption = Annotated[
    str,
    typer.Option(
        "--token", envvar="HALTGUARD_VENUE_TOKEN", show_default=False,
        help="The venue's admin token (printed by `haltguard serve`). "
        f"{UNSAFE_FLAG} Prefer HALTGUARD_VENUE_TOKEN or --token-file.",
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option("--token-file", show_default=False,
                 help="Read the venue's admin token from this file ('-': standard input)."),
]
ActorOption = Annotated[
    str, typer.Option("--actor", help="Who is deciding (recorded with the command).")
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (recorded with the command; required).")
]
IncidentOption = Annotated[
    str, typer.Option("--incident", help="The incident this belongs to, if any.")
]
DataDirArgument = Annotated[
    Path, typer.Argument(help="A venue data directory (the one given to `haltguard serve`).")
]


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _fail(message: str, next_step: str) -> typer.Exit:
    errors.print(f"[red]Error:[/red] {message}", soft_wrap=True)
    errors.print(f"Next: {next_step}", soft_wrap=True)
    return typer.Exit(1)


def _need_data_dir(data_dir: Path) -> None:
    if not (data_dir / "segments").is_dir() and not (data_dir / "snapshots").is_dir():
        raise _fail(
            f"{data_dir} is not a venue data directory (no segments/ or snapshots/ in it)",
            "pass the directory given to `haltguard serve --data-dir`",
        )


# --- running a venue ------------------------------------------------------------------


app.command("run")(run_command)  # the venue process's own command line, declared with it
app.command("conformance")(conformance_command)  # the venue contract, through an adapter
app.command("standby")(standby_command)  # a node on the replicated journal


# --- data directory -------------------------------------------------------------------


@app.command("verify")
def verify_command(data_dir: DataDirArgument) -> None:
    """Check a data directory without changing it; exit 1 if anything needs a person.

    Replays the journal read-only from the newest valid snapshot, decodes the whole retained
    journal (also the segments before that snapshot) and rebuilds every snapshot, then checks
    the venue's invariants (funds conserved, no negative balance, books not crossed).
    Corruption is reported with the segment file and byte offset.
    """
    _need_data_dir(data_dir)
    with console.status(f"Checking the journal in {data_dir} ..."):
        report = verify(data_dir)
    table = Table(title=f"Venue data in {data_dir}", show_header=False)
    table.add_row("verdict", "[green]OK[/green]" if report.ok else "[red]PROBLEMS FOUND[/red]")
    table.add_row(
        "journal retained",
        f"seq {report.retained_from_seq} to {report.last_seq}" if report.retained_from_seq
        else "no segment",
    )
    table.add_row("snapshot used", f"seq {report.snapshot_seq}" if report.snapshot_seq else "none")
    table.add_row("records replayed", str(report.records_replayed))
    table.add_row("last seq", str(report.last_seq))
    table.add_row("segments / snapshots", f"{report.segments} / {report.snapshots}")
    table.add_row(
        "torn tail",
        "none" if report.torn_tail is None
        else f"{report.torn_tail.describe()} (cut off at the next start)",
    )
    invariants = [p for p in report.problems if p.startswith("venue invariant")]
    table.add_row("invariants", f"{len(invariants)} broken" if invariants else "hold")
    table.add_row("took", f"{report.elapsed_ms:.0f} ms")
    console.print(table)
    console.print(f"state hash {report.state_hash or '-'}", soft_wrap=True)
    for repair in report.repairs:
        console.print(f"[yellow]repaired earlier:[/yellow] {repair}", soft_wrap=True)
    if not report.ok:
        for problem in report.problems:
            errors.print(f"[red]problem:[/red] {problem}", soft_wrap=True)
        errors.print(
            "Next: keep this directory as it is; restore from a replica or backup, or have an "
            "engineer inspect the named segment and offset."
        )
        raise typer.Exit(1)


@app.command("repair")
def repair_command(
    data_dir: DataDirArgument,
    *,
    reason: ReasonOption,
    actor: ActorOption = "",
    yes: Annotated[
        bool, typer.Option("--yes", help="Cut without asking (the decision is still recorded).")
    ] = False,
) -> None:
    """Cut damage after the commit mark from a stopped venue's journal, on your decision.

    For what a start refuses although no acknowledged record is involved, e.g. garbage
    appended after the last record. It shows what it would cut and asks; it refuses
    anything at or below the commit mark (records that may have been acknowledged). The
    cut bytes are kept in DATA_DIR/repairs/ with a record of who decided and why.
    """
    _need_data_dir(data_dir)
    try:
        lock = lock_data_dir(data_dir)
    except VenueStartError as exc:
        raise _fail(str(exc), "stop the venue (or `haltguard serve`) first") from exc
    try:
        _repair(data_dir, reason, actor or _default_actor(), yes)
    finally:
        os.close(lock)


def _repair(data_dir: Path, reason: str, actor: str, yes: bool) -> None:
    restore = (
        "keep this directory as it is; restore it from a replica or backup, or have an "
        "engineer inspect the named segment and offset"
    )
    try:
        plan = plan_repair(data_dir)
    except JournalError as exc:
        raise _fail(str(exc), restore) from exc
    if plan is None:
        console.print("Nothing to repair: the journal ends with an intact record.")
        return
    console.print(f"Repair plan: {plan.describe()}.", soft_wrap=True, highlight=False)
    if not yes and not typer.confirm("Cut these bytes from the journal?", default=False):
        raise _fail("nothing was cut", "run the command again and answer y to cut")
    try:
        record = apply_repair(
            data_dir, plan, actor=actor, reason=reason, now=datetime.now(UTC)
        )
    except JournalError as exc:
        raise _fail(str(exc), restore) from exc
    console.print(
        f"Cut. The bytes are kept in {data_dir / 'repairs' / record.cut_file} (sha256 "
        f"{record.cut_sha256}); the repair is recorded beside them.",
        soft_wrap=True, highlight=False,
    )
    console.print(f"Next: `haltguard venue verify {data_dir}`, then start the venue.")


@app.command("inspect")
def inspect_command(data_dir: DataDirArgument) -> None:
    """Show markets, states and balance totals of a data directory (read-only)."""
    _need_data_dir(data_dir)
    try:
        with console.status(f"Replaying the journal in {data_dir} ..."):
            venue, report = recover(data_dir, repair=False)
    except JournalError as exc:
        raise _fail(
            str(exc), f"run `haltguard venue verify {data_dir}` for the full report"
        ) from exc
    state = venue.export_state()
    console.print(
        f"seq {venue.last_seq}, kill switch {'ENGAGED' if state.kill_switch else 'off'}, "
        f"frozen withdrawals: {', '.join(state.frozen_assets) or 'none'}"
    )
    markets = Table(title="Markets")
    for column in ("market", "state", "best bid", "best ask", "open orders", "last price"):
        markets.add_column(column)
    for entry in state.markets:
        spec = entry.spec
        top = venue.depth(spec.symbol, 1)
        markets.add_row(
            spec.symbol, entry.state.value,
            spec.price_text(top.bids[0].price) if top.bids else "-",
            spec.price_text(top.asks[0].price) if top.asks else "-",
            str(len(entry.orders)),
            spec.price_text(entry.last_price) if entry.last_price else "-",
        )
    console.print(markets)
    assets = {asset.code: asset for asset in state.assets}
    totals = Table(title="Balances by asset")
    for column in ("asset", "accounts", "available", "held", "deposited", "withdrawn"):
        totals.add_column(column, justify="right")
    for asset_totals in state.totals:
        asset = assets[asset_totals.asset]
        rows = [b for b in state.balances if b.asset == asset.code]
        totals.add_row(
            asset.code, str(sum(1 for b in rows if b.available or b.held)),
            asset.from_minor(sum(b.available for b in rows)),
            asset.from_minor(sum(b.held for b in rows)),
            asset.from_minor(asset_totals.deposited), asset.from_minor(asset_totals.withdrawn),
        )
    console.print(totals)
    if report.torn_tail is not None:
        console.print(f"[yellow]torn tail (cut at the next start):[/yellow] "
                      f"{report.torn_tail.describe()}")


@app.command("state-at")
def state_at_command(
    data_dir: DataDirArgument,
    *,
    seq: Annotated[int | None, typer.Option("--seq", help="After this record.")] = None,
    time: Annotated[
        str | None,
        typer.Option("--time", help="After the last record at or before this ISO 8601 time "
                     "(without a zone: UTC), e.g. 2026-01-01T09:00:00+09:00."),
    ] = None,
    asset: Annotated[str | None, typer.Option("--asset", help="Every account's balance of "
                                              "this asset.")] = None,
    market: Annotated[str | None, typer.Option("--market", help="This market's book and "
                                               "open orders.")] = None,
    depth: Annotated[int, typer.Option("--depth", help="Book levels a side.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The venue as it stood at a seq or a time, rebuilt from the nearest snapshot before it
    and the journal (read-only): market states, and an asset's balances or a market's book.

    The basis of cut-off balances: balances are available plus locked by open orders, in
    the asset's decimals.
    """
    _need_data_dir(data_dir)
    try:
        ts_ns = None if time is None else parse_time_ns(time)
        with console.status(f"Rebuilding the venue in {data_dir} ..."):
            state = state_at(data_dir, seq=seq, ts_ns=ts_ns)
        summary = point_in_time_summary(state, asset=asset, market=market, depth=depth)
    except ValueError as exc:
        raise _fail(str(exc), "write the time as ISO 8601, e.g. 2026-01-01T09:00:00+09:00") \
            from exc
    except HaltguardError as exc:
        raise _fail(exc.message, exc.next_step or "fix what the message names") from exc
    if as_json:
        console.print_json(json.dumps(summary))
        return
    _print_state(summary)


def _print_state(summary: dict[str, Any]) -> None:
    console.print(f"seq {summary['seq']} at {summary['time_utc']}; kill switch "
                  f"{'ENGAGED' if summary['kill_switch'] else 'off'}; frozen withdrawals: "
                  f"{', '.join(summary['frozen_assets']) or 'none'}")
    markets = Table(title="Markets")
    for column in ("market", "state", "open orders"):
        markets.add_column(column)
    for name, info in summary["markets"].items():
        markets.add_row(name, info["state"], str(info["open_orders"]))
    console.print(markets)
    if "balances" in summary:
        table = Table(title=f"{summary['asset']} balances (available + locked)")
        for column in ("account", "total", "available", "locked"):
            table.add_column(column, justify="right")
        for account, row in summary["balances"].items():
            table.add_row(account, row["total"], row["available"], row["locked"])
        console.print(table)
    if "book" in summary:
        book = Table(title=f"{summary['market']} book")
        for column in ("bid qty", "bid", "ask", "ask qty"):
            book.add_column(column, justify="right")
        bids, asks = summary["book"]["bids"], summary["book"]["asks"]
        for index in range(max(len(bids), len(asks))):
            bid = bids[index] if index < len(bids) else ["", ""]
            ask = asks[index] if index < len(asks) else ["", ""]
            book.add_row(bid[1], bid[0], ask[0], ask[1])
        console.print(book)


# --- a running venue: brakes ---------------------------------------------------------


def _remote(
    url: str, token: str, call: Callable[[HttpVenueControl], Any],
    next_step: str = "fix what the message names and run the command again",
) -> Any:
    """One call to a running venue; a refusal or an unreachable venue exits 1 saying why."""
    control = HttpVenueControl(url, token)
    try:
        return call(control)
    except VenueControlError as exc:
        raise _fail(str(exc), next_step) from exc
    finally:
        control.close()


def _show_events(control: HttpVenueControl, events: list[Event]) -> None:
    units = control.units()
    for event in events:
        fields = units.render_event(event)
        kind = fields.pop("type")
        details = ", ".join(f"{key}={value}" for key, value in fields.items() if value != "")
        console.print(f"[bold]{kind}[/bold] {details}")


def _brake(
    url: str, token: str, token_file: Path | None,
    action: Callable[[HttpVenueControl], list[Event]],
) -> None:
    token = secret_from(token, token_file, "venue admin token") or ""
    if not token:
        raise _fail(
            "no admin token",
            "set HALTGUARD_VENUE_TOKEN or pass --token-file (printed by `haltguard serve`)",
        )
    _remote(url, token, lambda control: _show_events(control, action(control)))


@app.command("halt")
def halt_command(
    market: Annotated[str, typer.Argument(help="The market, e.g. BTC-JPY.")],
    *,
    reason: ReasonOption,
    url: UrlOption = URL_DEFAULT,
    token: TokenOption = "",
    token_file: TokenFileOption = None,
    actor: ActorOption = "",
    incident: IncidentOption = "",
    refuse_cancels: Annotated[
        bool, typer.Option("--refuse-cancels", help="Refuse cancels too (maintenance).")
    ] = False,
) -> None:
    """Halt a market: no new orders; cancels stay allowed unless --refuse-cancels."""
    _brake(url, token, token_file, lambda c: c.set_market_state(
        market, MarketState.HALTED, actor=actor or _default_actor(), reason=reason,
        incident_id=incident, cancels_allowed=not refuse_cancels,
    ))


@app.command("state")
def state_command(
    market: Annotated[str, typer.Argument(help="The market, e.g. BTC-JPY.")],
    state: Annotated[MarketState, typer.Argument(help="The state to move to.")],
    *,
    reason: ReasonOption,
    url: UrlOption = URL_DEFAULT,
    token: TokenOption = "",
    token_file: TokenFileOption = None,
    actor: ActorOption = "",
    incident: IncidentOption = "",
    auction_seconds: Annotated[
        float, typer.Option(min=0, help="For auction: uncross and open after this long.")
    ] = 0,
) -> None:
    """Move a market to another state; an illegal move is refused, naming the legal ones."""
    _brake(url, token, token_file, lambda c: c.set_market_state(
        market, state, actor=actor or _default_actor(), reason=reason, incident_id=incident,
        auction_ns=round(auction_seconds * NS_PER_S),
    ))


@app.command("kill-switch")
def kill_switch_command(
    action: Annotated[str, typer.Argument(help="engage or release")],
    *,
    reason: ReasonOption,
    url: UrlOption = URL_DEFAULT,
    token: TokenOption = "",
    token_file: TokenFileOption = None,
    actor: ActorOption = "",
    incident: IncidentOption = "",
) -> None:
    """Halt every market at once (engage), or release the switch (markets stay halted)."""
    if action not in ("engage", "release"):
        raise _fail(f"unknown action {action!r}", "use `engage` or `release`")
    _brake(url, token, token_file, lambda c: c.kill_switch(
        action == "engage", actor=actor or _default_actor(), reason=reason, incident_id=incident,
    ))


@app.command("freeze")
def freeze_command(
    asset: Annotated[str, typer.Argument(help="The asset, e.g. BTC.")],
    *,
    reason: ReasonOption,
    url: UrlOption = URL_DEFAULT,
    token: TokenOption = "",
    token_file: TokenFileOption = None,
    actor: ActorOption = "",
    incident: IncidentOption = "",
    unfreeze: Annotated[bool, typer.Option("--unfreeze", help="Lift the freeze.")] = False,
) -> None:
    """Freeze (or with --unfreeze, lift the freeze on) withdrawals of one asset."""
    _brake(url, token, token_file, lambda c: c.freeze_withdrawals(
        asset, not unfreeze, actor=actor or _default_actor(), reason=reason,
        incident_id=incident,
    ))


def parse_resume_plan(text: str) -> list[ResumePhase]:
    """``state:seconds,...`` into phases, e.g. ``cancel_only:60,auction:180,open:0``."""
    phases: list[ResumePhase] = []
    for part in text.split(","):
        name, _, seconds = part.strip().partition(":")
        try:
            phases.append(ResumePhase(MarketState(name), round(float(seconds or 0) * 1e9)))
        except ValueError as exc:
            raise _fail(
                f"cannot read phase {part!r}",
                f"write phases as state:seconds, e.g. {DEFAULT_RESUME_PLAN}",
            ) from exc
    return phases


@app.command("resume")
def resume_command(
    market: Annotated[str, typer.Argument(help="The market, e.g. BTC-JPY.")],
    *,
    reason: ReasonOption,
    url: UrlOption = URL_DEFAULT,
    token: TokenOption = "",
    token_file: TokenFileOption = None,
    actor: ActorOption = "",
    incident: IncidentOption = "",
    plan: Annotated[
        str, typer.Option(help="Phases as state:min_seconds, in order.")
    ] = DEFAULT_RESUME_PLAN,
) -> None:
    """Start reopening a market through phases (your decision; the venue times the phases)."""
    phases = parse_resume_plan(plan)
    _brake(url, token, token_file, lambda c: c.start_resume_plan(
        market, phases, actor=actor or _default_actor(), reason=reason, incident_id=incident,
    ))


@app.command("status")
def status_command(url: UrlOption = URL_DEFAULT) -> None:
    """List the running venue's markets and their states."""
    data = _remote(url, "", lambda control: control.request("GET", "/v1/markets"),
                   "start the venue with `haltguard serve` or fix --url")
    table = Table(title=f"{url} at seq {data['seq']}"
                  + ("  [red]KILL SWITCH ENGAGED[/red]" if data["kill_switch"] else ""))
    for column in ("market", "state", "tick", "lot", "taker bps"):
        table.add_column(column)
    for market in data["markets"]:
        table.add_row(market["symbol"], market["state"], market["tick_size"],
                      market["lot_size"], str(market["taker_fee_bps"]))
    console.print(table)


# --- a running venue: trading by hand ------------------------------------------------


def _public(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return _remote(url, "", lambda control: control.request(method, path, body))


@app.command("order")
def order_command(
    market: Annotated[str, typer.Argument(help="The market, e.g. BTC-JPY.")],
    side: Annotated[str, typer.Argument(help="buy or sell")],
    qty: Annotated[str, typer.Argument(help="Quantity in base units, e.g. 0.01.")],
    price: Annotated[
        str | None, typer.Argument(help="Limit price; leave out for a market order.")
    ] = None,
    *,
    account: Annotated[int, typer.Option(min=1, help="The account placing the order.")] = 1,
    tif: Annotated[str, typer.Option(help="gtc, ioc or fok.")] = "",
    post_only: Annotated[bool, typer.Option("--post-only", help="Only ever rest.")] = False,
    client_order_id: Annotated[str, typer.Option(help="Makes a retry idempotent.")] = "",
    url: UrlOption = URL_DEFAULT,
) -> None:
    """Place an order on a running venue (for the demo; customers use the HTTP API)."""
    body: dict[str, Any] = {
        "account": account, "side": side, "qty": qty, "post_only": post_only,
        "client_order_id": client_order_id,
        "type": "limit" if price is not None else "market",
        "tif": tif or ("gtc" if price is not None else "ioc"),
    }
    if price is not None:
        body["price"] = price
    data = _public(url, "POST", f"/v1/markets/{market}/orders", body)
    order = data["order"]
    console.print(
        f"order {order['order_id']} {order['status']}: filled {order.get('filled_qty', '?')}, "
        f"open {order.get('open_qty', '?')} (seq {data['seq']}"
        + (", a repeat of an earlier submit" if data.get("repeated") else "") + ")"
    )
    for trade in data.get("trades", []):
        console.print(f"  trade {trade['trade_id']}: {trade['qty']} at {trade['price']}")


@app.command("cancel")
def cancel_command(
    market: Annotated[str, typer.Argument(help="The market, e.g. BTC-JPY.")],
    order_id: Annotated[int, typer.Argument(help="The venue's order id.")],
    account: Annotated[int, typer.Option(min=1, help="The order's owner.")] = 1,
    url: UrlOption = URL_DEFAULT,
) -> None:
    """Cancel one open order on a running venue."""
    data = _public(url, "DELETE", f"/v1/markets/{market}/orders/{order_id}?account={account}")
    console.print(f"order {order_id} cancelled (seq {data['seq']})")


@app.command("book")
def book_command(
    market: Annotated[str, typer.Argument(help="The market, e.g. BTC-JPY.")],
    levels: Annotated[int, typer.Option(min=1, max=500, help="Levels per side.")] = 10,
    url: UrlOption = URL_DEFAULT,
) -> None:
    """Show a market's order book and state on a running venue."""
    info = _public(url, "GET", f"/v1/markets/{market}")
    depth = _public(url, "GET", f"/v1/markets/{market}/depth?levels={levels}")
    table = Table(title=f"{market} ({info['state']}) at seq {depth['seq']}")
    for column in ("bid qty", "bid", "ask", "ask qty"):
        table.add_column(column, justify="right")
    bids, asks = depth["bids"], depth["asks"]
    for index in range(max(len(bids), len(asks))):
        bid = bids[index] if index < len(bids) else ["", "", ""]
        ask = asks[index] if index < len(asks) else ["", "", ""]
        table.add_row(bid[1], f"[green]{bid[0]}[/green]", f"[red]{ask[0]}[/red]", ask[1])
    console.print(table)


@app.command("balances")
def balances_command(
    account: Annotated[int, typer.Argument(help="The account number.")],
    url: UrlOption = URL_DEFAULT,
) -> None:
    """Show an account's balances on a running venue."""
    data = _public(url, "GET", f"/v1/accounts/{account}/balances")
    table = Table(title=f"account {account} at seq {data['seq']}")
    for column in ("asset", "available", "held"):
        table.add_column(column, justify="right")
    for asset, row in data["balances"].items():
        table.add_row(asset, row["available"], row["held"])
    console.print(table)
