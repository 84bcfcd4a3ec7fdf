"""The divergence detector alone: the median of fresh references, the hold that a single
odd print does not fill, and silence when too few markets are heard from."""

from __future__ import annotations

from decimal import Decimal

from haltguard.detection.divergence import DIVERGENCE, DivergenceDetector

S = 1_000_000_000


def test_divergence_is_measured_from_the_median_of_the_references() -> None:
    detector = DivergenceDetector("BTC-JPY", hold_s=10, references_min=3)
    for name, price in (("a", "100"), ("b", "102"), ("c", "400")):
        detector.on_reference(name, Decimal(price), 0)
    signal = detector.on_ours(Decimal("97.92"), 0)
    assert signal is not None and signal.name == DIVERGENCE
    assert signal.details["reference_median"] == "102"
    assert signal.details["divergence_now_bps"] == "400"
    assert signal.value == 0, "nothing is sustained before the hold time has passed"


def test_a_divergence_held_for_the_hold_time_is_sustained_and_a_blip_is_not() -> None:
    detector = DivergenceDetector("BTC-JPY", hold_s=10, references_min=2)
    values = []
    for second in range(0, 31):
        detector.on_reference("a", Decimal(100), second * S)
        detector.on_reference("b", Decimal(100), second * S)
        price = Decimal(90) if 5 <= second <= 20 else Decimal(100)
        if second == 25:
            price = Decimal(50)  # one odd print
        signal = detector.on_ours(price, second * S)
        assert signal is not None
        values.append(int(signal.value))
    assert values[4] == 0 and values[15] == 1000 and values[20] == 1000
    assert values[25] == 0 and values[30] == 0


def test_too_few_fresh_references_measure_nothing() -> None:
    detector = DivergenceDetector("BTC-JPY", hold_s=10, stale_s=5, references_min=2)
    detector.on_reference("a", Decimal(100), 0)
    detector.on_reference("b", Decimal(100), 0)
    assert detector.on_ours(Decimal(100), 1 * S) is not None
    detector.on_reference("a", Decimal(100), 10 * S)
    assert detector.on_ours(Decimal(50), 10 * S) is None, "b is stale: one market is not the world"
