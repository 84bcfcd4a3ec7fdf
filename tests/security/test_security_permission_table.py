"""The permission table's own shape: nested roles, admin has everything, own-account rights."""

from __future__ import annotations

from itertools import pairwise

from haltguard.security.permissions import ROLE_PERMISSIONS, Action, Role, is_allowed


def test_roles_are_nested_from_viewer_to_admin() -> None:
    order = [Role.VIEWER, Role.SUPPORT, Role.RESPONDER, Role.INCIDENT_COMMANDER, Role.ADMIN]
    for lower, higher in pairwise(order):
        assert ROLE_PERMISSIONS[lower] < ROLE_PERMISSIONS[higher], (lower, higher)
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Action)


def test_every_role_may_manage_its_own_session_and_tokens() -> None:
    for role in Role:
        assert is_allowed(role, Action.SESSION_MANAGE_OWN)
        assert is_allowed(role, Action.TOKEN_MANAGE_OWN)
    assert not is_allowed(Role.VIEWER, Action.OPERATOR_MANAGE)
    assert not is_allowed(Role.INCIDENT_COMMANDER, Action.OPERATOR_MANAGE)


def test_support_staff_may_tell_customers_but_not_change_what_the_page_shows_by_hand() -> None:
    """Issue 5: customer support drafts and publishes public updates; overriding a
    component's status or scheduling maintenance stays with incident commanders."""
    assert is_allowed(Role.SUPPORT, Action.STATUS_DRAFT)
    assert is_allowed(Role.SUPPORT, Action.STATUS_PUBLISH)
    assert not is_allowed(Role.SUPPORT, Action.STATUS_OVERRIDE)
    assert not is_allowed(Role.SUPPORT, Action.STATUS_MAINTENANCE)
    assert not is_allowed(Role.VIEWER, Action.STATUS_PUBLISH)
