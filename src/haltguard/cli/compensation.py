"""``haltguard compensation ...``: policies, runs, explanations, approval, payout, statements.

Everything goes through the operations API (``--url``/``HALTGUARD_URL``, ``HALTGUARD_TOKEN``
or the saved login), so the permission table, the four-eyes rule and the audit chain apply
exactly as they do to any other client. A walk-through is in ``docs/compensation.md``.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from haltguard.cli.client import Api, api_of, connect, fail
from haltguard.cli.timefmt import line_time
from haltguard.compensation.texts import amount_text

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Compensation runs: compute, explain, approve, pay, tell customers.")
console = Console(markup=False, highlight=False, soft_wrap=True)
app.callback()(connect)

PAYOUT_POLL_S = 2.0
"""How long each progress poll waits on the service for the payout to end."""
CONTACTS_PER_REQUEST = 200
"""Contacts sent per statements request (the service's default limit)."""


def _print_json(api: Api, data: Any) -> bool:
    if api.as_json:
        console.print_json(data=data)
    return api.as_json


@app.command("policies")
def policies(ctx: typer.Context) -> None:
    """The policy files a run may name, with their descriptions (ja/en)."""
    api = api_of(ctx)
    data = api.json("GET", "/api/compensation/policies", params={"limit": 200})
    if _print_json(api, data):
        return
    for item in data["items"]:
        if "error" in item:
            console.print(f"{item['file']}: INVALID / 無効: {item['error']}")
            continue
        console.print(f"{item['file']}  {item.get('kind')} {item.get('id')} "
                      f"v{item.get('version')} ({item.get('currency')})")
        description = item.get("description", {})
        console.print(f"  ja: {description.get('ja', '')}")
        console.print(f"  en: {description.get('en', '')}")


def _reference(text: str, source: str = "csv") -> dict[str, str]:
    """``NAME=FILE.csv,FROM,TO`` (or ``NAME=MARKET,FROM,TO`` for the venue's own market)
    -> the API's reference object."""
    name, _, rest = text.partition("=")
    parts = rest.split(",")
    if not name or len(parts) != len(("source", "from", "to")):
        if source == "csv":
            fail(f"--reference {text!r}: write NAME=FILE.csv,FROM,TO, e.g. xem-jpy-vwap="
                 "xem_trades.csv,2018-01-26T12:52:00+09:00,2018-01-26T23:00:00+09:00")
        fail(f"--market-reference {text!r}: write NAME=MARKET,FROM,TO, e.g. btc-jpy-vwap="
             "BTC-JPY,2026-01-01T09:00:00+09:00,2026-01-01T10:00:00+09:00")
    return {"name": name, source: parts[0], "from_time": parts[1], "to_time": parts[2]}


@app.command("run")
def run(
    ctx: typer.Context,
    *,
    incident: Annotated[int, typer.Option("--incident", help="The incident's id.")],
    policy: Annotated[list[str], typer.Option(
        "--policy", help="A policy file (see `policies`); repeat for several.")],
    cutoff_seq: Annotated[int | None, typer.Option(
        "--cutoff-seq", help="Balances as of this journal sequence number.")] = None,
    cutoff_time: Annotated[str | None, typer.Option(
        "--cutoff-time", help="Balances as of this time (ISO 8601 with a zone).")] = None,
    reference: Annotated[list[str] | None, typer.Option(
        "--reference", help="NAME=FILE.csv,FROM,TO: a reference price, the VWAP of a trades "
        "CSV in the reference directory; repeatable.")] = None,
    market_reference: Annotated[list[str] | None, typer.Option(
        "--market-reference", help="NAME=MARKET,FROM,TO: a reference price, the VWAP of the "
        "venue's own market (e.g. BTC-JPY) from the journal; repeatable.")] = None,
    from_time: Annotated[str | None, typer.Option(
        "--from", help="Start of the impact window (default: the incident's start).")] = None,
    to_time: Annotated[str | None, typer.Option(
        "--to", help="End of the impact window (default: the incident's resolution).")] = None,
    supersedes: Annotated[int | None, typer.Option(
        "--supersedes", help="The earlier run this one recomputes.")] = None,
    note: Annotated[str, typer.Option("--note")] = "",
) -> None:
    """Compute a run from the journal; it waits for a second operator's approval."""
    body: dict[str, Any] = {
        "incident_id": incident, "policies": policy, "cutoff_seq": cutoff_seq,
        "cutoff_time": cutoff_time,
        "references": [_reference(r) for r in reference or []]
        + [_reference(r, "market") for r in market_reference or []],
        "from_time": from_time, "to_time": to_time, "supersedes_run_id": supersedes,
        "note": note,
    }
    api = api_of(ctx)
    data = api.json("POST", "/api/compensation/runs",
                    body={key: value for key, value in body.items() if value is not None})
    if _print_json(api, data):
        return
    _show_run(data)
    console.print(f"next / 次: another operator approves it with `haltguard compensation "
                  f"approve {data['id']} --digest {data['digest']}`")


def _show_run(data: dict[str, Any]) -> None:
    scales = data.get("currency_scales", {})
    console.print(f"run {data['id']} (incident {data['incident_id']}): {data['state']}")
    console.print(f"  digest: {data['digest']}")
    console.print(f"  proposed by {data['proposed_by']} at {line_time(data['proposed_at'])}"
                  + (f"; approved by {data['approved_by']} at "
                     f"{line_time(data['approved_at'])}"
                     if data.get("approved_by") else ""))
    cutoff = data["cutoff"]
    console.print(f"  cut-off / 基準時点: seq {cutoff.get('seq')} "
                  f"({line_time(cutoff.get('time'))})")
    for ref in data.get("references", []):
        console.print(f"  reference / 参照価格 {ref['name']}: {ref['price']} (VWAP of "
                      f"{ref['trades_used']} trades in {_source_of(ref)}, {ref['from']} .. "
                      f"{ref['to']})")
    refused = data.get("window", {}).get("refused_orders")
    if refused:
        console.print(f"  refused orders / 受付拒否の注文: {refused['computed']} valued, "
                      f"{refused['not_computed_count']} not computed / 算定不能")
        console.print(f"    price at refusal / 拒否時の価格: {refused['price_at_refusal']}")
        console.print(f"    price at reopening / 再開後の価格: {refused['price_at_reopen']}")
        for item in refused["not_computed"]:
            console.print(f"    not computed / 算定不能: account {item['account']} "
                          f"{item['market']} seq {item['seq']}: {item['reason']} / "
                          f"{item['reason_ja']}")
    for policy in data.get("policies", []):
        console.print(f"  policy / 補償方針 {policy.get('id')} v{policy.get('version')} "
                      f"({policy.get('kind')}): {policy.get('description', {}).get('en', '')}")
    console.print(f"  lines / 明細: {data['line_count']}, accounts / 口座: {data['account_count']}")
    for currency, total in sorted(data["totals"].items()):
        console.print(f"  total / 合計: {amount_text(currency, total, scales)}")
    if data.get("histogram"):
        table = Table("currency", "from", "below", "lines", "total")
        for bucket in data["histogram"]:
            currency = bucket["currency"]
            table.add_row(currency, amount_text(currency, bucket["low_minor"], scales),
                          amount_text(currency, bucket["high_minor"], scales),
                          str(bucket["lines"]), amount_text(currency, bucket["total_minor"],
                                                            scales))
        console.print(table)
    if data.get("top_accounts"):
        table = Table("account", "amount", "line")
        for top in data["top_accounts"]:
            table.add_row(str(top["account"]),
                          amount_text(top["currency"], top["amount_minor"], scales),
                          str(top["line_no"]))
        console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[int | None, typer.Argument(help="A run; without it, list the runs.")] = None,
    incident: Annotated[int | None, typer.Option("--incident")] = None,
) -> None:
    """One run (totals, distribution, top accounts, digest), or the list of runs."""
    api = api_of(ctx)
    if run_id is None:
        data = api.json("GET", "/api/compensation/runs", params={"incident_id": incident})
        if _print_json(api, data):
            return
        table = Table("run", "incident", "state", "lines", "totals", "digest")
        for item in data["items"]:
            scales = item.get("currency_scales", {})
            table.add_row(str(item["id"]), str(item["incident_id"]), item["state"],
                          str(item["line_count"]),
                          ", ".join(amount_text(c, t, scales)
                                    for c, t in sorted(item["totals"].items())),
                          item["digest"][:16])
        console.print(table)
        return
    data = api.json("GET", f"/api/compensation/runs/{run_id}")
    if not _print_json(api, data):
        _show_run(data)


