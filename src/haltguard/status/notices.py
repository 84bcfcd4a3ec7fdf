"""Notices of published updates to subscribers: the one place the status page hands
anything to the notify domain.

Incident updates (:mod:`haltguard.status.updates`) and maintenance updates
(:mod:`haltguard.status.maintenance`) each say what their notice is about (name, kind,
link); this module words the subject in both languages and keys the notice by the update,
so it is queued once. It imports no other part of the status service.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from haltguard.notify import service as notify
from haltguard.notify.models import NoticeText
from haltguard.status.models import StatusUpdate
from haltguard.status.texts import Bilingual, update_label


def notice_key(update_id: int) -> str:
    """The key of the notice of published update ``update_id``: one notice per update."""
    return f"status-update-{update_id}"


def _subject(label: str, name: str) -> str:
    return f"[{label}] {name}"[:200]


def queue_update_notice(
    session: Session, update: StatusUpdate, *, name: Bilingual, kind: notify.NoticeKind,
    link: str, now: datetime,
) -> None:
    """Queue the notice of the published ``update`` of the event called ``name``; keyed by
    the update, so it is queued once."""
    notice = notify.Notice(
        key=notice_key(update.id),
        kind=kind,
        affected_component_ids=list(update.components),
        ja=NoticeText(subject=_subject(update_label(update.status, "ja"), name.ja),
                      body=update.body_ja),
        en=NoticeText(subject=_subject(update_label(update.status, "en"), name.en),
                      body=update.body_en),
        link=link,
    )
    notify.enqueue_notice(session, notice, now=now)
