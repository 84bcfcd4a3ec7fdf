"""Paying a run pays each line exactly once: repeated, resumed, concurrent, or after the venue
process was killed mid-payout. Against a real venue runtime (in process) and a real venue
process (over HTTP, SIGKILLed at random points)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from haltguard.compensation.payout import PayoutLine, PayoutReport, pay
from haltguard.gateway.control import HttpVenueControl, InProcessVenueControl
from haltguard.gateway.runtime import VenueRuntime
from haltguard.journal import recover
from haltguard.venue.commands import COMPENSATION_LINES_MAX, AddAsset
from haltguard.venue.engine import Venue
from haltguard.venue.markets import Asset

RUN_ID = 42
ASSETS = (Asset("JPY", 0), Asset("BTC", 8))


def run_lines(count: int, run_id: int = RUN_ID, accounts: int = 50) -> list[PayoutLine]:
    """``count`` lines over ``accounts`` accounts, mostly JPY, some BTC, amounts varied."""
    return [
        PayoutLine(run_id, n, 1 + n % accounts, "BTC" if n % 7 == 0 else "JPY", 1 + n * 13 % 997)
        for n in range(count)
    ]


def owed(lines: list[PayoutLine]) -> dict[tuple[int, str], int]:
    totals: Counter[tuple[int, str]] = Counter()
    for line in lines:
        totals[(line.account, line.asset)] += line.amount_minor
    return dict(totals)


def held_by_accounts(venue: Venue, accounts: set[int]) -> dict[tuple[int, str], int]:
    return {
        (account, asset): available + held
        for account in accounts
        for asset, (available, held) in venue.balances(account).items()
    }


def total_by_asset(lines: list[PayoutLine]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for line in lines:
        totals[line.asset] += line.amount_minor
    return dict(totals)


def start_runtime(data_dir: Path) -> VenueRuntime:
    runtime = VenueRuntime(data_dir).start()
    if not runtime.read(lambda venue: venue.assets):
        for asset in ASSETS:
            runtime.submit_and_wait(AddAsset(asset))
    return runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[VenueRuntime]:
    runtime = start_runtime(tmp_path / "venue")
    yield runtime
    runtime.stop()


def test_paying_a_run_credits_every_line_and_the_total_equals_the_runs_total(
    runtime: VenueRuntime,
) -> None:
    lines = run_lines(2_500)
    progress: list[int] = []

    report = pay(lines, InProcessVenueControl(runtime), batch_lines_max=300,
                 on_progress=lambda r: progress.append(r.lines_paid))

    assert report.complete
    assert report.lines_credited == 2_500
    assert report.amounts_paid_minor == total_by_asset(lines)
    assert report.batches_sent == 9
    assert progress == [300 * n for n in range(1, 9)] + [2_500]
    accounts = {line.account for line in lines}
    assert runtime.read(lambda v: held_by_accounts(v, accounts)) == owed(lines)


def test_paying_the_same_run_again_pays_nobody_and_sends_nothing(runtime: VenueRuntime) -> None:
    lines = run_lines(1_000)
    control = InProcessVenueControl(runtime)
    pay(lines, control, batch_lines_max=250)
    last_seq = runtime.status().last_seq

    again = pay(lines, control, batch_lines_max=250)

    assert again.complete
    assert (again.lines_credited, again.lines_already_credited) == (0, 1_000)
    assert again.amounts_paid_minor == total_by_asset(lines)
    assert again.batches_sent == 0
    assert runtime.status().last_seq == last_seq  # nothing was journaled
    accounts = {line.account for line in lines}
    assert runtime.read(lambda v: held_by_accounts(v, accounts)) == owed(lines)


def test_a_resumed_payout_sends_only_the_lines_not_yet_credited(runtime: VenueRuntime) -> None:
    lines = run_lines(1_000)
    control = InProcessVenueControl(runtime)
    first = pay(lines[:420], control, batch_lines_max=100)

    resumed = pay(lines, control, batch_lines_max=100)

    assert first.lines_credited == 420
    assert (resumed.lines_credited, resumed.lines_already_credited) == (580, 420)
    assert resumed.batches_sent == 6
    assert resumed.amounts_paid_minor == total_by_asset(lines)


def test_a_line_credited_by_another_payer_meanwhile_counts_as_paid_not_as_an_error(
    runtime: VenueRuntime,
) -> None:
    """Two payouts of one run at once: the second finishes while the first is under way;
    the first's later batches come back already_credited and it still completes."""
    lines = run_lines(1_000)
    control = InProcessVenueControl(runtime)
    other: list[PayoutReport] = []

    def pay_everything_once(report: PayoutReport) -> None:
        if not other:
            other.append(pay(lines, control, batch_lines_max=500))

    first = pay(lines, control, batch_lines_max=100, on_progress=pay_everything_once)

    assert first.complete and other[0].complete
    assert first.lines_credited + other[0].lines_credited == 1_000
    assert first.lines_already_credited == 900
    accounts = {line.account for line in lines}
    assert runtime.read(lambda v: held_by_accounts(v, accounts)) == owed(lines)


