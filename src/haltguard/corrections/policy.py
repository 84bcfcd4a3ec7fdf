"""The published erroneous-trade policy: rules as data, in one YAML file.

The rules, stated once (``review.py`` and ``flows.py`` follow them):

- A trade is **erroneous** when its price is more than the market's band (``band_bps``, the
  market's own or ``band_bps_default``) away from the reference price: the market's
  volume-weighted average price over ``reference_lookback_minutes`` before the reviewed
  window, or an imported reference series where one is given.
- A trade may be busted or re-priced only within ``correct_within_minutes`` after it was
  executed; after that it **stands**. A rollback is not limited by the window (it is the
  decision to undo everything since a point), but needs the same two people.
- ``may_propose`` and ``may_approve`` name the operator roles that may propose and approve a
  correction; the approver is always another person than the proposer.
- ``allow_debit``: whether a correction may leave an account owing (the reversal takes more
  than it has available; the shortfall is recorded as owed). Otherwise such a correction is
  refused and nothing changes.

Loading is strict: an unknown or missing field, a wrong type, a duplicate key, a band outside
1..10000 bps or an unknown role refuse the whole file, listing every problem.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml

from haltguard.common.units import BPS
from haltguard.corrections.errors import PolicyError
from haltguard.security.permissions import Role
from haltguard.venue.markets import is_market_symbol

POLICY_FILE_BYTES_MAX: Final = 64 * 1024
TEXT_CHARS_MAX: Final = 4_000
CORRECT_WITHIN_MINUTES_MAX: Final = 7 * 24 * 60
LOOKBACK_MINUTES_MAX: Final = 24 * 60


class Bilingual(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    en: str
    ja: str


class MarketRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    band_bps: int


class CorrectionPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    version: int
    text: Bilingual
    correct_within_minutes: int
    reference_lookback_minutes: int
    band_bps_default: int
    may_propose: list[str]
    may_approve: list[str]
    markets: dict[str, MarketRule] = msgspec.field(default_factory=dict)
    allow_debit: bool = False

    def band_bps(self, market: str) -> int:
        rule = self.markets.get(market)
        return self.band_bps_default if rule is None else rule.band_bps

    @property
    def name(self) -> str:
        """How corrections cite the policy: ``id v<version>``."""
        return f"{self.id} v{self.version}"


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_policy(path: Path) -> tuple[CorrectionPolicy, str]:
    """The policy in ``path`` and the sha256 of its bytes (recorded with each correction),
    or :class:`PolicyError` listing every problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _error([f"{path}: cannot be read ({exc.strerror})"]) from None
    if len(data) > POLICY_FILE_BYTES_MAX:
        raise _error([f"{path}: {len(data)} bytes, more than {POLICY_FILE_BYTES_MAX}"])
    return parse_policy(data.decode("utf-8", errors="replace"), str(path)), hashlib.sha256(
        data
    ).hexdigest()


def parse_policy(text: str, where: str = "policy") -> CorrectionPolicy:
    """The policy in ``text`` or :class:`PolicyError` (see the module for the rules)."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader that refuses duplicate keys
    except yaml.YAMLError as exc:
        raise _error([f"{where}: not valid YAML ({exc})"]) from None
    try:
        policy = msgspec.convert(raw, CorrectionPolicy, strict=True)
    except msgspec.ValidationError as exc:
        raise _error([f"{where}: {exc}"]) from None
    problems = _problems(policy, where)
    if problems:
        raise _error(problems)
    return policy


def _problems(policy: CorrectionPolicy, where: str) -> list[str]:
    problems: list[str] = []
    if not policy.id or len(policy.id) > 64:
        problems.append(f"{where}: id must be 1 to 64 characters")
    if policy.version < 1:
        problems.append(f"{where}: version must be 1 or more, not {policy.version}")
    for language, text in (("en", policy.text.en), ("ja", policy.text.ja)):
        if not text.strip() or len(text) > TEXT_CHARS_MAX:
            problems.append(f"{where}: text.{language} must be 1 to {TEXT_CHARS_MAX} characters")
    if not 1 <= policy.correct_within_minutes <= CORRECT_WITHIN_MINUTES_MAX:
        problems.append(f"{where}: correct_within_minutes must be 1..{CORRECT_WITHIN_MINUTES_MAX}")
    if not 1 <= policy.reference_lookback_minutes <= LOOKBACK_MINUTES_MAX:
        problems.append(f"{where}: reference_lookback_minutes must be 1..{LOOKBACK_MINUTES_MAX}")
    bands = [("band_bps_default", policy.band_bps_default)] + [
        (f"markets.{market}.band_bps", rule.band_bps) for market, rule in policy.markets.items()
    ]
    problems += [f"{where}: {name} must be 1..{BPS}, not {value}"
                 for name, value in bands if not 1 <= value <= BPS]
    problems += [f"{where}: markets.{market} is not a market symbol such as BTC-JPY"
                 for market in policy.markets if not is_market_symbol(market)]
    roles = {role.value for role in Role}
    for field in ("may_propose", "may_approve"):
        chosen = getattr(policy, field)
        if not chosen:
            problems.append(f"{where}: {field} must name at least one role")
        problems += [f"{where}: {field} names {name!r}, not one of {', '.join(sorted(roles))}"
                     for name in chosen if name not in roles]
    return problems


def _error(problems: list[str]) -> PolicyError:
    return PolicyError(
        "the erroneous-trade policy cannot be used:\n" + "\n".join(problems),
        message_ja="取引訂正ポリシーに誤りがあるため使用できません:\n" + "\n".join(problems),
        next_step="correct the policy file (corrections.policy_file) and try again",
        details={"problems": problems},
    )
