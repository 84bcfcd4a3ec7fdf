"""The peer every venue benchmark measures against: the PyPI package ``matching-engine`` 0.1.1.

It needs Python 3.12, so it runs in its own virtual environment (created here on first use)
as a subprocess: a benchmark hands it a script and reads one JSON line back. Set
``HALTGUARD_PEER_VENV`` to keep that environment somewhere else than ``/tmp/peervenv``.

Also here: how every benchmark sums up its rounds. Ours and the peer's rounds alternate,
and each figure is reported as the median with the range, because the machine's other load
moves single rounds a lot.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# With its gateway extra: the acknowledged-latency benchmark drives the peer's own gateway worker.
PEER_PACKAGE = "matching-engine[gateway]==0.1.1"
PEER_NAME = "matching-engine 0.1.1"
PEER_VENV = Path(os.environ.get("HALTGUARD_PEER_VENV", "/tmp/peervenv"))
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def _python312() -> str | None:
    """A Python 3.12 interpreter: pyenv's if it has one, else ``python3.12`` on PATH."""
    candidates = sorted(PYENV_ROOT.glob("versions/3.12*/bin/python"), reverse=True)
    if candidates:
        return str(candidates[0])
    return shutil.which("python3.12")


def ensure_peer() -> Path:
    """The peer's Python, creating its venv (Python 3.12) and installing it when missing."""
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run(
            [str(python), "-c", "import matching_engine.gateway.worker"],
            capture_output=True, check=False,
        )
        if check.returncode == 0:
            return python
    base = _python312()
    if base is None:
        raise SystemExit(
            "the peer needs Python 3.12: install it (pyenv install 3.12) or put python3.12 on "
            "PATH, then run this again"
        )
    print(f"creating {PEER_VENV} with {base}, installing {PEER_PACKAGE} ...", file=sys.stderr)
    subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", PEER_PACKAGE], check=True)
    return python


def run_peer(python: Path, script: str, args: Sequence[object]) -> dict[str, Any]:
    """Run ``script`` under the peer's Python with ``args``; its last stdout line is JSON."""
    done = subprocess.run(
        [str(python), "-c", script, *map(str, args)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the peer benchmark failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median_range(values: Sequence[float]) -> tuple[float, float, float]:
    """``(median, lowest, highest)`` of one figure's rounds."""
    return statistics.median(values), min(values), max(values)


def spread(values: Sequence[float], fmt: str = "{:,.0f}", unit: str = "") -> str:
    """A table cell: the median and, in brackets, the range of the rounds."""
    middle, low, high = median_range(values)
    return f"{fmt.format(middle)}{unit} ({fmt.format(low)}..{fmt.format(high)})"


def ratio_cell(ratios: Sequence[float]) -> str:
    """The median of the per-round ratios in bold, with their range."""
    middle, low, high = median_range(ratios)
    return f"**{middle:.2f}x** ({low:.2f}..{high:.2f})"
