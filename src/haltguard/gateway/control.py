"""Two ways to work the venue's brakes, both :class:`haltguard.venue.control.VenueControl`.

:class:`InProcessVenueControl` submits commands to a :class:`VenueRuntime` in this process;
:class:`HttpVenueControl` calls a venue elsewhere through its admin HTTP API. Both return the
venue's own events and raise :class:`VenueControlError` with the venue's reason when it
refuses, so the operations service cannot tell (and need not care) which one it holds. Both
check their arguments first (a plain string for a state is read as that state, anything
else of the wrong type is refused with :class:`VenueControlError`), so a caller's mistake
never reaches the venue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from haltguard.common.units import NS_PER_S
from haltguard.gateway.event_log import EventLog, feed_kind
from haltguard.gateway.models import UnitError, Units
from haltguard.gateway.runtime import (
    ACK_TIMEOUT_S_DEFAULT,
    CommandRefusedError,
    OverloadedError,
    VenueRuntime,
    VenueUnavailableError,
)
from haltguard.venue.commands import (
    CancelAll,
    Command,
    CompensationLine,
    CreditCompensation,
    FreezeAccountWithdrawals,
    FreezeWithdrawals,
    KillSwitch,
    MalformedCommandError,
    ResumePhase,
    SetMarketState,
    StartResumePlan,
    Withdraw,
    validated,
)
from haltguard.venue.control import (
    CREDITED,
    CorrectionCursor,
    CreditOutcome,
    EventPage,
    FeedEvent,
    TradeCorrection,
    VenueControlError,
    VenueHealth,
    credit_outcomes,
)
from haltguard.venue.events import CommandRejected, Event, OrderRejected
from haltguard.venue.markets import (
    ASSET_CODE_LENGTH_MAX,
    Asset,
    GridError,
    MarketSpec,
    from_units,
    is_asset_code,
    is_market_symbol,
    make_market,
)
from haltguard.venue.types import MarketState

HTTP_TIMEOUT_S_DEFAULT = ACK_TIMEOUT_S_DEFAULT + 5.0

_C = TypeVar("_C", bound=Command)


def checked(command: _C) -> _C:
    """``command`` with its arguments checked (see :func:`validated`) and its market or
    asset name in the venue's grammar, or :class:`VenueControlError` naming the wrong one."""
    try:
        result = validated(command)
    except MalformedCommandError as exc:
        raise VenueControlError(f"{exc}; nothing was sent to the venue") from None
    assert type(result) is type(command)
    problem = _name_problem(result)
    if problem:
        raise VenueControlError(f"{problem}; nothing was sent to the venue")
    return result


def _name_problem(command: Command) -> str:
    """What is wrong with the market or asset ``command`` names ("" when nothing is)."""
    if isinstance(command, SetMarketState | StartResumePlan | CancelAll):
        market = command.market
        every_market = isinstance(command, CancelAll) and market == ""
        if not every_market and not is_market_symbol(market):
            return (f"market symbol {market!r} is not in the venue's grammar: two asset codes "
                    "of upper-case letters and digits joined by '-', e.g. BTC-JPY")
    if isinstance(command, FreezeWithdrawals) and not is_asset_code(command.asset):
        return (f"asset code {command.asset!r} is not in the venue's grammar: upper-case "
                f"letters and digits, at most {ASSET_CODE_LENGTH_MAX}, e.g. BTC")
    return ""


def _segment(name: str) -> str:
    """``name`` as one path segment of a URL: every character outside the unreserved set
    percent-encoded, so no name can add a segment, a query or a fragment."""
    return quote(name, safe="")


