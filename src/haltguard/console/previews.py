"""What a draft will look like once published: the public status page (both languages) and the
notice subscribers get, rendered by the status page's own code before anything is public.

The draft is published in a transaction that is always rolled back: the page and the notice
are exactly what publishing makes (the same snapshot, renderer and notice wording), and
nothing of it stays. The rendered pages are kept a short while under a random token so the
preview screen can show them in a frame of their own (``/console/previews/{token}/{lang}``),
with a policy that allows the page's own inline style and nothing else.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from haltguard.notify.models import StoredNotice
from haltguard.status import render
from haltguard.status import service as status
from haltguard.status.models import DraftEdit
from haltguard.status.notices import notice_key
from haltguard.status.settings import StatusSettings
from haltguard.status.texts import LANGUAGES

PREVIEWS_KEPT_MAX = 32
PREVIEW_KEPT_S = 15 * 60
PREVIEW_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)


@dataclass(frozen=True)
class NoticePreview:
    subject_ja: str
    subject_en: str
    body_ja: str
    body_en: str
    link: str


@dataclass(frozen=True)
class Preview:
    """One draft as it will be published: the update's texts, the public page per language
    and the subscribers' notice (``None`` when publishing queues none)."""

    update_id: int
    body_ja: str
    body_en: str
    pages: dict[str, str]
    notice: NoticePreview | None


def preview_update(session_factory: sessionmaker[Session], update_id: int, edit: DraftEdit, *,
                   actor: str, now: datetime, settings: StatusSettings) -> Preview:
    """Publish the draft (with ``edit``) in a transaction that is rolled back, and keep what
    customers would have seen. A draft that cannot be published raises the same error
    publishing would."""
    session = session_factory()
    try:
        update = status.get_update(session, update_id)
        if (edit.body_ja, edit.body_en) != (None, None):
            status.edit_draft(session, update_id, edit, actor=actor, now=now)
        status.publish(session, update_id, actor=actor, now=now, settings=settings)
        snapshot = status.build_snapshot(session, now=now, settings=settings)
        pages: dict[str, str] = {language: render.index_page(snapshot, language)
                                 for language in LANGUAGES}
        stored = session.scalar(select(StoredNotice).where(
            StoredNotice.key == notice_key(update_id)))
        notice = None if stored is None else NoticePreview(
            stored.subject_ja, stored.subject_en, stored.body_ja, stored.body_en, stored.link)
        return Preview(update_id, update.body_ja, update.body_en, pages, notice)
    finally:
        session.rollback()
        session.close()


class PreviewStore:
    """The rendered pages of recent previews under random tokens, a few at a time, for
    a quarter of an hour."""

    def __init__(self) -> None:
        self._pages: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, pages: dict[str, str]) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._pages[token] = (time.monotonic(), pages)
            while len(self._pages) > PREVIEWS_KEPT_MAX:
                self._pages.popitem(last=False)
        return token

    def page(self, token: str, language: str) -> str | None:
        with self._lock:
            found = self._pages.get(token)
        if found is None or time.monotonic() - found[0] > PREVIEW_KEPT_S:
            return None
        return found[1].get(language)
