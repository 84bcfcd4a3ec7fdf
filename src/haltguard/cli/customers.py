"""``haltguard customers ...``: support's side of customers' own protection, and signing.

Support's commands go through the operations API (``--url``/``HALTGUARD_URL``,
``HALTGUARD_TOKEN`` or the saved login), so the permission table and the audit chain apply
as to any client: create a customer (its first API key is shown once), unlock a customer's
self-lock after verifying them, approve a withdrawal held for review, publish a version of
the terms of service. ``sign`` prints the headers of a signed request, for trying the
customer API with curl. A walk-through is in ``docs/customers.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from haltguard.cli.client import Api, api_of, connect, fail, secret_from
from haltguard.cli.timefmt import line_time
from haltguard.customers.signing import signed_headers

SECRET_ENV = "HALTGUARD_CUSTOMER_SECRET"

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Customers' own protection: customers, unlocks, held withdrawals, "
                       "terms, signing.")
console = Console(markup=False, highlight=False, soft_wrap=True)
app.callback()(connect)


def _print_json(api: Api, data: Any) -> bool:
    if api.as_json:
        console.print_json(data=data)
    return api.as_json


@app.command("create")
def create(
    ctx: typer.Context,
    account: Annotated[int, typer.Argument(help="The venue account number.")],
    *,
    email: Annotated[str, typer.Option("--email", help="Where the customer's notices go.")],
    phrase: Annotated[str, typer.Option(
        "--phrase", help="The customer's anti-phishing phrase (they can change it).")] = "",
) -> None:
    """A customer for ACCOUNT and a first API key (read, trade); its secret is shown once."""
    api = api_of(ctx)
    data = api.json("POST", "/api/customers", body={
        "account": account, "email": email, "anti_phishing_phrase": phrase})
    if _print_json(api, data):
        return
    key = data["first_key"]
    console.print(f"customer {data['account']} created / お客様 {data['account']} を登録しました")
    console.print(f"key id   {key['key_id']}  ({', '.join(key['permissions'])})")
    console.print(f"secret   {key['secret']}")
    console.print("The secret is shown once: hand it to the customer over a verified channel. "
                  "/ シークレットは一度だけ表示されます。")


@app.command("unlock")
def unlock(
    ctx: typer.Context,
    account: Annotated[int, typer.Argument(help="The locked account.")],
    *,
    verification: Annotated[str, typer.Option(
        "--verification", help="How the customer was verified (recorded in the audit log).")],
) -> None:
    """Lift a customer's self-lock after verifying them; withdrawals unfreeze at the venue."""
    api = api_of(ctx)
    api.call("POST", f"/api/customers/{account}/unlock", body={"verification": verification})
    console.print(f"account {account} unlocked / 口座 {account} のロックを解除しました")


@app.command("approve-withdrawal")
def approve_withdrawal(
    ctx: typer.Context,
    withdrawal_id: Annotated[int, typer.Argument(help="The held withdrawal's id.")],
) -> None:
    """Send a withdrawal held for review (above its asset's limit)."""
    api = api_of(ctx)
    data = api.json("POST", f"/api/customers/withdrawals/{withdrawal_id}/approve")
    if _print_json(api, data):
        return
    console.print(f"withdrawal {data['id']}: {data['status']} {data['detail']}".rstrip())


@app.command("publish-terms")
def publish_terms(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The version, e.g. 2026-12.")],
    *,
    ja: Annotated[Path, typer.Option("--ja", help="The Japanese text (UTF-8 file).")],
    en: Annotated[Path, typer.Option("--en", help="The English text (UTF-8 file).")],
) -> None:
    """Publish a version of the terms of service (shown at /security/terms)."""
    api = api_of(ctx)
    try:
        texts = {"text_ja": ja.read_text(encoding="utf-8"),
                 "text_en": en.read_text(encoding="utf-8")}
    except OSError as exc:
        fail(f"cannot read the terms: {exc}")
    data = api.json("POST", "/api/customers/terms", body={"version": version, **texts})
    if _print_json(api, data):
        return
    console.print(f"terms {data['version']} published at {line_time(data['published_at'])}")


@app.command("sign")
def sign_request(
    method: Annotated[str, typer.Argument(help="GET, POST, PUT or DELETE.")],
    target: Annotated[str, typer.Argument(help="The path with its query, e.g. "
                                              "/v1/accounts/7/balances.")],
    *,
    key: Annotated[str, typer.Option("--key", help="The API key id.")],
    body: Annotated[str, typer.Option("--body", help="The exact body to send.")] = "",
    timestamp_ms: Annotated[int, typer.Option(
        "--timestamp-ms", help="Sign as of this moment (ms since the epoch); 0: now.")] = 0,
    secret: Annotated[str | None, typer.Option(
        envvar=SECRET_ENV, hidden=True, show_default=False,
        help=f"The key's secret; prefer ${SECRET_ENV} or --secret-file.")] = None,
    secret_file: Annotated[Path | None, typer.Option(
        "--secret-file", help="A file holding the key's secret ('-': standard input).")] = None,
) -> None:
    """The three headers of a signed request (the secret from $HALTGUARD_CUSTOMER_SECRET or
    --secret-file), as curl -H arguments."""
    secret = secret_from(secret, secret_file, "API key secret")
    if not secret:
        fail(f"set {SECRET_ENV} to the key's secret, or give --secret-file (never put it on "
             "the command line)")
    moment_ms = timestamp_ms or time.time_ns() // 1_000_000
    headers = signed_headers(key, secret.encode(), timestamp_ms=moment_ms,
                             method=method, target=target, body=body.encode())
    for name, value in headers.items():
        console.print(f"-H '{name}: {value}'")
