"""``haltguard operator ...``: operator accounts and API tokens on the local database.

Works directly on the database named by ``HALTGUARD_DATABASE_URL`` (default
``./data/haltguard.sqlite3``); whoever can run it is trusted like an admin, and every change
is audited with the actor ``cli:<os user>``. The exception is ``login-blocks``: blocks of the
login route live in the running service, so those commands call its API (``--url``,
``HALTGUARD_TOKEN``/``--token-file`` or the saved login, as ``haltguard incident``).

Why the database and not the API: these commands are how operators come to exist and how
they get back in. The first admin is created before anyone can log in, and ``unlock``,
``reset-totp``, ``enable`` and new tokens must work when no admin can log in to the API
(locked out, lost phone, service down); having the database credentials is the authority.
"""

from __future__ import annotations

import getpass
import importlib
import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import segno
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from haltguard.cli.client import api_of, connect, fail_with
from haltguard.cli.settings import environment_config, local_engine
from haltguard.cli.timefmt import line_time, table_time
from haltguard.common.clock import utc_now
from haltguard.db.base import Base
from haltguard.db.session import make_session_factory, session_scope
from haltguard.security import service
from haltguard.security.errors import SecurityError
from haltguard.security.permissions import Role
from haltguard.security.totp import TotpEnrolment

app = typer.Typer(no_args_is_help=True, add_completion=False)
token_app = typer.Typer(no_args_is_help=True, help="An operator's API tokens.")
app.add_typer(token_app, name="token")
blocks_app = typer.Typer(
    no_args_is_help=True,
    help="What holds logins back on the running service: blocks of addresses (by a detection "
    "rule or an admin) and failed-login waits. Over the operations API.",
)
app.add_typer(blocks_app, name="login-blocks")


def console() -> Console:
    """Standard output, sized for the terminal (or ``COLUMNS``) at the time of the call."""
    return Console()


def error_console() -> Console:
    return Console(stderr=True)


T = TypeVar("T")


def open_database() -> sessionmaker[Session]:
    """A session factory on the local database, its tables brought up to date first.

    Uses the Alembic migrations (``haltguard.db.migrate.upgrade``) when they exist; until
    then creates the security tables directly. This is the only place that fallback lives.
    """
    engine = local_engine()
    try:
        migrate = importlib.import_module("haltguard.db.migrate")
    except ModuleNotFoundError as exc:
        if exc.name != "haltguard.db.migrate":
            raise
        importlib.import_module("haltguard.security.models")
        Base.metadata.create_all(engine)
    else:
        migrate.upgrade(engine)
    return make_session_factory(engine)


def folded_table(*headers: str) -> Table:
    """A table that wraps long values instead of cutting them: nothing is hidden."""
    table = Table()
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def cli_actor() -> str:
    """``cli:<os user>``: the local account that ran the command is the actor."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown-user"


def run(work: Callable[[Session], T]) -> T:
    """One unit of work on the local database; a refusal prints its message and exits 1."""
    try:
        with session_scope(open_database()) as session:
            return work(session)
    except SecurityError as exc:
        fail_with(exc)


def show_enrolment(username: str, enrolment: TotpEnrolment) -> None:
    console().print(
        f"\nTOTP secret for [bold]{username}[/bold] (shown once; scan the code below or type "
        f"the secret into an authenticator app):\n\n  [bold]{enrolment.secret}[/bold]\n"
    )
    console().print(f"  {enrolment.otpauth_uri}\n", soft_wrap=True)
    sys.stdout.flush()
    segno.make(enrolment.otpauth_uri, error="m").terminal(out=sys.stdout, compact=True)
    sys.stdout.flush()


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="login name, e.g. akiko.sato")],
    *,
    display_name: Annotated[str, typer.Option("--display-name", help="full name")],
    email: Annotated[str, typer.Option("--email")],
    role: Annotated[Role, typer.Option("--role", case_sensitive=False)],
    phone: Annotated[str, typer.Option("--phone", help="for the contact tree")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Create an operator; prints the TOTP secret and a QR code once."""
    password = read_password(password_stdin)
    settings = environment_config().security

    def work(session: Session) -> TotpEnrolment:
        operator, enrolment = service.create_operator(
            session,
            username=username,
            display_name=display_name,
            email=email,
            phone=phone,
            role=role,
            password=password,
            actor=cli_actor(),
            settings=settings,
            now=utc_now(),
        )
        console().print(f"created operator [bold]{operator.username}[/bold] ({operator.role})")
        return enrolment

    show_enrolment(service.normalise_username(username), run(work))


@app.command("list")
def list_operators(
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
) -> None:
    """List operators with role and state."""

    def work(session: Session) -> None:
        found, total = service.list_operators(session, offset=offset, limit=limit)
        table = folded_table("username", "display name", "role", "email", "phone", "state")
        now = utc_now()
        for operator in found:
            state = "disabled" if operator.disabled else "active"
            if operator.locked_until is not None and operator.locked_until > now:
                state = f"locked until {line_time(operator.locked_until)}"
            table.add_row(
                operator.username,
                operator.display_name,
                operator.role.value,
                operator.email,
                operator.phone,
                state,
            )
        console().print(table)
        console().print(f"{len(found)} of {total} operators (offset {offset})")

    run(work)


@app.command("show")
def show(username: str) -> None:
    """One operator's profile."""

    def work(session: Session) -> None:
        operator = service.get_operator(session, username)
        for label, value in (
            ("username", operator.username),
            ("display name", operator.display_name),
            ("role", operator.role.value),
            ("email", operator.email),
            ("phone", operator.phone),
            ("disabled", str(operator.disabled)),
            ("locked until", str(operator.locked_until or "-")),
            ("created", line_time(operator.created_at)),
        ):
            console().print(f"{label:>13}: {value}")

    run(work)


