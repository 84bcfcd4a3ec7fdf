"""Compensation policies as data: the shipped examples load, a bad file is refused whole with
its lines named in both languages, and rounding is exact."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haltguard.compensation.errors import PolicyFileError
from haltguard.compensation.policies import (
    EXAMPLES_DIR,
    AccountCaps,
    AssetLoss,
    FeeRefund,
    FixedAmount,
    RefusedOrders,
    Rounding,
    load_policies,
    parse_policy,
    round_ratio,
)

GOODWILL = """\
id: goodwill
version: 2
kind: fixed_amount
description:
  ja: お詫びとして一律お支払いします。
  en: A goodwill payment to every affected customer.
currency: JPY
amount_minor: 1000
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_example_policies_load_as_one_set() -> None:
    policy_set = load_policies(sorted(EXAMPLES_DIR.glob("*.yaml")))
    kinds = {type(policy) for policy in policy_set.policies}
    assert kinds == {AssetLoss, FeeRefund, FixedAmount, RefusedOrders}
    for policy in policy_set.policies:
        assert policy.description.ja and policy.description.en
        assert policy.rounding is Rounding.DOWN
        assert len(policy.source_sha256) == 64
    asset_loss = next(p for p in policy_set.policies if isinstance(p, AssetLoss))
    assert (asset_loss.asset, asset_loss.currency, asset_loss.reference) == (
        "XEM", "JPY", "xem-jpy-vwap")


def test_a_policy_file_is_read_with_its_version_and_defaults() -> None:
    policy = parse_policy(GOODWILL, "goodwill.yaml")
    assert isinstance(policy, FixedAmount)
    assert (policy.id, policy.version, policy.amount_minor) == ("goodwill", 2, 1000)
    assert (policy.account_min_minor, policy.account_max_minor) == (0, None)


def test_a_policy_file_with_an_unknown_field_is_refused_naming_the_field_and_line() -> None:
    text = GOODWILL + "bonus_minor: 500\n"
    with pytest.raises(PolicyFileError) as refused:
        parse_policy(text, "goodwill.yaml")
    [problem] = refused.value.problems
    assert problem.where == "goodwill.yaml:9"
    assert "unknown field 'bonus_minor'" in problem.en
    assert "bonus_minor" in problem.ja
    assert refused.value.code == "policy_file_invalid"
    assert refused.value.message_ja and "何も計算していません" in refused.value.message_ja


def test_a_field_of_another_kind_is_unknown_to_this_kind() -> None:
    with pytest.raises(PolicyFileError, match="unknown field 'asset'"):
        parse_policy(GOODWILL + "asset: XEM\n", "goodwill.yaml")


def test_a_description_without_japanese_is_refused() -> None:
    text = GOODWILL.replace("  ja: お詫びとして一律お支払いします。\n", "")
    with pytest.raises(PolicyFileError, match="missing the required field 'ja'"):
        parse_policy(text, "goodwill.yaml")


def test_every_problem_of_a_bad_file_is_listed_at_once() -> None:
    text = """\
id: Bad Id
version: 0
kind: asset_loss
description: {ja: 説明, en: ""}
currency: jpy
asset: XEM
rounding: nearest
"""
    with pytest.raises(PolicyFileError) as refused:
        parse_policy(text, "p.yaml")
    found = [problem.text_en() for problem in refused.value.problems]
    assert any("missing the required field 'reference'" in text for text in found)
    assert any(text.startswith("p.yaml:1: 'id'") for text in found)
    assert any(text.startswith("p.yaml:2: 'version' is 0") for text in found)
    assert any("'description.en' must not be empty" in text for text in found)
    assert any(text.startswith("p.yaml:5: 'currency'") for text in found)
    assert any("'rounding' is 'nearest'" in text for text in found)


def test_an_unknown_kind_is_refused_with_the_kinds_allowed() -> None:
    with pytest.raises(PolicyFileError, match="'kind' is 'bonus'; it must be one of asset_loss"):
        parse_policy(GOODWILL.replace("fixed_amount", "bonus"), "g.yaml")


def test_a_number_written_as_text_or_decimal_is_refused() -> None:
    for written in ('"1000"', "1000.5", "1_000", "-5"):
        with pytest.raises(PolicyFileError, match="'amount_minor'"):
            parse_policy(GOODWILL.replace("1000", written), "g.yaml")


