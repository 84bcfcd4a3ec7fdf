"""The compensation API over a real venue: who may do what, four eyes, the payout's progress,
the CSV for accounting, statements, and the joined-up story from a halt to the regulator
report."""

from __future__ import annotations

import csv
import io
import time
from datetime import timedelta
from typing import Any

import pytest
from comp_service_support import (
    ACCOUNTS,
    BTC_HOLDING_JPY,
    GOODWILL_JPY,
    REFUSED_ACCOUNT,
    Api,
    text_of,
)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

RUNS = "/api/compensation/runs"
PAYOUT_WAIT_S_MAX = 30.0


def _proposal(api: Api) -> dict[str, Any]:
    return api.setup.proposal(to_time=(api.setup.now + timedelta(hours=1)).isoformat())


def _propose(api: Api, who: str = "alice") -> dict[str, Any]:
    response = api.client.post(RUNS, json=_proposal(api), headers=api.as_(who))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def _approve(api: Api, run: dict[str, Any], who: str = "carol") -> Any:
    return api.client.post(f"{RUNS}/{run['id']}/approve", json={"digest": run["digest"]},
                           headers=api.as_(who))


def _pay_to_the_end(api: Api, run_id: int) -> dict[str, Any]:
    response = api.client.post(f"{RUNS}/{run_id}/pay", headers=api.as_("carol"))
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + PAYOUT_WAIT_S_MAX
    while True:
        data: dict[str, Any] = api.client.get(f"{RUNS}/{run_id}/payout", params={"wait_s": 1},
                                              headers=api.as_("sam")).json()
        if data["finished_at"] or data["last_error"]:
            return data
        assert time.monotonic() < deadline, "the payout did not finish"


def test_the_proposer_cannot_approve_their_own_run(api: Api) -> None:
    run = _propose(api, "carol")
    refused = _approve(api, run, "carol")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "four_eyes_required"
    assert _approve(api, run, "dave").status_code == 200


def test_approval_needs_the_compensation_approve_permission(api: Api) -> None:
    run = _propose(api)
    for who in ("alice", "sam", "vic"):
        response = _approve(api, run, who)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    assert api.client.post(RUNS, json=_proposal(api), headers=api.as_("sam")).status_code == 403


def test_an_approval_of_another_digest_is_refused(api: Api) -> None:
    run = _propose(api)
    response = api.client.post(f"{RUNS}/{run['id']}/approve", json={"digest": "0" * 64},
                               headers=api.as_("carol"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "compensation_digest_mismatch"
    assert api.client.get(f"{RUNS}/{run['id']}", headers=api.as_("sam")).json()["state"] \
        == "computed"


def test_paying_an_unapproved_run_is_refused_and_pays_nobody(api: Api) -> None:
    run = _propose(api)
    before = api.setup.jpy_of(1)
    response = api.client.post(f"{RUNS}/{run['id']}/pay", headers=api.as_("carol"))
    assert response.status_code == 409
    assert "not approved" in response.json()["error"]["message"]
    assert api.setup.jpy_of(1) == before


def test_support_explains_one_account_with_the_inputs_used(api: Api) -> None:
    run = _propose(api)
    response = api.client.get(f"{RUNS}/{run['id']}/accounts/{REFUSED_ACCOUNT}",
                              headers=api.as_("sam"))
    assert response.status_code == 200
    line = response.json()["lines"][0]
    assert line["amount_minor"] == BTC_HOLDING_JPY + GOODWILL_JPY
    loss = next(part for part in line["parts"] if part["policy"] == "btc-asset-loss")
    assert loss["inputs"]["qty_minor"] == 100 * 10**8
    assert loss["inputs"]["price"] == "15000001.250"
    missing = api.client.get(f"{RUNS}/{run['id']}/accounts/999", headers=api.as_("sam"))
    assert missing.status_code == 404


def test_the_accounting_csv_sums_to_the_run_total_exactly(api: Api) -> None:
    run = _propose(api)
    response = api.client.get(f"{RUNS}/{run['id']}/export.csv", headers=api.as_("sam"))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == ACCOUNTS
    assert sum(int(row["amount_minor"]) for row in rows) == run["totals"]["JPY"]
    three = next(row for row in rows if row["account"] == str(REFUSED_ACCOUNT))
    assert three["amount"] == "1500001125.0000"
    assert {row["digest"] for row in rows} == {run["digest"]}


def test_a_halt_to_a_paid_explained_run_and_the_regulator_report(api: Api) -> None:
    """The joined-up story: an incident with a halt (the fixture halted BTC-JPY, and an
    order was refused), its impact, a run, two operators, the payout, statements and the
    public note, and the regulator report with the affected customers filled in."""
    incident_id = api.setup.incident_id
    impact = api.client.get(f"/api/incidents/{incident_id}/impact", headers=api.as_("carol"))
    assert impact.status_code == 200, impact.text
    assert REFUSED_ACCOUNT in [item["account"] for item in impact.json()["affected"]]

    run = _propose(api, "alice")
    assert run["state"] == "computed" and run["totals"] == {
        "JPY": ACCOUNTS * BTC_HOLDING_JPY + GOODWILL_JPY}
    assert _approve(api, run, "carol").json()["state"] == "approved"

    before = api.setup.jpy_of(REFUSED_ACCOUNT)
    payout = _pay_to_the_end(api, run["id"])
    assert payout["state"] == "paid" and payout["lines_paid"] == ACCOUNTS
    assert api.setup.jpy_of(REFUSED_ACCOUNT) - before == BTC_HOLDING_JPY + GOODWILL_JPY
    again = api.client.post(f"{RUNS}/{run['id']}/pay", headers=api.as_("carol"))
    assert again.status_code == 409  # paid in full: nothing is paid twice
    assert api.setup.jpy_of(REFUSED_ACCOUNT) - before == BTC_HOLDING_JPY + GOODWILL_JPY

    contacts = [{"account": REFUSED_ACCOUNT, "email": "three@example.test", "language": "en"}]
    counts = api.client.post(f"{RUNS}/{run['id']}/statements", json={"contacts": contacts},
                             headers=api.as_("carol"))
    assert counts.status_code == 200, counts.text
    assert counts.json()["sent"] == 1 and counts.json()["stored"] == ACCOUNTS - 1
    mail = text_of(api.setup.mailbox.to("three@example.test")[0])
    assert "JPY 1,500,001,125.0000" in mail and "btc-asset-loss" in mail
    statement = api.client.get(f"{RUNS}/{run['id']}/statements",
                               params={"account": 1}, headers=api.as_("sam")).json()["items"][0]
    assert "補償" in statement["body_ja"] and "compensation" in statement["body_en"]

    shown = api.client.get(f"{RUNS}/{run['id']}", headers=api.as_("vic"))
    assert shown.status_code == 403  # viewers do not see who was paid what

    report = api.client.get(f"/api/incidents/{incident_id}/reports/regulatory",
                            headers=api.as_("carol"))
    assert report.status_code == 200
    affected = len(impact.json()["affected"])
    assert f"{affected:,} 名" in report.text or f"{affected:,}名" in report.text
