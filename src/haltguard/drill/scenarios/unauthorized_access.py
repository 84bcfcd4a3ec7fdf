"""``unauthorized-access``: credential stuffing, then taken-over accounts being emptied
(manual 1.2, 不正アクセス).

Two attacks the security detectors must see on their own:

* a burst of failed logins against the operations login, many usernames from one address
  (the drill binds its sockets to a loopback address of its own, ``127.0.0.77``): the
  audit feed raises ``security.credential_stuffing``, rule ``credential-stuffing`` opens an
  incident and blocks the address from the login route, and only from it: the same
  address still trades (behind a TLS proxy, customers share it);
* accounts that always withdrew to their own address suddenly withdraw to one they never
  used: the withdrawal feed raises ``security.withdrawal_new_destination`` and rule
  ``withdrawals-to-new-destinations`` freezes withdrawals of the asset, opens an incident
  classified ``unauthorized_access`` and pages.

Unfreezing withdrawals and lifting the block are a person's decisions: the drill plays that
operator, after checking that a further withdrawal is refused while frozen.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx

from haltguard.common.clock import utc_now
from haltguard.drill.checks import (
    ledger_check,
    note_played_support,
    paged_check,
    public_update_check,
)
from haltguard.drill.load import HTTP_TIMEOUT_S, VenueClient, venue_api_url
from haltguard.drill.observe import (
    count_notices,
    count_pages,
    decisions_seen,
    incident_for,
    timeline_times,
)
from haltguard.drill.play import (
    ensure_public_update,
    generate_reports,
    resolve_incident,
    take_incident,
    write_postmortem,
)
from haltguard.drill.scenario import DRILL_ACTOR, Check, DrillContext, DrillResult, Measurements
from haltguard.drill.surface import DrillSurface, database
from haltguard.drill.waiting import DrillError, seconds_between, wait_for
from haltguard.incidents import flows as incident_flows
from haltguard.incidents import service as incidents
from haltguard.incidents.models import TimelineKind, WithdrawalsRequest
from haltguard.incidents.rules import Category, incident_id_of, incident_ref

NAME = "unauthorized-access"
STUFFING_RULE = "credential-stuffing"
WITHDRAWAL_RULE = "withdrawals-to-new-destinations"
ATTACKER_ADDRESS = "127.0.0.77"  # routes to loopback on Linux; stands for the internet
STUFFING_ACCOUNTS_MIN = 6  # distinct usernames: above the detector's 5
STUFFING_WORKERS = 4
VICTIM_ACCOUNTS = (990_101, 990_102, 990_103)  # three accounts taken over
PREFERRED_ASSET = "BTC"
USUAL_AMOUNT = "0.01"
STOLEN_AMOUNT = "0.05"
FUNDING = "1"
ATTACKER_DESTINATION = "drill-attacker-wallet"


class UnauthorizedAccessScenario:
    name = NAME
    title_en = "Unauthorized access: credential stuffing and withdrawals to strangers"
    title_ja = "不正アクセス: パスワードリスト攻撃と見知らぬ宛先への出金"

    def run(self, context: DrillContext) -> DrillResult:
        system, scale, progress = context.system, context.scale, context.progress
        result = DrillResult(NAME, None, Measurements(), [], started_at=utc_now())
        api_url = system.api_url or venue_api_url(system)
        attempts = max(scale.burst, STUFFING_ACCOUNTS_MIN)
        progress(f"{NAME}: {attempts} failed logins for {attempts} usernames from "
                 f"{ATTACKER_ADDRESS}")
        stuffing_at = utc_now()
        answers = _stuff(api_url.rstrip("/"), attempts)
        refused = sum(1 for status in answers if status in (401, 403, 423, 429))
        result.measurements.extra["login_attempts"] = str(len(answers))
        result.checks.append(Check(
            "every stuffed login refused", refused == len(answers),
            "401/403/423/429 for each wrong password", f"{refused} of {len(answers)} refused",
            name_ja="不正ログインの拒否", expected_ja="すべて拒否",
            seen_ja=f"{len(answers)} 件中 {refused} 件拒否"))
        stuffing_id = wait_for(
            lambda: incident_for(system, since=stuffing_at, rule_id=STUFFING_RULE),
            scale.timeout_s, f"an incident from rule {STUFFING_RULE}",
            seen=lambda: decisions_seen(system, stuffing_at))
        result.measurements.extra["stuffing_incident"] = incident_ref(stuffing_id)
        result.measurements.extra["stuffing_detect_s"] = _seconds_to_detect(
            system, stuffing_id, stuffing_at)
        blocked = _blocked_answer(api_url.rstrip("/"), scale.timeout_s)
        result.checks.append(Check(
            "stuffing address blocked at the login route", blocked == "login_throttled",
            f"logins from {ATTACKER_ADDRESS} refused as login_throttled",
            blocked, name_ja="攻撃元アドレスのログイン遮断", expected_ja="login_throttled",
            seen_ja=blocked))
        trading = _trading_answer(venue_api_url(system))
        result.checks.append(Check(
            "trading from that address untouched", trading == 200,
            f"GET /v1/markets from {ATTACKER_ADDRESS} answered 200",
            f"HTTP {trading}", name_ja="同じアドレスからの取引は継続", expected_ja="HTTP 200",
            seen_ja=f"HTTP {trading}"))

        with VenueClient.for_system(system) as client:
            asset = _asset(client)
            progress(f"{NAME}: {len(VICTIM_ACCOUNTS)} accounts withdraw {asset} as usual, "
                     "then to a stranger's address")
            _withdraw_as_usual(client, asset)
            attack_at = utc_now()
            for account in VICTIM_ACCOUNTS:
                _withdraw(client, account, asset, STOLEN_AMOUNT, ATTACKER_DESTINATION)
            incident_id = wait_for(
                lambda: incident_for(system, since=attack_at, rule_id=WITHDRAWAL_RULE),
                scale.timeout_s, f"an incident from rule {WITHDRAWAL_RULE}",
                seen=lambda: decisions_seen(system, attack_at))
            result.incident_id = incident_id
            frozen_at = wait_for(lambda: _frozen_at(system, incident_id, asset),
                                 scale.timeout_s, f"withdrawals of {asset} frozen")
            after = client.admin_post("withdrawals", _withdrawal_body(
                VICTIM_ACCOUNTS[0], asset, STOLEN_AMOUNT, ATTACKER_DESTINATION))
            refused_while_frozen = after.status_code >= 400 or '"command_rejected"' in after.text
            result.checks.append(Check(
                "withdrawal refused while frozen", refused_while_frozen,
                f"the venue refuses a further {asset} withdrawal",
                f"HTTP {after.status_code} {after.text[:120]}",
                name_ja="凍結中の出金拒否", expected_ja="拒否",
                seen_ja=f"HTTP {after.status_code}"))
            self._respond(context, result, incident_id=incident_id, asset=asset,
                          attack_at=attack_at, frozen_at=frozen_at)
        result.finished_at = utc_now()
        return result

    def _respond(self, context: DrillContext, result: DrillResult, *, incident_id: int,
                 asset: str, attack_at: datetime, frozen_at: datetime) -> None:
        system, scale, progress = context.system, context.scale, context.progress
        take_incident(system, incident_id, started_at=attack_at,
                      cause="drill: taken-over accounts withdrawing to a stranger")
        played: list[str] = []
        ensure_public_update(
            system, incident_id, grace_s=min(2.0, scale.timeout_s),
            cause_ja=f"{asset} の出金に関する不審な取引", cause_en=f"suspicious {asset} "
            "withdrawals", notes=played)
        note_played_support(result, played)
        progress(f"{NAME}: playing the operator who unfreezes {asset} and lifts the block")
        with database(system) as session:
            incident = incidents.get(session, incident_id)
            outcome = incident_flows.freeze_withdrawals(
                session, system.venue_control, incident,
                WithdrawalsRequest(asset=asset, reason="drill: accounts secured, destinations "
                                   "reviewed"),
                actor=DRILL_ACTOR, now=utc_now(), frozen=False)
        unfrozen_at = utc_now()
        unfrozen = all(r.ok for r in outcome.results)
        result.note(f"訓練が担当者として {asset} の出金凍結を解除しました。",
                    f"The drill played the operator who unfroze {asset} withdrawals "
                    f"({'done' if unfrozen else 'refused'}).")
        throttle = system.login_throttle
        lifted = throttle is not None and bool(throttle.lift(f"address:{ATTACKER_ADDRESS}"))
        result.note(f"訓練が担当者として {ATTACKER_ADDRESS} の遮断を解除しました。"
                    if lifted else "遮断は期限(1 時間)で自動的に解除されます。",
                    f"The drill played the operator who lifted the block on {ATTACKER_ADDRESS}."
                    if lifted else "The block on the attacker's address ends at its expiry "
                    "(one hour); this process holds no gateway to lift it from.")
        resolve_incident(system, incident_id, "drill: withdrawals of the asset reopened")
        stuffing_id = incident_id_of(str(result.measurements.extra["stuffing_incident"]))
        assert stuffing_id is not None  # written as incident_ref(id) above
        resolve_incident(system, stuffing_id, "drill: stuffing address blocked, no account taken")
        self._finish(context, result, incident_id=incident_id, attack_at=attack_at,
                     frozen_at=frozen_at, unfrozen_at=unfrozen_at, unfrozen=unfrozen)

    def _finish(self, context: DrillContext, result: DrillResult, *, incident_id: int,
                attack_at: datetime, frozen_at: datetime, unfrozen_at: datetime,
                unfrozen: bool) -> None:
        system = context.system
        m = result.measurements
        times = timeline_times(system, incident_id)
        pages = count_pages(system, incident_id)
        ledger = ledger_check(system)
        with database(system) as session:
            incident = incidents.get(session, incident_id)
            category, severity = incident.category, incident.severity
        m.time_to_detect_s = seconds_between(attack_at, times.detected_at)
        m.time_to_halt_s = seconds_between(attack_at, frozen_at)
        m.time_to_first_update_s = seconds_between(attack_at,
                                                   times.first_public_update_at)
        m.recovery_time_s = seconds_between(frozen_at, unfrozen_at)
        m.ledger_invariant_ok = ledger.ok
        m.notices_sent = count_notices(system, incident_id).sent
        m.extra["pages"] = str(pages)
        m.extra["protective_action"] = "出金停止 / withdrawals frozen"
        result.checks += [
            Check("classified as unauthorized access",
                  category == Category.UNAUTHORIZED_ACCESS,
                  "category unauthorized_access (manual 1.2)",
                  f"{category.value} {severity.value}",
                  name_ja="分類: 不正アクセス", expected_ja="unauthorized_access",
                  seen_ja=f"{category.value} {severity.value}"),
            paged_check(pages),
            public_update_check(times.public_update_ja, times.public_update_en),
            Check("withdrawals unfrozen by a person", unfrozen,
                  "the unfreeze done by the (drill-played) operator, never by a rule",
                  "unfrozen" if unfrozen else "the venue refused",
                  name_ja="担当者による凍結解除", expected_ja="解除", seen_ja="解除済み"
                  if unfrozen else "拒否"),
            Check("ledger invariant after the attack", ledger.ok,
                  "funds conserved, no negative balance", ledger.detail,
                  name_ja="台帳の整合性", expected_ja="整合",
                  seen_ja="整合" if ledger.ok else "不整合"),
        ]
        if context.report_dir is not None:
            write_postmortem(
                system, incident_id, summary="Drill: credential stuffing and withdrawals to "
                "a stranger's address.", cause="Attacks injected by the drill.",
                went_well=["Withdrawals of the asset froze on their own."], went_badly=[])
            result.report_paths += [str(p) for p in generate_reports(
                system, incident_id, context.report_dir)]


def _stuff(api_url: str, attempts: int) -> list[int]:
    """Failed logins for ``attempts`` usernames from the attacker's address; the statuses."""
    stamp = utc_now().strftime("%H%M%S")
    names = iter(f"drill-guess-{stamp}-{n}" for n in range(attempts))
    lock = threading.Lock()

    def worker(count: int) -> list[int]:
        statuses = []
        transport = httpx.HTTPTransport(local_address=ATTACKER_ADDRESS)
        with httpx.Client(base_url=api_url, transport=transport,
                          timeout=HTTP_TIMEOUT_S) as client:
            for _ in range(count):
                with lock:
                    username = next(names)
                answer = client.post("/api/auth/login", json={
                    "username": username, "password": "Winter2026!", "totp_code": "000000"})
                statuses.append(answer.status_code)
        return statuses

    shares = [attempts // STUFFING_WORKERS + (1 if n < attempts % STUFFING_WORKERS else 0)
              for n in range(STUFFING_WORKERS)]
    with ThreadPoolExecutor(STUFFING_WORKERS) as pool:
        return [status for part in pool.map(worker, shares) for status in part]


