"""Plain ASGI pieces for middleware that answers before (or instead of) an app: reading a
bounded request body, and the JSON error every haltguard API answers with."""

from __future__ import annotations

import json

from starlette.types import Receive, Send


async def read_body(receive: Receive, bytes_max: int) -> bytes | None:
    """The whole request body, or None once it exceeds ``bytes_max``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away; the app sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > bytes_max:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def answer_error(
    send: Send, status: int, code: str, message: str, retry_after_s: int = 0
) -> None:
    """The APIs' error shape, ``{"error": {"code", "message"}}``, with ``Retry-After`` when
    the caller should come back, sent without an app."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if retry_after_s:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
