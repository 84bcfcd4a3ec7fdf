"""Compensation policies are data: YAML files, versioned and reviewed like code, each with a
description in Japanese and English that is published with the outcome.

The rules, stated once (``compute.py`` follows them):

- A policy pays one ``currency``, in whole minor units. Its exact amount for an account is
  rounded by its ``rounding`` rule (default ``down``: never a fraction more than owed), then
  held within its ``account_min_minor`` (only for an account it owes something) and
  ``account_max_minor``.
- Kinds: ``asset_loss`` (an asset's holding at the run's cut-off x a named reference price),
  ``refused_orders`` (actual losses of refused orders in the named markets, written as the
  venue names them, ``BTC-JPY``: the price moved against the customer from the market's
  last trade at or before the refusal to its first trade after it reopened; a move in their
  favour pays nothing, there is no unrealised profit), ``fee_refund`` (the fees paid in
  ``currency`` by trades in the run's window, times ``refund_bps``) and ``fixed_amount`` (a
  sum per affected account).
- Policies combine: one account's parts are summed per currency; an ``account_caps`` file
  then holds that sum within its minimum (an account owed anything gets at least it) and
  maximum. At most one ``account_caps`` per currency.

A file holds one policy (a mapping with ``kind``). Files are refused as a whole: every
problem is listed with its file and line, and no policy of a bad set is returned.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Final

import msgspec
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from haltguard.common.units import BPS
from haltguard.compensation.errors import PolicyFileError, Problem

POLICY_FILE_BYTES_MAX = 64 * 1024
POLICIES_PER_SET_MAX = 64
DESCRIPTION_CHARS_MAX = 4_000
MARKETS_PER_POLICY_MAX = 256
AMOUNT_MINOR_MAX = 10**30
"""Far above any real payment; keeps a typo of many digits from passing as a cap."""

EXAMPLES_DIR: Final = Path(__file__).with_name("policies")
"""The example policies shipped with haltguard (the 2018 shape, a fee refund, goodwill)."""

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ASSET = re.compile(r"^[A-Z0-9]{1,16}$")
_MARKET = re.compile(r"^[A-Z0-9]{1,16}-[A-Z0-9]{1,16}$")
"""A market as the venue names it: BASE-QUOTE (``XEM-JPY``)."""
_WHOLE = re.compile(r"^[0-9]+$")


class Rounding(StrEnum):
    """How an exact amount becomes whole minor units."""

    DOWN = "down"
    """Toward zero: never a fraction more than owed (the default)."""
    HALF_EVEN = "half_even"
    """To the nearest; a half to the even neighbour."""
    UP = "up"
    """Away from zero: never a fraction less than owed."""


def round_ratio(numerator: int, denominator: int, rounding: Rounding) -> int:
    """``numerator / denominator`` (both >= 0, denominator > 0) as a whole number, exactly."""
    quotient, remainder = divmod(numerator, denominator)
    if remainder == 0 or rounding is Rounding.DOWN:
        return quotient
    if rounding is Rounding.UP:
        return quotient + 1
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        return quotient + 1
    return quotient


def hold_within(amount_minor: int, minimum_minor: int, maximum_minor: int | None) -> int:
    """An amount held within caps. Nothing owed stays nothing: the minimum lifts only an
    account that is owed something, so a cap never creates a payment."""
    if amount_minor <= 0:
        return 0
    amount_minor = max(amount_minor, minimum_minor)
    return amount_minor if maximum_minor is None else min(amount_minor, maximum_minor)


class Text(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A text people read, in both languages."""

    ja: str
    en: str


