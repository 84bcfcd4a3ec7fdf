"""The heat map says what the register says: every risk in the cell of its rating, every
cell coloured by its score, and nothing else in the picture."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from continuity_support import REGISTER_TEXT, write

from haltguard.continuity.bcp import REGISTER_EXAMPLE, Register, load_register
from haltguard.continuity.heatmap import Rating, colour, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def cells_of(svg: str) -> dict[tuple[int, int], tuple[list[str], str]]:
    root = ET.fromstring(svg)
    found = {}
    for group in root.iter(f"{SVG}g"):
        rect = group.find(f"{SVG}rect")
        assert rect is not None
        found[(int(group.attrib["data-likelihood"]), int(group.attrib["data-impact"]))] = (
            group.attrib["data-risks"].split(), rect.attrib["fill"])
    return found


def expected(register: Register, rating: Rating) -> dict[tuple[int, int], list[str]]:
    placed: dict[tuple[int, int], list[str]] = {}
    for risk in register.risks:
        where = (risk.likelihood, risk.impact) if rating is Rating.INHERENT else (
            risk.residual.likelihood, risk.residual.impact)
        placed.setdefault(where, []).append(risk.id)
    return placed


def test_the_heat_map_places_every_risk_where_the_register_rates_it(tmp_path: Path) -> None:
    for register in (load_register(write(tmp_path / "r.yaml", REGISTER_TEXT)),
                     load_register(REGISTER_EXAMPLE)):
        for rating in Rating:
            cells = cells_of(render_svg(register, rating))
            assert len(cells) == 25
            placed = {where: ids for where, (ids, _) in cells.items() if ids}
            assert placed == expected(register, rating)
            for (likelihood, impact), (_, fill) in cells.items():
                assert fill == colour(likelihood * impact)


def test_two_risks_of_the_same_rating_share_one_cell(tmp_path: Path) -> None:
    register = load_register(write(tmp_path / "r.yaml", REGISTER_TEXT))
    cells = cells_of(render_svg(register, Rating.INHERENT))
    assert cells[(3, 5)][0] == ["R-01", "R-02"]
    assert cells[(1, 5)][0] == ["R-03"]


def test_the_heat_map_is_self_contained_svg_without_script() -> None:
    svg = render_svg(load_register(REGISTER_EXAMPLE))
    assert svg.startswith("<svg ") and "<script" not in svg and "href" not in svg
    assert "Likelihood" in svg and "影響度" in svg