def test_a_venue_error_stops_the_payout_with_the_count_paid_so_far(tmp_path: Path) -> None:
    lines = run_lines(1_000)
    runtime = start_runtime(tmp_path / "venue")

    def stop_after_two_batches(report: PayoutReport) -> None:
        if report.batches_sent == 2:
            runtime.stop()

    stopped = pay(lines, InProcessVenueControl(runtime), batch_lines_max=100,
                  on_progress=stop_after_two_batches)
    restarted = start_runtime(tmp_path / "venue")
    try:
        resumed = pay(lines, InProcessVenueControl(restarted), batch_lines_max=100)
        accounts = {line.account for line in lines}
        held = restarted.read(lambda v: held_by_accounts(v, accounts))
    finally:
        restarted.stop()

    assert stopped.error and not stopped.complete
    assert stopped.lines_paid == 200
    assert (resumed.lines_credited, resumed.lines_already_credited) == (800, 200)
    assert held == owed(lines)


def test_refused_lines_are_reported_with_their_reason_and_not_counted_as_paid(
    runtime: VenueRuntime,
) -> None:
    lines = [*run_lines(10), PayoutLine(RUN_ID, 10, 3, "DOGE", 5), PayoutLine(RUN_ID, 11, 3,
                                                                             "JPY", 0)]

    report = pay(lines, InProcessVenueControl(runtime), batch_lines_max=100)

    assert not report.complete and not report.error
    assert (report.lines_paid, report.lines_refused) == (10, 2)
    assert [(r.line_no, r.reason) for r in report.refused] == [
        (10, "unknown_asset"), (11, "invalid_amount"),
    ]


def test_batches_are_capped_at_the_venues_limit(runtime: VenueRuntime) -> None:
    lines = run_lines(COMPENSATION_LINES_MAX + 1)

    report = pay(lines, InProcessVenueControl(runtime), batch_lines_max=10**6)

    assert report.complete
    assert report.batches_sent == 2


def test_a_batch_size_below_one_is_refused_before_anything_is_sent(
    runtime: VenueRuntime,
) -> None:
    with pytest.raises(ValueError, match="batch_lines_max"):
        pay(run_lines(3), InProcessVenueControl(runtime), batch_lines_max=0)

    assert InProcessVenueControl(runtime).credited_line_ranges(RUN_ID) == []


# --- a real venue process, killed mid-payout ----------------------------------------------

TOKEN = "payout-crash-token"
CRASH_LINES = 12_000
CRASH_BATCH = 400
KILLS_PER_SEED = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class VenueProcess:
    """The venue process on a data directory, started as serve's supervisor starts it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "haltguard.app.venue_process", "--data-dir", str(data_dir),
             "--port", str(self.port), "--checkpoint-every", "7"],
            env={**os.environ, "HALTGUARD_VENUE_TOKEN": TOKEN},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the venue process exited during start-up"
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.process.kill()
        raise AssertionError("the venue did not become healthy within 30 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def pay_until_killed(venue: VenueProcess, lines: list[PayoutLine], rng: random.Random) -> None:
    """Pay over HTTP and SIGKILL the venue at a random moment once some lines went through."""
    paid_before_kill = rng.randrange(1, CRASH_LINES // 3)
    reports: list[PayoutReport] = []
    with HttpVenueControl(venue.url, TOKEN) as control:
        payer = threading.Thread(
            target=lambda: reports.append(pay(lines, control, batch_lines_max=CRASH_BATCH)),
            daemon=True,
        )
        payer.start()
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the payout made no progress in 60 s"
            try:
                ranges = httpx.get(
                    f"{venue.url}/v1/admin/compensation/runs/{RUN_ID}/credited",
                    headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5,
                ).json()["ranges"]
            except httpx.HTTPError:
                ranges = []
            if sum(last - first + 1 for first, last in ranges) >= paid_before_kill:
                break
            time.sleep(0.002)
        time.sleep(rng.random() * 0.02)  # anywhere in a batch: before, during or after its fsync
        venue.kill()
        payer.join(30)
    assert reports and reports[0].error, "the payout should have stopped on the killed venue"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_line_is_paid_twice_when_the_venue_is_killed_mid_payout(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    lines = run_lines(CRASH_LINES, accounts=200)
    data_dir = tmp_path / "venue"
    venue = VenueProcess(data_dir)
    try:
        with httpx.Client(base_url=venue.url, timeout=10) as client:
            for asset in ASSETS:
                client.post("/v1/admin/assets", json={"code": asset.code,
                            "decimals": asset.decimals},
                            headers={"Authorization": f"Bearer {TOKEN}"}).raise_for_status()
        for _ in range(KILLS_PER_SEED):
            pay_until_killed(venue, lines, rng)
            venue = VenueProcess(data_dir)
        with HttpVenueControl(venue.url, TOKEN) as control:
            final = pay(lines, control, batch_lines_max=CRASH_BATCH)
    finally:
        venue.stop()

    assert final.complete
    assert final.amounts_paid_minor == total_by_asset(lines)
    recovered, _ = recover(data_dir)
    accounts = {line.account for line in lines}
    assert held_by_accounts(recovered, accounts) == owed(lines)
    assert recovered.check_invariants() == []
    # The venue's own record: every line's reference spent, and not one unit more money
    # brought into the books than the run's total (a line paid twice would show in both).
    assert recovered.credited_line_ranges(RUN_ID) == [(0, CRASH_LINES - 1)]
    assert recovered.ledger.deposited == total_by_asset(lines)

