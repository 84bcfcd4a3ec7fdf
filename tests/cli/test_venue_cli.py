"""``haltguard venue ...`` on real data directories and against a real running venue."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from haltguard.app.venue_app import create_venue_app
from haltguard.app.venue_process import lock_data_dir
from haltguard.cli.main import app
from haltguard.gateway.runtime import VenueRuntime
from haltguard.journal import Journal, recover
from haltguard.journal.codec import encode_record
from haltguard.venue.commands import AddAsset, AddMarket, Command, Deposit, PlaceOrder
from haltguard.venue.markets import DEMO_ASSETS, demo_markets
from haltguard.venue.types import MarketState, Side

TOKEN = "cli-test-token"
runner = CliRunner()


def setup_commands() -> list[Command]:
    """Demo assets and markets; accounts 1 and 2 funded with 1e9 JPY and 10 BTC each."""
    commands: list[Command] = [AddAsset(asset) for asset in DEMO_ASSETS]
    commands += [AddMarket(spec, MarketState.OPEN) for spec in demo_markets()]
    commands += [Deposit(account, "JPY", 10**13) for account in (1, 2)]
    commands += [Deposit(account, "BTC", 10**9) for account in (1, 2)]
    return commands


def venue_commands() -> list[Command]:
    commands = setup_commands()
    for n in range(200):
        side = Side.BUY if n % 2 else Side.SELL
        commands.append(PlaceOrder("BTC-JPY", n % 2 + 1, side, 10, 15_000_000 + n % 9 - 4))
    return commands


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    """A data directory holding one segment of records and no snapshot."""
    journal = Journal(tmp_path)
    for seq, command in enumerate(venue_commands(), start=1):
        journal.append(seq, 1_000 + seq, command)
    journal.sync()
    journal.close()
    return tmp_path


def the_segment(data_dir: Path) -> Path:
    [segment] = sorted((data_dir / "segments").glob("*.seg"))
    return segment


def test_verify_on_a_good_directory_exits_0_and_prints_the_state_hash(journal_dir: Path) -> None:
    venue, _ = recover(journal_dir, repair=False)

    result = runner.invoke(app, ["venue", "verify", str(journal_dir)])

    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert venue.state_hash() in result.output
    assert str(len(venue_commands())) in result.output  # records replayed and last seq


def test_verify_on_a_corrupted_directory_exits_1_naming_segment_and_offset(
    journal_dir: Path,
) -> None:
    segment = the_segment(journal_dir)
    data = bytearray(segment.read_bytes())
    data[len(data) // 3] ^= 0xFF  # damage in the middle: valid records follow it
    segment.write_bytes(bytes(data))

    result = runner.invoke(app, ["venue", "verify", str(journal_dir)])

    assert result.exit_code == 1
    assert segment.name in result.output
    assert "offset" in result.output
    assert "restore" in result.output  # what to do next


def _append(segment: Path, data: bytes) -> None:
    with segment.open("ab") as file:
        file.write(data)


def test_verify_reports_a_torn_tail_without_cutting_it(journal_dir: Path) -> None:
    segment = the_segment(journal_dir)
    size = segment.stat().st_size
    seq = len(venue_commands()) + 1
    torn = encode_record(seq, 10_000, venue_commands()[-1], {})[:-5]  # written, never synced
    _append(segment, torn)

    result = runner.invoke(app, ["venue", "verify", str(journal_dir)])

    assert result.exit_code == 0, result.output
    assert "torn tail" in result.output
    assert segment.stat().st_size == size + len(torn)  # verify changed nothing


def test_verify_says_which_range_of_the_journal_is_retained(journal_dir: Path) -> None:
    result = runner.invoke(app, ["venue", "verify", str(journal_dir)], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert f"seq 1 to {len(venue_commands())}" in result.output


def test_verify_fails_on_a_synced_record_cut_short(journal_dir: Path) -> None:
    segment = the_segment(journal_dir)
    segment.write_bytes(segment.read_bytes()[:-5])

    result = runner.invoke(app, ["venue", "verify", str(journal_dir)])

    assert result.exit_code == 1
    assert "below the commit mark" in result.output


GARBAGE = b"\x00\x00\x00\x7f" + bytes(range(40))  # no record is that long: not a torn tail


def test_repair_cuts_garbage_after_the_commit_mark_once_confirmed(journal_dir: Path) -> None:
    segment = the_segment(journal_dir)
    intact = segment.read_bytes()
    _append(segment, GARBAGE)
    assert runner.invoke(app, ["venue", "verify", str(journal_dir)]).exit_code == 1

    result = runner.invoke(
        app, ["venue", "repair", str(journal_dir), "--reason", "disk fault", "--actor", "alice"],
        input="y\n",
    )

    assert result.exit_code == 0, result.output
    assert f"cut {len(GARBAGE)} byte(s) from {segment.name}" in result.output
    assert segment.read_bytes() == intact
    [kept] = (journal_dir / "repairs").glob("*.cut")
    assert kept.read_bytes() == GARBAGE
    verified = runner.invoke(app, ["venue", "verify", str(journal_dir)])
    assert verified.exit_code == 0, verified.output
    assert "by alice (disk fault)" in verified.output


def test_repair_declined_changes_nothing(journal_dir: Path) -> None:
    segment = the_segment(journal_dir)
    _append(segment, GARBAGE)
    damaged = segment.read_bytes()

    result = runner.invoke(
        app, ["venue", "repair", str(journal_dir), "--reason", "disk fault"], input="n\n"
    )

    assert result.exit_code == 1
    assert "nothing was cut" in result.output
    assert segment.read_bytes() == damaged
    assert not (journal_dir / "repairs").exists()


def test_repair_refuses_damage_below_the_commit_mark(journal_dir: Path) -> None:
    segment = the_segment(journal_dir)
    data = bytearray(segment.read_bytes())
    data[-20] ^= 0xFF  # inside the last synced record
    segment.write_bytes(bytes(data))

    result = runner.invoke(
        app, ["venue", "repair", str(journal_dir), "--reason", "disk fault", "--yes"]
    )

    assert result.exit_code == 1
    assert "repair will not cut them" in result.output
    assert "restore" in result.output
    assert segment.read_bytes() == bytes(data)


def test_repair_refuses_while_a_venue_holds_the_data_directory(journal_dir: Path) -> None:
    _append(the_segment(journal_dir), GARBAGE)
    lock = lock_data_dir(journal_dir)  # what a running venue holds
    try:
        result = runner.invoke(
            app, ["venue", "repair", str(journal_dir), "--reason", "disk fault", "--yes"]
        )
    finally:
        os.close(lock)

    assert result.exit_code == 1
    assert "stop the venue" in result.output


def test_verify_on_a_directory_that_is_not_a_venue_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["venue", "verify", str(tmp_path)])

    assert result.exit_code == 1
    assert "not a venue data directory" in result.output


def test_inspect_lists_markets_and_balance_totals(journal_dir: Path) -> None:
    result = runner.invoke(app, ["venue", "inspect", str(journal_dir)], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    for symbol in ("BTC-JPY", "ETH-JPY", "XRP-JPY"):
        assert symbol in result.output
    assert "2000000000" in result.output  # 2 x 1e13 minor units of JPY deposited = 2e9 JPY


class RunningVenue:
    """A real venue runtime served by uvicorn on a free port, for the remote commands."""

    def __init__(self, data_dir: Path) -> None:
        self.runtime = VenueRuntime(data_dir).start()
        for command in setup_commands():
            self.runtime.submit_and_wait(command)
        config = uvicorn.Config(create_venue_app(self.runtime, TOKEN), port=0, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.runtime.stop()

    def state(self, market: str) -> MarketState:
        return self.runtime.read(lambda venue: venue.market_states()[market])


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[RunningVenue]:
    running = RunningVenue(tmp_path / "venue")
    yield running
    running.stop()


def remote(venue: RunningVenue, *args: str, token: str = TOKEN) -> Result:
    env = {"HALTGUARD_VENUE_URL": venue.url, "HALTGUARD_VENUE_TOKEN": token, "COLUMNS": "200"}
    return runner.invoke(app, ["venue", *args], env=env)


def test_halt_command_halts_the_market_and_prints_the_event(venue: RunningVenue) -> None:
    result = remote(venue, "halt", "BTC-JPY", "--reason", "price feed down", "--actor", "alice")

    assert result.exit_code == 0, result.output
    assert "market_state_changed" in result.output
    assert venue.state("BTC-JPY") is MarketState.HALTED


def test_brake_command_without_a_token_says_where_to_find_one(venue: RunningVenue) -> None:
    result = remote(venue, "halt", "BTC-JPY", "--reason", "x", token="")

    assert result.exit_code == 1
    assert "HALTGUARD_VENUE_TOKEN" in result.output
    assert venue.state("BTC-JPY") is MarketState.OPEN


def test_brake_command_reads_the_admin_token_from_a_file_kept_off_the_process_list(
    venue: RunningVenue, tmp_path: Path,
) -> None:
    token_file = tmp_path / "venue.token"
    token_file.write_text(f"{TOKEN}\n", encoding="utf-8")
    result = remote(venue, "halt", "BTC-JPY", "--reason", "feed down", "--token-file",
                    str(token_file), token="")

    assert result.exit_code == 0, result.output
    assert venue.state("BTC-JPY") is MarketState.HALTED


def test_refused_state_change_exits_1_with_the_venues_reason(venue: RunningVenue) -> None:
    remote(venue, "halt", "BTC-JPY", "--reason", "x")

    result = remote(venue, "state", "BTC-JPY", "open", "--reason", "too early")

    assert result.exit_code == 1
    assert "illegal_transition" in result.output


def test_kill_switch_and_resume_plan_from_the_command_line(venue: RunningVenue) -> None:
    engaged = remote(venue, "kill-switch", "engage", "--reason", "exchange down")
    released = remote(venue, "kill-switch", "release", "--reason", "fixed")
    resumed = remote(venue, "resume", "ETH-JPY", "--reason", "all clear",
                     "--plan", "cancel_only:60,auction:60,open:0")

    assert engaged.exit_code == 0, engaged.output
    assert released.exit_code == 0, released.output
    assert resumed.exit_code == 0, resumed.output
    assert venue.state("ETH-JPY") is MarketState.CANCEL_ONLY
    assert venue.state("BTC-JPY") is MarketState.HALTED


def test_unreadable_resume_plan_is_refused_with_an_example(venue: RunningVenue) -> None:
    result = remote(venue, "resume", "ETH-JPY", "--reason", "x", "--plan", "sideways:10")

    assert result.exit_code == 1
    assert "state:seconds" in result.output


def test_order_book_and_balances_commands_trade_by_hand(venue: RunningVenue) -> None:
    placed = remote(venue, "order", "BTC-JPY", "sell", "0.01", "15000000", "--account", "2")
    book = remote(venue, "book", "BTC-JPY")
    taken = remote(venue, "order", "BTC-JPY", "buy", "0.01", "--account", "1")
    balances = remote(venue, "balances", "1")

    assert placed.exit_code == 0, placed.output
    assert "resting" in placed.output
    assert "15000000" in book.output
    assert taken.exit_code == 0, taken.output
    assert "filled" in taken.output
    assert "10.01" in balances.output


def test_off_grid_order_from_the_command_line_explains_the_grid(venue: RunningVenue) -> None:
    result = remote(venue, "order", "BTC-JPY", "buy", "0.00001", "15000000")

    assert result.exit_code == 1
    assert "lot size 0.0001" in result.output


def test_every_venue_command_has_help() -> None:
    commands = ["run", "verify", "repair", "inspect", "halt", "state", "kill-switch", "freeze",
                "resume", "status", "order", "cancel", "book", "balances"]
    for command in commands:
        result = runner.invoke(app, ["venue", command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage" in result.output
    assert runner.invoke(app, ["serve", "--help"]).exit_code == 0


def test_venue_run_serves_the_demo_and_stops_on_sigterm_with_a_snapshot(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = tmp_path / "venue"
    process = subprocess.Popen(
        [sys.executable, "-m", "haltguard.app.venue_process", "--data-dir", str(data_dir),
         "--port", str(port), "--demo", "--demo-rate", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "HALTGUARD_VENUE_TOKEN": TOKEN},
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith(f"haltguard venue ready on http://127.0.0.1:{port} pid "
                                f"{process.pid}"), ready
        result = runner.invoke(app, ["venue", "status", "--url", f"http://127.0.0.1:{port}"],
                               env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "BTC-JPY" in result.output, result.output
        time.sleep(0.3)  # let the demo flow place some orders

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    stopped_seq = int(output.split("venue stopped at seq ")[1].split(";")[0])
    assert stopped_seq > 0
    venue, report = recover(data_dir, repair=False)
    assert venue.last_seq == stopped_seq and report.snapshot_seq == stopped_seq


PARENT = """\
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "haltguard.app.venue_process", *sys.argv[1:],
                          "--stop-with-parent"], stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
