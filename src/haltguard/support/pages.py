"""The public help centre: HTML pages beside the status page, in Japanese under ``/help/``
and English under ``/help/en/``, in the status page's style.

Pages: the index (the open incident's pinned entries first, then every published article
by category), search (Japanese or English; no match offers the contact form), an article,
the contact form (works without JavaScript: a plain form post, the same checks as
``POST /api/support/public/tickets``, its honeypot field hidden from people) and the chat
widget (the one page that needs JavaScript). Everything a customer wrote is escaped
(Jinja autoescape; the chat widget writes text, never markup).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta, timezone
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from haltguard.common.errors import HaltguardError
from haltguard.db.session import session_scope
from haltguard.support import search, service
from haltguard.support.models import ContactForm, SupportArticle
from haltguard.support.settings import SupportSettings
from haltguard.support.views import accept_form
from haltguard.web.context import context_of

JST = timezone(timedelta(hours=9), "JST")
FORM_BYTES_MAX = 65_536

WORDS: dict[str, dict[str, str]] = {
    "ja": {
        "help_centre": "ヘルプセンター", "language_name": "日本語",
        "other_language_name": "English", "search": "検索",
        "search_placeholder": "例: 資産は安全ですか / キャンセルできない",
        "pinned": "発生中の障害に関するよくあるご質問", "results": "検索結果",
        "no_match": "該当する記事が見つかりませんでした。お問い合わせフォームからご質問ください。",
        "no_articles": "記事はまだありません。", "updated": "更新",
        "not_answered": "解決しない場合は:", "contact": "お問い合わせ", "chat": "チャット",
        "status_page": "ステータスページ", "name": "お名前", "email": "メールアドレス",
        "account": "口座番号（任意）", "subject": "件名", "question": "ご質問",
        "send": "送信", "chat_start": "チャットを始める", "chat_agent": "担当者と話す",
        "chat_end": "終了", "chat_agent_joined": "担当者が参加しました:",
        "chat_needs_js": "チャットには JavaScript が必要です。",
        "bad_form": "入力内容を確認してください: ",
    },
    "en": {
        "help_centre": "Help centre", "language_name": "English",
        "other_language_name": "日本語", "search": "Search",
        "search_placeholder": "e.g. are my assets safe / cannot cancel",
        "pinned": "Questions about the current interruption", "results": "Results",
        "no_match": "No article matched. Ask us with the contact form.",
        "no_articles": "No articles yet.", "updated": "Updated",
        "not_answered": "Not answered?", "contact": "Contact us", "chat": "Chat",
        "status_page": "Status page", "name": "Name", "email": "Email address",
        "account": "Account number (optional)", "subject": "Subject", "question": "Question",
        "send": "Send", "chat_start": "Start a chat", "chat_agent": "Talk to a person",
        "chat_end": "End", "chat_agent_joined": "An agent joined:",
        "chat_needs_js": "Chat needs JavaScript.",
        "bad_form": "Please check the form: ",
    },
}
CATEGORY_NAMES = {
    "incident": ("障害について", "About the interruption"),
    "trading": ("取引", "Trading"), "account": ("口座", "Account"),
    "deposit_withdrawal": ("入出金", "Deposits and withdrawals"),
    "compensation": ("補償", "Compensation"), "security": ("セキュリティ", "Security"),
}

pages_router = APIRouter(include_in_schema=False)


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("haltguard.support", "templates"),
                       autoescape=select_autoescape(["html"]), undefined=StrictUndefined)


@cache
def _css() -> str:
    """The status page's own style sheet, so the help centre looks like it."""
    return resources.files("haltguard.status").joinpath("templates/status.css").read_text(
        "utf-8")


def _render(request: Request, lang: str, template: str, tail: str, **values: Any) -> str:
    settings = context_of(request.app).part(SupportSettings)
    base = settings.help_url
    root = base if lang == "ja" else base + "en/"
    other = "en" if lang == "ja" else "ja"
    switch = (base + "en/" if lang == "ja" else base) + tail

    def title(article: SupportArticle) -> str:
        return article.title_ja if lang == "ja" else article.title_en

    def body(article: SupportArticle) -> str:
        return article.body_ja if lang == "ja" else article.body_en

    def category_name(key: str) -> str:
        names = CATEGORY_NAMES.get(key)
        return key if names is None else names[0 if lang == "ja" else 1]

    helpers: dict[str, Callable[..., str]] = {"title": title, "body": body,
                                              "category_name": category_name}
    return _environment().get_template(template).render(
        lang=lang, other=other, t=WORDS[lang], css=_css(), root=root, switch_href=switch,
        status_href="/status/" if lang == "ja" else "/status/en/",
        socket_path="/api/support/public/chat", **helpers, **values)