class _Policy(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    id: str
    version: int
    description: Text
    currency: str
    rounding: Rounding = Rounding.DOWN
    account_min_minor: int = 0
    account_max_minor: int | None = None
    source_sha256: str = ""
    """The sha256 of the file the policy was read from: a run names exactly what it applied."""

    def hold_within_caps(self, amount_minor: int) -> int:
        """The policy's own minimum and maximum applied to its rounded amount."""
        return hold_within(amount_minor, self.account_min_minor, self.account_max_minor)


class AssetLoss(_Policy, frozen=True, kw_only=True, tag="asset_loss"):
    """Holders of ``asset`` at the cut-off get ``holding x reference price`` in ``currency``."""

    asset: str
    reference: str
    """The name of the reference price in the run's inputs (e.g. a VWAP of another venue)."""


class RefusedOrders(_Policy, frozen=True, kw_only=True, tag="refused_orders"):
    """Actual losses of orders refused in ``markets`` (their quote currency is ``currency``)."""

    markets: tuple[str, ...]


class FeeRefund(_Policy, frozen=True, kw_only=True, tag="fee_refund"):
    """Fees paid in ``currency`` by trades in the run's window, ``refund_bps`` of them."""

    refund_bps: int = BPS


class FixedAmount(_Policy, frozen=True, kw_only=True, tag="fixed_amount"):
    """A fixed sum per affected account (goodwill)."""

    amount_minor: int


Policy = AssetLoss | RefusedOrders | FeeRefund | FixedAmount


class AccountCaps(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind",
                  tag="account_caps"):
    """Holds one account's summed payment in ``currency`` within a minimum and a maximum."""

    id: str
    version: int
    description: Text
    currency: str
    account_min_minor: int = 0
    account_max_minor: int | None = None
    source_sha256: str = ""

    def hold_within_caps(self, amount_minor: int) -> int:
        """The caps applied to one account's summed amount in ``currency``."""
        return hold_within(amount_minor, self.account_min_minor, self.account_max_minor)


class PolicySet(msgspec.Struct, frozen=True):
    """The policies a run applies, and the caps on each account's sum per currency."""

    policies: tuple[Policy, ...]
    caps: tuple[AccountCaps, ...] = ()

    def caps_for(self, currency: str) -> AccountCaps | None:
        return next((cap for cap in self.caps if cap.currency == currency), None)


# --- the schema: which keys each kind takes ----------------------------------------------------

_COMMON_REQUIRED = frozenset({"id", "version", "kind", "description", "currency"})
_COMMON_OPTIONAL = frozenset({"account_min_minor", "account_max_minor"})
_KIND_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "asset_loss": (frozenset({"asset", "reference"}), frozenset({"rounding"})),
    "refused_orders": (frozenset({"markets"}), frozenset({"rounding"})),
    "fee_refund": (frozenset(), frozenset({"rounding", "refund_bps"})),
    "fixed_amount": (frozenset({"amount_minor"}), frozenset()),
    "account_caps": (frozenset(), frozenset()),
}
KINDS: Final = tuple(_KIND_KEYS)


