"""The emergency contact tree (manual 3.3): who to call per category, each with a backup."""

from __future__ import annotations

from importlib import resources

import pytest

from haltguard.responders.contacts import (
    INCIDENT_CATEGORIES,
    ContactTreeError,
    contact_tree_from_yaml,
    contact_tree_to_data,
)


def test_shipped_example_names_someone_with_a_backup_for_every_category() -> None:
    text = resources.files("haltguard.responders").joinpath("oncall.example.yaml").read_text(
        encoding="utf-8")
    tree = contact_tree_from_yaml(text)
    assert tree.gaps() == []
    for category in INCIDENT_CATEGORIES:
        for contact in tree.contacts(category):
            assert contact.person != contact.backup


def test_tree_reads_in_calling_order_and_round_trips() -> None:
    tree = contact_tree_from_yaml(
        "natural_disaster:\n"
        "  - {person: kobayashi, backup: tanaka, role: BCP}\n"
        "  - {person: tanaka, backup: suzuki}\n"
    )
    assert tree.primaries("natural_disaster") == ["kobayashi", "tanaka"]
    assert tree.backups("natural_disaster") == ["tanaka", "suzuki"]
    assert contact_tree_from_yaml(str(contact_tree_to_data(tree)).replace("'", '"')) == tree
    assert "server_down" in tree.gaps()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("earthquake:\n  - {person: a, backup: b}\n", "unknown incident category 'earthquake'"),
        ("ddos:\n  - {person: a, backup: a}\n", "cannot be their own backup"),
        ("ddos:\n  - {person: a}\n", "ddos #1: each contact needs both a person and a backup"),
        ("ddos:\n  - {person: a, backup: b, phone: 1}\n", "unknown field"),
        ("- a\n- b\n", "mapping from category"),
        ("ddos: [\n", "not valid YAML"),
    ],
)
def test_bad_trees_are_refused_saying_where(text: str, message: str) -> None:
    with pytest.raises(ContactTreeError, match=message):
        contact_tree_from_yaml(text)
