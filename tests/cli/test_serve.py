"""``haltguard serve`` as a newcomer runs it: a real process on a free port with a data
directory of its own, and issue 3's "done when" driven through the ``haltguard`` CLI alone.

The first start prints the first admin's password and TOTP secret once; the admin logs in
with them, a second operator is created with ``haltguard operator create``, the on-call is
loaded with ``haltguard oncall load``, and a SEV1 runs from open to closed: runbook tasks, a
page by email to a local SMTP server acknowledged through its signed link, a halt the venue
on the same port applies, a resume a second operator approves, both reports, the audit chain
verified. A second start on the same data shows no credentials, and bad configuration stops
the start with exit code 2.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from aiosmtpd.controller import Controller
from click.testing import Result
from typer.testing import CliRunner

from haltguard.cli.main import app as haltguard_cli

START_S_MAX = 60.0
STOP_S_MAX = 30.0
MAIL_WAIT_S_MAX = 10.0
DEMO_RATE_PER_S = 5

ONCALL_YAML = """\
people:
  - handle: tanaka
    display_name: 田中 一郎
    contacts: [{kind: email, address: tanaka@example.test}]
policies:
  - name: exchange
    levels:
      - {ack_timeout_s: 300, targets: ["person:tanaka"]}
routes:
  - {category: "*", severity: "*", policy: exchange}
"""

POSTMORTEM_YAML = """\
cause: A deadlock in the matching thread under a burst of cancels.
went_well: [Halted within 2 minutes]
went_badly: [The runbook did not say who restarts the engine]
recurrence_prevention: [キャンセル集中時のロック順序を修正する。]
action_items: [{description: Fix the lock order, owner: dave, due: '2026-04-01'}]
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Mailbox:
    """A local SMTP server's inbox."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted"

    def wait_for(self, address: str) -> EmailMessage:
        deadline = time.monotonic() + MAIL_WAIT_S_MAX
        while time.monotonic() < deadline:
            for message in self.messages:
                if address in str(message["To"]):
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no mail to {address} within {MAIL_WAIT_S_MAX} s")


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    inbox = Mailbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def clean_environment() -> dict[str, str]:
    """This process's environment without any haltguard setting a developer may have."""
    return {key: value for key, value in os.environ.items() if not key.startswith("HALTGUARD_")}


class Serve:
    """One ``haltguard serve`` process; its standard output is collected as it comes."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.lines: list[str] = []
        self.stderr_path = cwd / f"serve-stderr-{time.monotonic_ns()}.log"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "haltguard.cli.main", "serve", *args],
                cwd=cwd, env=clean_environment(), stdout=subprocess.PIPE, stderr=stderr,
                text=True, encoding="utf-8",
            )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, base_url: str) -> None:
        """Until both APIs answer and the banner is out."""
        deadline = time.monotonic() + START_S_MAX
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}: "
                                     f"{self.output}\n{self.stderr_path.read_text()}")
            try:
                venue = httpx.get(f"{base_url}/v1/health", timeout=1)
                operations = httpx.get(f"{base_url}/openapi.json", timeout=1)
                if venue.status_code == operations.status_code == 200 and "In another shell" in (
                    self.output
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.process.kill()  # not left running after the test
        raise AssertionError(f"serve was not ready within {START_S_MAX} s: {self.output}")

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(STOP_S_MAX)
        self.reader.join(STOP_S_MAX)
        return code

    def value(self, label: str) -> str:
        match = re.search(rf"^{label}\s+(\S+)$", self.output, re.MULTILINE)
        assert match, f"no {label!r} line in: {self.output}"
        return match.group(1)


class Terminal:
    """One operator's shell: ``haltguard ...`` with their own saved login."""

    def __init__(self, url: str, database_url: str, home: Path) -> None:
        # No key variables, like the serve it works beside: both use the keys in data_dir.
        self.env = {"HALTGUARD_URL": url, "HALTGUARD_CONFIG_DIR": str(home),
                    "HALTGUARD_DATABASE_URL": database_url, "HALTGUARD_TOKEN": "",
                    "HALTGUARD_AUDIT_KEY": "", "HALTGUARD_SECRETS_KEY": "",
                    "HALTGUARD_AUDIT_ANCHOR_FILE": "", "COLUMNS": "250"}

    def run(self, *args: str, ok: bool = True, stdin: str | None = None) -> str:
        result = CliRunner().invoke(haltguard_cli, list(args), env=self.env, input=stdin)
        assert (result.exit_code == 0) == ok, f"{args}: {result.output}"
        return " ".join(result.output.split())  # wrapping depends on the terminal

    def json(self, *args: str) -> Any:
        result = CliRunner().invoke(haltguard_cli, ["incident", "--json", *args], env=self.env)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return json.loads(result.output)

    def login(self, username: str, password: str, totp_secret: str) -> str:
        return self.run("incident", "login", "--username", username, f"--password={password}",
                        "--totp", pyotp.TOTP(totp_secret).now())


def market_state(base_url: str, market: str) -> str:
    state: str = httpx.get(f"{base_url}/v1/markets/{market}").json()["state"]
    return state