class _Checker:
    """Walks a file's YAML nodes (which keep line numbers) and collects every problem."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def fail(self, node: Node | None, en: str, ja: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(Problem(f"{self.source}:{line}", en, ja))

    def mapping(self, node: Node, where: str, required: frozenset[str],
                optional: frozenset[str]) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            self.fail(node, f"{where} must be a mapping of keys to values",
                      f"{where} はキーと値の対応（マッピング）でなければなりません")
            return {}
        fields: dict[str, Node] = {}
        allowed = required | optional
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.fail(key_node, f"{where} has a key that is not text",
                          f"{where} にテキストでないキーがあります")
            elif key in fields:
                self.fail(key_node, f"{where} repeats the field '{key}'",
                          f"{where} でフィールド '{key}' が重複しています")
            elif key not in allowed:
                names = ", ".join(sorted(allowed))
                self.fail(key_node, f"{where} has an unknown field '{key}'; allowed: {names}",
                          f"{where} に不明なフィールド '{key}' があります。使用できるもの: {names}")
            else:
                fields[key] = value_node
        for key in sorted(required - fields.keys()):
            self.fail(node, f"{where} is missing the required field '{key}'",
                      f"{where} に必須フィールド '{key}' がありません")
        return fields

    def text(self, node: Node | None, where: str, chars_max: int = 200) -> str:
        if node is None:
            return ""
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.fail(node, f"'{where}' must be text", f"'{where}' はテキストでなければなりません")
            return ""
        value = str(node.value).strip()
        if not value:
            self.fail(node, f"'{where}' must not be empty", f"'{where}' を空にはできません")
        elif len(value) > chars_max:
            self.fail(node, f"'{where}' is longer than {chars_max} characters",
                      f"'{where}' が{chars_max}文字を超えています")
        return value

    def pattern(self, node: Node | None, where: str, pattern: re.Pattern[str], hint: str,
                hint_ja: str) -> str:
        value = self.text(node, where)
        if value and not pattern.fullmatch(value):
            self.fail(node, f"'{where}' is '{value}'; {hint}",
                      f"'{where}' が '{value}' です。{hint_ja}")
        return value

    def whole(self, node: Node | None, where: str, low: int, high: int, default: int) -> int:
        if node is None:
            return default
        text = node.value if isinstance(node, ScalarNode) else None
        if node.tag != "tag:yaml.org,2002:int" or not isinstance(text, str) \
                or not _WHOLE.fullmatch(text):
            self.fail(node, f"'{where}' must be a whole number written in digits only",
                      f"'{where}' は数字だけで書いた整数でなければなりません")
            return default
        value = int(text)
        if not low <= value <= high:
            self.fail(node, f"'{where}' is {value}; it must be between {low} and {high}",
                      f"'{where}' が {value} です。{low}以上{high}以下にしてください")
            return default
        return value


def _description(checker: _Checker, node: Node | None) -> Text:
    if node is None:
        return Text(ja="", en="")
    fields = checker.mapping(node, "description", frozenset({"ja", "en"}), frozenset())
    return Text(ja=checker.text(fields.get("ja"), "description.ja", DESCRIPTION_CHARS_MAX),
                en=checker.text(fields.get("en"), "description.en", DESCRIPTION_CHARS_MAX))


def _markets(checker: _Checker, node: Node | None, currency: str) -> tuple[str, ...]:
    if not isinstance(node, SequenceNode) or not node.value:
        checker.fail(node, "'markets' must be a non-empty list of markets such as XEM-JPY",
                     "'markets' は XEM-JPY のような市場の空でないリストでなければなりません")
        return ()
    if len(node.value) > MARKETS_PER_POLICY_MAX:
        checker.fail(node, f"'markets' lists more than {MARKETS_PER_POLICY_MAX} markets",
                     f"'markets' の市場が{MARKETS_PER_POLICY_MAX}を超えています")
    markets: list[str] = []
    for item in node.value:
        market = checker.pattern(item, "markets[]", _MARKET,
                                 "write BASE-QUOTE as the venue names it, e.g. XEM-JPY",
                                 "取引所での表記 BASE-QUOTE（例 XEM-JPY）で書いてください")
        if market and currency and market.split("-")[1] != currency:
            checker.fail(item, f"market {market} is not quoted in the policy's currency "
                         f"{currency}; losses are paid in the quote currency",
                         f"市場 {market} の決済通貨がポリシーの通貨 {currency} と異なります"
                         "（損失は決済通貨で支払います）")
        if market in markets:
            checker.fail(item, f"market {market} is listed twice",
                         f"市場 {market} が二度書かれています")
        markets.append(market)
    return tuple(markets)


def _kind_of(checker: _Checker, root: Node) -> str:
    """The ``kind`` a mapping declares, so the right keys are allowed; "" if none or unknown."""
    if not isinstance(root, MappingNode):
        return ""
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "kind":
            kind = checker.text(value_node, "kind")
            if kind and kind not in _KIND_KEYS:
                names = ", ".join(KINDS)
                checker.fail(value_node, f"'kind' is '{kind}'; it must be one of {names}",
                             f"'kind' が '{kind}' です。{names} のいずれかにしてください")
                return ""
            return kind
    return ""


def _rounding(checker: _Checker, node: Node | None) -> Rounding:
    if node is None:
        return Rounding.DOWN
    name = checker.text(node, "rounding")
    if name in {r.value for r in Rounding}:
        return Rounding(name)
    if name:
        names = ", ".join(r.value for r in Rounding)
        checker.fail(node, f"'rounding' is '{name}'; it must be one of {names}",
                     f"'rounding' が '{name}' です。{names} のいずれかにしてください")
    return Rounding.DOWN


def _build(checker: _Checker, root: Node, sha256: str) -> Policy | AccountCaps | None:
    """The policy a file's root node describes; None when any problem was found."""
    kind = _kind_of(checker, root)
    extra_required, extra_optional = _KIND_KEYS.get(kind, (frozenset(), frozenset()))
    fields = checker.mapping(root, "the policy", _COMMON_REQUIRED | extra_required,
                             _COMMON_OPTIONAL | extra_optional)
    policy_id = checker.pattern(fields.get("id"), "id", _ID,
                                "use lower-case letters, digits, '-' and '_' (up to 64)",
                                "英小文字・数字・'-'・'_'（64文字まで）を使ってください")
    version = checker.whole(fields.get("version"), "version", 1, 1_000_000, 1)
    description = _description(checker, fields.get("description"))
    currency = checker.pattern(fields.get("currency"), "currency", _ASSET,
                               "write an asset code such as JPY or BTC",
                               "JPY や BTC のような資産コードで書いてください")
    minimum = checker.whole(fields.get("account_min_minor"), "account_min_minor", 0,
                            AMOUNT_MINOR_MAX, 0)
    maximum_node = fields.get("account_max_minor")
    maximum = (checker.whole(maximum_node, "account_max_minor", 1, AMOUNT_MINOR_MAX, 1)
               if maximum_node is not None else None)
    if maximum is not None and maximum < minimum:
        checker.fail(maximum_node, "'account_max_minor' is below 'account_min_minor'",
                     "'account_max_minor' が 'account_min_minor' より小さくなっています")
    rounding = _rounding(checker, fields.get("rounding"))
    if kind == "asset_loss":
        asset = checker.pattern(fields.get("asset"), "asset", _ASSET,
                                "write an asset code such as XEM",
                                "XEM のような資産コードで書いてください")
        reference = checker.pattern(fields.get("reference"), "reference", _ID,
                                    "name the reference price in lower-case letters, digits, "
                                    "'-' and '_'",
                                    "参照価格の名前を英小文字・数字・'-'・'_'で書いてください")
    elif kind == "refused_orders":
        markets = _markets(checker, fields.get("markets"), currency)
    elif kind == "fee_refund":
        refund_bps = checker.whole(fields.get("refund_bps"), "refund_bps", 1, BPS, BPS)
    elif kind == "fixed_amount":
        amount_minor = checker.whole(fields.get("amount_minor"), "amount_minor", 1,
                                     AMOUNT_MINOR_MAX, 1)
    if checker.problems or not kind:
        return None
    if kind == "account_caps":
        return AccountCaps(id=policy_id, version=version, description=description,
                           currency=currency, account_min_minor=minimum,
                           account_max_minor=maximum, source_sha256=sha256)
    if kind == "asset_loss":
        return AssetLoss(id=policy_id, version=version, description=description,
                         currency=currency, rounding=rounding, account_min_minor=minimum,
                         account_max_minor=maximum, source_sha256=sha256, asset=asset,
                         reference=reference)
    if kind == "refused_orders":
        return RefusedOrders(id=policy_id, version=version, description=description,
                             currency=currency, rounding=rounding, account_min_minor=minimum,
                             account_max_minor=maximum, source_sha256=sha256, markets=markets)
    if kind == "fee_refund":
        return FeeRefund(id=policy_id, version=version, description=description,
                         currency=currency, rounding=rounding, account_min_minor=minimum,
                         account_max_minor=maximum, source_sha256=sha256,
                         refund_bps=refund_bps)
    return FixedAmount(id=policy_id, version=version, description=description,
                       currency=currency, rounding=rounding, account_min_minor=minimum,
                       account_max_minor=maximum, source_sha256=sha256,
                       amount_minor=amount_minor)


