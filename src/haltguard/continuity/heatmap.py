"""The risk register as a heat map: a 5x5 SVG of likelihood (across) by impact (up), each
cell coloured by its score and listing the risks in it.

Self-contained SVG (no script, no external font or style), so it can be inlined in the HTML
report, served by the API and shown by any operator screen. Each cell carries
``data-likelihood``, ``data-impact`` and ``data-risks`` (the ids, space-separated), so what
the picture says can be checked against the register by a program.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from html import escape

from haltguard.continuity.bcp import RATING_MAX, RATING_MIN, Register, Risk

CELL_PX = 96
MARGIN_PX = 56
IDS_SHOWN_MAX = 4
"""Ids written in one cell; more are summarised as ``+N``."""


class Rating(StrEnum):
    INHERENT = "inherent"
    RESIDUAL = "residual"


TITLES: dict[Rating, tuple[str, str]] = {
    Rating.INHERENT: ("固有リスク", "Inherent risk"),
    Rating.RESIDUAL: ("残存リスク", "Residual risk"),
}


def colour(score: int) -> str:
    """Green to red by score (1..25), the usual bands: low, medium, high, critical."""
    if score >= 15:
        return "#d7301f"
    if score >= 10:
        return "#fc8d59"
    if score >= 5:
        return "#fee08b"
    return "#91cf60"


def _position(rating: Rating) -> Callable[[Risk], tuple[int, int]]:
    if rating is Rating.INHERENT:
        return lambda risk: (risk.likelihood, risk.impact)
    return lambda risk: (risk.residual.likelihood, risk.residual.impact)


def cells(register: Register, rating: Rating) -> dict[tuple[int, int], list[str]]:
    """(likelihood, impact) -> the ids of the risks there, in register order."""
    where = _position(rating)
    placed: dict[tuple[int, int], list[str]] = {
        (likelihood, impact): [] for likelihood in range(RATING_MIN, RATING_MAX + 1)
        for impact in range(RATING_MIN, RATING_MAX + 1)}
    for risk in register.risks:
        placed[where(risk)].append(risk.id)
    return placed


def render_svg(register: Register, rating: Rating = Rating.INHERENT) -> str:
    """The heat map of ``register`` by its ``rating`` as an SVG document."""
    size = RATING_MAX - RATING_MIN + 1
    width = MARGIN_PX + size * CELL_PX + 8
    height = 36 + size * CELL_PX + MARGIN_PX
    title_ja, title_en = TITLES[rating]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" data-rating="{rating.value}" '
        f'font-family="sans-serif" font-size="12">',
        f"<title>{escape(title_ja)} / {escape(title_en)}</title>",
        f'<text x="{MARGIN_PX}" y="20" font-size="15" font-weight="bold">'
        f"{escape(title_ja)} / {escape(title_en)}</text>",
    ]
    top = 36
    for (likelihood, impact), ids in sorted(cells(register, rating).items()):
        x = MARGIN_PX + (likelihood - RATING_MIN) * CELL_PX
        y = top + (RATING_MAX - impact) * CELL_PX
        score = likelihood * impact
        shown = " ".join(ids[:IDS_SHOWN_MAX]) + (f" +{len(ids) - IDS_SHOWN_MAX}"
                                                  if len(ids) > IDS_SHOWN_MAX else "")
        parts.append(
            f'<g class="cell" data-likelihood="{likelihood}" data-impact="{impact}" '
            f'data-risks="{escape(" ".join(ids))}">'
            f'<rect x="{x}" y="{y}" width="{CELL_PX}" height="{CELL_PX}" '
            f'fill="{colour(score)}" stroke="#ffffff" stroke-width="2"/>'
            f'<text x="{x + 6}" y="{y + 16}" fill="#333333">{score}</text>')
        for index, line in enumerate(_wrapped(shown)):
            parts.append(f'<text x="{x + 6}" y="{y + 40 + 16 * index}" font-weight="bold">'
                         f"{escape(line)}</text>")
        parts.append("</g>")
    base = top + size * CELL_PX
    for step in range(size):
        parts.append(f'<text x="{MARGIN_PX + step * CELL_PX + CELL_PX // 2}" y="{base + 18}" '
                     f'text-anchor="middle">{RATING_MIN + step}</text>')
        parts.append(f'<text x="{MARGIN_PX - 10}" y="{top + step * CELL_PX + CELL_PX // 2}" '
                     f'text-anchor="end">{RATING_MAX - step}</text>')
    parts.append(f'<text x="{MARGIN_PX + size * CELL_PX // 2}" y="{base + 40}" '
                 'text-anchor="middle">発生可能性 / Likelihood</text>')
    parts.append(f'<text x="14" y="{top + size * CELL_PX // 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + size * CELL_PX // 2})">'
                 "影響度 / Impact</text>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _wrapped(text: str) -> list[str]:
    """Ids two to a line, so they stay inside their cell."""
    words = text.split()
    return [" ".join(words[start:start + 2]) for start in range(0, len(words), 2)]