@pytest.mark.slow
def test_an_operator_runs_a_sev1_from_the_cli_against_haltguard_serve(
    tmp_path: Path, mailbox: tuple[Mailbox, int]
) -> None:
    inbox, smtp_port = mailbox
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    database_url = f"sqlite:///{data_dir / 'haltguard.sqlite3'}"
    config = tmp_path / "haltguard.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n[server]\nport = {port}\n'
        f"[demo]\nrate_per_s = {DEMO_RATE_PER_S}\n"
        f'[paging.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
        f'sender = "pager@haltguard.example.test"\n',
        encoding="utf-8",
    )
    serve = Serve(["--demo", "--config", str(config)], tmp_path)
    serve.wait_ready(base)
    assert "first admin created: shown once" in serve.output
    assert f"API          {base}/api" in serve.output and f"{base}/venue/docs" in serve.output
    assert re.search(r"Process    pid \d+ on http://127\.0\.0\.1:\d+, supervised", serve.output)
    assert f"Status page  {base}/status/" in serve.output
    assert f"Metrics      {base}/metrics" in serve.output
    assert f"Console      {base}/console" in serve.output
    assert httpx.get(f"{base}/console/login").status_code == 200
    assert "Login        haltguard incident login --username admin" in serve.output
    assert f"Data dir     {data_dir.resolve()}" in serve.output
    password, totp_secret = serve.value("password"), serve.value("TOTP secret")
    assert serve.value("username") == "admin"
    assert "█" in serve.output  # the QR code of the otpauth URI
    assert "On-call      nobody yet, so pages reach no one" in serve.output
    assert re.search(r"Detection    [1-9]\d* rules from the shipped rules, [1-9]\d* monitors, "
                     r"alert intake off", serve.output), serve.output

    admin = Terminal(base, database_url, tmp_path / "admin")
    dave = Terminal(base, database_url, tmp_path / "dave")
    assert "logged in as admin (admin)" in admin.login("admin", password, totp_secret)
    created = admin.run("operator", "create", "dave", "--display-name", "Dave Ito", "--email",
                        "dave@example.test", "--role", "incident_commander", "--password-stdin",
                        stdin="a long enough password for dave\n")
    dave_secret = re.search(r"\b([A-Z2-7]{32})\b", created)
    assert dave_secret, created
    assert "logged in as dave" in dave.login("dave", "a long enough password for dave",
                                             dave_secret.group(1))
    assert "1 people" in admin.run("oncall", "load", str(_write(tmp_path, "oncall.yaml",
                                                                ONCALL_YAML)))

    incident = admin.json("open", "BTC-JPY matching stalled", "--category", "software_bug",
                          "--severity", "SEV1", "--market", "BTC-JPY", "--customers", "40000")
    number = str(incident["id"])
    steps = [task["step_key"] for task in admin.json("tasks", number)["items"]]
    assert steps[0] == "assess_situation" and "roll_back_or_fix" in steps

    page = inbox.wait_for("tanaka@example.test")
    text = page.get_body(("plain",))
    assert text is not None
    link = re.search(rf"{re.escape(base)}/api/pages/\d+/ack\?token=\S+", text.get_content())
    assert link, text.get_content()
    asked = httpx.get(link.group(0))  # no login: the signed link is enough
    assert asked.status_code == 200 and "<form" in asked.text  # opening it only asks
    token = re.search(r'name="token" value="([^"]+)"', asked.text)
    assert token, asked.text
    pressed = httpx.post(f"{link.group(0).split('/ack?')[0]}/ack-link",
                         data={"token": html.unescape(token.group(1))})
    assert pressed.status_code == 200 and "acknowledged" in pressed.text

    admin.run("incident", "transition", number, "investigating", "--note", "engine stuck")
    assert "ok BTC-JPY: BTC-JPY open -> halted" in admin.run(
        "incident", "halt", number, "BTC-JPY", "--reason", "matching stalled")
    assert market_state(base, "BTC-JPY") == "halted"
    admin.run("incident", "task-done", number, "assess_situation", "--note", "deadlock found")
    admin.run("incident", "transition", number, "mitigating")
    asked = admin.json("resume", number, "BTC-JPY", "--reason", "engine restarted",
                       "--auction-seconds", "0")
    assert asked["approval"]["status"] == "pending"
    assert market_state(base, "BTC-JPY") == "halted"
    assert "ok BTC-JPY" in dave.run("incident", "approve", str(asked["approval"]["id"]))
    assert market_state(base, "BTC-JPY") == "open"

    assert admin.json("transition", number, "resolved")["status"] == "resolved"
    admin.run("incident", "postmortem", number,
              str(_write(tmp_path, "postmortem.yaml", POSTMORTEM_YAML)))
    admin.run("incident", "report", number, "--output", str(tmp_path / "postmortem.md"))
    admin.run("incident", "report", number, "--kind", "regulatory", "--output",
              str(tmp_path / "regulatory.md"))
    assert "| Markets halted or restricted | BTC-JPY |" in (tmp_path / "postmortem.md").read_text()
    assert "BTC-JPY の取引を停止" in (tmp_path / "regulatory.md").read_text()
    assert admin.json("transition", number, "closed")["status"] == "closed"

    timeline = [(entry["kind"], entry["details"].get("event") or entry["details"].get("new"))
                for entry in admin.json("timeline", number)["items"]]
    for expected in [("opened", None), ("page", "paged"), ("page", "acknowledged"),
                     ("market_action", None), ("task_done", None), ("approval_requested", None),
                     ("resume", None), ("status_changed", "resolved"), ("report", None),
                     ("status_changed", "closed")]:
        assert expected in timeline, f"{expected} missing from the timeline: {timeline}"
    assert "chain intact" in admin.run("audit", "verify")

    assert serve.stop() == 0
    assert "Stopped. The venue process wrote its snapshot" in serve.output
    assert not (data_dir / "serve.json").exists()

    again = Serve(["--demo", "--config", str(config)], tmp_path)
    again.wait_ready(base)
    assert "first admin created" not in again.output and password not in again.output
    assert "login --username <your username>" in again.output
    assert "On-call      1 person" in again.output
    assert market_state(base, "BTC-JPY") == "open"  # recovered from the journal
    assert "2 of 2 operators" in admin.run("operator", "list")
    assert again.stop() == 0


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 8000\n", "unknown setting 'server.prot'; did you mean server.port?"),
        ("[server]\nport = 99999\n", "server.port = 99999 (from "),
        ("[paging.smtp]\nsecurity = 'tls'\n", "paging.smtp.security = 'tls' (from "),
    ],
)
def test_a_bad_configuration_file_stops_the_start_with_exit_code_2(
    tmp_path: Path, text: str, message: str
) -> None:
    config = _write(tmp_path, "haltguard.toml", f'data_dir = "{tmp_path / "data"}"\n{text}')
    result = CliRunner().invoke(haltguard_cli, ["serve", "--config", str(config)],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert f"configuration error: {message}" in output
    assert not (tmp_path / "data").exists()  # nothing was started


def test_a_bad_environment_variable_stops_the_start_with_exit_code_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        haltguard_cli, ["serve", "--data-dir", str(tmp_path / "data")],
        env={"HALTGUARD_OPERATOR_NETWORKS": "10.0.0.0/8, the office", "COLUMNS": "250"},
    )
    assert result.exit_code == 2, result.output
    assert "security.operator_networks" in result.output
    assert "'the office' is not a network" in " ".join(result.output.split())


