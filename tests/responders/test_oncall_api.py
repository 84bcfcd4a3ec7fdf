"""The HTTP API: signed ack links without login, operator acks by permission, set-up
endpoints with clear errors, paginated lists."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from haltguard.app.operations import create_app
from haltguard.common.clock import ManualClock
from haltguard.responders.settings import ResponderSettings
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings, provision_operator
from haltguard.web.context import attach, context_of
from haltguard.web.ratelimit import PublicLinkLimits
from haltguard.web.settings import Settings

from .conftest import HttpReceiver, SmtpServer
from .oncall_setup import ACK_LINK, page_state, send_page, two_level_policy

Factory = sessionmaker[Session]


def paged_link(
    *, session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver, incident_id: str = "INC-1",
) -> tuple[int, str]:
    """Send a page and return its id and the ack link path tanaka received."""
    page_id = send_page(session_factory, clock, settings, incident_id=incident_id)
    mail = smtp_server.to("tanaka@example.com")[-1]
    path, linked_id = ACK_LINK.findall(mail.get_content())[0]
    assert int(linked_id) == page_id
    return page_id, path


def form_of(html: str) -> tuple[str, str]:
    """The confirmation page's form: where it posts and the token it carries."""
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    token = re.search(r'<input type="hidden" name="token" value="([^"]+)"', html)
    assert action and token, html
    return unescape(action.group(1)), unescape(token.group(1))


def press_the_button(client: TestClient, path: str) -> Response:
    """What a responder does: open the link, then press the page's button."""
    shown = client.get(path)
    assert shown.status_code == 200, shown.text
    action, token = form_of(shown.text)
    return client.post(action, data={"token": token})


