"""Erlang C against a published worked example and against the textbook formula computed
exactly, up to hundreds and thousands of agents."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from haltguard.support import erlang


def test_the_call_centre_helper_worked_example_is_reproduced_to_its_precision() -> None:
    """Call Centre Helper, "Erlang C Formula – Made Simple with an Erlang C Calculator
    Example" (callcentrehelper.com/erlang-c-formula-example-121281.htm): 100 calls in 30
    minutes (200 an hour), 3 minutes average handling time, target 80% answered in 20 s.
    Traffic intensity 10 erlangs. With 11 agents the probability of waiting is 68.21%, the
    service level 39% and the average speed of answer 122.8 s; with 14 agents 17.41%, 88.8%
    and 7.8 s; 14 is the fewest that meet 80%."""
    load = erlang.offered_load_erlangs(200, 180)
    assert load == pytest.approx(10.0)
    assert erlang.erlang_c(11, load) == pytest.approx(0.6821, abs=5e-5)
    assert erlang.service_level(11, load, 180, 20) == pytest.approx(0.39, abs=5e-3)
    assert erlang.average_speed_of_answer_s(11, load, 180) == pytest.approx(122.8, abs=0.05)
    assert erlang.erlang_c(14, load) == pytest.approx(0.1741, abs=5e-5)
    assert erlang.service_level(14, load, 180, 20) == pytest.approx(0.888, abs=5e-4)
    assert erlang.average_speed_of_answer_s(14, load, 180) == pytest.approx(7.8, abs=0.05)
    answer = erlang.staffing(200, 180, answer_within_s=20, service_level_target=0.8)
    assert answer.agents == 14
    assert [row.agents for row in answer.rows][-2:] == [13, 14]
    assert answer.rows[-2].service_level < 0.8 <= answer.rows[-1].service_level


def _erlang_c_exact(agents: int, load: int) -> Fraction:
    """The textbook formula, A^N/N! * N/(N-A) over the sum, in exact rational arithmetic."""
    term = Fraction(1)
    total = Fraction(0)
    for k in range(agents):
        total += term
        term = term * load / (k + 1)
    top = term * Fraction(agents, agents - load)
    return top / (total + top)


@pytest.mark.parametrize(("agents", "load"), [(11, 10), (120, 100), (520, 500),
                                              (2_050, 2_000)])
def test_large_inputs_agree_with_the_exact_formula_without_overflow(agents: int,
                                                                    load: int) -> None:
    exact = float(_erlang_c_exact(agents, load))
    computed = erlang.erlang_c(agents, float(load))
    assert math.isfinite(computed)
    assert computed == pytest.approx(exact, rel=1e-9)


def test_hundreds_of_agents_are_found_for_a_surge_without_overflow() -> None:
    answer = erlang.staffing(50_000, 300, answer_within_s=20, service_level_target=0.8)
    load = 50_000 / 3600 * 300
    assert answer.agents > load
    assert answer.answer.service_level >= 0.8
    assert erlang.service_level(answer.agents - 1, load, 300, 20) < 0.8
    assert 0 < answer.answer.average_speed_of_answer_s < 20


def test_too_few_agents_wait_forever_rather_than_give_a_number() -> None:
    assert erlang.erlang_c(10, 10.0) == 1.0
    assert erlang.service_level(9, 10.0, 180, 20) == 0.0
    assert erlang.average_speed_of_answer_s(10, 10.0, 180) == math.inf


@pytest.mark.parametrize(("arrivals", "handle_s", "target"), [
    (-1, 180, 0.8), (100, 0, 0.8), (100, 180, 1.0), (math.nan, 180, 0.8)])
def test_unusable_inputs_are_refused_with_what_is_accepted(arrivals: float, handle_s: float,
                                                           target: float) -> None:
    with pytest.raises(erlang.ErlangInputError):
        erlang.staffing(arrivals, handle_s, answer_within_s=20, service_level_target=target)
