"""Helpers shared by the console tests (imported by name; pytest puts this folder on the
path): an operator at the console is a client with its own cookies who logs in with a
password and a TOTP code, as a person does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from haltguard.gateway.control import InProcessVenueControl
from haltguard.responders.service import ManualClock
from haltguard.security.testing import ProvisionedOperator
from haltguard.venue.commands import PlaceOrder
from haltguard.venue.types import Side

START = datetime(2025, 1, 6, 0, 30, tzinfo=UTC)  # 09:30 JST
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SCREENSHOTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


def totp_code(operator: ProvisionedOperator, moment: datetime) -> str:
    return pyotp.TOTP(operator.totp_secret).at(moment)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form token"
    return found.group(1)


@dataclass
class Desk:
    """One operator's browser-like client of the console."""

    client: TestClient
    operator: ProvisionedOperator
    clock: ManualClock

    def login(self) -> httpx.Response:
        """Log in with a fresh TOTP code (the clock moves past the last code's step first: a
        code is accepted once)."""
        later(self.clock)
        page = self.client.get("/console/login")
        assert page.status_code == 200, page.text
        return self.client.post("/console/login", data={
            "csrf_token": csrf_of(page.text), "username": self.operator.username,
            "password": self.operator.password,
            "totp_code": totp_code(self.operator, self.clock.now()),
        }, follow_redirects=False)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path, follow_redirects=False)

    def token(self, path: str = "/console/overview") -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text
        return csrf_of(page.text)

    def post(self, path: str, fields: dict[str, Any], *, token_from: str | None = None,
             with_token: bool = True) -> httpx.Response:
        data = dict(fields)
        if with_token:
            data["csrf_token"] = self.token(token_from or "/console/overview")
        return self.client.post(path, data=data, follow_redirects=False)


def desk(app: FastAPI, operator: ProvisionedOperator, clock: ManualClock) -> Desk:
    return Desk(TestClient(app, base_url="https://testserver"), operator, clock)


def rest_orders(venue: InProcessVenueControl, market: str, count: int) -> None:
    """``count`` buy orders resting in ``market`` (nothing sells, so none trades)."""
    futures = [venue.runtime.submit(PlaceOrder(market, 1 + index % 5, Side.BUY, 10,
                                               13_000_000 - index))
               for index in range(count)]
    for future in futures:
        future.result(10)


def later(clock: ManualClock, seconds: int = 31) -> None:
    """Past the TOTP step, so the same operator may log in again."""
    clock.advance(timedelta(seconds=seconds))
