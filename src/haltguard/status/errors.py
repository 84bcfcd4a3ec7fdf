"""Errors of the status page, each with a stable code and the HTTP status it maps to.

They subclass ``HTTPException`` so the app's standard handler answers with
``{"error": {"code", "message"}}``; the CLI prints ``.message``.
"""

from __future__ import annotations

from fastapi import HTTPException


class StatusError(HTTPException):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(status_code=status_code, detail=message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


def not_found(what: str, which: object, hint: str) -> StatusError:
    return StatusError(404, f"{what.replace(' ', '_')}_not_found", f"no {what} {which}; {hint}")


def invalid(code: str, message: str) -> StatusError:
    return StatusError(422, code, message)


def conflict(code: str, message: str) -> StatusError:
    return StatusError(409, code, message)
