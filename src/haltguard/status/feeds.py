"""Atom and RSS feeds of the incident and maintenance history, one pair per language
(``history.atom`` / ``history.rss`` beside each language's page), from a snapshot.

Each entry is an incident or a maintenance; its content is every published update, newest
first, so a feed reader shows the whole story. Entry ids stay the same across changes.
"""

from __future__ import annotations

from email.utils import format_datetime
from urllib.parse import urlsplit
from xml.etree import ElementTree

from haltguard.status.snapshot import EventView, Snapshot
from haltguard.status.texts import Language, format_time, update_label

FEED_ENTRIES_MAX = 50
ATOM_NS = "http://www.w3.org/2005/Atom"
_TITLE = {"ja": "インシデント履歴", "en": "Incident history"}


def _events(snapshot: Snapshot) -> list[EventView]:
    events = [*snapshot.incidents, *snapshot.maintenances]
    events.sort(key=lambda event: (event.updated_at, event.id), reverse=True)
    return events[:FEED_ENTRIES_MAX]


def _link(snapshot: Snapshot, event: EventView, language: Language) -> str:
    base = snapshot.page.url_for(language)
    return f"{base}incidents/{event.id}.html" if event.kind == "incident" else f"{base}#{event.id}"


def _content_html(event: EventView, language: Language) -> str:
    """The updates as a small HTML fragment (escaped once more by the XML writer)."""
    parts = []
    for update in event.updates:
        body = ElementTree.Element("p")
        when = ElementTree.SubElement(body, "small")
        when.text = format_time(update.published_at, language)
        ElementTree.SubElement(body, "br")
        label = ElementTree.SubElement(body, "strong")
        label.text = update_label(update.status, language)
        lines = update.body.get(language).split("\n")
        label.tail = " - " + lines[0]
        for line in lines[1:]:
            ElementTree.SubElement(body, "br").tail = line
        parts.append(ElementTree.tostring(body, encoding="unicode", method="html"))
    return "".join(parts)


def _tag_base(snapshot: Snapshot) -> str:
    host = urlsplit(snapshot.page.url).hostname or "localhost"
    return f"tag:{host},2005:"


def atom(snapshot: Snapshot, language: Language) -> bytes:
    ElementTree.register_namespace("", ATOM_NS)

    def sub(parent: ElementTree.Element, tag: str, text: str | None = None,
            **attributes: str) -> ElementTree.Element:
        element = ElementTree.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attributes)
        element.text = text
        return element

    base = snapshot.page.url_for(language)
    feed = ElementTree.Element(f"{{{ATOM_NS}}}feed", {"xml:lang": language})
    sub(feed, "id", f"{_tag_base(snapshot)}/history/{language}")
    sub(feed, "link", rel="alternate", type="text/html", href=base)
    sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}history.atom")
    sub(feed, "title", f"{snapshot.page.name.get(language)} - {_TITLE[language]}")
    sub(feed, "updated", snapshot.updated_at.isoformat())
    author = sub(feed, "author")
    sub(author, "name", snapshot.page.name.get(language))
    for event in _events(snapshot):
        entry = sub(feed, "entry")
        kind = "Incident" if event.kind == "incident" else "Maintenance"
        sub(entry, "id", f"{_tag_base(snapshot)}{kind}/{event.id}")
        sub(entry, "published", event.created_at.isoformat())
        sub(entry, "updated", event.updated_at.isoformat())
        sub(entry, "link", rel="alternate", type="text/html", href=_link(snapshot, event, language))
        sub(entry, "title", event.name.get(language))
        sub(entry, "content", _content_html(event, language), type="html")
    text = ElementTree.tostring(feed, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode("utf-8")


def rss(snapshot: Snapshot, language: Language) -> bytes:
    base = snapshot.page.url_for(language)
    root = ElementTree.Element("rss", {"version": "2.0"})
    channel = ElementTree.SubElement(root, "channel")

    def sub(parent: ElementTree.Element, tag: str, text: str,
            **attributes: str) -> ElementTree.Element:
        element = ElementTree.SubElement(parent, tag, attributes)
        element.text = text
        return element

    sub(channel, "title", f"{snapshot.page.name.get(language)} - {_TITLE[language]}")
    sub(channel, "link", base)
    sub(channel, "description", f"{snapshot.page.name.get(language)} - {_TITLE[language]}")
    sub(channel, "language", language)
    sub(channel, "lastBuildDate", format_datetime(snapshot.updated_at))
    for event in _events(snapshot):
        item = ElementTree.SubElement(channel, "item")
        sub(item, "title", event.name.get(language))
        sub(item, "description", _content_html(event, language))
        sub(item, "pubDate", format_datetime(event.updated_at))
        sub(item, "link", _link(snapshot, event, language))
        kind = "Incident" if event.kind == "incident" else "Maintenance"
        sub(item, "guid", f"{_tag_base(snapshot)}{kind}/{event.id}", isPermaLink="false")
    text = ElementTree.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode("utf-8")
