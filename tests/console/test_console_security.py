"""The console refuses what the API refuses, and what a browser adds to attack: forms from
elsewhere, pages without a login, HTML smuggled in through titles and comments."""

from __future__ import annotations

import time
from datetime import timedelta

from console_support import SQLITE_ONLY, csrf_of, desk, rest_orders
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.gateway.control import InProcessVenueControl
from haltguard.incidents.models import Incident, TimelineEntry, TimelineKind
from haltguard.responders.service import ManualClock
from haltguard.security.models import AuditEntry
from haltguard.security.testing import ProvisionedOperator
from haltguard.venue.types import MarketState

pytestmark = SQLITE_ONLY

PAGES = ("/console/overview", "/console/incidents", "/console/incidents/1", "/console/audit",
         "/console/status-admin", "/console/oncall", "/console/rules")


def _open_incident(app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
                   title: str = "Order database unreachable", severity: str = "SEV2") -> int:
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    answer = carol.post("/console/incidents", {
        "title": title, "category": "database", "severity": severity,
        "affected_markets": "BTC-JPY"}, token_from="/console/incidents")
    assert answer.status_code == 303, answer.text
    return int(answer.headers["location"].rsplit("/", 1)[1])


def _audit_actions(session_factory: sessionmaker[Session]) -> list[str]:
    with session_factory() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.index)))


def test_a_logged_out_browser_reaches_no_page_and_no_live_data(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
) -> None:
    stranger = desk(app, operators["carol"], clock)
    for path in PAGES:
        answer = stranger.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/console/login"), path
    assert stranger.get("/console/live/overview").status_code == 401
    assert stranger.get("/console/events").status_code == 401
    refused = stranger.client.post("/console/incidents", data={"title": "x"},
                                   follow_redirects=False)
    assert refused.status_code in (303, 403)


def test_after_logout_the_old_session_cookie_opens_nothing(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
) -> None:
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    cookie = carol.client.cookies.get("haltguard_session")
    assert cookie
    replay = desk(app, operators["carol"], clock)
    replay.client.cookies.set("haltguard_session", cookie)
    assert replay.get("/console/overview").status_code == 200  # the cookie is all it takes
    assert carol.post("/console/logout", {}).status_code == 303
    assert replay.get("/console/overview").status_code == 303


def test_a_form_without_the_session_token_is_refused_and_changes_nothing(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    venue: InProcessVenueControl, session_factory: sessionmaker[Session],
) -> None:
    incident_id = _open_incident(app, operators, clock)
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    for fields in ({}, {"csrf_token": "forged"}):
        halted = carol.post(f"/console/incidents/{incident_id}/act", {
            "action": "halt", "markets": "BTC-JPY", "reason": "forged", **fields},
            with_token=False)
        assert halted.status_code == 403
        assert "csrf_token_invalid" in halted.text
        commented = carol.post(f"/console/incidents/{incident_id}/comment",
                               {"text": "forged", **fields}, with_token=False)
        assert commented.status_code == 403
    assert venue.market_states()["BTC-JPY"] == MarketState.OPEN
    with session_factory() as session:
        kinds = session.scalars(select(TimelineEntry.kind).where(
            TimelineEntry.incident_id == incident_id))
        assert TimelineKind.COMMENT not in set(kinds)


def test_another_operators_token_does_not_pass_for_mine(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    venue: InProcessVenueControl,
) -> None:
    incident_id = _open_incident(app, operators, clock)
    dave = desk(app, operators["dave"], clock)
    assert dave.login().status_code == 303
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    answer = carol.post(f"/console/incidents/{incident_id}/act", {
        "action": "halt", "markets": "BTC-JPY", "reason": "x",
        "csrf_token": dave.token()}, with_token=False)
    assert answer.status_code == 403
    assert venue.market_states()["BTC-JPY"] == MarketState.OPEN


def test_support_sees_no_halt_button_and_a_hand_made_halt_is_refused_and_audited(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    venue: InProcessVenueControl, session_factory: sessionmaker[Session],
) -> None:
    incident_id = _open_incident(app, operators, clock)
    sam = desk(app, operators["sam"], clock)
    assert sam.login().status_code == 303
    page = sam.get(f"/console/incidents/{incident_id}")
    assert page.status_code == 200
    assert 'value="halt"' not in page.text
    assert 'value="kill_switch"' not in page.text
    assert "/act" not in page.text and "/review" not in page.text
    token = sam.token(f"/console/incidents/{incident_id}")
    for step in ("review", "act"):
        answer = sam.post(f"/console/incidents/{incident_id}/{step}", {
            "action": "halt", "markets": "BTC-JPY", "reason": "hand made",
            "csrf_token": token}, with_token=False)
        assert answer.status_code == 403, answer.text
        assert "market.halt" in answer.text
    assert venue.market_states()["BTC-JPY"] == MarketState.OPEN
    assert _audit_actions(session_factory).count("security.permission_denied") == 2
    # What support may do, it may do: a comment.
    assert sam.post(f"/console/incidents/{incident_id}/comment", {"text": "customers told"},
                    token_from=f"/console/incidents/{incident_id}").status_code == 303


