"""Help-centre search that works for Japanese.

Japanese has no spaces between words, so a word index finds nothing. On SQLite the articles
are indexed by an FTS5 table with the trigram tokenizer (migration ``0011_support``): any
three characters of a title or body find it. On PostgreSQL the same questions are asked with
``LIKE`` over ``search_text`` (normalised), which the ``pg_trgm`` GIN index answers.

A question is cut into terms first (:func:`query_terms`): at spaces and punctuation, then at
each change of script, so 「資産は安全ですか」 asks for 資産 and 安全 and 「キャンセルできない」 for
キャンセル; hiragana runs (particles and endings) are dropped when anything else is left.
Trigram matching needs three characters: a shorter term (most kanji words are two) is looked
for by a scan (on PostgreSQL of ``search_text``), one that stays within budget for thousands
of articles (``benchmarks/bench_support.py``). An article scores 3 for each term in its title or
keywords and 1 for each in its body; the best come first.

On SQLite the whole question is one statement (:func:`_sqlite_ranked`): the trigram index
for the long terms, one shared scan for all the short ones, the scores summed and ordered in
SQL, so only the ten shown articles ever reach Python (per-row Python was most of the time).
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from haltguard.support.models import SupportArticle

TERMS_MAX = 8
QUERY_LENGTH_MAX = 200
HITS_PER_TERM_MAX = 500
HITS_MAX = 10
SNIPPET_CHARS = 120
TITLE_WEIGHT = 3.0
BODY_WEIGHT = 1.0
ANSWER_KEEP_S = 5.0
ANSWERS_KEPT_MAX = 2_000

_SPLIT = re.compile(r"[\s\u3000、。，．・,.!?！？「」『』()（）\[\]【】:：;；/／\"'\\]+")


def _script(char: str) -> str:
    code = ord(char)
    if 0x3040 <= code <= 0x309F:
        return "hiragana"
    if 0x30A0 <= code <= 0x30FF or code == 0x30FC:
        return "katakana"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or char in "々〆":
        return "kanji"
    if char.isalnum() or char in "-_":
        return "latin"
    return "other"


def normalize(query: str) -> str:
    """NFKC (full-width letters and half-width kana become one form) and lower case."""
    return unicodedata.normalize("NFKC", query).lower()


def query_terms(query: str) -> list[str]:
    """The terms a question asks for, at most ``TERMS_MAX``, in the order written."""
    runs: list[tuple[str, str]] = []
    for chunk in _SPLIT.split(normalize(query)[:QUERY_LENGTH_MAX]):
        current, kind = "", ""
        for char in chunk:
            script = _script(char)
            if script != kind and current:
                runs.append((kind, current))
                current = ""
            kind = script
            current += char
        if current:
            runs.append((kind, current))
    meaningful = [(kind, run) for kind, run in runs if kind not in {"hiragana", "other"}]
    chosen = meaningful if meaningful else [(k, r) for k, r in runs if k == "hiragana"]
    terms: list[str] = []
    for kind, run in chosen:
        if (kind == "kanji" and len(run) < 2 and len(chosen) > 1) or len(run) < 1:
            continue
        if kind == "latin" and len(run) < 2:
            continue
        if run not in terms:
            terms.append(run)
    return terms[:TERMS_MAX]


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


@dataclass(frozen=True)
class _TermHits:
    in_title: frozenset[int]
    in_body: frozenset[int]


def _has_latin(term: str) -> bool:
    return any("a" <= char <= "z" for char in term)


def _sqlite_ranked(session: Session, terms: list[str], limit: int) -> list[tuple[int, float]]:
    """The best published articles for ``terms`` as (id, score), in one statement.

    Per term an article weighs 3 when the term is in its title or keywords (the index's
    ``title`` column), else 1 when it is in the body; its score is the sum over the terms.
    Terms of three characters or more are looked up in the trigram index; the shorter ones
    by one scan of the index's own text, shared by all of them (the text as written, case
    folded for ASCII: what the trigram index matches too)."""
    parts: list[str] = []
    params: dict[str, object] = {"limit": limit, "cap": HITS_PER_TERM_MAX}
    short = [(n, term) for n, term in enumerate(terms) if len(term) < 3]
    for n, term in enumerate(terms):
        if len(term) >= 3:
            params[f"title{n}"] = "{title} : " + _fts_phrase(term)
            params[f"any{n}"] = _fts_phrase(term)
            parts.append(f"SELECT * FROM (SELECT rowid AS id, {n} AS term, 3 AS weight FROM "
                         f"support_articles_fts WHERE support_articles_fts MATCH :title{n} "
                         f"LIMIT :cap)")
            parts.append(f"SELECT * FROM (SELECT rowid AS id, {n} AS term, 1 AS weight FROM "
                         f"support_articles_fts WHERE support_articles_fts MATCH :any{n} "
                         f"LIMIT :cap)")
    common = ""
    if short:
        for n, term in short:
            params[f"short{n}"] = term
        checks: dict[int, tuple[str, str]] = {}
        for n, term in short:
            # lower() folds ASCII only (as the index does) and copies every body it reads:
            # a term without Latin letters is looked for in the text as it is.
            fold = "lower" if _has_latin(term) else ""
            checks[n] = (f"instr({fold}(f.title), :short{n}) > 0",
                         f"instr({fold}(f.body), :short{n}) > 0")
        found = ", ".join(f"CASE WHEN {in_title} THEN 3 WHEN {in_body} THEN 1 ELSE 0 END "
                          f"AS weight{n}" for n, (in_title, in_body) in checks.items())
        any_found = " OR ".join(f"{in_title} OR {in_body}" for in_title, in_body in checks.values())
        common = (f"WITH short AS MATERIALIZED (SELECT f.rowid AS id, {found} FROM "
                  f"support_articles_fts f WHERE {any_found} LIMIT :cap) ")
        for n, _ in short:
            parts.append(f"SELECT id, {n} AS term, weight{n} AS weight FROM short "
                         f"WHERE weight{n} > 0")
    statement = (
        common + "SELECT best.id, SUM(best.weight) AS score FROM (SELECT id, term, "
        "MAX(weight) AS weight FROM (" + " UNION ALL ".join(parts) + ") GROUP BY id, term) "
        "AS best JOIN support_articles a ON a.id = best.id AND a.published = 1 "
        "GROUP BY best.id ORDER BY score DESC, best.id LIMIT :limit")
    return [(int(row[0]), float(row[1])) for row in session.execute(text(statement), params)]


def _generic_hits(session: Session, term: str) -> _TermHits:
    """``LIKE`` over ``search_text``, normalised like the term (``pg_trgm`` indexes it)."""
    pattern = _like(term)
    rows = session.execute(
        select(SupportArticle.id, SupportArticle.title_ja, SupportArticle.title_en,
               SupportArticle.keywords)
        .where(SupportArticle.search_text.like(pattern, escape="\\"),
               SupportArticle.published.is_(True))
        .limit(HITS_PER_TERM_MAX)
    ).all()
    return _TermHits(
        frozenset(row[0] for row in rows if term in normalize(f"{row[1]} {row[2]} {row[3]}")),
        frozenset(row[0] for row in rows))


def _snippet(body: str, terms: list[str]) -> str:
    lowered = normalize(body)
    at = min((i for i in (lowered.find(term) for term in terms) if i >= 0), default=0)
    start = max(0, at - SNIPPET_CHARS // 4)
    piece = " ".join(body[start:start + SNIPPET_CHARS].split())
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(body) else "")


def _body(article: SupportArticle, language: str) -> str:
    return article.body_ja if language == "ja" else article.body_en


@dataclass(frozen=True)
class Hit:
    article: SupportArticle
    score: float
    snippet: str


def search(session: Session, query: str, *, language: str,
           limit: int = HITS_MAX) -> list[Hit]:
    """Published articles matching ``query``, best first (empty: nothing matched)."""
    terms = query_terms(query)
    if not terms:
        return []
    if session.get_bind().dialect.name == "sqlite":
        ranked = _sqlite_ranked(session, terms, limit)
        articles = {article.id: article for article in session.scalars(
            select(SupportArticle).where(SupportArticle.id.in_([i for i, _ in ranked])))}
        return [Hit(articles[i], score, _snippet(_body(articles[i], language), terms))
                for i, score in ranked if i in articles]
    scores: dict[int, float] = {}
    for term in terms:
        hits = _generic_hits(session, term)
        for article_id in hits.in_title:
            scores[article_id] = scores.get(article_id, 0.0) + TITLE_WEIGHT
        for article_id in hits.in_body - hits.in_title:
            scores[article_id] = scores.get(article_id, 0.0) + BODY_WEIGHT
    if not scores:
        return []
    best = sorted(scores, key=lambda article_id: (-scores[article_id], article_id))
    articles = {article.id: article for article in session.scalars(
        select(SupportArticle).where(SupportArticle.id.in_(best[:limit * 5]),
                                     SupportArticle.published.is_(True)))}
    found: list[Hit] = []
    for article_id in best:
        article = articles.get(article_id)
        if article is None:
            continue
        found.append(Hit(article, scores[article_id], _snippet(_body(article, language), terms)))
        if len(found) == limit:
            break
    return found


def search_text_of(title_ja: str, title_en: str, keywords: str, body_ja: str,
                   body_en: str) -> str:
    """What the generic (PostgreSQL) search matches: every text of the article, normalised."""
    return normalize("\n".join((title_ja, title_en, keywords, body_ja, body_en)))


class AnswerCache:
    """Public answers to a question (the search API's answer, the rendered results page)
    kept for ``keep_s`` seconds.

    In an outage thousands of customers type the same few questions within seconds; the
    second asker gets the first one's answer without a query. An article changed through this
    process empties it at once (:meth:`clear`); one changed elsewhere shows after at most
    ``keep_s``. Bounded: past ``size_max`` answers the oldest is dropped."""

    def __init__(self, keep_s: float = ANSWER_KEEP_S, size_max: int = ANSWERS_KEPT_MAX,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.keep_s = keep_s
        self.size_max = size_max
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str, str], tuple[float, object]] = OrderedDict()

    @staticmethod
    def key(kind: str, query: str, language: str) -> tuple[str, str, str]:
        """Exactly the question asked: the answer repeats it to the asker."""
        return kind, language, query

    def get(self, key: tuple[str, str, str]) -> object | None:
        with self._lock:
            kept = self._answers.get(key)
            if kept is None:
                return None
            if kept[0] <= self._monotonic():
                del self._answers[key]
                return None
            return kept[1]

    def put(self, key: tuple[str, str, str], answer: object) -> None:
        with self._lock:
            self._answers[key] = (self._monotonic() + self.keep_s, answer)
            self._answers.move_to_end(key)
            while len(self._answers) > self.size_max:
                self._answers.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()
