"""Turning an adapter file's templates into one concrete HTTP request, and reading answers.

A template is text with ``{field}`` places; in a body, a string that is exactly one
``{field}`` takes the field's own value (a boolean stays a boolean, a list a list), any
other string gets the fields' text (booleans as ``true``/``false``). Signing computes an
HMAC-SHA256 over the payload template with the exact bytes sent as ``{body}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from haltguard.adapters.spec import Call, SigningSpec, template_fields

Values = Mapping[str, Any]


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def render_text(template: str, values: Values, *, url: bool = False) -> str:
    """``template`` with every field filled; in a URL each value is percent-encoded, so
    no value can add a path segment or a query."""
    def one(name: str) -> str:
        text = text_of(values[name])
        return quote(text, safe="") if url and name not in _URL_RAW else text

    fields = {name: one(name) for name in template_fields(template)}
    return template.format_map(fields)


_URL_RAW = frozenset({"base_url"})  # a base URL is the one value meant to carry a path


def render_body(body: Any, values: Values) -> Any:
    if isinstance(body, str):
        names = template_fields(body)
        if len(names) == 1 and body == "{" + names[0] + "}":
            return values[names[0]]
        return render_text(body, values)
    if isinstance(body, dict):
        return {name: render_body(item, values) for name, item in body.items()}
    if isinstance(body, list):
        return [render_body(item, values) for item in body]
    return body


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes


def build_request(call: Call, common_headers: Mapping[str, str], signing: SigningSpec | None,
                  values: Values) -> Request:
    """The request ``call`` makes with ``values`` (the operation's fields, the variables,
    ``idempotency_key`` and ``timestamp_ms``)."""
    url = render_text(call.url, values, url=True)
    headers = {name: render_text(t, values) for name, t in common_headers.items()}
    headers.update({name: render_text(t, values) for name, t in call.headers.items()})
    content = b""
    if call.body is not None:
        content = json.dumps(render_body(call.body, values), separators=(",", ":")).encode()
        headers.setdefault("Content-Type", "application/json")
    if signing is not None:
        headers.update(sign(signing, call.method, url, content, values))
    return Request(call.method, url, headers, content)


def sign(signing: SigningSpec, method: str, url: str, content: bytes, values: Values
         ) -> dict[str, str]:
    """The headers that sign one request: the signature, and the timestamp if asked."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    payload = render_text(signing.payload, {
        **values, "method": method, "path": path, "body": content.decode(),
    })
    secret = render_text(signing.secret, values).encode()
    digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    signature = digest.hex() if signing.encoding == "hex" else base64.b64encode(digest).decode()
    headers = {signing.header: signature}
    if signing.timestamp_header:
        headers[signing.timestamp_header] = text_of(values["timestamp_ms"])
    return headers


_MISSING = object()


def read_path(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``order.order_id``, ``markets.0.state``) in a JSON
    answer; ``.`` is the whole answer. KeyError naming the path when it is not there."""
    if path in ("", "."):
        return data
    value = data
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = _MISSING
        if value is _MISSING:
            raise KeyError(f"the answer has nothing at {path!r}")
    return value
