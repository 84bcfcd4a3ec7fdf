"""The console's page plumbing, shared by its routes (``views.py``, ``screens.py``).

Rendering (Jinja2 with autoescape, every text through the operator's language), the security
headers every answer carries (a strict Content-Security-Policy: the package's own script and
stylesheet only), the route class that turns a refusal into a page for a browser (or the API's
JSON error for a client holding an API token), each route's requirement (``guard``, ``live``)
and the unit of work a form runs in.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import pydantic
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from haltguard.common.errors import HaltguardError
from haltguard.console import auth
from haltguard.console.forms import Form
from haltguard.console.navigation import Screen, ScreenRegistry
from haltguard.console.texts import LANGUAGES, jst_utc, state_label, text, until_text
from haltguard.db.session import session_scope
from haltguard.security.config import SESSION_COOKIE_NAME
from haltguard.security.dependencies import (
    AuthenticatedOperator,
)
from haltguard.security.errors import NotAuthenticatedError
from haltguard.security.permissions import Action, is_allowed
from haltguard.venue.control import VenueControlError
from haltguard.venue.types import MarketState
from haltguard.web.context import OperationsContext, context
from haltguard.web.errors import KIND_STATUS

PREFIX = "/console"
LIVE_PATHS = (f"{PREFIX}/live/", f"{PREFIX}/events")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_FILES = {"console.js": "text/javascript; charset=utf-8",
                "console.css": "text/css; charset=utf-8"}
NOTICES = frozenset({"done_ok", "waiting_second", "logged_out_idle", "not_logged_in",
                     "chain_ok", "chain_bad"})



@cache
def environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("haltguard.console", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(jst_utc=jst_utc, state_label=state_label, until_text=until_text,
                               Action=Action, MarketState=MarketState)
    return environment


@cache
def static_bytes(name: str) -> bytes:
    return resources.files("haltguard.console").joinpath("static", name).read_bytes()


def secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def language_of(request: Request) -> str:
    chosen = request.cookies.get(auth.LANGUAGE_COOKIE_NAME, "ja")
    return chosen if chosen in LANGUAGES else "ja"


@dataclass(frozen=True)
class Viewer:
    """Who is looking, in which language: what every template is given."""

    operator: AuthenticatedOperator | None
    language: str
    csrf_token: str
    screens: list[Screen]

    def t(self, key: str, **values: object) -> str:
        found = text(key, self.language)
        return found.format(**values) if values else found

    def can(self, action: Action) -> bool:
        return self.operator is not None and is_allowed(self.operator.role, action)


def viewer_for(request: Request, operator: AuthenticatedOperator | None) -> Viewer:
    secret = request.cookies.get(SESSION_COOKIE_NAME, "")
    screens = (context(request).part(ScreenRegistry).visible_to(operator.role)
               if operator is not None else [])
    return Viewer(operator, language_of(request),
                  auth.csrf_token_for(secret) if secret else "", screens)


def render(request: Request, template: str, viewer: Viewer, status_code: int = 200,
           **values: Any) -> Response:
    now = context(request).clock.now()
    notice = request.query_params.get("notice", "")
    html = environment().get_template(template).render(
        v=viewer, now=now, prefix=PREFIX, notice=notice if notice in NOTICES else "",
        path=request.url.path, **values)
    return secure(HTMLResponse(html, status_code=status_code))


def redirect(url: str) -> Response:
    return secure(RedirectResponse(url, status_code=303))


# --- forms and errors ------------------------------------------------------------------------


async def read_form(request: Request) -> Form:
    return Form.parse(await request.body())


def error_page(request: Request, error: Exception) -> Response:
    viewer = viewer_for(request, getattr(request.state, "operator", None))
    if isinstance(error, HaltguardError):
        status_code = KIND_STATUS.get(error.kind, 400)
        message = (error.message_ja if viewer.language == "ja" and error.message_ja
                   else error.message)
        code = error.code
    elif isinstance(error, VenueControlError):
        status_code, message, code = 502, str(error), "venue_refused"
    else:
        assert isinstance(error, pydantic.ValidationError)
        status_code, code = 422, "form_value_invalid"
        message = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors())
    return render(request, "error.html", viewer, status_code=status_code, message=message,
                  code=code)


async def run_work(request: Request, work: Callable[[], Response]) -> Response:
    """Run ``work`` on the thread pool (a refusal is rendered by :class:`ConsoleRoute`)."""
    return await run_in_threadpool(work)


def refusal_response(request: Request, error: Exception) -> Response:
    """What a browser gets for a refusal: the login page for no (or an ended) session, an
    empty 401 for a live fragment, else a page saying what was wrong."""
    if isinstance(error, NotAuthenticatedError):
        if request.method == "GET" and not request.url.path.startswith(LIVE_PATHS):
            notice = ("logged_out_idle" if isinstance(error, auth.IdleTimeoutError)
                      else "not_logged_in")
            return redirect(f"{PREFIX}/login?notice={notice}")
        if request.method != "GET":
            return redirect(f"{PREFIX}/login?notice=not_logged_in")
        return secure(Response(status_code=401))
    return error_page(request, error)


class ConsoleRoute(APIRoute):
    """A console route: a refusal (from the route's requirement or its work) is a page for a
    browser; a client that sent an API token gets the API's JSON error, as from ``/api``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (HaltguardError, VenueControlError, pydantic.ValidationError) as error:
                if "authorization" in request.headers:
                    raise
                return refusal_response(request, error)

        return console_handler




def guard(action: Action) -> list[Any]:
    """The route's requirement: the API's permission check for ``action``, plus the idle
    timeout (a page view or form counts as activity)."""
    return [Depends(auth.require(action))]


def live(action: Action) -> list[Any]:
    """The same for a live update, which is not the operator doing something."""
    return [Depends(auth.require(action, activity=False))]


@contextmanager
def unit_of_work(request: Request) -> Iterator[Session]:
    with session_scope(context(request).session_factory) as session:
        yield session


def operations_of(request: Request) -> OperationsContext:
    return context(request)


def now_of(request: Request) -> datetime:
    return context(request).clock.now()


def venue_of(request: Request) -> Any:
    venue = context(request).venue_control
    if venue is None:
        raise HaltguardError(
            "this service has no venue connection, so no protective action can be taken; "
            "start it with a venue", code="venue_not_connected",
            message_ja="取引所に接続していないため、保護操作はできません。取引所とともに起動してください。")
    return venue


