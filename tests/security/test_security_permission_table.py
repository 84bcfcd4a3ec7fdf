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