@app.command("explain")
def explain(
    ctx: typer.Context,
    account: Annotated[int, typer.Argument(help="The customer's account number.")],
    run_id: Annotated[int, typer.Option("--run", help="The run.")],
) -> None:
    """Why ACCOUNT gets what it gets: each line with the inputs that produced it."""
    api = api_of(ctx)
    data = api.json("GET", f"/api/compensation/runs/{run_id}/accounts/{account}")
    if _print_json(api, data):
        return
    console.print(f"account / 口座 {account}, run {run_id} (digest {data['digest'][:16]}), "
                  f"cut-off seq {data['cutoff'].get('seq')} ({data['cutoff'].get('time')})")
    policies = {policy.get("id"): policy for policy in data["policies"]}
    for line in data["lines"]:
        console.print(f"line {line['line_no']}: {line['currency']} {line['amount_minor']} "
                      "(minor units / 最小単位)")
        for part in line["parts"]:
            policy = policies.get(part.get("policy"), {})
            console.print(f"  {part.get('policy')}: {part.get('amount_minor')} = round("
                          f"{part.get('owed_numerator')}/{part.get('owed_denominator')}) "
                          f"[{policy.get('description', {}).get('en', '')}]")
            inputs = part.get("inputs", {})
            for item in inputs if isinstance(inputs, list) else [inputs]:
                console.print("    " + ", ".join(f"{k}={v}" for k, v in item.items()))
    for ref in data.get("references", []):
        console.print(f"reference / 参照価格 {ref['name']} = {ref['price']} ({ref['trades_used']}"
                      f" trades, {_source_of(ref)})")
    refused = data.get("window", {}).get("refused_orders")
    if refused:
        console.print(f"refused orders / 受付拒否の注文: price at refusal = "
                      f"{refused['price_at_refusal']} / {refused['price_at_refusal_ja']}; "
                      f"price at reopening = {refused['price_at_reopen']} / "
                      f"{refused['price_at_reopen_ja']}")


