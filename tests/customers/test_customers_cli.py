"""``haltguard customers ...`` against a running service: support creates a customer and
its first key, the key signs with ``customers sign``'s headers, support unlocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from customer_support import Bench
from typer.testing import CliRunner, Result

from haltguard.cli.main import app

runner = CliRunner()
SERVER_START_S_MAX = 10.0


@pytest.fixture(scope="module")
def url(bench: Bench) -> Iterator[str]:
    """The bench's service (and gateway) on a free port."""
    server = uvicorn.Server(uvicorn.Config(bench.client.app, host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S_MAX
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(SERVER_START_S_MAX)


def _cli(url: str, token: str, *args: str, secret: str = "") -> Result:
    return runner.invoke(app, ["customers", *args], env={
        "HALTGUARD_URL": url, "HALTGUARD_TOKEN": token, "HALTGUARD_CUSTOMER_SECRET": secret,
        "COLUMNS": "200"})


def test_support_creates_a_customer_and_the_key_it_prints_signs_requests(
        bench: Bench, url: str) -> None:
    account = bench.fresh_account()
    created = _cli(url, bench.operators["sam"].api_token, "create", str(account),
                   "--email", "cli@example.com", "--phrase", "owl")
    assert created.exit_code == 0, created.output
    key_id = created.output.split("key id")[1].split()[0]
    secret = created.output.split("secret")[1].split()[0]
    target = f"/v1/accounts/{account}/balances"
    signed = _cli(url, "", "sign", "GET", target, "--key", key_id, "--timestamp-ms",
                  str(bench.now_ms()), secret=secret)
    assert signed.exit_code == 0, signed.output
    headers = dict(line.strip("-H '").split(": ", 1) for line in
                   signed.output.strip().splitlines())
    answer = bench.client.get(target, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["account"] == account


def test_sign_refuses_a_secret_on_the_command_line_and_asks_for_the_environment() -> None:
    result = runner.invoke(app, ["customers", "sign", "GET", "/v1/x", "--key", "hgk_x"],
                           env={"HALTGUARD_CUSTOMER_SECRET": ""})
    assert result.exit_code == 1
    assert "HALTGUARD_CUSTOMER_SECRET" in result.output