def _seconds_to_detect(system: DrillSurface, incident_id: int, since: datetime) -> str:
    times = timeline_times(system, incident_id)
    seconds = seconds_between(since, times.detected_at)
    return f"{seconds:.2f}" if seconds is not None else "n/a"


def _blocked_answer(api_url: str, timeout_s: float) -> str:
    """What the login route answers the attacker's address once the rule's block is in
    force (a block's refusal names it)."""
    transport = httpx.HTTPTransport(local_address=ATTACKER_ADDRESS)
    with httpx.Client(base_url=api_url, transport=transport,
                      timeout=HTTP_TIMEOUT_S) as client:
        def code() -> str | None:
            answer = client.post("/api/auth/login", json={
                "username": "drill-after-block", "password": "Winter2026!",
                "totp_code": "000000"})
            if answer.status_code == 429 and "blocked" in answer.text:
                return str(answer.json()["error"]["code"])
            return None

        try:
            return wait_for(code, timeout_s, "the attacker's address blocked")
        except DrillError as exc:
            return str(exc)


def _trading_answer(venue_api_url: str) -> int:
    """The venue's answer to the attacker's address: the login block must not reach it."""
    transport = httpx.HTTPTransport(local_address=ATTACKER_ADDRESS)
    with httpx.Client(base_url=venue_api_url, transport=transport,
                      timeout=HTTP_TIMEOUT_S) as client:
        return client.get("/v1/markets").status_code


