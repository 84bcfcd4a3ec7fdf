"""The composition root of the operations service: every domain's router included by name,
one typed context with each domain's parts, listeners subscribed at start-up only."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from haltguard.app.operations import create_app
from haltguard.detection.intake import IntakeSettings
from haltguard.detection.intake_views import IntakeParts
from haltguard.notify.settings import NotifySettings
from haltguard.responders.settings import ResponderSettings
from haltguard.security.dependencies import login_throttle_of
from haltguard.security.testing import fast_test_settings
from haltguard.security.throttle import LoginThrottle
from haltguard.status.publisher import StatusPublisher
from haltguard.status.settings import StatusSettings
from haltguard.web.context import context_of
from haltguard.web.settings import Settings

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SUBPROCESS_S_MAX = 60.0

SUBSCRIPTION_PROBE = textwrap.dedent("""
    from sqlalchemy import create_engine

    from haltguard.incidents import flows, paging, service, views  # noqa: F401
    from haltguard.responders import paging as pages

    def subscribed() -> int:
        return pages._listeners.count(paging.record_page_event)

    print("after imports", subscribed())
    from haltguard.app.operations import create_app
    from haltguard.web.settings import Settings

    for _ in range(2):
        create_app(Settings(database_url="sqlite://", migrate_on_start=False),
                   engine=create_engine("sqlite://"), escalation_interval_s=None)
    print("after two apps", subscribed())
""")


def build(engine: Engine, **given: object) -> FastAPI:
    return create_app(Settings(database_url="unused", migrate_on_start=False), engine=engine,
                      escalation_interval_s=None, **given)  # type: ignore[arg-type]


def test_importing_the_incident_domain_subscribes_nothing_and_the_root_subscribes_once() -> None:
    found = subprocess.run([sys.executable, "-c", SUBSCRIPTION_PROBE], capture_output=True,
                           text=True, timeout=SUBPROCESS_S_MAX, check=True)
    assert found.stdout.splitlines() == ["after imports 0", "after two apps 1"]


@SQLITE_ONLY
def test_the_root_serves_every_domains_routes(engine: Engine) -> None:
    app = build(engine)
    paths = set(app.openapi()["paths"])
    assert {
        "/api/incidents",
        "/api/incidents/{incident_id}/reports/postmortem",
        "/api/incidents/{incident_id}/reports/regulatory",
        "/api/auth/login",
        "/api/oncall/config",
        "/api/detection/rules/check",
        "/api/detection/alerts/webhook",
        "/api/status/components",
        "/api/notify/subscriptions/email",
    } <= paths
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 200


@SQLITE_ONLY
def test_each_domain_reads_the_settings_the_root_was_given(engine: Engine) -> None:
    security, paging = fast_test_settings(), ResponderSettings(public_url="https://ops.test/")
    notify, status = NotifySettings(link_requests_per_minute=3), StatusSettings(loop_interval_s=0)
    intake = IntakeSettings(tokens=("intake-token-0123456789",))
    app = build(engine, security_settings=security, responder_settings=paging,
                notify_settings=notify, status_settings=status, intake_settings=intake)
    operations = context_of(app)
    assert operations.part(type(security)) is security
    assert operations.part(ResponderSettings) is paging
    assert operations.part(NotifySettings) is notify
    assert operations.part(StatusSettings) is status
    assert operations.part(IntakeParts).settings is intake
    assert operations.part(StatusPublisher).settings is status
    assert login_throttle_of(app) is operations.part(LoginThrottle)
    assert login_throttle_of(app).settings is security


@SQLITE_ONLY
def test_two_apps_share_no_part(engine: Engine) -> None:
    first, second = context_of(build(engine)), context_of(build(engine))
    assert first.part(LoginThrottle) is not second.part(LoginThrottle)
    assert first.part(StatusPublisher) is not second.part(StatusPublisher)