def test_script_tags_in_titles_and_comments_are_shown_as_text(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session],
) -> None:
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    incident_id = _open_incident(app, operators, clock, title=attack)
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    assert carol.post(f"/console/incidents/{incident_id}/comment", {"text": attack},
                      token_from=f"/console/incidents/{incident_id}").status_code == 303
    with session_factory() as session:
        assert session.get(Incident, incident_id).title == attack  # type: ignore[union-attr]
    for path in (f"/console/incidents/{incident_id}", "/console/overview",
                 f"/console/live/incidents/{incident_id}", "/console/incidents"):
        html = carol.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(" in html, path


def test_every_page_has_a_strict_csp_and_the_session_cookie_is_httponly_strict_secure(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
) -> None:
    carol = desk(app, operators["carol"], clock)
    login_page = carol.get("/console/login")
    logged_in = carol.login()
    assert logged_in.status_code == 303
    cookie = next(value for name, value in logged_in.headers.multi_items()
                  if name == "set-cookie" and value.startswith("haltguard_session="))
    assert all(flag in cookie.lower() for flag in ("httponly", "samesite=strict", "secure"))
    for answer in [login_page] + [carol.get(path) for path in PAGES if "/1" not in path]:
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert answer.headers["x-frame-options"] == "DENY"
        assert "<script>" not in answer.text  # only the package's script file, by src


def test_a_wrong_totp_code_logs_nobody_in(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session],
) -> None:
    carol = desk(app, operators["carol"], clock)
    page = carol.get("/console/login")
    answer = carol.client.post("/console/login", data={
        "csrf_token": csrf_of(page.text), "username": "carol",
        "password": operators["carol"].password, "totp_code": "000000"},
        follow_redirects=False)
    assert answer.status_code == 401
    assert "haltguard_session" not in carol.client.cookies
    assert _audit_actions(session_factory)[-1] == "operator.login_failed"


def test_an_idle_session_is_ended_and_audited(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    session_factory: sessionmaker[Session],
) -> None:
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    assert carol.get("/console/overview").status_code == 200
    clock.advance(timedelta(minutes=29))
    assert carol.get("/console/overview").status_code == 200
    clock.advance(timedelta(minutes=30))
    answer = carol.get("/console/overview")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?notice=logged_out_idle"
    assert _audit_actions(session_factory)[-1] == "operator.logged_out"
    assert carol.get("/console/overview").status_code == 303


def test_the_halt_confirmation_names_the_markets_resting_orders(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    venue: InProcessVenueControl,
) -> None:
    rest_orders(venue, "BTC-JPY", 1234)
    incident_id = _open_incident(app, operators, clock)
    carol = desk(app, operators["carol"], clock)
    assert carol.login().status_code == 303
    carol.client.cookies.set("haltguard_console_lang", "en")
    path = f"/console/incidents/{incident_id}/review"
    fields = {"action": "halt", "markets": "BTC-JPY", "reason": "protect customers"}
    deadline = time.monotonic() + 5
    while True:
        review = carol.post(path, fields, token_from=f"/console/incidents/{incident_id}")
        if "1,234 resting orders" in review.text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert review.status_code == 200
    assert "BTC-JPY: 1,234 resting orders, new orders refused" in review.text
    assert venue.market_states()["BTC-JPY"] == MarketState.OPEN  # reviewing does nothing
    done = carol.post(f"/console/incidents/{incident_id}/act", fields,
                      token_from=f"/console/incidents/{incident_id}")
    assert done.status_code == 303
    assert venue.market_states()["BTC-JPY"] == MarketState.HALTED


def test_the_language_switch_goes_back_only_within_the_console(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
) -> None:
    browser = desk(app, operators["carol"], clock)
    for back in ("https://evil.example/", "//evil.example/", "/console/../api/x"):
        answer = browser.get(f"/console/language/en?back={back}")
        assert answer.headers["location"] == "/console/overview", back
    answer = browser.get("/console/language/en?back=/console/incidents")
    assert answer.headers["location"] == "/console/incidents"
    assert "haltguard_console_lang=en" in answer.headers["set-cookie"]


def test_a_script_with_an_api_token_reads_pages_but_no_form_takes_it(
    app: FastAPI, operators: dict[str, ProvisionedOperator], clock: ManualClock,
    venue: InProcessVenueControl,
) -> None:
    incident_id = _open_incident(app, operators, clock)
    script = desk(app, operators["carol"], clock)
    headers = operators["carol"].headers
    assert script.client.get("/console/overview", headers=headers).status_code == 200
    refused = script.client.post(f"/console/incidents/{incident_id}/act", headers=headers,
                                 data={"action": "halt", "markets": "BTC-JPY", "reason": "x"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_token_invalid"
    live = script.client.get("/console/events", headers=headers)
    assert live.status_code == 403 and live.json()["error"]["code"] == "browser_only"
    support = script.client.post(f"/console/incidents/{incident_id}/comment",
                                 headers=operators["vic"].headers, data={"text": "x"})
    assert support.json()["error"]["code"] == "permission_denied"
    assert venue.market_states()["BTC-JPY"] == MarketState.OPEN
