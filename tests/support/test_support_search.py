"""Help-centre search finds Japanese by katakana and kanji (trigram FTS5 on SQLite, the
generic ILIKE path on PostgreSQL), and a question with no match is sent to the form."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session
from support_desk import ARTICLES, Desk

from haltguard.support import search, service
from haltguard.support.models import ArticleCreate

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


QUESTIONS = [
    ("キャンセル", "cancel-during-halt"),
    ("注文をキャンセルできない", "cancel-during-halt"),
    ("資産は安全ですか", "assets-safe"),
    ("資産", "assets-safe"),
    ("出金", "withdrawal-time"),
    ("ビットコインの送金", "withdrawal-time"),
    ("ｷｬﾝｾﾙ", "cancel-during-halt"),
    ("cancelled", "cancel-during-halt"),
]


@SQLITE
def test_japanese_and_english_questions_find_the_right_article(desk: Desk) -> None:
    desk.add_articles()
    for query, expected in QUESTIONS:
        answer = desk.client.get("/api/support/public/search", params={"q": query}).json()
        assert answer["hits"], (query, answer)
        assert (query, answer["hits"][0]["slug"]) == (query, expected)
        assert answer["contact_url"] is None


@SQLITE
def test_a_question_nothing_answers_is_sent_to_the_contact_form(desk: Desk) -> None:
    desk.add_articles()
    answer = desk.client.get("/api/support/public/search",
                             params={"q": "ステーキング報酬", "lang": "en"}).json()
    assert answer["hits"] == []
    assert answer["contact_url"] == "/help/en/contact"
    page = desk.client.get("/help/search", params={"q": "ステーキング報酬"})
    assert page.status_code == 200
    assert 'id="no-match"' in page.text and 'href="/help/contact"' in page.text


@SQLITE
def test_unpublished_articles_are_not_found(desk: Desk) -> None:
    desk.add_articles([{**ARTICLES[0], "published": False}])
    answer = desk.client.get("/api/support/public/search", params={"q": "キャンセル"}).json()
    assert answer["hits"] == []


def test_query_terms_split_japanese_at_script_changes() -> None:
    assert search.query_terms("資産は安全ですか？") == ["資産", "安全"]
    assert search.query_terms("BTC-JPYでキャンセルできない") == ["btc-jpy", "キャンセル"]
    assert search.query_terms("ですか") == ["ですか"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_finds_japanese_through_the_generic_path(session: Session) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 8, tzinfo=UTC)
    for article in ARTICLES:
        service.create_article(session, ArticleCreate(**article), actor="sam", now=now)
    session.commit()
    assert session.get_bind().dialect.name == "postgresql"
    assert search.search(session, "キャンセルできない", language="ja")[0].article.slug == \
        "cancel-during-halt"
    assert search.search(session, "資産は安全ですか", language="ja")[0].article.slug == \
        "assets-safe"
    assert search.search(session, "ステーキング報酬", language="ja") == []
