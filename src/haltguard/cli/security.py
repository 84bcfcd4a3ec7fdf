"""``haltguard operator ...``: operator accounts and API tokens on the local database.

Works directly on the database named by ``HALTGUARD_DATABASE_URL`` (default
``./data/haltguard.sqlite3``); whoever can run it is trusted like an admin, and every change
is audited with the actor ``cli:<os user>``.
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

from haltguard.db.base import Base
from haltguard.db.session import database_url, make_engine, make_session_factory, session_scope
from haltguard.security import service
from haltguard.security.config import SecuritySettings, utc_now
from haltguard.security.errors import SecurityError
from haltguard.security.permissions import Role
from haltguard.security.totp import TotpEnrolment

app = typer.Typer(no_args_is_help=True, add_completion=False)
token_app = typer.Typer(no_args_is_help=True, help="An operator's API tokens.")
app.add_typer(token_app, name="token")


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
    engine = make_engine(database_url())
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
        error_console().print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc


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
    settings = SecuritySettings.from_env()

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
                state = f"locked until {operator.locked_until:%Y-%m-%d %H:%M} UTC"
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
            ("created", operator.created_at.isoformat()),
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
    """Enable a disabled operator (and clear any lockout)."""

    def work(session: Session) -> None:
        operator = service.set_disabled(session, username, False, actor=cli_actor(), now=utc_now())
        console().print(f"{operator.username} is enabled")

    run(work)


@app.command("reset-totp")
def reset_totp(username: str) -> None:
    """Issue a new TOTP secret (lost authenticator); prints it and a QR code once."""
    settings = SecuritySettings.from_env()

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
                f"{token.created_at:%Y-%m-%d %H:%M}",
                f"{token.expires_at:%Y-%m-%d %H:%M}" if token.expires_at else "never",
                f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "-",
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