def test_signed_link_acknowledges_without_login_and_stops_escalation(
    *, api: TestClient, session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id, path = paged_link(session_factory=session_factory, clock=clock, settings=settings,
                               smtp_server=smtp_server, http_receiver=http_receiver)

    answer = press_the_button(api, path)
    assert answer.status_code == 200
    assert "確認しました" in answer.text and "acknowledged" in answer.text
    shown = page_state(session_factory, page_id)
    assert (shown.status, shown.acknowledged_by, shown.ack_via) == (
        "acknowledged", "responder:tanaka", "link")

    again = api.get(path)
    assert again.status_code == 200 and "already" in again.text
    assert "<form" not in again.text


def test_opening_the_link_only_asks_so_a_mail_scanner_acknowledges_nothing(
    *, api: TestClient, session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id, path = paged_link(session_factory=session_factory, clock=clock, settings=settings,
                               smtp_server=smtp_server, http_receiver=http_receiver)

    for _ in range(3):  # a scanner prefetching the link, more than once
        shown = api.get(path)
        assert shown.status_code == 200
        assert "<script" not in shown.text
        assert f"Acknowledge page {page_id}" in shown.text and "確認しますか" in shown.text
    assert page_state(session_factory, page_id).status == "triggered"
    action, token = form_of(shown.text)
    assert action == f"/api/pages/{page_id}/ack-link"
    assert token == path.split("token=")[1]
    assert page_state(session_factory, page_id).status == "triggered"


def test_a_bad_link_gets_the_same_answer_for_unknown_and_existing_pages(
    *, api: TestClient, session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id, path = paged_link(session_factory=session_factory, clock=clock, settings=settings,
                               smtp_server=smtp_server, http_receiver=http_receiver)
    unknown_id = page_id + 1000
    forged = path.split("token=")[1][:-3] + "AAA"
    for method in ("GET", "POST"):
        answers = []
        for target in (page_id, unknown_id):
            if method == "GET":
                answer = api.get(f"/api/pages/{target}/ack", params={"token": forged})
            else:
                answer = api.post(f"/api/pages/{target}/ack-link", data={"token": forged})
            shown = answer.text.replace(f"oncall ack {target}", "oncall ack N")
            answers.append((answer.status_code, shown))
        assert answers[0] == answers[1]
        assert answers[0][0] == 403
    assert page_state(session_factory, page_id).status == "triggered"


def test_ack_links_are_throttled_per_address(
    *, api: TestClient, session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    app = api.app
    assert isinstance(app, FastAPI)
    attach(app, context_of(app).with_parts([PublicLinkLimits(link_requests_per_minute=3)]))
    two_level_policy(session_factory, clock, http_receiver)
    page_id, path = paged_link(session_factory=session_factory, clock=clock, settings=settings,
                               smtp_server=smtp_server, http_receiver=http_receiver)
    guesses = [api.post(f"/api/pages/{page_id}/ack-link", data={"token": f"{page_id}.1.x.y{n}"})
               for n in range(3)]
    assert [answer.status_code for answer in guesses] == [403, 403, 403]
    held = api.get(path)
    assert held.status_code == 429 and int(held.headers["Retry-After"]) >= 1
    assert page_state(session_factory, page_id).status == "triggered"


def test_forged_expired_and_other_page_links_are_refused(
    *, api: TestClient, session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    first_id, first_path = paged_link(session_factory=session_factory, clock=clock,
                                      settings=settings, smtp_server=smtp_server,
                                      http_receiver=http_receiver)
    second_id, _ = paged_link(session_factory=session_factory, clock=clock,
                              settings=settings, smtp_server=smtp_server,
                              http_receiver=http_receiver, incident_id="INC-2")

    first_token = first_path.split("token=")[1]
    other_page = first_path.replace(f"/api/pages/{first_id}/", f"/api/pages/{second_id}/")
    refused = api.get(other_page)
    assert refused.status_code == 403 and "another page" in refused.text
    posted = api.post(f"/api/pages/{second_id}/ack-link", data={"token": first_token})
    assert posted.status_code == 403 and "another page" in posted.text

    forged = first_path[:-3] + ("AAA" if not first_path.endswith("AAA") else "BBB")
    assert api.get(forged).status_code == 403
    forged_token = forged.split("token=")[1]
    assert api.post(f"/api/pages/{first_id}/ack-link",
                    data={"token": forged_token}).status_code == 403
    assert api.post(f"/api/pages/{first_id}/ack-link").status_code == 403

    clock.advance(timedelta(seconds=settings.ack_link_ttl_s))
    expired = api.get(first_path)
    assert expired.status_code == 403 and "有効期限" in expired.text
    expired_post = api.post(f"/api/pages/{first_id}/ack-link", data={"token": first_token})
    assert expired_post.status_code == 403 and "有効期限" in expired_post.text
    assert page_state(session_factory, first_id).status != "acknowledged"
    assert page_state(session_factory, second_id).status != "acknowledged"


def test_api_ack_needs_page_ack_permission(
    *, api: TestClient, session_factory: Factory, clock: ManualClock, settings: ResponderSettings,
    http_receiver: HttpReceiver,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    page_id = send_page(session_factory, clock, settings)
    viewer = provision_operator(session_factory, Role.VIEWER, now=clock.now())
    responder = provision_operator(session_factory, Role.RESPONDER, now=clock.now())

    assert api.post(f"/api/pages/{page_id}/ack").status_code == 401
    refused = api.post(f"/api/pages/{page_id}/ack", headers=viewer.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"

    answer = api.post(f"/api/pages/{page_id}/ack", headers=responder.headers,
                      json={"note": "looking at the matcher"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "acknowledged"
    assert body["acknowledged_by"] == f"operator:{responder.username}"
    assert body["events"][-1]["details"]["note"] == "looking at the matcher"


def test_operator_pages_lists_and_reads_page_details(
    *, api: TestClient, session_factory: Factory, clock: ManualClock, http_receiver: HttpReceiver,
    smtp_server: SmtpServer,
) -> None:
    two_level_policy(session_factory, clock, http_receiver)
    responder = provision_operator(session_factory, Role.RESPONDER, now=clock.now())
    for number in range(3):
        sent = api.post("/api/pages", headers=responder.headers, json={
            "incident_id": f"INC-{number}", "summary": "DNS failure", "category": "network",
            "severity": "SEV2"})
        assert sent.status_code == 201, sent.text
    assert len(smtp_server.to("tanaka@example.com")) == 3

    first = api.get("/api/pages?limit=2", headers=responder.headers).json()
    assert first["total"] == 3 and len(first["items"]) == 2 and first["next_offset"] == 2
    assert [item["incident_id"] for item in first["items"]] == ["INC-2", "INC-1"]
    one = api.get(f"/api/pages/{first['items'][0]['id']}", headers=responder.headers).json()
    [notification] = one["notifications"]
    assert notification["person"] == "tanaka"
    assert {d["kind"] for d in notification["deliveries"]} == {"email", "apprise"}
    events = api.get(f"/api/pages/{one['id']}/events", headers=responder.headers).json()
    assert events["items"][0]["kind"] == "paged"
    assert "tanaka" in events["items"][0]["text_ja"]

    missing = api.get("/api/pages/999", headers=responder.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_setup_endpoints_build_a_rotation_and_answer_who_is_on_call(
    *, api: TestClient, session_factory: Factory, clock: ManualClock,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, now=clock.now())
    viewer = provision_operator(session_factory, Role.VIEWER, now=clock.now())
    for handle in ("tanaka", "suzuki"):
        answer = api.put(f"/api/oncall/people/{handle}", headers=admin.headers, json={
            "handle": handle, "display_name": handle.title(),
            "contacts": [{"kind": "apprise",
                          "address": "slack://TokenA/TokenB/TokenC/#oncall"}]})
        assert answer.status_code == 200, answer.text
        assert "TokenB" not in answer.text
    assert api.put("/api/oncall/people/x", headers=viewer.headers, json={
        "handle": "x", "display_name": "X"}).status_code == 403

    schedule = api.put("/api/oncall/schedules/infra", headers=admin.headers, json={
        "name": "infra", "start_date": "2026-03-02", "handoff": "09:00", "rotation_days": 7,
        "members": ["tanaka", "suzuki"]})
    assert schedule.status_code == 200, schedule.text
    now = api.get("/api/oncall/schedules/infra/on-call", headers=viewer.headers).json()
    assert now["person"] == "tanaka"
    later = api.get("/api/oncall/schedules/infra/on-call",
                    params={"at": "2026-03-09T09:00:00+09:00"}, headers=viewer.headers).json()
    assert later["person"] == "suzuki"

    override = api.post("/api/oncall/schedules/infra/overrides", headers=admin.headers, json={
        "person": "suzuki", "start": "2026-03-02T12:00:00+09:00",
        "end": "2026-03-02T18:00:00+09:00", "reason": "tanaka at the dentist"})
    assert override.status_code == 201, override.text
    during = api.get("/api/oncall/schedules/infra/on-call",
                     params={"at": "2026-03-02T13:00:00+09:00"}, headers=viewer.headers).json()
    assert during["person"] == "suzuki" and during["override"] is True
    shifts = api.get("/api/oncall/schedules/infra/shifts", params={"days": 14},
                     headers=viewer.headers).json()
    assert [s["person"] for s in shifts["items"]] == ["tanaka", "suzuki", "tanaka", "suzuki"]


def test_setup_errors_say_what_was_wrong(
    *, api: TestClient, session_factory: Factory, clock: ManualClock,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, now=clock.now())
    unknown = api.put("/api/oncall/schedules/infra", headers=admin.headers, json={
        "name": "infra", "start_date": "2026-03-02", "members": ["ghost"]})
    assert unknown.status_code == 422
    assert unknown.json()["error"] == {
        "code": "invalid_input",
        "message": "schedule infra names unknown people: ghost; add them first"}
    bad_target = api.put("/api/oncall/policies/p", headers=admin.headers, json={
        "name": "p", "levels": [{"ack_timeout_s": 300, "targets": ["team:infra"]}]})
    assert bad_target.status_code == 422
    assert "write schedule:NAME" in bad_target.json()["error"]["message"]
    bad_tree = api.put("/api/oncall/contact-tree/earthquake", headers=admin.headers, json=[])
    assert bad_tree.status_code == 422
    assert "unknown incident category" in bad_tree.json()["error"]["message"]


def test_contact_tree_is_editable_and_shows_its_gaps(
    *, api: TestClient, session_factory: Factory, clock: ManualClock,
) -> None:
    admin = provision_operator(session_factory, Role.ADMIN, now=clock.now())
    for handle in ("ito", "kobayashi"):
        api.put(f"/api/oncall/people/{handle}", headers=admin.headers,
                json={"handle": handle, "display_name": handle})
    answer = api.put("/api/oncall/contact-tree/ddos", headers=admin.headers, json=[
        {"person": "ito", "backup": "kobayashi", "role": "Security"}])
    assert answer.status_code == 200, answer.text
    tree = api.get("/api/oncall/contact-tree", headers=admin.headers).json()
    assert tree["contact_tree"] == {
        "ddos": [{"person": "ito", "backup": "kobayashi", "role": "Security"}]}
    assert "ddos" not in tree["categories_without_contacts"]
    assert len(tree["categories_without_contacts"]) == 9
    in_use = api.delete("/api/oncall/people/ito", headers=admin.headers)
    assert in_use.status_code == 409
    assert "the contact tree for ddos" in in_use.json()["error"]["message"]


def test_the_service_app_serves_the_ack_link_and_documents_the_page_routes(
    *, engine: Engine, database_url: str, session_factory: Factory, clock: ManualClock,
    settings: ResponderSettings, smtp_server: SmtpServer, http_receiver: HttpReceiver,
) -> None:
    app = create_app(Settings(database_url=database_url, migrate_on_start=False),
                     clock=clock, engine=engine, responder_settings=settings,
                     security_settings=fast_test_settings())
    two_level_policy(session_factory, clock, http_receiver)
    page_id, path = paged_link(session_factory=session_factory, clock=clock, settings=settings,
                               smtp_server=smtp_server, http_receiver=http_receiver)
    with TestClient(app, base_url="https://testserver") as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/api/pages", "/api/pages/{page_id}/ack", "/api/oncall/contact-tree"} <= set(paths)
        assert client.get(path).status_code == 200
        assert page_state(session_factory, page_id).status == "triggered"
        assert press_the_button(client, path).status_code == 200
    assert page_state(session_factory, page_id).status == "acknowledged"
