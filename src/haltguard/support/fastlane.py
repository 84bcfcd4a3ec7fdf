"""The contact form's fast path: plain questions answered before the web framework.

In an outage's burst the framework's per-request work (middleware, routing, dependency
solving, body parsing) costs more than the question itself, which the intake's one writer
thread stores in batches anyway. :class:`ContactFormLane` sits in front of the operations
app and answers ``POST /api/support/public/tickets`` itself when the request is plain:

    JSON, the body whole in one message and small, no query string, a valid
    :class:`ContactForm` -> ``views.accept_form`` (the route's own function: the same address
    check, honeypot, per-address limit and group-commit writer) -> 201 or the refusal

Anything else (another path, a body in pieces, a form the model refuses) goes to the full
app untouched, body replayed, and is answered there in the framework's words.
``tests/support/test_support_fastlane.py`` sends the same requests down both paths and
compares the answers.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from haltguard.common.errors import HaltguardError
from haltguard.support.models import ContactForm
from haltguard.support.settings import SupportSettings
from haltguard.support.views import accept_form
from haltguard.web.asgi import replaying
from haltguard.web.context import context_of
from haltguard.web.errors import KIND_STATUS, error_body

FORM_PATH = "/api/support/public/tickets"
FORM_BYTES_MAX = 32_768
_JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8"})
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value).lower() in _JSON_TYPES
    return False


class ContactFormLane:
    """The operations app with the contact form's fast path in front; everything else, and
    every form it does not judge plain, is the app's."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != FORM_PATH
                or scope.get("query_string") or not _is_json(scope)):
            await self.app(scope, receive, send)
            return
        first = await receive()
        body = first.get("body", b"")
        if (first["type"] != "http.request" or first.get("more_body")
                or len(body) > FORM_BYTES_MAX):
            await self.app(scope, replaying(first, receive), send)
            return
        try:
            form = ContactForm.model_validate_json(body)
        except ValidationError:  # the route words the refusal
            await self.app(scope, replaying(first, receive), send)
            return
        headers = list(_JSON_HEADERS)
        request = Request({**scope, "app": self.app})
        settings = context_of(self.app).part(SupportSettings)
        try:
            accepted = await accept_form(request, form, settings=settings)
        except HaltguardError as error:
            status, payload = KIND_STATUS[error.kind], json.dumps(
                error_body(error), ensure_ascii=False).encode()
            headers += [(name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in (error.headers or {}).items()]
        else:
            status, payload = 201, accepted.model_dump_json().encode()
        self.answered += 1
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload, "more_body": False})


def with_contact_form_lane(app: FastAPI) -> ContactFormLane:
    """``app`` (the operations app from ``create_app``) with the contact form's fast path."""
    return ContactFormLane(app)
