"""Units of time and fractions, as integers: time is integer nanoseconds, fractions are
basis points (ADR 0002: no floats where a value is counted or compared)."""

from __future__ import annotations

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
BPS = 10_000
"""Basis points in a whole."""
