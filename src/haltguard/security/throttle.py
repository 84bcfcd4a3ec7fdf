"""Login throttling: guessing gets slow, and nobody can lock the right operator out.

The rules, in the order a login meets them (``flows.login`` applies them):

1. **Known network.** An address the account logged in from successfully within
   ``known_address_days`` (IPv4 exactly, IPv6 by its /64) is *known* for that account. An
   attempt from a known address is held back by nothing below except its own pair wait
   (3): its password and TOTP code are checked, and right ones log in, whatever an attacker
   elsewhere did to the account or to the login route.
2. **Blocks.** A detection rule (``block_login``, e.g. on credential stuffing) or an
   operator can block a source address from the login route for a while. Only the login
   route: customers' trading (``/v1``) is never touched by what happens at the operators'
   door.
3. **Backoff per source, per account, per pair.** Consecutive failures past a bound make
   the next attempt wait, doubling with each further failure up to ``lockout_minutes``
   (``lockout.BackoffRule``): per source address (``source_failures_max``), per claimed
   username (``lockout_failures_max``; an existing account keeps its count in its row, a
   username nobody has keeps it here, under the same rule, so both answer alike), and per
   (known address, account) pair, so even a guesser sharing the owner's address gets only
   backoff-paced guesses.
4. **Overall rate.** At most ``login_attempts_per_s`` logins a second (burst
   ``login_attempts_burst``) get their password checked; argon2id is what an attacker
   would otherwise spend our CPU on. Known addresses are not counted against it.

An attempt held back is answered ``429 login_throttled`` with ``Retry-After``, before its
credentials are checked, with the same words for an existing and an unknown username.

State lives in this process's memory (a restart forgets source and pair waits, which only
helps the owner); ``keys_max`` bounds it, forgetting the least recently touched key first.
Time comes in as ``now``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from haltguard.common.network import written_address
from haltguard.security import lockout
from haltguard.security.config import SecuritySettings

KEYS_MAX = 100_000
BLOCKS_MAX = 10_000
BLOCK_S_MAX = 30 * 86_400
REASON_LENGTH_MAX = 500
_US_PER_S = 1_000_000

ADDRESS_PREFIX = "address:"
ACCOUNT_PREFIX = "account:"
PAIR_PREFIX = "pair:"


def address_key(address: str) -> str:
    return ADDRESS_PREFIX + (address or "unknown")


def account_key(username: str) -> str:
    return ACCOUNT_PREFIX + username


def pair_key(address: str, username: str) -> str:
    return f"{PAIR_PREFIX}{address or 'unknown'}/{username}"


@dataclass
class _Hold:
    state: lockout.LockoutState
    last_failure_at: datetime
    refused: int = 0


@dataclass(frozen=True)
class LoginBlock:
    """A source address kept away from the login route until ``until``."""

    address: str
    until: datetime
    reason: str
    actor: str
    created_at: datetime


@dataclass(frozen=True)
class LoginHold:
    """One entry of :meth:`LoginThrottle.holds`: what is held back, until when, and why."""

    key: str
    kind: str  # "block", "address", "account" or "pair"
    until: datetime | None
    failures: int
    refused: int
    reason: str


@dataclass(frozen=True)
class Verdict:
    """``wait_s`` 0: go on and check the credentials; otherwise refuse, saying ``why``.

    ``first_refusal``: the hold (``key``) had refused nothing yet, so this is worth an
    audit entry; later refusals of the same hold are only counted.
    """

    wait_s: int
    why: str = ""
    key: str = ""
    first_refusal: bool = False


ADMITTED = Verdict(0)
_WHY = {
    "block": "this address is blocked from logging in",
    "address": "too many failed logins from this address",
    "account": "too many failed logins for this username",
    "pair": "too many failed logins for this username from this address",
}


def _wait_s(until: datetime, now: datetime) -> int:
    remaining = until - now
    seconds = remaining // timedelta(seconds=1)
    return max(1, seconds + (1 if remaining % timedelta(seconds=1) else 0))


class LoginThrottle:
    """The in-memory half of login throttling for one process; thread-safe."""

    def __init__(self, settings: SecuritySettings, *, keys_max: int = KEYS_MAX) -> None:
        if keys_max < 1:
            raise ValueError(f"keys_max must be at least 1, got {keys_max}")
        self.settings = settings
        self.keys_max = keys_max
        self.account_rule = lockout.account_rule(settings)
        self.source_rule = lockout.source_rule(settings)
        self._holds: OrderedDict[str, _Hold] = OrderedDict()
        self._blocks: dict[str, LoginBlock] = {}
        self._refused: OrderedDict[str, tuple[datetime, int]] = OrderedDict()
        self._rate_tat_us = 0  # the overall rate's theoretical arrival time (GCRA)
        self._lock = threading.Lock()

    # -- the checks -------------------------------------------------------------------------

    def check(
        self,
        *,
        address: str,
        username: str,
        known: bool,
        account_locked_until: datetime | None,
        now: datetime,
    ) -> Verdict:
        """Whether an attempt may have its credentials checked now.

        ``account_locked_until``: the account's own wait, from its row (an existing
        account); None for a username nobody has, whose wait is kept here.
        """
        with self._lock:
            if known:
                return self._held(pair_key(address, username), now, "pair")
            block = self._blocks.get(address_key(address))
            if block is not None and now < block.until:
                return self._refuse(address_key(address), block.until, now, "block")
            for key, kind in ((address_key(address), "address"),
                              (account_key(username), "account")):
                verdict = self._held(key, now, kind)
                if verdict.wait_s:
                    return verdict
            if account_locked_until is not None and now < account_locked_until:
                return self._refuse(account_key(username), account_locked_until, now, "account")
            return self._take_rate(now)

    def _held(self, key: str, now: datetime, kind: str) -> Verdict:
        hold = self._holds.get(key)
        if hold is None or not lockout.is_locked(hold.state, now):
            return ADMITTED
        assert hold.state.locked_until is not None
        return self._refuse(key, hold.state.locked_until, now, kind)

    def _refuse(self, key: str, until: datetime, now: datetime, kind: str) -> Verdict:
        hold = None if kind == "block" else self._holds.get(key)
        if hold is not None and hold.state.locked_until == until:
            first = hold.refused == 0
            hold.refused += 1
        else:
            seen_key = f"{kind}|{key}"
            seen_until, count = self._refused.get(seen_key, (until, 0))
            if seen_until != until:
                count = 0
            first = count == 0
            self._refused[seen_key] = (until, count + 1)
            self._refused.move_to_end(seen_key)
            if len(self._refused) > self.keys_max:
                self._refused.popitem(last=False)
        return Verdict(_wait_s(until, now), _WHY[kind], key, first)

    def _take_rate(self, now: datetime) -> Verdict:
        settings = self.settings
        now_us = int(now.timestamp() * _US_PER_S)
        interval_us = _US_PER_S // settings.login_attempts_per_s
        tat_us = max(self._rate_tat_us, now_us)
        if tat_us - now_us >= interval_us * settings.login_attempts_burst:
            wait_us = tat_us - now_us - interval_us * (settings.login_attempts_burst - 1)
            return Verdict(
                max(1, -(-wait_us // _US_PER_S)),
                f"more than {settings.login_attempts_per_s} logins a second are being tried",
                "rate",
                False,
            )
        self._rate_tat_us = tat_us + interval_us
        return ADMITTED

    # -- what happened ----------------------------------------------------------------------

    def failed(self, *, address: str, username: str, known: bool, track_account: bool,
               now: datetime) -> list[tuple[str, datetime]]:
        """Count a failed attempt; returns the holds it started, as ``(key, until)``.

        ``track_account``: count the username here (nobody has it; an existing account
        counts in its row instead).
        """
        keys = [(pair_key(address, username), self.account_rule)] if known else [
            (address_key(address), self.source_rule)]
        if track_account:
            keys.append((account_key(username), self.account_rule))
        started = []
        with self._lock:
            for key, rule in keys:
                until = self._count_failure(key, rule, now)
                if until is not None:
                    started.append((key, until))
        return started

    def _count_failure(self, key: str, rule: lockout.BackoffRule,
                       now: datetime) -> datetime | None:
        hold = self._holds.get(key)
        if hold is None:
            hold = self._holds[key] = _Hold(lockout.after_success(), now)
            if len(self._holds) > self.keys_max:
                self._holds.popitem(last=False)
        elif hold.state.locked_until is None and now - hold.last_failure_at >= rule.forget_after:
            hold.state = lockout.after_success()
        self._holds.move_to_end(key)
        hold.state = lockout.after_failure(hold.state, now, rule)
        hold.last_failure_at = now
        hold.refused = 0
        return hold.state.locked_until

    def succeeded(self, *, address: str, username: str) -> None:
        """The owner got in: their username's and pair's counts start afresh. The source's
        count does not: an insider's own login must not wipe a guesser's record."""
        with self._lock:
            self._holds.pop(account_key(username), None)
            self._holds.pop(pair_key(address, username), None)

    def account_locked_until(self, username: str, now: datetime) -> datetime | None:
        """The wait of a username nobody has (kept here), or None."""
        with self._lock:
            hold = self._holds.get(account_key(username))
        if hold is None or not lockout.is_locked(hold.state, now):
            return None
        return hold.state.locked_until

    # -- blocks and what operators see --------------------------------------------------------

    def block(self, address: str, duration_s: int, *, reason: str, actor: str,
              now: datetime) -> LoginBlock:
        """Keep ``address`` away from the login route for ``duration_s`` (a longer block
        already in force stays); known addresses of an account still get in with it."""
        if not 1 <= duration_s <= BLOCK_S_MAX:
            raise ValueError(f"a login block lasts 1 s to 30 days, not {duration_s} s")
        address = normalise_address(address)
        until = now + timedelta(seconds=duration_s)
        with self._lock:
            self._drop_expired_blocks(now)
            key = address_key(address)
            current = self._blocks.get(key)
            if current is not None and current.until >= until:
                return current
            if current is None and len(self._blocks) >= BLOCKS_MAX:
                raise ValueError(
                    f"{BLOCKS_MAX} login blocks are in force already; lift some first "
                    "(haltguard operator login-blocks)"
                )
            block = LoginBlock(address, until, reason[:REASON_LENGTH_MAX], actor, now)
            self._blocks[key] = block
            return block

    def lift(self, key: str) -> list[LoginHold]:
        """End every hold under ``key`` now (``address:<ip>`` also ends the address's
        pairs; ``account:<name>`` also its pairs); returns what was lifted."""
        lifted = []
        with self._lock:
            block = self._blocks.pop(key, None)
            if block is not None:
                lifted.append(LoginHold(key, "block", block.until, 0, 0, block.reason))
            for held_key in list(self._holds):
                if held_key == key or _pair_belongs(held_key, key):
                    hold = self._holds.pop(held_key)
                    lifted.append(LoginHold(held_key, _kind(held_key), hold.state.locked_until,
                                            hold.state.failures, hold.refused, ""))
        return lifted

    def holds(self, now: datetime) -> list[LoginHold]:
        """Every block and wait in force now, the longest first."""
        found = []
        with self._lock:
            self._drop_expired_blocks(now)
            for key, block in self._blocks.items():
                found.append(LoginHold(key, "block", block.until, 0, 0,
                                       f"{block.reason} (by {block.actor})"))
            for key, hold in self._holds.items():
                if lockout.is_locked(hold.state, now):
                    found.append(LoginHold(key, _kind(key), hold.state.locked_until,
                                           hold.state.failures, hold.refused, ""))
        return sorted(found, key=lambda hold: (hold.until or now, hold.key), reverse=True)

    def _drop_expired_blocks(self, now: datetime) -> None:
        for key in [key for key, block in self._blocks.items() if block.until <= now]:
            del self._blocks[key]


def normalise_address(address: str) -> str:
    """An IP address in its one written form, or a ValueError saying what to write."""
    written = written_address(address.strip().removeprefix(ADDRESS_PREFIX))
    if written is None:
        raise ValueError(
            f"{address!r} is not an IP address; write one such as 203.0.113.7 or 2001:db8::7"
        )
    return written


def _kind(key: str) -> str:
    return key.split(":", 1)[0]


def _pair_belongs(held_key: str, key: str) -> bool:
    if not held_key.startswith(PAIR_PREFIX):
        return False
    address, _, username = held_key.removeprefix(PAIR_PREFIX).rpartition("/")
    return key in (address_key(address), account_key(username))