class InProcessVenueControl:
    """The brakes of a venue running in this process."""

    def __init__(self, runtime: VenueRuntime, *, timeout_s: float = ACK_TIMEOUT_S_DEFAULT):
        self.runtime = runtime
        self.timeout_s = timeout_s
        self._event_log: EventLog | None = None

    def _run(self, command: Command) -> list[Event]:
        try:
            result = self.runtime.submit_and_wait(checked(command), self.timeout_s)
        except (OverloadedError, VenueUnavailableError, CommandRefusedError) as exc:
            raise VenueControlError(str(exc)) from exc
        except TimeoutError as exc:
            raise VenueControlError(
                f"the venue did not acknowledge {type(command).__name__} within "
                f"{self.timeout_s:g} s; it may still be applied, check the market states "
                "before retrying"
            ) from exc
        for event in result.events:
            if type(event) is CommandRejected or type(event) is OrderRejected:
                raise VenueControlError(f"{event.reason.value}: {event.detail}")
        return result.events

    def market_states(self) -> dict[str, MarketState]:
        try:
            return self.runtime.read(lambda venue: venue.market_states())
        except VenueUnavailableError as exc:
            raise VenueControlError(str(exc)) from exc

    def set_market_state(
        self,
        market: str,
        state: MarketState,
        *,
        actor: str,
        reason: str,
        incident_id: str = "",
        cancels_allowed: bool = True,
        auction_ns: int = 0,
    ) -> list[Event]:
        return self._run(
            SetMarketState(market, state, actor, reason, incident_id, cancels_allowed, auction_ns)
        )

    def kill_switch(
        self, engaged: bool, *, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]:
        return self._run(KillSwitch(engaged, actor, reason, incident_id))

    def freeze_withdrawals(
        self, asset: str, frozen: bool, *, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]:
        return self._run(FreezeWithdrawals(asset, frozen, actor, reason, incident_id))

    def start_resume_plan(
        self,
        market: str,
        phases: list[ResumePhase],
        *,
        actor: str,
        reason: str,
        incident_id: str = "",
    ) -> list[Event]:
        return self._run(StartResumePlan(market, list(phases), actor, reason, incident_id))

    def cancel_all(
        self, *, market: str = "", account: int = 0, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]:
        return self._run(CancelAll(account, market, actor, reason, incident_id))

    def credit_compensation(
        self, lines: Sequence[CompensationLine], *, actor: str, reason: str = ""
    ) -> list[CreditOutcome]:
        command = CreditCompensation(list(lines), actor, reason)
        try:
            result = self.runtime.submit_and_wait(checked(command), self.timeout_s)
        except (OverloadedError, VenueUnavailableError, CommandRefusedError) as exc:
            raise VenueControlError(str(exc)) from exc
        except TimeoutError as exc:
            raise VenueControlError(
                f"the venue did not acknowledge the compensation credit within "
                f"{self.timeout_s:g} s; it may still be applied, read credited_line_ranges "
                "before sending the lines again"
            ) from exc
        return credit_outcomes(result.events, len(command.lines))

    def credited_line_ranges(self, run_id: int) -> list[tuple[int, int]]:
        try:
            return self.runtime.read(lambda venue: venue.credited_line_ranges(run_id))
        except VenueUnavailableError as exc:
            raise VenueControlError(str(exc)) from exc

    def correct_trades(self, command: TradeCorrection) -> list[Event]:
        return self._run(command)

    def correction_cursor(self) -> CorrectionCursor:
        try:
            return self.runtime.read(lambda venue: CorrectionCursor(
                venue.last_seq, venue.next_trade_id, venue.corrections.count
            ))
        except VenueUnavailableError as exc:
            raise VenueControlError(str(exc)) from exc

    def health(self) -> VenueHealth:
        state = self.runtime.status()
        taking = state.running and not state.failure
        return VenueHealth(True, taking, state.last_seq,
                           state.failure or ("" if state.running else "not running"))

    def read_events(self, after_seq: int, limit: int) -> EventPage:
        if self._event_log is None:  # events before it are read from the journal
            self._event_log = EventLog(self.runtime)
        commands, cursor = self._event_log.read(after_seq, max(1, limit))
        units = self.runtime.units()
        return EventPage([
            FeedEvent(seq, index, feed_kind(event), str(getattr(event, "market", "")),
                      units.render_event(event))
            for seq, events in commands for index, event in enumerate(events)
        ], cursor)

    def freeze_account_withdrawals(
        self, account: int, frozen: bool, *, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]:
        return self._run(FreezeAccountWithdrawals(account, frozen, actor, reason, incident_id))

    def withdraw(
        self, account: int, asset: str, amount_minor: int, *, destination: str, reference: str
    ) -> list[Event]:
        return self._run(Withdraw(account, asset, amount_minor, destination, reference))