def parse_policy(text: str, source: str) -> Policy | AccountCaps:
    """One policy from a file's text; ``source`` names it in problems. Raises
    :class:`PolicyFileError` with every problem found."""
    policy, problems = _parse(text, source)
    if problems or policy is None:
        raise PolicyFileError(problems)
    return policy


def _parse(text: str, source: str) -> tuple[Policy | AccountCaps | None, list[Problem]]:
    checker = _Checker(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return None, [Problem(f"{source}:{line}", f"not valid YAML: {error}",
                              f"YAML として読めません: {error}")]
    if root is None:
        return None, [Problem(f"{source}:1", "the file is empty", "ファイルが空です")]
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    policy = _build(checker, root, sha256)
    problems = checker.problems
    if policy is not None and problems:
        policy = None
    return policy, problems


def load_policies(paths: Iterable[Path | str]) -> PolicySet:
    """Read policy files into one set, or refuse them all with every problem listed.

    The set must hold at least one paying policy; ids are unique across it, and at most one
    ``account_caps`` file per currency.
    """
    problems: list[Problem] = []
    policies: list[Policy] = []
    caps: list[AccountCaps] = []
    sources: dict[str, str] = {}
    for path in (Path(p) for p in paths):
        text = _read(path, problems)
        if text is None:
            continue
        loaded, found = _parse(text, str(path))
        problems += found
        if loaded is None:
            continue
        if loaded.id in sources:
            problems.append(Problem(str(path), f"policy id '{loaded.id}' is also used by "
                                    f"{sources[loaded.id]}",
                                    f"ポリシー ID '{loaded.id}' は {sources[loaded.id]} "
                                    "でも使われています"))
        sources[loaded.id] = str(path)
        if isinstance(loaded, AccountCaps):
            if any(cap.currency == loaded.currency for cap in caps):
                problems.append(Problem(str(path), f"a second account_caps for "
                                        f"{loaded.currency}; keep one per currency",
                                        f"{loaded.currency} の account_caps が二つあります。"
                                        "通貨ごとに一つにしてください"))
            caps.append(loaded)
        else:
            policies.append(loaded)
    if not problems and not policies:
        problems.append(Problem("", "no paying policy was given (only caps, or no files)",
                                "支払いを定めるポリシーがありません（上限のみ、またはファイルなし）"))
    if len(policies) + len(caps) > POLICIES_PER_SET_MAX:
        problems.append(Problem("", f"more than {POLICIES_PER_SET_MAX} policies in one set",
                                f"一つのセットのポリシーが{POLICIES_PER_SET_MAX}を超えています"))
    if problems:
        raise PolicyFileError(problems)
    return PolicySet(policies=tuple(policies), caps=tuple(caps))


def _read(path: Path, problems: list[Problem]) -> str | None:
    try:
        size = path.stat().st_size
        if size > POLICY_FILE_BYTES_MAX:
            problems.append(Problem(str(path), f"the file is larger than "
                                    f"{POLICY_FILE_BYTES_MAX} bytes",
                                    f"ファイルが{POLICY_FILE_BYTES_MAX}バイトを超えています"))
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(str(path), f"cannot be read: {error}",
                                f"読み込めません: {error}"))
        return None
