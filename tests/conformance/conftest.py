"""The conformance tests drive the same two venues as the adapter tests."""

from __future__ import annotations

import sys
from pathlib import Path

ADAPTER_TESTS = str(Path(__file__).resolve().parents[1] / "adapters")
if ADAPTER_TESTS not in sys.path:
    sys.path.insert(0, ADAPTER_TESTS)
