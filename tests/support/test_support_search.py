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


# --- one statement on SQLite, and the kept answers ------------------------------------------

RANKED_ARTICLES: list[dict[str, object]] = [
    {"slug": f"ranked-{n}", "category": "trading", "title_ja": title, "title_en": "About it",
     "body_ja": body, "body_en": "Nothing else.", "keywords": keywords}
    for n, (title, body, keywords) in enumerate([
        ("資産の管理", "本文にはキャンセルの説明があります。", ""),
        ("注文について", "資産とキャンセルの両方について。", ""),
        ("キャンセル方法", "資産はここに書きません。", "資産"),
        ("出金", "出金の話だけ。", "withdrawal"),
        ("送金", "FEE と資産。", "キャンセル"),
        ("手数料", "fee の説明。", ""),
    ])
]


def _reference_ranking(query: str) -> list[tuple[str, float]]:
    """What the ranking means, written plainly: per term 3 in the title or keywords, else 1
    in the body; the sum, best first, ties by creation order."""
    terms = search.query_terms(query)
    scored: list[tuple[float, int, str]] = []
    for n, article in enumerate(RANKED_ARTICLES):
        title = search.normalize(f"{article['title_ja']} {article['title_en']} "
                                 f"{article['keywords']}")
        body = search.normalize(f"{article['body_ja']} {article['body_en']}")
        score = sum(3.0 if term in title else 1.0 if term in body else 0.0 for term in terms)
        if score:
            scored.append((-score, n, str(article["slug"])))
    return [(slug, -negative) for negative, _, slug in sorted(scored)]


@SQLITE
@pytest.mark.parametrize("query", ["資産", "キャンセル", "資産はキャンセルできますか", "fee",
                                   "出金 withdrawal", "ステーキング"])
def test_sqlite_ranking_in_one_statement_scores_titles_3_and_bodies_1(
        desk: Desk, query: str) -> None:
    desk.add_articles(RANKED_ARTICLES)
    with desk.factory() as session:
        found = [(hit.article.slug, hit.score)
                 for hit in search.search(session, query, language="ja")]
    assert found == _reference_ranking(query)


class _Ticking:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_a_kept_answer_is_given_until_it_expires_and_the_oldest_is_dropped_first() -> None:
    ticking = _Ticking()
    answers = search.AnswerCache(keep_s=5.0, size_max=2, monotonic=ticking)
    first = answers.key("api", "資産", "ja")
    answers.put(first, "answer one")
    ticking.now_s += 4.9
    assert answers.get(first) == "answer one"
    ticking.now_s += 0.2
    assert answers.get(first) is None
    answers.put(first, "one")
    answers.put(answers.key("api", "出金", "ja"), "two")
    answers.put(answers.key("api", "出金", "en"), "three")
    assert answers.get(first) is None
    assert answers.get(answers.key("api", "出金", "en")) == "three"


@SQLITE
def test_an_article_taken_down_leaves_the_kept_answers_at_once(desk: Desk) -> None:
    desk.add_articles()
    for _ in range(2):
        answer = desk.client.get("/api/support/public/search", params={"q": "資産"}).json()
        assert answer["hits"][0]["slug"] == "assets-safe"
    assert "assets-safe" in desk.client.get("/help/search", params={"q": "資産"}).text
    response = desk.client.post("/api/support/articles/assets-safe/unpublish",
                                headers=desk.as_("sam"))
    assert response.status_code == 200, response.text
    answer = desk.client.get("/api/support/public/search", params={"q": "資産"}).json()
    assert "assets-safe" not in [hit["slug"] for hit in answer["hits"]]
    assert "assets-safe" not in desk.client.get("/help/search", params={"q": "資産"}).text


@SQLITE
def test_the_same_question_within_seconds_is_answered_without_searching_again(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    desk.add_articles()
    calls: list[str] = []
    real_search = search.search

    def counted(session: Session, query: str, **options: object) -> list[search.Hit]:
        calls.append(query)
        return real_search(session, query, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(search, "search", counted)
    answers = [desk.client.get("/api/support/public/search", params={"q": "出金"}).json()
               for _ in range(3)]
    assert calls == ["出金"]
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["hits"][0]["slug"] == "withdrawal-time"
