"""``haltguard status``: export from the database to a directory, and operator commands over
the operations API served by uvicorn."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Engine
from status_support import SQLITE_ONLY, StatusApi
from typer.testing import CliRunner

from haltguard.cli.main import app as cli
from haltguard.status.site import REVISION_FILE

pytestmark = SQLITE_ONLY
SERVER_START_S_MAX = 10.0


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, engine: Engine, tmp_path: Path) -> None:
    monkeypatch.setenv("HALTGUARD_DATABASE_URL", str(engine.url))
    monkeypatch.setenv("HALTGUARD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HALTGUARD_STATUS_URL", "https://status.example.test/")


@pytest.fixture
def live_url(api: StatusApi) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(api.app, host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S_MAX
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(SERVER_START_S_MAX)


@pytest.mark.usefixtures("env")
def test_export_writes_the_whole_page_from_the_database(api: StatusApi, tmp_path: Path) -> None:
    api.page("/status/")
    api.call("POST", "/api/status/components/website/override",
             body={"status": "degraded_performance", "reason": "slow"})
    target = tmp_path / "public"
    result = CliRunner().invoke(cli, ["status", "export", str(target)])
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and "haltguard status serve" in result.output
    assert (target / REVISION_FILE).is_file()
    assert {path.relative_to(target).as_posix() for path in target.rglob("index.html")} == {
        "index.html", "en/index.html"}
    components = json.loads((target / "en/api/v2/components.json").read_text())["components"]
    assert {c["id"]: c["status"] for c in components}["website"] == "degraded_performance"
    assert json.loads((target / "api/v2/status.json").read_text())["page"]["url"] \
        == "https://status.example.test/"


@pytest.mark.usefixtures("env")
def test_serve_refuses_a_directory_that_was_never_exported(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "serve", str(tmp_path), "--port", "0"])
    assert result.exit_code == 1
    assert "run haltguard status export" in " ".join(result.output.split())


@pytest.mark.usefixtures("env")
def test_an_operator_drafts_and_publishes_from_the_terminal(
    api: StatusApi, live_url: str
) -> None:
    incident = api.open_incident(affected_markets=["XRP-JPY"])
    runner = CliRunner()
    token = ["--url", live_url, "--token", api.operators["alice"].api_token]
    drafted = runner.invoke(cli, ["status", "draft", str(incident["id"]), "--status",
                                  "investigating", *token, "--json"])
    assert drafted.exit_code == 0, drafted.output
    update_id = json.loads(drafted.output)["id"]
    listed = runner.invoke(cli, ["status", "drafts", *token])
    assert f"{update_id}: investigating INC-{incident['id']} by alice" in listed.output
    published = runner.invoke(cli, ["status", "publish", str(update_id), *token])
    assert published.exit_code == 0, published.output
    assert f"update {update_id} published" in published.output
    assert "XRP/JPY 取引の障害について" in api.page("/status/").text
    refused = runner.invoke(cli, ["status", "override", "website", "major_outage", "--reason",
                                  "x", *token])
    assert refused.exit_code == 1
    assert "does not allow status.override" in " ".join(refused.output.split())


@pytest.mark.usefixtures("env")
def test_status_commands_take_the_token_from_a_file_stdin_or_the_environment(
    api: StatusApi, live_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = api.operators["alice"].api_token
    token_file = tmp_path / "token"
    token_file.write_text(f"{secret}\n", encoding="utf-8")
    runner = CliRunner()
    from_file = runner.invoke(cli, ["status", "drafts", "--url", live_url, "--token-file",
                                    str(token_file), "--json"])
    assert from_file.exit_code == 0, from_file.output
    from_stdin = runner.invoke(cli, ["status", "cadence", "--url", live_url, "--token-file",
                                     "-", "--json"], input=f"{secret}\n")
    assert from_stdin.exit_code == 0, from_stdin.output
    monkeypatch.setenv("HALTGUARD_TOKEN", secret)
    from_env = runner.invoke(cli, ["status", "drafts", "--url", live_url, "--json"])
    assert from_env.exit_code == 0, from_env.output
    missing = runner.invoke(cli, ["status", "drafts", "--url", live_url, "--token-file",
                                  str(tmp_path / "nowhere")])
    assert missing.exit_code == 1
    assert "cannot read the API token from" in " ".join(missing.output.split())


@pytest.mark.usefixtures("env")
def test_status_help_marks_the_token_flag_unsafe() -> None:
    result = CliRunner().invoke(cli, ["status", "drafts", "--help"], env={"COLUMNS": "250"})
    help_text = " ".join(result.output.split())
    assert "--token-file" in help_text
    assert "other users of the machine see it in `ps`" in help_text