def _asset(client: VenueClient) -> str:
    with httpx.Client(base_url=client.base_url, timeout=HTTP_TIMEOUT_S) as http:
        assets = http.get("/v1/assets").json()["assets"]
    codes = [a["code"] for a in assets if not a["withdrawals_frozen"]]
    if not codes:
        raise DrillError("the venue lists no asset with open withdrawals")
    return PREFERRED_ASSET if PREFERRED_ASSET in codes else str(codes[0])


def _withdrawal_body(account: int, asset: str, amount: str, destination: str) -> dict[str, Any]:
    return {"account": account, "asset": asset, "amount": amount, "destination": destination,
            "reference": "drill"}


def _withdraw(client: VenueClient, account: int, asset: str, amount: str,
              destination: str) -> None:
    answer = client.admin_post("withdrawals",
                               _withdrawal_body(account, asset, amount, destination))
    if answer.status_code != 200 or '"command_rejected"' in answer.text:
        raise DrillError(f"the drill's withdrawal of {amount} {asset} from account {account} "
                         f"was refused: HTTP {answer.status_code} {answer.text[:200]}")


def _withdraw_as_usual(client: VenueClient, asset: str) -> None:
    """Fund the victims and let each withdraw once to its own address (their history)."""
    for account in VICTIM_ACCOUNTS:
        answer = client.admin_post("deposits", {"account": account, "asset": asset,
                                                "amount": FUNDING, "reference": "drill funding"})
        if answer.status_code != 200:
            raise DrillError(f"funding drill account {account} was refused: HTTP "
                             f"{answer.status_code} {answer.text[:200]}")
        _withdraw(client, account, asset, USUAL_AMOUNT, f"drill-home-{account}")


def _frozen_at(system: DrillSurface, incident_id: int, asset: str) -> datetime | None:
    """When the incident's timeline recorded the rule freezing ``asset``."""
    with database(system) as session:
        for entry in incidents.timeline(session, incident_id):
            if (entry.kind == TimelineKind.WITHDRAWALS and asset in entry.message
                    and "not done" not in entry.message):
                return entry.at
    return None



SCENARIO = UnauthorizedAccessScenario()