class HttpVenueControl:
    """The brakes of a venue reached over HTTP at ``base_url`` with its admin ``token``.

    With an empty token only the public routes work (market states, orders, depth).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = HTTP_TIMEOUT_S_DEFAULT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout_s,
            transport=transport,
        )
        self._units: Units | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpVenueControl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- HTTP ------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None,
        *, encoded_body: bytes | None = None,
    ) -> Any:
        """One call; any failure becomes a :class:`VenueControlError` saying what to do.
        ``encoded_body`` is a JSON body the caller encoded (a large one, faster than here)."""
        try:
            if encoded_body is None:
                response = self._client.request(method, path, json=body)
            else:
                response = self._client.request(
                    method, path, content=encoded_body,
                    headers={"Content-Type": "application/json"},
                )
        except httpx.HTTPError as exc:
            raise VenueControlError(
                f"cannot reach the venue at {self.base_url} ({exc}); check that it is running "
                "and that the URL is right"
            ) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success and data is not None:
            return data
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            raise VenueControlError(f"{error.get('code')}: {error.get('message')}")
        raise VenueControlError(
            f"the venue at {self.base_url} answered {response.status_code} to {method} {path} "
            "with no error details; is that URL a haltguard venue?"
        )

    def _post(self, path: str, body: dict[str, Any]) -> list[Event]:
        data = self.request("POST", path, body)
        return self._events(data.get("events", []))

    def _events(self, rendered: list[dict[str, Any]]) -> list[Event]:
        try:
            return [self.units().parse_event(item) for item in rendered]
        except UnitError:
            self._units = None  # a market or asset listed since the last look
            try:
                return [self.units().parse_event(item) for item in rendered]
            except UnitError as exc:
                raise VenueControlError(
                    f"the venue sent an event this client cannot read: {exc}"
                ) from exc

    def units(self) -> Units:
        """Grids of every market and asset, fetched once and refreshed when one is missing."""
        if self._units is None:
            assets = {
                item["code"]: Asset(item["code"], int(item["decimals"]))
                for item in self.request("GET", "/v1/assets")["assets"]
            }
            markets = {
                item["symbol"]: self._spec(item, assets)
                for item in self.request("GET", "/v1/markets")["markets"]
            }
            self._units = Units(markets, {code: a.decimals for code, a in assets.items()})
        return self._units

    @staticmethod
    def _spec(item: dict[str, Any], assets: dict[str, Asset]) -> MarketSpec:
        try:
            return make_market(
                item["symbol"], assets[item["base"]], assets[item["quote"]],
                tick_size=item["tick_size"], lot_size=item["lot_size"],
                min_qty=item["min_qty"], max_qty=item["max_qty"],
                maker_fee_bps=int(item["maker_fee_bps"]), taker_fee_bps=int(item["taker_fee_bps"]),
            )
        except (KeyError, GridError) as exc:
            raise VenueControlError(
                f"the venue listed a market this client cannot read: {exc}"
            ) from exc

    # -- VenueControl ----------------------------------------------------------------------

    def market_states(self) -> dict[str, MarketState]:
        markets = self.request("GET", "/v1/markets")["markets"]
        return {item["symbol"]: MarketState(item["state"]) for item in markets}

    def set_market_state(
        self,
        market: str,
        state: MarketState,
        *,
        actor: str,
        reason: str,
        incident_id: str = "",
        cancels_allowed: bool = True,
        auction_ns: int = 0,
    ) -> list[Event]:
        cmd = checked(
            SetMarketState(market, state, actor, reason, incident_id, cancels_allowed, auction_ns)
        )
        return self._post(f"/v1/admin/markets/{_segment(cmd.market)}/state", {
            "state": cmd.state.value, "actor": cmd.actor, "reason": cmd.reason,
            "incident_id": cmd.incident_id, "cancels_allowed": cmd.cancels_allowed,
            "auction_seconds": cmd.auction_ns / NS_PER_S,
        })

    def kill_switch(
        self, engaged: bool, *, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]:
        cmd = checked(KillSwitch(engaged, actor, reason, incident_id))
        return self._post("/v1/admin/kill-switch", {
            "engaged": cmd.engaged, "actor": cmd.actor, "reason": cmd.reason,
            "incident_id": cmd.incident_id,
        })

    def freeze_withdrawals(
        self, asset: str, frozen: bool, *, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]:
        cmd = checked(FreezeWithdrawals(asset, frozen, actor, reason, incident_id))
        return self._post(f"/v1/admin/assets/{_segment(cmd.asset)}/withdrawals-frozen", {
            "frozen": cmd.frozen, "actor": cmd.actor, "reason": cmd.reason,
            "incident_id": cmd.incident_id,
        })

    def start_resume_plan(
        self,
        market: str,
        phases: list[ResumePhase],
        *,
        actor: str,
        reason: str,
        incident_id: str = "",
    ) -> list[Event]:
        cmd = checked(StartResumePlan(market, list(phases), actor, reason, incident_id))
        return self._post(f"/v1/admin/markets/{_segment(cmd.market)}/resume-plan", {
            "phases": [
                {"state": phase.state.value, "min_seconds": phase.min_ns / NS_PER_S}
                for phase in cmd.phases
            ],
            "actor": cmd.actor, "reason": cmd.reason, "incident_id": cmd.incident_id,
        })

    def cancel_all(
        self, *, market: str = "", account: int = 0, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]:
        cmd = checked(CancelAll(account, market, actor, reason, incident_id))
        return self._post("/v1/admin/cancel-all", {
            "market": cmd.market, "account": cmd.account, "actor": cmd.actor,
            "reason": cmd.reason, "incident_id": cmd.incident_id,
        })

    def credit_compensation(
        self, lines: Sequence[CompensationLine], *, actor: str, reason: str = ""
    ) -> list[CreditOutcome]:
        cmd = checked(CreditCompensation(list(lines), actor, reason))
        body = msgspec.json.encode({
            "actor": cmd.actor, "reason": cmd.reason,
            "lines": [
                {"account": line.account, "asset": line.asset, "amount_minor": line.amount,
                 "run_id": line.run_id, "line_no": line.line_no}
                for line in cmd.lines
            ],
        })
        data = self.request("POST", "/v1/admin/compensation/credits", encoded_body=body)
        return _credit_answer(data, cmd.lines)

    def health(self) -> VenueHealth:
        try:
            data = self.request("GET", "/health")
        except VenueControlError as exc:
            return VenueHealth(not str(exc).startswith("cannot reach"), False, 0, str(exc))
        return VenueHealth(True, data.get("status") == "ok", int(data.get("last_seq", 0)))

    def read_events(self, after_seq: int, limit: int) -> EventPage:
        data = self.request("GET", f"/v1/admin/events?after_seq={int(after_seq)}"
                                   f"&limit={max(1, int(limit))}")
        try:
            return EventPage([
                FeedEvent(int(item["seq"]), int(item["index"]), str(item["kind"]),
                          str(item["market"]), dict(item["event"]))
                for item in data["events"]
            ], int(data["cursor"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise VenueControlError(f"the venue's event feed cannot be read ({exc!r})") from exc

    def correct_trades(self, command: TradeCorrection) -> list[Event]:
        # Built by the corrections service from the journal, in the venue's own units
        # (ticks, lots, minor units) exactly as journaled: no decimal is typed by a person.
        body = msgspec.json.encode({"command": checked(command)})
        data = self.request("POST", "/v1/admin/corrections", encoded_body=body)
        return self._events(data.get("events", []))

    def correction_cursor(self) -> CorrectionCursor:
        data = self.request("GET", "/v1/admin/corrections/cursor")
        try:
            return CorrectionCursor(int(data["last_seq"]), int(data["next_trade_id"]),
                                    int(data["corrections_applied"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise VenueControlError(
                f"the venue's correction cursor cannot be read ({exc!r})"
            ) from exc

    def credited_line_ranges(self, run_id: int) -> list[tuple[int, int]]:
        data = self.request("GET", f"/v1/admin/compensation/runs/{int(run_id)}/credited")
        try:
            return [(int(first), int(last)) for first, last in data["ranges"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise VenueControlError(
                f"the venue's list of credited lines cannot be read ({exc!r})"
            ) from exc

    def freeze_account_withdrawals(
        self, account: int, frozen: bool, *, actor: str, reason: str, incident_id: str = ""
    ) -> list[Event]:
        cmd = checked(FreezeAccountWithdrawals(account, frozen, actor, reason, incident_id))
        return self._post(f"/v1/admin/accounts/{int(cmd.account)}/withdrawals-frozen", {
            "frozen": cmd.frozen, "actor": cmd.actor, "reason": cmd.reason,
            "incident_id": cmd.incident_id,
        })

    def withdraw(
        self, account: int, asset: str, amount_minor: int, *, destination: str, reference: str
    ) -> list[Event]:
        cmd = checked(Withdraw(account, asset, amount_minor, destination, reference))
        try:
            amount = from_units(cmd.amount, self.units().asset_unit(cmd.asset))
        except UnitError as exc:
            raise VenueControlError(f"{exc}; nothing was sent to the venue") from None
        return self._post("/v1/admin/withdrawals", {
            "account": cmd.account, "asset": cmd.asset, "amount": amount,
            "destination": cmd.destination, "reference": cmd.reference,
        })


def _credit_answer(data: Any, lines: list[CompensationLine]) -> list[CreditOutcome]:
    """Each line's outcome from the credit route's answer, which lists only the lines not
    credited; :class:`VenueControlError` if the answer does not fit the lines sent."""
    outcomes = [CreditOutcome(line.run_id, line.line_no, CREDITED) for line in lines]
    try:
        credited = int(data["counts"].get(CREDITED, 0))
        for item in data["not_credited"]:
            index = int(item["index"])
            line = lines[index] if 0 <= index < len(lines) else None
            if line is None or (int(item["run_id"]), int(item["line_no"])) != (
                line.run_id, line.line_no
            ) or item["outcome"] == CREDITED:
                raise ValueError(f"line {index} of the answer is not a line sent")
            outcomes[index] = CreditOutcome(
                line.run_id, line.line_no, str(item["outcome"]), str(item.get("detail", ""))
            )
        if credited + len(data["not_credited"]) != len(lines):
            raise ValueError(f"{credited} credited and {len(data['not_credited'])} not, of "
                             f"{len(lines)} sent")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VenueControlError(
            f"the venue's answer to a compensation credit does not fit the lines sent ({exc}); "
            "read credited_line_ranges before sending them again"
        ) from exc
    return outcomes
