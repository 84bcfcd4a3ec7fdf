"""What the policy engine decides: the small named types that leave it.

A :class:`Decision` is one rule firing (or resolving) on one signal, with the actions it
plans. The action executor performs them; the load and security layers enforce the client
actions (rate limit, block) they subscribe to. Everything a person needs to understand why
is in the decision itself: the rule, the observed value, the threshold, the signal's labels.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from haltguard.detection.signals import Signal
from haltguard.incidents.rules import Category, Severity

# The chapter 1 taxonomy and the severities are the incidents' own: one source of truth.
Classification = Category


class ActionKind(StrEnum):
    """Every action a rule may take. Each one only makes things safer: nothing here resumes
    a market, unfreezes withdrawals or unblocks a client; those are a person's decisions."""

    OPEN_OR_UPDATE_INCIDENT = "open_or_update_incident"
    PAGE = "page"
    HALT_MARKET = "halt_market"
    PAUSE_MARKET = "pause_market"  # an auction of ``auction_s`` seconds, then the venue reopens
    CANCEL_ONLY = "cancel_only"
    FREEZE_WITHDRAWALS = "freeze_withdrawals"
    FREEZE_ACCOUNT_WITHDRAWALS = "freeze_account_withdrawals"  # one account, every asset
    RATE_LIMIT_CLIENT = "rate_limit_client"  # enforced by the gateway's load/security layer
    BLOCK_CLIENT = "block_client"  # enforced by the gateway's load/security layer
    BLOCK_LOGIN = "block_login"  # enforced by the operations service's login throttle


# Actions that change what the venue admits, performed first and fastest.
VENUE_ACTIONS = frozenset({
    ActionKind.HALT_MARKET, ActionKind.PAUSE_MARKET, ActionKind.CANCEL_ONLY,
    ActionKind.FREEZE_WITHDRAWALS, ActionKind.FREEZE_ACCOUNT_WITHDRAWALS,
})
# Actions the detection service hands to an enforcer another layer registers.
CLIENT_ACTIONS = frozenset({ActionKind.RATE_LIMIT_CLIENT, ActionKind.BLOCK_CLIENT,
                            ActionKind.BLOCK_LOGIN})


class PlannedAction(msgspec.Struct, frozen=True):
    """One action with its target rendered from the signal's labels.

    ``target`` is a market for market actions, an asset for ``freeze_withdrawals``, a client
    (API key, account or address) for client actions and ``""`` for incident and page.
    ``params`` are the action's settings as strings (``auction_s``, ``limit_per_s``,
    ``duration_s`` ...), so they read exactly as written in the rules file.
    """

    kind: ActionKind
    target: str = ""
    params: dict[str, str] = {}


class DecisionKind(StrEnum):
    FIRED = "fired"  # the rule's condition holds: its actions are planned
    RESOLVED = "resolved"  # the condition cleared (hysteresis passed): nothing is undone


class Decision(msgspec.Struct, frozen=True):
    """A rule's verdict on a signal, and everything needed to explain it later.

    ``key`` identifies the rule's episode (rule id + the labels it groups by): every decision
    of one flapping episode shares it, so they land in one incident. ``dry_run`` decisions
    are recorded and never executed.
    """

    key: str
    kind: DecisionKind
    rule_id: str
    ruleset_version: str
    classification: Classification
    severity: Severity
    title: str
    signal: Signal
    observed: str  # the value compared, exactly as compared
    condition: str  # e.g. "> 500" or ">= 3 times within 60 s"
    actions: list[PlannedAction]
    dry_run: bool
    ts_ns: int

    def explanation(self) -> str:
        """One sentence for the timeline: which rule, what was seen, against what."""
        labels = ", ".join(f"{name}={value}" for name, value in sorted(self.signal.labels.items()))
        verb = "fired" if self.kind is DecisionKind.FIRED else "resolved"
        return (
            f"rule {self.rule_id} {verb}: {self.signal.name} = {self.observed} "
            f"(condition {self.condition})" + (f" for {labels}" if labels else "")
        )


class ActionOutcome(msgspec.Struct, frozen=True):
    """What one planned action did: ``ok`` False when it was refused or failed, and
    ``detail`` says what happened in words (the venue's events, or the refusal)."""

    kind: ActionKind
    target: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind.value, "target": self.target, "ok": self.ok,
                "detail": self.detail}