def test_a_busy_port_stops_the_start_before_anything_is_created(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            haltguard_cli, ["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            env={"COLUMNS": "250"},
        )
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert f"cannot start: cannot listen on 127.0.0.1:{port}" in output
    assert "is another haltguard running there?" in output
    assert not (tmp_path / "data").exists()  # no venue, no database, no first admin


def _serve_remote_venue(tmp_path: Path, *args: str, stdin: str | None = None) -> Result:
    """``serve`` against a remote venue on a busy port: the start reads the admin token,
    checks the configuration, then stops at the port before anything is created."""
    config = _write(tmp_path, "remote-venue.toml", '[venue]\nurl = "http://127.0.0.1:9"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        return CliRunner().invoke(
            haltguard_cli,
            ["serve", "--config", str(config), "--port", str(port), "--data-dir",
             str(tmp_path / "data"), *args],
            env={"COLUMNS": "250", "HALTGUARD_VENUE_TOKEN": None},
            input=stdin,
        )


def test_serve_reads_the_venue_admin_token_from_a_file_kept_off_the_process_list(
    tmp_path: Path,
) -> None:
    without = _serve_remote_venue(tmp_path)
    assert without.exit_code == 2 and "venue.admin_token is empty" in without.output
    token_file = _write(tmp_path, "venue.token", "s3cret-admin-token\n")
    from_file = _serve_remote_venue(tmp_path, "--admin-token-file", str(token_file))
    assert from_file.exit_code == 1, from_file.output
    assert "cannot listen on" in " ".join(from_file.output.split())
    from_stdin = _serve_remote_venue(tmp_path, "--admin-token-file", "-",
                                     stdin="s3cret-admin-token\n")
    assert from_stdin.exit_code == 1 and "cannot listen on" in from_stdin.output


def test_serve_refuses_an_empty_admin_token_file_saying_what_to_write(tmp_path: Path) -> None:
    result = _serve_remote_venue(tmp_path, "--admin-token-file",
                                 str(_write(tmp_path, "empty.token", "\n")))
    assert result.exit_code == 1
    assert "holds no venue admin token; write it on the first line" in " ".join(
        result.output.split())


def test_serve_help_marks_the_admin_token_flag_unsafe() -> None:
    result = CliRunner().invoke(haltguard_cli, ["serve", "--help"], env={"COLUMNS": "250"})
    help_text = " ".join(result.output.split())
    assert "--admin-token-file" in help_text
    assert "other users of the machine see it in `ps`" in help_text