time.sleep(60)
"""


def test_a_venue_whose_supervisor_is_killed_stops_cleanly_and_holds_its_directory_till_then(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "venue"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, "--data-dir", str(data_dir), "--port", str(port),
         "--demo", "--demo-rate", "100"],
        stdout=subprocess.PIPE, text=True,
    )
    assert parent.stdout is not None
    child_pid_text, ready = parent.stdout.readline().split(" ", 1)
    child_pid = int(child_pid_text)
    try:
        assert ready.startswith("haltguard venue ready"), ready
        second = subprocess.run(
            [sys.executable, "-m", "haltguard.app.venue_process", "--data-dir", str(data_dir),
             "--port", str(port + 1 if port < 65_535 else port - 1)],
            check=False, capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == 1
        assert f"another venue (pid {child_pid}) is running on {data_dir}" in " ".join(
            (second.stdout + second.stderr).split())

        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{child_pid}") and "zombie" not in _state(child_pid):
            assert time.monotonic() < deadline, "the orphaned venue is still running"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
        if os.path.exists(f"/proc/{child_pid}"):
            os.kill(child_pid, signal.SIGKILL)
    venue, report = recover(data_dir, repair=False)
    assert venue.last_seq > 0 and report.snapshot_seq == venue.last_seq  # a clean stop


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
