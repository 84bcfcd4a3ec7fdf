"""The status page over HTTP: the public page without credentials, served from a cache
rendered once per change (ETag, gzip), and the operator routes, each guarded by the
permission table."""

from __future__ import annotations

import gzip
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from status_support import SQLITE_ONLY, START, StatusApi

from haltguard.app.operations import create_app
from haltguard.responders.service import ManualClock
from haltguard.security.permissions import Role, is_allowed
from haltguard.security.testing import (
    fast_test_settings,
    guarded_routes,
    provision_operator,
    walk_permissions,
)
from haltguard.status.views import router
from haltguard.web.settings import Settings

pytestmark = SQLITE_ONLY


def test_the_public_page_needs_no_credentials_in_either_language(api: StatusApi) -> None:
    ja = api.client.get("/status/")
    en = api.client.get("/status/en/")
    assert ja.status_code == en.status_code == 200
    assert ja.headers["content-type"] == "text/html; charset=utf-8"
    assert "すべてのシステムが正常に稼働しています" in ja.text
    assert "All Systems Operational" in en.text
    assert api.client.get("/api/v2/status.json").json()["status"] == {
        "indicator": "none", "description": "すべてのシステムが正常に稼働しています"}
    assert api.client.get("/status/en/api/v2/status.json").json()["status"]["description"] \
        == "All Systems Operational"


def test_the_api_at_the_root_is_the_same_document_as_under_the_page(api: StatusApi) -> None:
    root = api.client.get("/api/v2/summary.json")
    under_page = api.client.get("/status/api/v2/summary.json")
    assert root.content == under_page.content
    assert root.headers["etag"] == under_page.headers["etag"]


def test_paths_without_their_slash_redirect_so_relative_links_work(api: StatusApi) -> None:
    for path, target in (("/status", "/status/"), ("/status/en", "/status/en/")):
        response = api.client.get(path, follow_redirects=False)
        assert response.status_code in {307, 308}
        assert response.headers["location"].endswith(target)


