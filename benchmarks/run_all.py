"""Run every venue and order-path benchmark and print one Markdown report (``make bench``).

Each benchmark runs in its own process at its documented default scale, beside the peer
(``matching-engine`` 0.1.1, see ``peer.py``), and prints its own Markdown table with ours,
the peer's and the ratio; this script puts them under one heading with the machine they ran
on. ``--scale`` shrinks (or grows) every workload for a quick look; figures at another
scale are not the ones the targets are stated for.

Usage::

    .venv/bin/python benchmarks/run_all.py [--scale 0.1] [--rounds R] [--only engine,recovery]
        [--data-parent DIR] [--output report.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _scaled(value: int, scale: float, least: int) -> str:
    return str(max(least, round(value * scale)))


# name -> (script, title, the arguments for a scale); defaults are each script's own.
BENCHMARKS: dict[str, tuple[str, str, Callable[[float], list[str]]]] = {
    "engine": (
        "bench_engine.py", "In-process throughput, latency and memory",
        lambda s: ["--count", _scaled(1_000_000, s, 1_000),
                   "--resting", _scaled(1_000_000, s, 1_000),
                   "--stress-count", _scaled(300_000, s, 1_000)],
    ),
    "journal": (
        "bench_journal.py", "Durable commands/s and journal latency",
        lambda s: ["--records", _scaled(400_000, s, 5_000)],
    ),
    "recovery": (
        "bench_recovery.py", "Recovery: full replay and snapshot + tail",
        lambda s: ["--records", _scaled(1_000_000, s, 2_000),
                   "--tail", _scaled(100_000, s, 200)],
    ),
    "ack": (
        "bench_ack_latency.py", "Acknowledged latency through the runtime",
        lambda s: ["--commands", _scaled(10_000, s, 200)],
    ),
    "stream": (
        "bench_stream.py", "Streaming order entry against REST, one connection",
        lambda s: ["--orders", _scaled(200_000, s, 2_000),
                   "--rest-orders", _scaled(3_000, s, 100)],
    ),
    "public-port": (
        "bench_public_port.py", "Orders through serve's public port with wrk",
        lambda s: ["--duration", _scaled(5, s, 1)],
    ),
    "halt": (
        "bench_halt_public_port.py", "Halts at full order rate through the public port",
        lambda s: ["--trials", _scaled(30, s, 3)],
    ),
}
TAKES_NO_ROUNDS = frozenset({"halt"})


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every workload size (1: the documented defaults)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="rounds per side for every benchmark (0: each one's default)")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--data-parent", type=Path, default=ROOT,
                        help="where the latency benchmark puts its data (a real disk)")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    if args.scale <= 0:
        raise SystemExit("--scale must be positive, e.g. 0.1 for a quick run")

    lines = [
        "# haltguard venue benchmarks",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {_commit()}; "
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"scale {args.scale:g}" + (" (the documented defaults)" if args.scale == 1 else "")
        + ". Ratios above 1 mean haltguard is better.",
    ]
    print("\n".join(lines), flush=True)
    for name in chosen:
        script, title, sized = BENCHMARKS[name]
        command = [sys.executable, str(HERE / script), *sized(args.scale)]
        if args.rounds and name not in TAKES_NO_ROUNDS:
            command += ["--rounds", str(args.rounds)]
        if name == "ack":
            command += ["--data-parent", str(args.data_parent)]
        print(f"running {script} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        took = time.perf_counter() - started
        section = [f"\n# {title}", f"\n`{' '.join([Path(command[1]).name, *command[2:]])}` "
                   f"({took:,.0f} s)\n"]
        if done.returncode != 0:
            section.append(f"**failed** (exit {done.returncode}):\n\n```\n{done.stderr}\n```")
        else:
            section.append(done.stdout.rstrip())
        print("\n".join(section), flush=True)
        lines += section
    if args.output is not None:
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
