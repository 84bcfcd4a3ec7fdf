"""The public help centre and contact form: pinned incident entries drafted from the
incident's facts, both languages, escaping, the honeypot and the per-address flood limit
(the flood is refused; nothing from other addresses, nor what came before, is lost)."""

from __future__ import annotations

import pytest
from support_desk import ARTICLES, Desk

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_the_incident_faq_is_drafted_from_its_facts_and_pinned_once_published(
    desk: Desk,
) -> None:
    desk.add_articles()
    drafted = desk.client.post(f"/api/support/incidents/{desk.incident_id}/faq",
                               headers=desk.as_("sam"))
    assert drafted.status_code == 201, drafted.text
    slugs = [article["slug"] for article in drafted.json()]
    assert slugs == [f"inc-{desk.incident_id}-{name}"
                     for name in ("assets-safe", "cannot-cancel", "compensation")]
    cancel = drafted.json()[1]
    assert "BTC-JPY" in cancel["body_ja"] and f"INC-{desk.incident_id}" in cancel["title_ja"]
    assert "pinned-title" not in desk.client.get("/help/").text  # drafts are not shown
    for slug in slugs:
        published = desk.client.post(f"/api/support/articles/{slug}/publish",
                                     headers=desk.as_("sam"))
        assert published.status_code == 200
    page = desk.client.get("/help/").text
    assert page.index("pinned-title") < page.index(ARTICLES[0]["title_ja"])
    assert "お客様の資産は安全ですか？" in page
    english = desk.client.get("/help/en/").text
    assert "Are my assets safe?" in english and 'lang="en"' in english
    article = desk.client.get(f"/help/en/articles/{slugs[1]}").text
    assert "Trading in BTC-JPY is halted" in article
    again = desk.client.post(f"/api/support/incidents/{desk.incident_id}/faq",
                             headers=desk.as_("sam")).json()
    assert [a["id"] for a in again] == [a["id"] for a in drafted.json()]


def test_what_a_customer_wrote_is_escaped_on_the_pages(desk: Desk) -> None:
    page = desk.client.get("/help/search", params={"q": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_html_contact_form_takes_a_question_without_javascript(desk: Desk) -> None:
    response = desk.client.post("/help/contact", content=(
        "customer_name=%E5%A4%AA%E9%83%8E&customer_email=taro%40example.com&account=42"
        "&subject=halt&body=BTC-JPY+%E3%81%8C%E6%AD%A2%E3%81%BE%E3%81%A3%E3%81%A6%E3%81%84"
        "%E3%81%BE%E3%81%99&website="),
        headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 201, response.text
    assert f"INC-{desk.incident_id}" in response.text
    tickets = desk.client.get("/api/support/tickets", headers=desk.as_("sam")).json()
    assert tickets["items"][0]["account"] == 42
    assert tickets["items"][0]["channel"] == "form"


def test_a_filled_honeypot_is_refused_and_stores_nothing(desk: Desk) -> None:
    refused = desk.form(website="http://spam.example")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "support_invalid"
    assert desk.client.get("/api/support/tickets", headers=desk.as_("sam")).json()["total"] == 0


def test_a_form_flood_from_one_address_is_refused_and_loses_nothing_legitimate(
    desk: Desk,
) -> None:
    accepted = [desk.form(body=f"BTC-JPY 質問 {n}") for n in range(5)]
    assert [r.status_code for r in accepted] == [201] * 5
    flood = desk.form(body="BTC-JPY 6 件目")
    assert flood.status_code == 429
    assert int(flood.headers["retry-after"]) > 0
    assert "at most 5 a minute" in flood.json()["error"]["message"]
    page = desk.client.post("/help/contact", content="customer_email=a%40example.com"
                            "&subject=s&body=b", headers={
                                "content-type": "application/x-www-form-urlencoded"})
    assert page.status_code == 429 and "1分に5件まで" in page.text
    tickets = desk.client.get("/api/support/tickets", headers=desk.as_("sam")).json()
    assert tickets["total"] == 5


def test_a_malformed_form_says_which_field_is_wrong(desk: Desk) -> None:
    response = desk.form(customer_email="not-an-address")
    assert response.status_code == 422
    assert "email address" in response.json()["error"]["message"]
    page = desk.client.post("/help/en/contact", content="customer_email=&subject=&body=",
                            headers={"content-type": "application/x-www-form-urlencoded"})
    assert page.status_code == 422 and "Please check the form" in page.text