def _source_of(reference: dict[str, Any]) -> str:
    """Where a reference price's trades came from, as the run records it."""
    if reference.get("market"):
        return f"the venue's {reference['market']} market / 当取引所の {reference['market']}"
    return str(reference.get("csv", ""))


@app.command("export")
def export(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument()],
    out: Annotated[Path, typer.Option("--out", help="Write the CSV here.")],
) -> None:
    """Every line of a run as CSV for accounting (exact decimal amounts, the digest)."""
    response = api_of(ctx).call("GET", f"/api/compensation/runs/{run_id}/export.csv")
    out.write_bytes(response.content)
    console.print(f"wrote / 出力しました {out}")


@app.command("approve")
def approve(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument()],
    digest: Annotated[str, typer.Option("--digest", help="The digest you reviewed.")],
    note: Annotated[str, typer.Option("--note")] = "",
) -> None:
    """Approve a run as the second operator (never its proposer), naming its digest."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/compensation/runs/{run_id}/approve",
                    body={"digest": digest, "note": note})
    if _print_json(api, data):
        return
    console.print(f"run {run_id} approved / 承認しました by {data['approved_by']}; pay it with "
                  f"`haltguard compensation pay {run_id}`")


@app.command("pay")
def pay(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument()],
    follow: Annotated[bool, typer.Option(
        "--follow/--no-follow", help="Show the progress until the payout ends.")] = True,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Only follow a payout already running.")] = False,
) -> None:
    """Pay an approved run into the venue, exactly once; run it again to resume."""
    api = api_of(ctx)
    if not resume:
        data = api.json("POST", f"/api/compensation/runs/{run_id}/pay")
        if not follow:
            if not _print_json(api, data):
                console.print(f"payout of run {run_id} started / 支払いを開始しました")
            return
    with Progress(TextColumn("paying / 支払い中 run " + str(run_id)), BarColumn(),
                  MofNCompleteColumn(), console=console, transient=api.as_json) as progress:
        task = progress.add_task("pay", total=None)
        while True:
            data = api.json("GET", f"/api/compensation/runs/{run_id}/payout",
                            params={"wait_s": PAYOUT_POLL_S})
            progress.update(task, total=data["lines_total"], completed=data["lines_paid"])
            if data["finished_at"] or data["last_error"] or not data["running"]:
                break
            time.sleep(0.1)
    if _print_json(api, data):
        return
    if data["finished_at"]:
        console.print(f"run {run_id} paid / 支払い完了: {data['lines_paid']} lines, "
                      f"{data['amounts_paid']} (minor units)")
        return
    if not data["last_error"]:
        data["last_error"] = "the service is not paying it now (restarted?)"
    fail(f"the payout stopped after {data['lines_paid']} of {data['lines_total']} lines: "
         f"{data['last_error']}. Run `haltguard compensation pay {run_id}` again to resume; "
         "no line is paid twice.\n"
         "支払いが途中で止まりました。再実行すると未払い分のみ再開します。")


def _contacts(path: Path) -> list[dict[str, Any]]:
    """``account,email[,language]`` rows (a header line first)."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    contacts = []
    for number, row in enumerate(rows, start=2):
        try:
            contacts.append({"account": int(row["account"]), "email": row["email"].strip(),
                             "language": (row.get("language") or "ja").strip()})
        except (KeyError, ValueError, AttributeError):
            fail(f"{path}:{number}: write account,email,language (language ja or en)")
    return contacts