def test_refused_orders_in_a_market_quoted_in_another_currency_are_refused() -> None:
    text = """\
id: refused
version: 1
kind: refused_orders
description: {ja: 実損を補償します。, en: Actual losses are paid.}
currency: JPY
markets: [BTC-JPY, ETH-BTC]
"""
    with pytest.raises(PolicyFileError, match="ETH-BTC is not quoted in the policy's currency"):
        parse_policy(text, "r.yaml")
    policy = parse_policy(text.replace(", ETH-BTC", ""), "r.yaml")
    assert isinstance(policy, RefusedOrders) and policy.markets == ("BTC-JPY",)


def test_a_maximum_below_the_minimum_is_refused() -> None:
    text = GOODWILL + "account_min_minor: 500\naccount_max_minor: 100\n"
    with pytest.raises(PolicyFileError, match="'account_max_minor' is below"):
        parse_policy(text, "g.yaml")


def test_a_bad_file_among_good_ones_refuses_the_whole_set(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.yaml", GOODWILL)
    bad = _write(tmp_path, "bad.yaml", GOODWILL.replace("goodwill", "other") + "extra: 1\n")
    with pytest.raises(PolicyFileError) as refused:
        load_policies([good, bad])
    assert [p.where for p in refused.value.problems] == [f"{bad}:9"]


def test_two_policies_with_one_id_are_refused(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.yaml", GOODWILL)
    second = _write(tmp_path, "b.yaml", GOODWILL.replace("1000", "2000"))
    with pytest.raises(PolicyFileError, match="policy id 'goodwill' is also used by"):
        load_policies([first, second])


def test_account_caps_apply_once_per_currency(tmp_path: Path) -> None:
    caps = """\
id: caps-jpy
version: 1
kind: account_caps
description: {ja: 一口座あたりの上限です。, en: The most one account is paid.}
currency: JPY
account_max_minor: 5000
"""
    paths = [_write(tmp_path, "g.yaml", GOODWILL), _write(tmp_path, "c.yaml", caps)]
    policy_set = load_policies(paths)
    cap = policy_set.caps_for("JPY")
    assert isinstance(cap, AccountCaps) and cap.account_max_minor == 5000
    assert policy_set.caps_for("BTC") is None
    paths.append(_write(tmp_path, "c2.yaml", caps.replace("caps-jpy", "caps-jpy-2")))
    with pytest.raises(PolicyFileError, match="a second account_caps for JPY"):
        load_policies(paths)


def test_a_set_without_a_paying_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="no paying policy"):
        load_policies([])


def test_a_missing_or_malformed_file_is_refused_with_its_name(tmp_path: Path) -> None:
    broken = _write(tmp_path, "broken.yaml", "id: [unclosed\n")
    with pytest.raises(PolicyFileError) as refused:
        load_policies([tmp_path / "absent.yaml", broken])
    wheres = [problem.where for problem in refused.value.problems]
    assert wheres[0] == str(tmp_path / "absent.yaml")
    assert wheres[1].startswith(f"{broken}:")


@pytest.mark.parametrize(
    ("numerator", "denominator", "rounding", "expected"),
    [
        (7, 2, Rounding.DOWN, 3), (7, 2, Rounding.UP, 4), (7, 2, Rounding.HALF_EVEN, 4),
        (5, 2, Rounding.HALF_EVEN, 2), (11, 4, Rounding.HALF_EVEN, 3),
        (9, 4, Rounding.HALF_EVEN, 2), (8, 2, Rounding.UP, 4), (0, 3, Rounding.UP, 0),
    ],
)
def test_rounding_rules_on_exact_ratios(numerator: int, denominator: int, rounding: Rounding,
                                        expected: int) -> None:
    assert round_ratio(numerator, denominator, rounding) == expected


@given(st.integers(0, 10**30), st.integers(1, 10**12))
def test_rounding_down_never_pays_more_than_owed_nor_a_unit_less(numerator: int,
                                                                 denominator: int) -> None:
    owed = Fraction(numerator, denominator)
    paid = round_ratio(numerator, denominator, Rounding.DOWN)
    assert paid <= owed < paid + 1
    assert abs(round_ratio(numerator, denominator, Rounding.HALF_EVEN) - owed) <= Fraction(1, 2)
    assert owed <= round_ratio(numerator, denominator, Rounding.UP) < owed + 1