@app.command("set-role")
def set_role(username: str, role: Annotated[Role, typer.Argument(case_sensitive=False)]) -> None:
    """Change an operator's role."""

    def work(session: Session) -> None:
        operator = service.set_role(session, username, role, actor=cli_actor(), now=utc_now())
        console().print(f"{operator.username} is now {operator.role.value}")

    run(work)


@app.command("disable")
def disable(username: str) -> None:
    """Disable an operator: ends their sessions and revokes their API tokens."""

    def work(session: Session) -> None:
        operator = service.set_disabled(session, username, True, actor=cli_actor(), now=utc_now())
        console().print(f"{operator.username} is disabled; sessions ended, API tokens revoked")

    run(work)


@app.command("enable")
def enable(username: str) -> None:
    """Enable a disabled operator (and clear any lockout, even of an enabled one)."""

    def work(session: Session) -> None:
        operator = service.set_disabled(session, username, False, actor=cli_actor(), now=utc_now())
        console().print(f"{operator.username} is enabled; failed-login wait cleared")

    run(work)


@app.command("unlock")
def unlock(username: str) -> None:
    """End an operator's failed-login wait now (audited); waits of their username kept by a
    running service in memory are lifted with `login-blocks lift account:USERNAME`."""

    def work(session: Session) -> None:
        operator = service.unlock(session, username, actor=cli_actor(), now=utc_now())
        console().print(f"{operator.username} may log in again at once")

    run(work)


blocks_app.callback()(connect)


@blocks_app.command("list")
def blocks_list(ctx: typer.Context) -> None:
    """Every block and failed-login wait in force, the longest first."""
    api = api_of(ctx)
    data = api.json("GET", "/api/login-blocks", params={"limit": 200})
    if api.as_json:
        console().print_json(data=data)
        return
    holds = data["items"]
    table = folded_table("key", "kind", "until", "failures", "refused", "reason")
    for hold in holds:
        table.add_row(hold["key"], hold["kind"], str(hold["until"] or "-"),
                      str(hold["failures"]), str(hold["refused"]), hold["reason"])
    console().print(table)
    console().print(f"{data['total']} in force" + (f", {len(holds)} shown"
                                                    if data["total"] > len(holds) else ""))


@blocks_app.command("add")
def blocks_add(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="an IP address, e.g. 203.0.113.7")],
    duration_s: Annotated[int, typer.Option("--duration-s", min=1, help="how long")],
    reason: Annotated[str, typer.Option("--reason", help="why (audited)")],
) -> None:
    """Block an address from the login route only (it keeps trading)."""
    hold = api_of(ctx).json("POST", "/api/login-blocks", body={
        "address": address, "duration_s": duration_s, "reason": reason})
    console().print(f"{hold['key']} blocked from logging in until {hold['until']}")


@blocks_app.command("lift")
def blocks_lift(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(
        help="address:<ip>, account:<username> or pair:<ip>/<username>, as listed")],
    reason: Annotated[str, typer.Option("--reason", help="why (audited)")],
) -> None:
    """Lift a block or wait early (audited with your name and the reason)."""
    lifted = api_of(ctx).json("POST", "/api/login-blocks/lift",
                                   body={"key": key, "reason": reason})
    console().print("lifted: " + ", ".join(f"{hold['key']} ({hold['kind']})"
                                            for hold in lifted))


@app.command("reset-totp")
def reset_totp(username: str) -> None:
    """Issue a new TOTP secret (lost authenticator); prints it and a QR code once."""
    settings = environment_config().security

    def work(session: Session) -> TotpEnrolment:
        return service.reset_totp(
            session, username, actor=cli_actor(), settings=settings, now=utc_now()
        )

    show_enrolment(service.normalise_username(username), run(work))


@token_app.command("create")
def token_create(
    username: str,
    name: Annotated[str, typer.Option("--name", help="what will use it")],
    expires_days: Annotated[
        int | None, typer.Option("--expires-days", help="omit for no expiry")
    ] = None,
) -> None:
    """Create an API token for an operator; the token is printed once."""

    def work(session: Session) -> None:
        operator = service.get_operator(session, username)
        created = service.create_api_token(
            session,
            operator,
            name=name,
            expires_in_days=expires_days,
            actor=cli_actor(),
            now=utc_now(),
        )
        console().print(
            f"API token {created.record.id} for {operator.username} "
            f"(shown once; send it as 'Authorization: Bearer <token>'):"
        )
        print(created.secret)

    run(work)


@token_app.command("list")
def token_list(username: str) -> None:
    """An operator's API tokens (prefix only; the tokens themselves are not stored)."""

    def work(session: Session) -> None:
        operator = service.get_operator(session, username)
        found, total = service.list_api_tokens(session, operator.id, limit=500)
        table = folded_table("id", "name", "prefix", "created", "expires", "last used", "state")
        for token in found:
            table.add_row(
                str(token.id),
                token.name,
                token.prefix + "...",
                table_time(token.created_at),
                table_time(token.expires_at, missing="never"),
                table_time(token.last_used_at),
                "revoked" if token.revoked_at else "active",
            )
        console().print(table)
        console().print(f"{total} tokens")

    run(work)


@token_app.command("revoke")
def token_revoke(username: str, token_id: int) -> None:
    """Revoke one of an operator's API tokens."""

    def work(session: Session) -> None:
        operator = service.get_operator(session, username)
        token = service.revoke_api_token(
            session, operator, token_id, actor=cli_actor(), now=utc_now()
        )
        console().print(f"API token {token.id} ({token.prefix}...) of {operator.username} revoked")

    run(work)