def test_a_client_with_the_current_etag_gets_304_and_gzip_when_it_asks(api: StatusApi) -> None:
    first = api.client.get("/status/")
    again = api.client.get("/status/", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    packed = api.client.get("/status/", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.content == first.content  # httpx undoes the gzip
    raw = api.client.head("/status/", headers={"Accept-Encoding": "identity"})
    assert raw.status_code == 200 and raw.content == b""
    assert int(raw.headers["content-length"]) == len(first.content)


def test_the_public_page_takes_no_writes(api: StatusApi) -> None:
    response = api.client.post("/status/", content=b"x")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert api.client.get("/status/nothing.html").status_code == 404


def test_the_page_is_rendered_once_per_change_not_per_request(api: StatusApi) -> None:
    publisher = api.publisher
    first = api.page("/status/")
    renders = publisher.renders
    for _ in range(5):
        publisher.refresh()
        assert api.client.get("/status/").headers["etag"] == first.headers["etag"]
    assert publisher.renders == renders
    incident = api.open_incident(affected_markets=["BTC-JPY"])
    api.halt(incident["id"], "BTC-JPY")
    changed = api.page("/status/")
    assert publisher.renders == renders + 1
    assert changed.headers["etag"] != first.headers["etag"]
    assert "重大な障害が発生しています" in changed.text


def test_support_staff_draft_and_publish_and_customers_read_it(api: StatusApi) -> None:
    """Manual 2.3 and issue 5: customer support tells customers, without a responder."""
    incident = api.open_incident(affected_markets=["BTC-JPY"])
    api.halt(incident["id"], "BTC-JPY")
    api.clock.advance(timedelta(minutes=4))
    draft = api.call("POST", f"/api/status/incidents/{incident['id']}/drafts", user="sam",
                     body={"status": "investigating"}, expect=201)
    assert draft["state"] == "draft" and "【対象】BTC/JPY 取引" in draft["body_ja"]
    api.call("PATCH", f"/api/status/updates/{draft['id']}", user="sam",
             body={"body_ja": "BTC/JPY の取引を停止し、原因を調査しております。"})
    assert "BTC/JPY の取引を停止" not in api.page("/status/").text  # drafts are not public
    refused = api.client.post(f"/api/status/updates/{draft['id']}/publish",
                              headers=api.as_("vic"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    published = api.call("POST", f"/api/status/updates/{draft['id']}/publish", user="sam")
    assert published["state"] == "published" and published["published_by"] == "sam"
    override = api.client.post("/api/status/components/website/override",
                               headers=api.as_("sam"),
                               json={"status": "major_outage", "reason": "test"})
    assert override.status_code == 403  # overriding a status stays with commanders
    page = api.page("/status/")
    assert "BTC/JPY の取引を停止し、原因を調査しております。" in page.text
    summary = api.page("/api/v2/summary.json").json()
    (listed,) = summary["incidents"]
    assert listed["id"] == f"INC-{incident['id']}"
    assert listed["status"] == "investigating" and listed["impact"] == "major"
    assert listed["incident_updates"][0]["affected_components"] == [
        {"code": "market:BTC-JPY", "name": "BTC/JPY 取引", "old_status": "operational",
         "new_status": "major_outage"}]
    assert summary["status"]["indicator"] == "critical"


def test_a_resolved_incident_moves_to_past_incidents(api: StatusApi) -> None:
    incident = api.open_incident(affected_markets=["ETH-JPY"])
    api.publish(incident["id"], "investigating")
    api.clock.advance(timedelta(minutes=30))
    api.publish(incident["id"], "resolved")
    assert api.page("/api/v2/incidents/unresolved.json").json()["incidents"] == []
    (past,) = api.page("/api/v2/incidents.json").json()["incidents"]
    assert past["status"] == "resolved"
    assert past["resolved_at"] == "2025-01-06T10:00:00.000+09:00"
    page = api.page("/status/en/").text
    past_section = page[page.index("Past incidents"):]
    assert "Service disruption: ETH/JPY trading" in past_section
    detail = api.page(f"/status/en/incidents/INC-{incident['id']}.html").text
    assert "This incident has been resolved." in detail


def test_maintenance_is_announced_ahead_then_starts_and_completes_on_time(
    api: StatusApi,
) -> None:
    start = START + timedelta(days=1)
    draft = api.call("POST", "/api/status/maintenances", body={
        "scheduled_for": start.isoformat(), "scheduled_until": (start + timedelta(hours=2))
        .isoformat(), "components": ["withdrawals:BTC"]}, expect=201)
    assert api.page("/api/v2/scheduled-maintenances/upcoming.json").json()[
        "scheduled_maintenances"] == []  # not announced yet
    api.call("POST", f"/api/status/updates/{draft['id']}/publish")
    (upcoming,) = api.page("/api/v2/scheduled-maintenances/upcoming.json").json()[
        "scheduled_maintenances"]
    assert upcoming["scheduled_for"] == "2025-01-07T09:30:00.000+09:00"
    assert "予定されているメンテナンス" in api.page("/status/").text
    api.clock.advance(timedelta(days=1, minutes=1))
    (active,) = api.page("/api/v2/scheduled-maintenances/active.json").json()[
        "scheduled_maintenances"]
    assert active["status"] == "in_progress"
    components = {c["id"]: c["status"] for c in api.page("/api/v2/components.json").json()[
        "components"]}
    assert components["withdrawals:BTC"] == "under_maintenance"
    api.clock.advance(timedelta(hours=2))
    assert api.page("/api/v2/scheduled-maintenances/active.json").json()[
        "scheduled_maintenances"] == []
    statuses = [u["status"] for u in api.page("/api/v2/scheduled-maintenances.json").json()[
        "scheduled_maintenances"][0]["incident_updates"]]
    assert statuses == ["completed", "in_progress", "scheduled"]


def test_a_maintenance_must_be_announced_ahead(api: StatusApi) -> None:
    response = api.client.post("/api/status/maintenances", headers=api.as_("carol"), json={
        "scheduled_for": (START - timedelta(hours=1)).isoformat(),
        "scheduled_until": (START + timedelta(hours=1)).isoformat(),
        "components": ["website"]})
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "not_ahead", "message": "a maintenance is announced ahead: scheduled_for must "
        "be in the future"}


def test_an_override_through_the_api_shows_on_the_page(api: StatusApi) -> None:
    api.page("/status/")
    body = {"status": "partial_outage", "reason": "logins failing for some customers"}
    refused = api.client.post("/api/status/components/website/override", json=body,
                              headers=api.as_("alice"))
    assert refused.status_code == 403
    shown = api.call("POST", "/api/status/components/website/override", body=body)
    assert shown["status"] == "partial_outage" and shown["automatic_status"] == "operational"
    components = {c["id"]: c for c in api.page("/api/v2/components.json").json()["components"]}
    assert components["website"]["status"] == "partial_outage"
    assert components["group:services"]["status"] == "partial_outage"
    unknown = api.client.post("/api/status/components/nothing/override", json=body,
                              headers=api.as_("carol"))
    assert unknown.status_code == 404
    assert "the components are: group:markets" in unknown.json()["error"]["message"]


def test_the_cadence_lists_when_each_open_incident_must_be_updated(api: StatusApi) -> None:
    incident = api.open_incident(severity="SEV1")
    rows = api.call("GET", "/api/status/cadence", user="vic")["items"]
    assert rows == [{"incident_id": incident["id"], "ref": f"INC-{incident['id']}",
                     "severity": "SEV1", "every_minutes": 15, "last_published_at": None,
                     "due_at": "2025-01-06T00:45:00Z", "overdue": False, "paged_at": None}]


def _status_routes() -> FastAPI:
    """The status router alone, to enumerate its routes (requests go to the service app)."""
    routes = FastAPI()
    routes.include_router(router)
    return routes


def test_each_role_is_allowed_or_refused_on_every_status_route_as_the_table_says(
    engine: Engine, session_factory: sessionmaker[Session], clock: ManualClock,
) -> None:
    app = create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                     clock=clock, security_settings=fast_test_settings(),
                     escalation_interval_s=None)
    routes = _status_routes()
    headers = {role: provision_operator(session_factory, role, now=clock.now()).headers
               for role in Role}

    def body(_route: Any) -> object:
        return {}

    with TestClient(app, base_url="https://testserver") as client:
        calls, mismatches = walk_permissions(client, routes, lambda role: headers[role],
                                             path_values={"component_key": "nothing"},
                                             body_for=body)
    assert [str(mismatch) for mismatch in mismatches] == []
    guarded = [route for route in guarded_routes(routes) if route.actions]
    assert len(guarded) == 13 and calls == len(guarded) * len(Role)
    assert all(route.path.startswith("/api/status/") for route in guarded)
    support = {(route.method, route.path) for route in guarded
               if all(is_allowed(Role.SUPPORT, action) for action in route.actions)}
    assert {("POST", "/api/status/incidents/{incident_id}/drafts"),
            ("POST", "/api/status/updates/{update_id}/publish")} <= support
    assert ("POST", "/api/status/components/{component_key}/override") not in support
    assert ("POST", "/api/status/maintenances") not in support


def test_the_gzip_copy_of_a_page_is_the_same_page(api: StatusApi) -> None:
    """The gzip copy is the same page, compressed once (what a CDN stores)."""
    api.page("/status/")
    site = api.publisher.site
    assert site is not None
    item = site.get("index.html")
    assert item is not None and item.gzipped is not None
    assert gzip.decompress(item.gzipped) == item.body
