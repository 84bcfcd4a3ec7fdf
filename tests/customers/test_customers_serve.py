"""``serve --demo`` with ``customers.auth = "keys"``: the demo's customers get keys, orders
work only as their owners, unsigned orders are refused; without it the demo is open and
says so (issue 19)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from haltguard.app.config import load_config
from haltguard.app.system import start_system
from haltguard.customers.flows import DEMO_KEYS_FILE_NAME, CustomerProtection
from haltguard.customers.settings import AuthMode
from haltguard.customers.signing import signed_headers
from haltguard.drill.runner import ServerThread
from haltguard.web.context import context_of

BUY = {"side": "buy", "qty": "0.01", "price": "10000000"}


def _signed_order(key: dict[str, str], body: dict[str, object]) -> dict[str, str]:
    return {**signed_headers(key["key_id"], key["secret"].encode(),
                             timestamp_ms=time.time_ns() // 1_000_000, method="POST",
                             target="/v1/markets/BTC-JPY/orders",
                             body=json.dumps(body).encode()),
            "Content-Type": "application/json"}


def test_the_demo_in_keys_mode_takes_orders_only_from_their_owners(tmp_path: Path) -> None:
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path), "venue.process": False, "customers.auth": "keys",
        "venue.admin_token": "a" * 24})
    system = start_system(config, demo=True)
    try:
        protection = context_of(system.operations).part(CustomerProtection)
        assert protection.mode is AuthMode.KEYS
        keys = json.loads((tmp_path / DEMO_KEYS_FILE_NAME).read_text())
        assert (tmp_path / DEMO_KEYS_FILE_NAME).stat().st_mode & 0o077 == 0
        one, two = keys["1"], keys["2"]
        with TestClient(system.asgi_app(), base_url="https://testserver") as client:
            unsigned = client.post("/v1/markets/BTC-JPY/orders", json={**BUY, "account": 1})
            assert unsigned.status_code == 401
            theirs = {**BUY, "account": 2}
            stolen = client.post("/v1/markets/BTC-JPY/orders", content=json.dumps(theirs),
                                 headers=_signed_order(one, theirs))
            assert stolen.status_code == 403
            own = client.post("/v1/markets/BTC-JPY/orders", content=json.dumps(BUY),
                              headers=_signed_order(two, BUY))
            assert own.status_code in {200, 201}, own.text
            assert own.json()["order"]["account"] == 2
    finally:
        system.stop()


def test_the_demo_runs_open_by_default_and_says_why(tmp_path: Path) -> None:
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path), "venue.process": False, "venue.admin_token": "a" * 24})
    system = start_system(config, demo=True)
    try:
        protection = context_of(system.operations).part(CustomerProtection)
        assert protection.mode is AuthMode.OPEN
        assert "--demo" in protection.mode_reason
        with TestClient(system.asgi_app(), base_url="https://testserver") as client:
            placed = client.post("/v1/markets/BTC-JPY/orders", json={**BUY, "account": 1})
            assert placed.status_code in {200, 201}
    finally:
        system.stop()


def test_on_the_supervised_venue_the_public_front_checks_signatures_before_the_venue(
        tmp_path: Path) -> None:
    """The venue in its own process: plain orders are read by the public port's front door
    (``gateway/front.py``), which must refuse what the gateway refuses and bind the rest."""
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path), "venue.process": True, "customers.auth": "keys",
        "venue.admin_token": "a" * 24})
    system = start_system(config, demo=True)
    server = None
    try:
        assert system.public_front is not None and system.public_front.judge is not None
        server = ServerThread(system.asgi_app(), **system.server_options()).start()
        assert system.supervisor is not None
        deadline = time.monotonic() + 60
        while system.supervisor.down_reason():  # the venue process still starting
            assert time.monotonic() < deadline, system.supervisor.down_reason()
            time.sleep(0.1)
        keys = json.loads((tmp_path / DEMO_KEYS_FILE_NAME).read_text())
        one, two = keys["1"], keys["2"]
        with httpx.Client(base_url=server.url, timeout=20) as client:
            unsigned = client.post("/v1/markets/BTC-JPY/orders", json={**BUY, "account": 1})
            theirs = {**BUY, "account": 2}
            stolen = client.post("/v1/markets/BTC-JPY/orders", content=json.dumps(theirs),
                                 headers=_signed_order(one, theirs))
            own = client.post("/v1/markets/BTC-JPY/orders", content=json.dumps(BUY),
                              headers=_signed_order(two, BUY))
        answered = system.public_front.answered
    finally:
        if server is not None:
            server.stop()
        system.stop()

    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "signature_missing"
    assert stolen.status_code == 403
    assert own.status_code == 201, own.text
    assert own.json()["order"]["account"] == 2  # filled in with the key's account
    assert answered == 3  # all three were the front's, none the full stack's
