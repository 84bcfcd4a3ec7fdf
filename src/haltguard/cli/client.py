"""The CLI's one HTTP client of the operations API: where to connect, who you are, and one
error report per failure.

Where to connect: ``--url`` or ``HALTGUARD_URL`` (default ``http://127.0.0.1:8000``).
Who you are: ``HALTGUARD_TOKEN`` or ``--token-file`` (an API token), or the session saved by
``haltguard incident login`` (password and TOTP code) in ``$HALTGUARD_CONFIG_DIR``
(default ``~/.config/haltguard``), readable only by you. Secrets are asked for or read from
files and the environment: a secret given as a flag (``--token``, ``--password``) is
visible to every user of the machine in ``ps``, so those flags are documented as unsafe.

A command group that talks to the API registers :func:`connect` as its callback and reads
the connection with :func:`api_of`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from haltguard.app.config import client_config_dir
from haltguard.common.errors import HaltguardError
from haltguard.security.config import SESSION_COOKIE_NAME

URL_ENV = "HALTGUARD_URL"
TOKEN_ENV = "HALTGUARD_TOKEN"
URL_DEFAULT = "http://127.0.0.1:8000"

TIMEOUT_S = 30.0

error_console = Console(stderr=True)


def config_dir() -> Path:
    return client_config_dir()


def credentials_file() -> Path:
    """Where ``haltguard incident login`` keeps the session (readable only by you)."""
    return config_dir() / "session.json"


def saved_session() -> dict[str, str]:
    path = credentials_file()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: str(value) for key, value in data.items()} if isinstance(data, dict) else {}


def fail(message: str) -> NoReturn:
    error_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


def error_text(
    message: str,
    *,
    next_step: str | None = None,
    message_ja: str | None = None,
    code: str | None = None,
    http_status: int | None = None,
) -> str:
    """How every command shows a refusal, from the API or raised in this process: the
    message, what to do next (when said apart), the Japanese text (when there is one), and
    for an API answer its code and status."""
    text = message
    if next_step:
        text += f" Next: {next_step}"
    if code is not None and http_status is not None:
        text += f" [{code}, HTTP {http_status}]"
    if message_ja:
        text += f"\n{message_ja}"
    return text


def api_error_text(response: httpx.Response) -> str:
    """The text of an error answer: its ``{"error": {...}}`` body as :func:`error_text`
    shows it, or the start of whatever else came back."""
    try:
        error = response.json()["error"]
        return error_text(
            str(error["message"]),
            next_step=_optional_text(error.get("next_step")),
            message_ja=_optional_text(error.get("message_ja")),
            code=str(error["code"]),
            http_status=response.status_code,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"HTTP {response.status_code}: {response.text[:500]}"


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def fail_with(error: HaltguardError) -> NoReturn:
    """Print a domain's refusal raised in this process the way API refusals are printed,
    and exit 1."""
    text = error_text(error.message, next_step=error.next_step, message_ja=error.message_ja)
    error_console.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
    raise typer.Exit(1) from error


class Api:
    """A small client: authentication, one error report per failure, JSON in and out."""

    def __init__(self, url: str | None, token: str | None, *, as_json: bool) -> None:
        saved = saved_session()
        self.url = (url or saved.get("url") or URL_DEFAULT).rstrip("/")
        self.as_json = as_json
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif saved.get("session") and saved.get("url", "").rstrip("/") == self.url:
            headers["Cookie"] = f"{SESSION_COOKIE_NAME}={saved['session']}"
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT_S)

    def call(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        query = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = self._client.request(method, path, json=body, params=query)
        except httpx.HTTPError as exc:
            fail(
                f"cannot reach the operations service at {self.url} ({exc}); start it, or "
                f"pass --url / set {URL_ENV}"
            )
        if response.status_code >= 400:
            fail(api_error_text(response))
        return response

    def json(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        return self.call(method, path, body=body, params=params).json()


def api_of(ctx: typer.Context) -> Api:
    """The connection :func:`connect` set up; sub-apps see it through the context chain."""
    context: typer.Context | None = ctx
    while context is not None:
        if isinstance(context.obj, Api):
            return context.obj
        context = context.parent  # type: ignore[assignment]
    fail("internal: no API connection was set up")


UNSAFE_FLAG = "Unsafe as a flag: other users of the machine see it in `ps`."


def read_secret_file(path: Path, what: str) -> str:
    """A secret from a file (``-``: standard input), its first line; exits 1 saying why not."""
    try:
        text = sys.stdin.readline() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read the {what} from {path}: {exc.strerror}; check the path")
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        fail(f"{path} holds no {what}; write it on the first line")
    return secret


TokenFileOption = Annotated[
    Path | None,
    typer.Option("--token-file", show_default=False,
                 help="Read the API token from this file ('-': standard input)."),
]


def secret_from(given: str | None, path: Path | None, what: str) -> str | None:
    """The one way a command takes a secret: its ``--...-file`` (a path, ``-`` for standard
    input) first, else the value of its flag or environment variable (``None``: neither)."""
    if path is not None:
        return read_secret_file(path, what)
    return given


def token_from(token: str | None, token_file: Path | None) -> str | None:
    """The API token: ``--token-file`` first, else ``--token``/``HALTGUARD_TOKEN``."""
    return secret_from(token, token_file, "API token")


def connect(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(envvar=URL_ENV, help="The operations API.")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_ENV, show_default=False,
            help=f"An API token (else the saved login). {UNSAFE_FLAG} Prefer {TOKEN_ENV} "
            "or --token-file.",
        ),
    ] = None,
    token_file: TokenFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    ctx.obj = Api(url, token_from(token, token_file), as_json=as_json)
