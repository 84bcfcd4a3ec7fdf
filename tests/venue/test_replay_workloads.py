"""Recovery's batch replay reaches apply's state on the harder benchmark flows.

``Venue.replay_batch`` hands every order that may cross to the same matching code
``Venue.apply`` runs (``emit`` off); these flows are mostly such orders: sweeps through
several levels, a drifting mid, a third of the commands cancels, with and without a circuit
breaker, in batches of any size.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_replay import BatchReplayer

from haltguard.venue.engine import Venue
from haltguard.venue.markets import BreakerConfig
from haltguard.venue.workload import STRESS_PROFILES, setup_commands, stress_flow

MS = 1_000_000
ACCOUNTS = 20  # few accounts: more self-trades, and some run short of funds in long flows


def tight_breaker() -> BreakerConfig:
    """A rolling 0.05% band (50 ticks at the mid) with short timers: a drifting mid trips
    it, the market pauses in an auction and reopens within the flow."""
    return BreakerConfig(band_bps=[5, 10], pause_ns=20 * MS, window_ns=200 * MS)


def applied_and_replayed(
    profile: str, seed: int, count: int, breaker: bool, batch: int
) -> tuple[Venue, Venue, set[str]]:
    setup = setup_commands(ACCOUNTS, breaker=tight_breaker() if breaker else None)
    flow = list(stress_flow(seed, count, STRESS_PROFILES[profile], first_seq=len(setup) + 1,
                            accounts=ACCOUNTS))
    applied, replayer = Venue(), BatchReplayer(Venue())
    kinds: set[str] = set()
    for seq, command in enumerate([*setup, *flow], 1):
        ts = seq * MS
        events = applied.apply(seq, ts, command)
        kinds.update(type(event).__name__ for event in events)
        replayer(seq, ts, command)
        if seq % batch == 0:
            replayer.flush()
    replayer.flush()
    return applied, replayer.venue, kinds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    profile=st.sampled_from(sorted(STRESS_PROFILES)),
    seed=st.integers(0, 10_000),
    count=st.integers(50, 1_500),
    breaker=st.booleans(),
    batch=st.sampled_from([1, 7, 100, 4_096]),
)
def test_batch_replay_of_the_harder_flows_reaches_the_state_hash_apply_reaches(
    profile: str, seed: int, count: int, breaker: bool, batch: int
) -> None:
    applied, replayed, _ = applied_and_replayed(profile, seed, count, breaker, batch)
    assert replayed.state_hash() == applied.state_hash()
    assert replayed.check_invariants() == []


def test_the_harder_flows_trip_the_breaker_and_still_replay_the_same() -> None:
    drifting: set[str] = set()
    for profile in STRESS_PROFILES:
        applied, replayed, kinds = applied_and_replayed(profile, 3, 3_000, True, 500)
        assert replayed.state_hash() == applied.state_hash(), profile
        assert {"Trade", "OrderCancelled", "OrderRejected"} <= kinds, profile
        if STRESS_PROFILES[profile].drift_every:
            drifting |= kinds
    assert {"CircuitBreakerTripped", "AuctionUncrossed"} <= drifting
