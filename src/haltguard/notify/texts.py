"""The words subscribers read, loaded from ``templates/<language>.yaml`` (one source each),
and the small public pages behind confirm and unsubscribe links."""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar

import yaml

from haltguard.notify.models import Language

TEMPLATES_DIR = Path(__file__).with_name("templates")
SectionT = TypeVar("SectionT")


@dataclass(frozen=True)
class NoticeTexts:
    phrase_label: str
    phrase_help: str
    details: str
    footer: str
    unsubscribe: str


@dataclass(frozen=True)
class ConfirmTexts:
    subject: str
    intro: str
    button: str
    ignore: str
    expires: str


@dataclass(frozen=True)
class PageTexts:
    confirm_title: str
    confirm_question: str
    confirm_button: str
    confirmed: str
    unsubscribe_title: str
    unsubscribe_question: str
    unsubscribe_button: str
    unsubscribed: str
    link_error: str


@dataclass(frozen=True)
class Texts:
    language: Language
    notice: NoticeTexts
    confirm_email: ConfirmTexts
    pages: PageTexts


def _section(cls: type[SectionT], raw: object, where: str) -> SectionT:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of texts")
    wanted = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    missing = wanted - set(raw)
    if missing:
        raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
    return cls(**{name: str(raw[name]).strip() for name in wanted})


@cache
def texts_for(language: Language) -> Texts:
    """The texts of ``language``; a template missing a key fails loudly at first use."""
    path = TEMPLATES_DIR / f"{language.value}.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must be a mapping")
    return Texts(
        language=language,
        notice=_section(NoticeTexts, raw.get("notice"), f"{path}: notice"),
        confirm_email=_section(ConfirmTexts, raw.get("confirm_email"), f"{path}: confirm_email"),
        pages=_section(PageTexts, raw.get("pages"), f"{path}: pages"),
    )


def fill(text: str, **values: str) -> str:
    """Replace ``{name}`` placeholders without ``str.format``, so braces in values are safe."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.6;color:#1a1a1a}button{font-size:1rem;padding:.6rem 1.2rem}"
)


def page_html(language: Language, title: str, paragraphs: list[str], form: str = "") -> str:
    """A small page that works without JavaScript; ``paragraphs`` are escaped here,
    ``form`` is markup built by :func:`button_form`."""
    body = "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in paragraphs)
    return (
        f'<!DOCTYPE html><html lang="{language.value}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{html.escape(title)}</title>'
        f"<style>{PAGE_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}{form}"
        "</body></html>"
    )


def button_form(action: str, token: str, label: str) -> str:
    """A POST form with one button: links in emails are opened by scanners, so a GET only
    shows this page and the change happens on the button."""
    return (
        f'<form method="post" action="{html.escape(action)}">'
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        f"<button type=\"submit\">{html.escape(label)}</button></form>"
    )
