"""A small document model, rendered to Markdown or HTML, so each report is written once and
both formats always say the same thing."""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]
    empty: str = "(none)"


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str = "(none)"


@dataclass(frozen=True)
class Figure:
    """A picture drawn by haltguard itself (an SVG it generated, never outside markup):
    inlined in HTML; in Markdown a link to ``file``, written beside the report."""

    svg: str
    file: str
    caption: str


Block = Paragraph | Bullets | Table | Figure


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Document:
    title: str
    lang: str
    sections: tuple[Section, ...]
    preamble: tuple[Block, ...] = field(default_factory=tuple)


def _md_inline(text: str) -> str:
    return " ".join(text.split())


def _md_cell(text: str) -> str:
    return _md_inline(text).replace("|", "\\|")


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text.strip(), ""]
    if isinstance(block, Bullets):
        if not block.items:
            return [block.empty, ""]
        return [f"- {_md_inline(item)}" for item in block.items] + [""]
    if isinstance(block, Figure):
        return [f"![{_md_inline(block.caption)}]({block.file})", ""]
    if not block.rows:
        return [block.empty, ""]
    lines = ["| " + " | ".join(_md_cell(cell) for cell in block.header) + " |",
             "|" + "|".join("---" for _ in block.header) + "|"]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in block.rows]
    return [*lines, ""]


def render_markdown(document: Document) -> str:
    lines = [f"# {document.title}", ""]
    for block in document.preamble:
        lines += _md_block(block)
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _md_block(block)
    return "\n".join(lines).rstrip() + "\n"


def _html_block(block: Block) -> str:
    escape = html.escape
    if isinstance(block, Paragraph):
        return "".join(f"<p>{escape(part.strip())}</p>\n"
                       for part in block.text.split("\n\n") if part.strip())
    if isinstance(block, Bullets):
        if not block.items:
            return f"<p>{escape(block.empty)}</p>\n"
        items = "".join(f"<li>{escape(item)}</li>" for item in block.items)
        return f"<ul>{items}</ul>\n"
    if isinstance(block, Figure):
        return f"<figure>{block.svg}<figcaption>{escape(block.caption)}</figcaption></figure>\n"
    if not block.rows:
        return f"<p>{escape(block.empty)}</p>\n"
    head = "".join(f"<th>{escape(cell)}</th>" for cell in block.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
        for row in block.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1b1b1b}table{border-collapse:collapse;width:100%}"
    "th,td{border:1px solid #bbb;padding:.3rem .5rem;text-align:left;vertical-align:top}"
    "th{background:#f0f0f0}h2{border-bottom:1px solid #ddd;margin-top:2rem}"
)


def render_html(document: Document) -> str:
    escape = html.escape
    parts = [
        "<!DOCTYPE html>\n",
        f'<html lang="{escape(document.lang)}">\n<head>\n<meta charset="utf-8">\n',
        f"<title>{escape(document.title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        f"<h1>{escape(document.title)}</h1>\n",
    ]
    parts += [_html_block(block) for block in document.preamble]
    for section in document.sections:
        parts.append(f"<h2>{escape(section.title)}</h2>\n")
        parts += [_html_block(block) for block in section.blocks]
    parts.append("</body>\n</html>\n")
    return "".join(parts)
