"""Help-centre search that works for Japanese.

Japanese has no spaces between words, so a word index finds nothing. On SQLite the articles
are indexed by an FTS5 table with the trigram tokenizer (migration ``0011_support``): any
three characters of a title or body find it. On PostgreSQL the same questions are asked with
``LIKE`` over ``search_text`` (normalised), which the ``pg_trgm`` GIN index answers.

A question is cut into terms first (:func:`query_terms`): at spaces and punctuation, then at
each change of script, so 「資産は安全ですか」 asks for 資産 and 安全 and 「キャンセルできない」 for
キャンセル; hiragana runs (particles and endings) are dropped when anything else is left.
Trigram matching needs three characters: a shorter term (most kanji words are two) is looked
for with ``LIKE`` over ``search_text``, one scan that stays within budget for thousands of
articles (``benchmarks/bench_support.py``). An article scores 3 for each term in its title or
keywords and 1 for each in its body; the best come first.
"""

from __future__ import annotations

import re
import unicodedata
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


def _sqlite_hits(session: Session, term: str) -> _TermHits:
    """One query per term: the trigram index for three characters or more, else one scan of
    the normalised text. Whether the term is in the title is decided on the rows found."""
    if len(term) >= 3:
        rows = session.execute(text(
            "SELECT rowid, title FROM support_articles_fts WHERE support_articles_fts "
            "MATCH :q LIMIT :n"), {"q": _fts_phrase(term), "n": HITS_PER_TERM_MAX}).all()
        return _TermHits(frozenset(row[0] for row in rows if term in normalize(row[1])),
                         frozenset(row[0] for row in rows))
    return _generic_hits(session, term)


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
    sqlite = session.get_bind().dialect.name == "sqlite"
    scores: dict[int, float] = {}
    for term in terms:
        hits = _sqlite_hits(session, term) if sqlite else _generic_hits(session, term)
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
        body = article.body_ja if language == "ja" else article.body_en
        found.append(Hit(article, scores[article_id], _snippet(body, terms)))
        if len(found) == limit:
            break
    return found


def search_text_of(title_ja: str, title_en: str, keywords: str, body_ja: str,
                   body_en: str) -> str:
    """What the generic (PostgreSQL) search matches: every text of the article, normalised."""
    return normalize("\n".join((title_ja, title_en, keywords, body_ja, body_en)))
