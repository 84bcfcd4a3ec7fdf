"""The one error model: what a domain error carries, without any web framework."""

from __future__ import annotations

import ast
from pathlib import Path

from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.security.errors import LoginThrottledError, NotAuthenticatedError
from haltguard.status.errors import not_found
from haltguard.web.ratelimit import RateLimitedError

SOURCE = Path(__file__).resolve().parents[2] / "src" / "haltguard"


class _LedgerError(HaltguardError):
    kind = ErrorKind.CONFLICT
    code = "ledger_refused"


def test_a_domain_subclass_fixes_kind_and_code_and_a_call_may_override_them() -> None:
    fixed = _LedgerError("the account is frozen; an operator must unfreeze it")
    overridden = _LedgerError("no account 7", kind=ErrorKind.NOT_FOUND, code="unknown_account")

    assert (fixed.kind, fixed.code) == (ErrorKind.CONFLICT, "ledger_refused")
    assert (overridden.kind, overridden.code) == (ErrorKind.NOT_FOUND, "unknown_account")
    assert (_LedgerError.kind, _LedgerError.code) == (ErrorKind.CONFLICT, "ledger_refused")


def test_an_error_reads_as_its_english_message_and_keeps_next_step_and_japanese() -> None:
    error = HaltguardError("the market is halted", next_step="wait for it to reopen",
                           message_ja="市場は停止中です", details={"seq": 42})

    assert str(error) == "the market is halted"
    assert (error.next_step, error.message_ja, error.details) == (
        "wait for it to reopen", "市場は停止中です", {"seq": 42})
    assert (error.kind, error.code, error.headers) == (ErrorKind.INVALID, "invalid_input", None)


def test_refusals_that_need_response_headers_carry_them_on_the_error() -> None:
    assert LoginThrottledError("too many failed logins", 30).headers == {"Retry-After": "30"}
    assert RateLimitedError("too many requests", 12).headers == {"Retry-After": "12"}
    assert NotAuthenticatedError("log in first").headers == {"WWW-Authenticate": "Bearer"}


def test_domain_errors_keep_their_stable_codes_and_kinds() -> None:
    error = not_found("component", "market:DOGE", "GET /api/status/components lists them")

    assert (error.kind, error.code) == (ErrorKind.NOT_FOUND, "component_not_found")
    assert error.message == ("no component market:DOGE; GET /api/status/components lists them")


def test_the_error_model_imports_nothing_but_the_standard_library() -> None:
    tree = ast.parse((SOURCE / "common" / "errors.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}

    assert imported <= {"__future__", "collections", "enum"}, imported
