"""Series for the reference-market tests, made here from a fixed seed so every run sees the
same prices: markets that wander together (normal noise), and our market falling away from
them in the shape of a flash crash (a drop of 12% within 5 s, held for a minute, then
recovered)."""

from __future__ import annotations

import random
from decimal import Decimal

from exchange_replay import Print

NS = 1_000_000_000
T0_NS = 1_780_000_000 * NS
STEP_NS = 2 * NS
STEPS = 120  # four minutes at one print every 2 s
LEVEL_JPY = 5_000_000
CRASH_AT_NS = T0_NS + 100 * NS
CRASH_DEPTH = Decimal("0.12")
CRASH_FALL_NS = 5 * NS
CRASH_HOLD_NS = 60 * NS


def world_path(seed: int = 7) -> list[Decimal]:
    """The market everyone shares: a small mean-reverting walk around 5,000,000 JPY."""
    rng = random.Random(seed)
    level, path = 0.0, []
    for _ in range(STEPS):
        level = 0.9 * level + rng.gauss(0, 0.0008)
        path.append(Decimal(round(LEVEL_JPY * (1 + level))))
    return path


def venue_series(path: list[Decimal], seed: int, *, first_id: int = 1) -> list[Print]:
    """One exchange's prints of the shared path, each with its own small noise (±0.1%)."""
    rng = random.Random(seed)
    prints = []
    for step, price in enumerate(path):
        noisy = price * (1 + Decimal(str(round(rng.gauss(0, 0.0005), 6))))
        prints.append(Print(first_id + step, T0_NS + step * STEP_NS, noisy.quantize(1),
                            Decimal("0.01") * rng.randint(1, 50), rng.choice(("buy", "sell"))))
    return prints


def crash_factor(ts_ns: int) -> Decimal:
    """How far below the world a crashed market prints at ``ts_ns`` (1 = not at all)."""
    since = ts_ns - CRASH_AT_NS
    if since < 0 or since > CRASH_FALL_NS + CRASH_HOLD_NS + CRASH_FALL_NS:
        return Decimal(1)
    if since < CRASH_FALL_NS:
        return 1 - CRASH_DEPTH * since / CRASH_FALL_NS
    if since <= CRASH_FALL_NS + CRASH_HOLD_NS:
        return 1 - CRASH_DEPTH
    back = since - CRASH_FALL_NS - CRASH_HOLD_NS
    return 1 - CRASH_DEPTH * (CRASH_FALL_NS - back) / CRASH_FALL_NS