@app.command("statements")
def statements(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument()],
    contacts: Annotated[Path | None, typer.Option(
        "--contacts", help="CSV of account,email,language: email those statements.")] = None,
    account: Annotated[int | None, typer.Option(
        "--account", help="Print this account's statement (ja and en) instead.")] = None,
) -> None:
    """Write each paid account's statement (ja/en), email those with a contact, and post the
    public note on the incident; or print one account's statement."""
    api = api_of(ctx)
    if account is not None:
        found = api.json("GET", f"/api/compensation/runs/{run_id}/statements",
                         params={"account": account})
        if _print_json(api, found):
            return
        if not found["items"]:
            fail(f"no statement for account {account} in run {run_id} (written once paid)")
        item = found["items"][0]
        console.print(f"[{item['status']}] {item['subject_ja']}\n\n{item['body_ja']}\n")
        console.print(f"{item['subject_en']}\n\n{item['body_en']}")
        return
    rows = _contacts(contacts) if contacts is not None else []
    chunks = [rows[start:start + CONTACTS_PER_REQUEST]
              for start in range(0, len(rows), CONTACTS_PER_REQUEST)] or [[]]
    data: dict[str, Any] = {}
    for chunk in chunks:
        data = api.json("POST", f"/api/compensation/runs/{run_id}/statements",
                        body={"contacts": chunk})
    if _print_json(api, data):
        return
    console.print(f"run {run_id} statements / 明細: {data['stored']} stored / 保存, "
                  f"{data['sent']} sent / 送信済, {data['failed']} failed / 失敗; the public "
                  "note is on the incident / 公開のお知らせを掲載しました")
