"""The emergency contact tree of manual chapter 3.3: for each kind of trouble, who to call,
in order, and a backup for each of them.

Pure values plus a YAML reader; the service stores the tree and checks that every person
named in it exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from haltguard.common.taxonomy import Category, Severity

# The incident categories and severities are the incident rules' own (manual chapter 1).
INCIDENT_CATEGORIES = tuple(category.value for category in Category)
SEVERITIES = tuple(severity.value for severity in Severity)
CONTACTS_PER_CATEGORY_MAX = 20
ROLE_LENGTH_MAX = 200


class ContactTreeError(ValueError):
    """A contact tree that cannot be used; the message says where and what to fix."""


@dataclass(frozen=True)
class Contact:
    """Call ``person`` for this category; if they cannot be reached, call ``backup``."""

    person: str
    backup: str
    role: str = ""

    def __post_init__(self) -> None:
        if not self.person or not self.backup:
            raise ContactTreeError("each contact needs both a person and a backup")
        if self.person == self.backup:
            raise ContactTreeError(
                f"{self.person!r} cannot be their own backup; name someone else as backup"
            )
        if len(self.role) > ROLE_LENGTH_MAX:
            raise ContactTreeError(f"role text is limited to {ROLE_LENGTH_MAX} characters")


@dataclass(frozen=True)
class ContactTree:
    entries: Mapping[str, tuple[Contact, ...]]

    def __post_init__(self) -> None:
        for category, contacts in self.entries.items():
            check_category(category)
            if len(contacts) > CONTACTS_PER_CATEGORY_MAX:
                raise ContactTreeError(
                    f"{category}: at most {CONTACTS_PER_CATEGORY_MAX} contacts per category"
                )

    def contacts(self, category: str) -> tuple[Contact, ...]:
        return self.entries.get(category, ())

    def primaries(self, category: str) -> list[str]:
        return [contact.person for contact in self.contacts(category)]

    def backups(self, category: str) -> list[str]:
        return [contact.backup for contact in self.contacts(category)]

    def people(self) -> set[str]:
        return {
            handle
            for contacts in self.entries.values()
            for contact in contacts
            for handle in (contact.person, contact.backup)
        }

    def gaps(self) -> list[str]:
        """Categories nobody would be called for, in the manual's order."""
        return [category for category in INCIDENT_CATEGORIES if not self.contacts(category)]


def check_category(category: str) -> str:
    if category not in INCIDENT_CATEGORIES:
        raise ContactTreeError(
            f"unknown incident category {category!r}; use one of {', '.join(INCIDENT_CATEGORIES)}"
        )
    return category


def check_severity(severity: str) -> str:
    if severity not in SEVERITIES:
        raise ContactTreeError(
            f"unknown severity {severity!r}; use one of {', '.join(SEVERITIES)}"
        )
    return severity


def contact_tree_from_data(data: Any) -> ContactTree:
    """Read ``{category: [{person, backup, role}, ...]}``, or a document whose
    ``contact_tree`` key holds that mapping."""
    if isinstance(data, dict) and "contact_tree" in data:
        data = data["contact_tree"]
    if not isinstance(data, dict):
        raise ContactTreeError(
            "a contact tree is a mapping from category to a list of {person, backup, role}"
        )
    entries: dict[str, tuple[Contact, ...]] = {}
    for category, items in data.items():
        check_category(str(category))
        if not isinstance(items, list):
            raise ContactTreeError(f"{category}: expected a list of contacts")
        contacts: list[Contact] = []
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise ContactTreeError(f"{category} #{number}: expected {{person, backup, role}}")
            unknown = set(item) - {"person", "backup", "role"}
            if unknown:
                raise ContactTreeError(
                    f"{category} #{number}: unknown field(s) {', '.join(sorted(unknown))}"
                )
            try:
                contacts.append(
                    Contact(
                        person=str(item.get("person", "")),
                        backup=str(item.get("backup", "")),
                        role=str(item.get("role", "")),
                    )
                )
            except ContactTreeError as exc:
                raise ContactTreeError(f"{category} #{number}: {exc}") from exc
        entries[str(category)] = tuple(contacts)
    return ContactTree(entries)


def contact_tree_from_yaml(text: str) -> ContactTree:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContactTreeError(f"the contact tree is not valid YAML: {exc}") from exc
    return contact_tree_from_data(data)


def contact_tree_to_data(tree: ContactTree) -> dict[str, list[dict[str, str]]]:
    """The YAML/JSON shape, in the manual's category order."""
    return {
        category: [
            {"person": c.person, "backup": c.backup, "role": c.role}
            for c in tree.contacts(category)
        ]
        for category in INCIDENT_CATEGORIES
        if tree.contacts(category)
    }
