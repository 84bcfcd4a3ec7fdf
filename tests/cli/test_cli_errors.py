"""The CLI shows a refusal one way, whether the API answered it or this process raised it."""

from __future__ import annotations

import httpx
import typer
from typer.testing import CliRunner

from haltguard.cli.client import api_error_text, fail_with
from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.responders.errors import NotFoundError


def _answer(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_an_api_refusal_shows_its_message_code_and_status() -> None:
    answer = _answer(404, {"error": {"code": "not_found", "message": "no person ito"}})

    assert api_error_text(answer) == "no person ito [not_found, HTTP 404]"


def test_an_api_refusal_with_a_next_step_and_japanese_text_shows_both() -> None:
    answer = _answer(409, {"error": {"code": "market_halted", "message": "BTC-JPY is halted",
                                     "next_step": "wait for it to reopen",
                                     "message_ja": "BTC-JPY は停止中です"}})

    assert api_error_text(answer) == (
        "BTC-JPY is halted Next: wait for it to reopen [market_halted, HTTP 409]\n"
        "BTC-JPY は停止中です")


def test_an_answer_without_the_error_shape_shows_its_status_and_text() -> None:
    answer = httpx.Response(502, text="<html>bad gateway</html>")

    assert api_error_text(answer) == "HTTP 502: <html>bad gateway</html>"


def _cli_raising(error: HaltguardError) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def refuse() -> None:
        try:
            raise error
        except HaltguardError as exc:
            fail_with(exc)

    return app


def test_a_refusal_raised_in_the_cli_prints_message_and_next_step_and_exits_1() -> None:
    error = HaltguardError("the rules file has 2 problems", kind=ErrorKind.INVALID,
                           next_step="fix the lines named and load it again")

    result = CliRunner().invoke(_cli_raising(error), [])

    assert result.exit_code == 1
    assert "error: the rules file has 2 problems Next: fix the lines named and load it " \
        "again" in result.output


def test_a_domain_refusal_prints_the_same_message_the_api_sends() -> None:
    error = NotFoundError("no person ito; GET /api/oncall/people lists them")

    result = CliRunner().invoke(_cli_raising(error), [])

    assert result.exit_code == 1
    assert "error: no person ito; GET /api/oncall/people lists them" in result.output
