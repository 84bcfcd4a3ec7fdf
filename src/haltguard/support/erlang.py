"""Erlang C: how many agents answer a forecast of contacts within a service level.

The model: contacts arrive at random (Poisson) at ``arrivals_per_hour``, each takes
``handle_s`` on average (exponential), and wait in one queue for ``agents`` identical agents;
nobody hangs up. The offered load is ``A = arrivals_per_hour / 3600 * handle_s`` erlangs.

Erlang C, the probability that a contact has to wait, is usually written with ``A**N / N!``,
which overflows a float past about 170 agents. Here it comes from Erlang B by its recurrence
``B(0) = 1, B(k) = A*B(k-1) / (k + A*B(k-1))`` (every term between 0 and 1, so hundreds or
thousands of agents neither overflow nor lose precision), then
``C = N*B / (N - A*(1 - B))``. From it:

- service level (share answered within ``t`` seconds): ``1 - C * exp(-(N - A) * t / handle_s)``
- average speed of answer: ``C * handle_s / (N - A)``
- occupancy: ``A / N``

Pure: no clock, no I/O. ``staffing`` also returns the rows around the answer, so the CLI and
the API can show the calculation rather than only its result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

S_PER_HOUR = 3_600.0
AGENTS_LIMIT = 100_000
"""The largest number of agents ``staffing`` will consider before saying the target cannot
be met (a forecast that needs more is a forecast to check)."""
ROWS_SHOWN = 5
"""Rows of the calculation shown before the answer (the answer row is always shown)."""


class ErlangInputError(ValueError):
    """An input the model cannot use; the message says which and what is accepted."""


def offered_load_erlangs(arrivals_per_hour: float, handle_s: float) -> float:
    """The traffic the agents must carry, in erlangs (agent-hours per hour)."""
    if not math.isfinite(arrivals_per_hour) or arrivals_per_hour < 0:
        raise ErlangInputError(
            f"arrivals per hour must be a finite number of 0 or more, got {arrivals_per_hour}")
    if not math.isfinite(handle_s) or handle_s <= 0:
        raise ErlangInputError(
            f"the average handling time must be above 0 seconds, got {handle_s}")
    return arrivals_per_hour / S_PER_HOUR * handle_s


def _check_agents(agents: int) -> None:
    if agents < 1 or agents > AGENTS_LIMIT:
        raise ErlangInputError(f"agents must be 1..{AGENTS_LIMIT}, got {agents}")


def erlang_b(agents: int, load_erlangs: float) -> float:
    """The blocking probability of ``agents`` servers with no queue (by the recurrence)."""
    _check_agents(agents)
    blocking = 1.0
    for k in range(1, agents + 1):
        blocking = load_erlangs * blocking / (k + load_erlangs * blocking)
    return blocking


def _erlang_c_from_b(agents: int, load_erlangs: float, blocking: float) -> float:
    if agents <= load_erlangs:
        return 1.0  # the queue grows without end: every contact waits
    return agents * blocking / (agents - load_erlangs * (1.0 - blocking))


def erlang_c(agents: int, load_erlangs: float) -> float:
    """The probability that a contact waits for an agent (1 when the agents cannot keep up)."""
    return _erlang_c_from_b(agents, load_erlangs, erlang_b(agents, load_erlangs))


def _service_level(agents: int, load: float, wait: float, handle_s: float,
                   answer_within_s: float) -> float:
    if agents <= load:
        return 0.0
    return 1.0 - wait * math.exp(-(agents - load) * answer_within_s / handle_s)


def _asa_s(agents: int, load: float, wait: float, handle_s: float) -> float:
    return math.inf if agents <= load else wait * handle_s / (agents - load)


def service_level(agents: int, load_erlangs: float, handle_s: float,
                  answer_within_s: float) -> float:
    """The share of contacts answered within ``answer_within_s`` seconds."""
    wait = erlang_c(agents, load_erlangs)
    return _service_level(agents, load_erlangs, wait, handle_s, answer_within_s)


def average_speed_of_answer_s(agents: int, load_erlangs: float, handle_s: float) -> float:
    """The mean wait over all contacts, in seconds (infinite when agents cannot keep up)."""
    return _asa_s(agents, load_erlangs, erlang_c(agents, load_erlangs), handle_s)


@dataclass(frozen=True)
class StaffingRow:
    """One line of the calculation: what ``agents`` would give."""

    agents: int
    probability_wait: float
    service_level: float
    average_speed_of_answer_s: float
    occupancy: float


@dataclass(frozen=True)
class Staffing:
    """The answer and how it was reached."""

    arrivals_per_hour: float
    handle_s: float
    answer_within_s: float
    service_level_target: float
    load_erlangs: float
    agents: int
    """The fewest agents that meet the target."""
    answer: StaffingRow
    rows: tuple[StaffingRow, ...]
    """The rows just under the answer, then the answer itself."""


def staffing(arrivals_per_hour: float, handle_s: float, *, answer_within_s: float,
             service_level_target: float) -> Staffing:
    """The fewest agents whose service level reaches ``service_level_target`` (0 < x < 1)."""
    load = offered_load_erlangs(arrivals_per_hour, handle_s)
    if not math.isfinite(answer_within_s) or answer_within_s < 0:
        raise ErlangInputError(f"the answer time must be 0 s or more, got {answer_within_s}")
    if not 0 < service_level_target < 1:
        raise ErlangInputError(
            f"the service level target must be between 0 and 1, got {service_level_target}")
    rows: list[StaffingRow] = []
    blocking = 1.0
    for agents in range(1, AGENTS_LIMIT + 1):
        blocking = load * blocking / (agents + load * blocking)
        wait = _erlang_c_from_b(agents, load, blocking)
        row = StaffingRow(
            agents=agents, probability_wait=wait,
            service_level=_service_level(agents, load, wait, handle_s, answer_within_s),
            average_speed_of_answer_s=_asa_s(agents, load, wait, handle_s),
            occupancy=min(1.0, load / agents),
        )
        rows.append(row)
        if len(rows) > ROWS_SHOWN + 1:
            rows.pop(0)
        if row.service_level >= service_level_target:
            return Staffing(
                arrivals_per_hour=arrivals_per_hour, handle_s=handle_s,
                answer_within_s=answer_within_s, service_level_target=service_level_target,
                load_erlangs=load, agents=agents, answer=row, rows=tuple(rows),
            )
    raise ErlangInputError(
        f"{AGENTS_LIMIT} agents do not meet the target for {load:.0f} erlangs; check the "
        "forecast (arrivals per hour and handling time)")
