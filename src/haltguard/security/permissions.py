"""Who may do what: the one permission table every endpoint and CLI command is checked against.

The tests walk this table completely: each role against each action, allowed or refused.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    SUPPORT = "support"
    RESPONDER = "responder"
    INCIDENT_COMMANDER = "incident_commander"
    ADMIN = "admin"


class Action(StrEnum):
    # incidents
    INCIDENT_READ = "incident.read"
    INCIDENT_CREATE = "incident.create"
    INCIDENT_UPDATE = "incident.update"
    INCIDENT_TRANSITION = "incident.transition"
    INCIDENT_COMMENT = "incident.comment"
    INCIDENT_ASSIGN_COMMANDER = "incident.assign_commander"
    TASK_UPDATE = "task.update"
    REPORT_GENERATE = "report.generate"
    # protective actions on the venue
    MARKET_HALT = "market.halt"
    MARKET_SET_STATE = "market.set_state"
    MARKET_RESUME = "market.resume"
    KILL_SWITCH_ENGAGE = "kill_switch.engage"
    KILL_SWITCH_RELEASE = "kill_switch.release"
    WITHDRAWALS_FREEZE = "withdrawals.freeze"
    WITHDRAWALS_UNFREEZE = "withdrawals.unfreeze"
    APPROVAL_GRANT = "approval.grant"
    # responders
    ONCALL_READ = "oncall.read"
    ONCALL_MANAGE = "oncall.manage"
    PAGE_SEND = "page.send"
    PAGE_ACK = "page.ack"
    # security
    SESSION_MANAGE_OWN = "session.manage_own"
    OPERATOR_READ = "operator.read"
    OPERATOR_MANAGE = "operator.manage"
    TOKEN_MANAGE_OWN = "token.manage_own"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    # status page
    STATUS_READ = "status.read"
    STATUS_DRAFT = "status.draft"
    STATUS_PUBLISH = "status.publish"
    STATUS_OVERRIDE = "status.override"
    STATUS_MAINTENANCE = "status.maintenance"
    # detection and automatic protection
    DETECTION_READ = "detection.read"
    DETECTION_RULES_CHECK = "detection.rules_check"
    DETECTION_RULES_RELOAD = "detection.rules_reload"
    DETECTION_DRY_RUN = "detection.dry_run"
    # customer notices
    NOTIFY_READ = "notify.read"
    NOTIFY_MANAGE = "notify.manage"
    # impact analysis: who an interruption affected, read from the journal
    IMPACT_READ = "impact.read"
    # compensation (four eyes: the proposer of a run cannot approve it)
    COMPENSATION_READ = "compensation.read"
    COMPENSATION_PROPOSE = "compensation.propose"
    COMPENSATION_APPROVE = "compensation.approve"
    COMPENSATION_PAY = "compensation.pay"
    # drills: their reports read by responders; a drill started by a commander
    DRILL_READ = "drill.read"
    DRILL_RUN = "drill.run"
    # trade corrections (four eyes; the published policy names the roles that may decide)
    CORRECTIONS_READ = "corrections.read"
    CORRECTIONS_PROPOSE = "corrections.propose"
    CORRECTIONS_APPROVE = "corrections.approve"
    # the customer support desk: tickets and chats, replies (also in bulk), the help centre
    SUPPORT_READ = "support.read"
    SUPPORT_REPLY = "support.reply"
    SUPPORT_MANAGE = "support.manage"

    CUSTOMER_READ = "customer.read"
    CUSTOMER_MANAGE = "customer.manage"  # create customers, unlock after verification
    CUSTOMER_WITHDRAWAL_REVIEW = "customer.withdrawal_review"
    TERMS_PUBLISH = "terms.publish"
    # continuity: the plan's check, insurance, training, vulnerabilities, the update log
    CONTINUITY_READ = "continuity.read"
    CONTINUITY_MANAGE = "continuity.manage"


_VIEWER = {
    Action.SESSION_MANAGE_OWN,
    Action.INCIDENT_READ,
    Action.IMPACT_READ,  # whoever reads an incident reads whom it affected
    Action.ONCALL_READ,
    Action.TOKEN_MANAGE_OWN,
    Action.STATUS_READ,
}
# Support staff tell customers (manual 2.3, 4.2): they draft and publish public status
# updates. Overriding a component's status or scheduling maintenance stays with commanders.
_SUPPORT = _VIEWER | {Action.INCIDENT_COMMENT, Action.TASK_UPDATE, Action.NOTIFY_READ,
                      Action.STATUS_DRAFT, Action.STATUS_PUBLISH,
                      # support answers customers' questions about their compensation
                      Action.COMPENSATION_READ,
                      # support verifies a customer before lifting the customer's own lock
                      Action.CUSTOMER_READ, Action.CUSTOMER_MANAGE,
                      # the desk itself: customers' tickets, chats, replies, the help centre
                      Action.SUPPORT_READ, Action.SUPPORT_REPLY, Action.SUPPORT_MANAGE}
_RESPONDER = _SUPPORT | {
    Action.INCIDENT_CREATE,
    Action.INCIDENT_UPDATE,
    Action.INCIDENT_TRANSITION,
    Action.TASK_UPDATE,
    Action.PAGE_SEND,
    Action.PAGE_ACK,
    Action.REPORT_GENERATE,
    Action.MARKET_HALT,
    Action.WITHDRAWALS_FREEZE,
    Action.KILL_SWITCH_ENGAGE,
    Action.DETECTION_READ,
    Action.DETECTION_RULES_CHECK,
    Action.COMPENSATION_PROPOSE,
    # responders see the insurance an incident may claim on, and the security records
    Action.CONTINUITY_READ,
    Action.DRILL_READ,
}
_COMMANDER = _RESPONDER | {
    Action.INCIDENT_ASSIGN_COMMANDER,
    Action.MARKET_SET_STATE,
    Action.MARKET_RESUME,
    Action.KILL_SWITCH_RELEASE,
    Action.WITHDRAWALS_UNFREEZE,
    Action.APPROVAL_GRANT,
    Action.AUDIT_READ,
    Action.NOTIFY_MANAGE,
    Action.STATUS_OVERRIDE,
    Action.STATUS_MAINTENANCE,
    # Rules decide what halts by itself; dry-run switches automatic protection off.
    Action.DETECTION_RULES_RELOAD,
    Action.DETECTION_DRY_RUN,
    # Money leaves the exchange: approved by a second operator, paid by a commander.
    Action.COMPENSATION_APPROVE,
    Action.COMPENSATION_PAY,
    # a drill acts on the system it runs on (it halts markets, stops parts of it)
    Action.DRILL_RUN,
    # a customer's withdrawal held for review leaves the exchange only on a commander's word
    Action.CUSTOMER_WITHDRAWAL_REVIEW,
    Action.TERMS_PUBLISH,
    # insurance policies, training, findings and the update log are kept by commanders
    Action.CONTINUITY_MANAGE,
    # busting, re-pricing and rolling back trades: reviewed, proposed and approved by two
    Action.CORRECTIONS_READ,
    Action.CORRECTIONS_PROPOSE,
    Action.CORRECTIONS_APPROVE,
}
_ADMIN = set(Action)

ROLE_PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset(_VIEWER),
    Role.SUPPORT: frozenset(_SUPPORT),
    Role.RESPONDER: frozenset(_RESPONDER),
    Role.INCIDENT_COMMANDER: frozenset(_COMMANDER),
    Role.ADMIN: frozenset(_ADMIN),
}


def is_allowed(role: Role, action: Action) -> bool:
    return action in ROLE_PERMISSIONS[role]