def _index(request: Request, lang: str) -> HTMLResponse:
    operations = context_of(request.app)
    with session_scope(operations.session_factory) as session:
        pinned = service.pinned_articles(session)
        articles, _ = service.list_articles(session, published_only=True)
        pinned_ids = {article.id for article in pinned}
        grouped: dict[str, list[SupportArticle]] = {}
        for article in articles:
            if article.id not in pinned_ids and article.incident_id is None:
                grouped.setdefault(article.category, []).append(article)
        html = _render(request, lang, "index.html", "", pinned=pinned,
                       categories=sorted(grouped.items()))
    return HTMLResponse(html)


def _search(request: Request, lang: str) -> HTMLResponse:
    query = request.query_params.get("q", "")[:200]
    operations = context_of(request.app)
    answers = operations.part(search.AnswerCache)
    key = answers.key("page", query, lang)
    kept = answers.get(key)
    if isinstance(kept, str):
        return HTMLResponse(kept)
    with session_scope(operations.session_factory) as session:
        hits = search.search(session, query, language=lang) if query.strip() else []
        html = _render(request, lang, "search.html", "search", query=query, hits=hits)
    answers.put(key, html)
    return HTMLResponse(html)


def _article(request: Request, lang: str, slug: str) -> HTMLResponse:
    operations = context_of(request.app)
    with session_scope(operations.session_factory) as session:
        try:
            article = service.get_article(session, slug[:80], published_only=True)
        except HaltguardError as exc:
            return HTMLResponse(exc.message, status_code=404)
        html = _render(request, lang, "article.html", f"articles/{slug}", article=article,
                       updated=f"{article.updated_at.astimezone(JST):%Y-%m-%d %H:%M} JST")
    return HTMLResponse(html)


def _contact_page(request: Request, lang: str, *, accepted: str = "", error: str = "",
                  status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(_render(request, lang, "contact.html", "contact", accepted=accepted,
                                error=error), status_code=status_code)


async def _contact_post(request: Request, lang: str) -> HTMLResponse:
    raw = await request.body()
    if len(raw) > FORM_BYTES_MAX:
        return _contact_page(request, lang, error=WORDS[lang]["bad_form"] + "too long",
                             status_code=413)
    fields = {key: values[0] for key, values in parse_qs(raw.decode("utf-8", "replace"))
              .items()}
    account = fields.pop("account", "").strip()
    try:
        form = ContactForm.model_validate({**fields, "language": lang,
                                           **({"account": account} if account else {})})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        return _contact_page(request, lang, error=WORDS[lang]["bad_form"] + problems,
                             status_code=422)
    settings = context_of(request.app).part(SupportSettings)
    try:
        accepted = await accept_form(request, form, settings=settings)
    except HaltguardError as exc:
        text = exc.message_ja if lang == "ja" and exc.message_ja else exc.message
        status = 429 if exc.code == "support_form_flood" else 400
        return _contact_page(request, lang, error=text, status_code=status)
    return _contact_page(request, lang,
                         accepted=accepted.message_ja if lang == "ja" else accepted.message_en,
                         status_code=201)


for _prefix, _lang in (("/help", "ja"), ("/help/en", "en")):
    def _routes(prefix: str, lang: str) -> None:
        @pages_router.get(prefix + "/", response_class=HTMLResponse)
        def index(request: Request) -> HTMLResponse:
            return _index(request, lang)

        @pages_router.get(prefix + "/search", response_class=HTMLResponse)
        def search_page(request: Request) -> HTMLResponse:
            return _search(request, lang)

        @pages_router.get(prefix + "/articles/{slug}", response_class=HTMLResponse)
        def article_page(request: Request, slug: str) -> HTMLResponse:
            return _article(request, lang, slug)

        @pages_router.get(prefix + "/contact", response_class=HTMLResponse)
        def contact_page(request: Request) -> HTMLResponse:
            return _contact_page(request, lang)

        @pages_router.post(prefix + "/contact", response_class=HTMLResponse)
        async def contact_post(request: Request) -> HTMLResponse:
            return await _contact_post(request, lang)

        @pages_router.get(prefix + "/chat", response_class=HTMLResponse)
        def chat_page(request: Request) -> HTMLResponse:
            return HTMLResponse(_render(request, lang, "chat.html", "chat"))

    _routes(_prefix, _lang)
