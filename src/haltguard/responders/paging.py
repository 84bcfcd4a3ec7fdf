"""Pages: page level 1, escalate on timeout, retry failed deliveries, stop on acknowledgement.

Delivery happens inside the caller's transaction, after the page's rows are written and
before the audit entries (which lock the audit chain until commit, so they come last). If
the process dies mid-way the transaction rolls back and the next tick pages again: a
responder may get a page twice, never zero times.

Everything that happens becomes a :class:`PageEvent`: stored in ``page_events``, written to
the audit chain, and handed to every listener registered with :func:`on_page_event`.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import quote

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock, require_aware
from haltguard.db import keys
from haltguard.db.session import session_scope
from haltguard.responders import contacts as contact_rules
from haltguard.responders import directory, escalation, schedules
from haltguard.responders.ack_links import (
    AckGrant,
    AckTokenError,
    sign_ack_token,
    verify_ack_token,
)
from haltguard.responders.channels import (
    ChannelKind,
    DeliveryJob,
    DeliveryResult,
    deliver_all,
)
from haltguard.responders.errors import (
    AckRefusedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from haltguard.responders.events import PageEvent, PageEventKind
from haltguard.responders.models import (
    ContactMethod,
    DeliveryAttemptOut,
    DeliveryOut,
    DeliveryStatus,
    NotificationOut,
    Page,
    PageDelivery,
    PageDeliveryAttempt,
    PageEventOut,
    PageEventRecord,
    PageNotification,
    PageOut,
    PageStatus,
    Person,
    ResponderSecret,
)
from haltguard.responders.settings import ResponderSettings
from haltguard.responders.texts import Language, event_text, page_message
from haltguard.security import audit

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (30, 60, 120)
"""Waits before the 2nd, 3rd and 4th delivery attempt; then the delivery has failed."""
DELIVERY_ATTEMPTS_MAX = len(RETRY_DELAYS_S) + 1
TICK_PAGES_MAX = 100
TICK_RETRIES_MAX = 200
LOOP_INTERVAL_S_MIN = 0.05
ACK_SECRET_NAME = "ack_link"
ESCALATION_ACTOR = "system:escalation"
ACK_VIA = ("api", "cli", "link")
DIRECT_PLAN_NAME = "direct"
"""The plan name of a page sent to one named person (:func:`page_person`)."""
REASON_LENGTH_MAX = 500

PageListener = Callable[[Session, PageEvent], None]
_listeners: list[PageListener] = []
_listeners_lock = threading.Lock()


def on_page_event(listener: PageListener) -> Callable[[], None]:
    """Call ``listener(session, event)`` for every page event, inside the transaction that
    caused it (an exception there rolls the change back). Returns a function that
    unsubscribes."""
    with _listeners_lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _listeners_lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


Outbox = list[tuple[Page, PageEvent, str]]
"""Events waiting to be published: the page, the event, the audit action."""


def _publish(session: Session, outbox: Outbox) -> list[PageEvent]:
    for owner, event, audit_action in outbox:
        _emit(session, owner, event, audit_action)
    return [event for _, event, _ in outbox]


def _emit(session: Session, page: Page, event: PageEvent, audit_action: str) -> None:
    record = PageEventRecord(
        page_id=page.id, incident_id=page.incident_id, at=event.at, kind=event.kind.value,
        actor=event.actor, level_number=event.level_number, people=list(event.people),
        text_ja=event.text_ja, text_en=event.text_en, details=dict(event.details),
    )
    page.events.append(record)
    session.flush()
    audit.record(
        session, actor=event.actor, action=audit_action, target=f"page:{page.id}",
        details={"incident_id": page.incident_id, "event": event.kind.value,
                 "text_en": event.text_en, "people": list(event.people), **event.details},
        at=event.at,
    )
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(session, event)


def _event(
    page: Page, kind: PageEventKind, *, at: datetime, actor: str, level_number: int | None = None,
    people: tuple[str, ...] = (), details: dict[str, object] | None = None,
    text_key: str | None = None, **values: object,
) -> PageEvent:
    text_values = {"page_id": page.id, "level": level_number, "people": ", ".join(people),
                   "actor": actor, **values}
    key = text_key or kind.value
    return PageEvent(
        page_id=page.id, incident_id=page.incident_id, at=at, kind=kind, actor=actor,
        level_number=level_number, people=people,
        text_ja=event_text(key, "ja", **text_values),
        text_en=event_text(key, "en", **text_values),
        details=dict(details or {}),
    )


# --- the ack-link secret and links -----------------------------------------------------------


def ack_secret(session: Session, settings: ResponderSettings) -> bytes:
    """``HALTGUARD_ACK_SECRET`` when set; else one generated once and kept in the database
    (encrypted with the secrets key, ``db/keys.py``), so links survive restarts and
    work on every node that has the same keys."""
    if settings.ack_secret:
        return settings.ack_secret
    keyring = keys.keyring_for(session)
    context = keys.responder_secret_context(ACK_SECRET_NAME)
    stored = session.get(ResponderSecret, ACK_SECRET_NAME)
    if stored is None:
        sealed = keys.seal(keyring, secrets.token_urlsafe(48), context=context)
        try:
            with session.begin_nested():
                session.add(ResponderSecret(name=ACK_SECRET_NAME, value=sealed))
        except IntegrityError:
            pass
        stored = session.get(ResponderSecret, ACK_SECRET_NAME, populate_existing=True)
        assert stored is not None, "the secret row exists after insert or a concurrent insert"
    return keys.open_sealed(keyring, stored.value, context=context).encode()


def ack_url(
    settings: ResponderSettings, secret: bytes, *, page_id: int, responder: str, now: datetime
) -> str:
    token = sign_ack_token(secret, page_id=page_id, responder=responder,
                           expires_at=now + timedelta(seconds=settings.ack_link_ttl_s))
    return f"{settings.public_url}/api/pages/{page_id}/ack?token={quote(token)}"


# --- resolving a level to people -------------------------------------------------------------


@dataclass(frozen=True)
class _Recipient:
    person: Person
    reason: str


def _resolve_level(
    session: Session, level: escalation.Level, category: str, at: datetime
) -> tuple[list[_Recipient], list[str]]:
    """The people a level pages now, each once, with why; and the reasons targets gave
    nobody (empty schedule, missing person, contact tree gap, no contact method)."""
    wanted: list[tuple[str, str]] = []
    problems: list[str] = []
    tree: contact_rules.ContactTree | None = None
    for target in level.targets:
        kind = target.kind
        if kind is escalation.TargetKind.SCHEDULE:
            schedule = directory.find_schedule(session, target.ref)
            if schedule is None:
                problems.append(f"schedule {target.ref} no longer exists")
                continue
            shift = schedules.shift_at(directory.schedule_spec(schedule), at)
            if shift is None:
                problems.append(f"nobody is on call for {target.ref}")
                continue
            how = "override on" if shift.override else "on call for"
            wanted.append((shift.person, f"{how} {target.ref}"))
        elif kind is escalation.TargetKind.PERSON:
            wanted.append((target.ref, "named in the policy"))
        else:
            tree = tree or directory.contact_tree(session)
            primary = kind is escalation.TargetKind.CONTACTS_PRIMARY
            handles = tree.primaries(category) if primary else tree.backups(category)
            if not handles:
                problems.append(f"the contact tree names nobody for {category}")
            role = "contact" if primary else "backup contact"
            wanted += [(handle, f"{role} for {category}") for handle in handles]
    recipients: list[_Recipient] = []
    seen: set[str] = set()
    for handle, reason in wanted:
        if handle in seen:
            continue
        seen.add(handle)
        person = directory.find_person(session, handle)
        if person is None:
            problems.append(f"{handle} is no longer a known person")
        elif not person.contact_methods:
            problems.append(f"{handle} has no contact method")
        else:
            recipients.append(_Recipient(person, reason))
    return recipients, problems


# --- delivery --------------------------------------------------------------------------------


def _job_for(
    page: Page, person: Person, method: ContactMethod, *, level_number: int, ack_timeout_s: int,
    now: datetime, settings: ResponderSettings, secret: bytes,
) -> DeliveryJob:
    message = page_message(
        page_id=page.id, incident_id=page.incident_id, summary=page.summary,
        category=page.category, severity=page.severity, level_number=level_number,
        ack_timeout_s=ack_timeout_s,
        ack_url=ack_url(settings, secret, page_id=page.id, responder=person.handle, now=now),
        language=cast(Language, person.language),
    )
    try:
        address = directory.contact_address(method)
    except keys.KeyringError as exc:
        return DeliveryJob(ChannelKind(method.kind), "", message,
                           problem=f"cannot open the contact's address: {exc}")
    return DeliveryJob(ChannelKind(method.kind), address, message)


def _record_attempt(
    page: Page, delivery: PageDelivery, result: DeliveryResult, *, now: datetime,
    person_handle: str,
) -> list[PageEvent]:
    """Store one attempt's result and decide: delivered, retry later, or failed for good."""
    delivery.attempts += 1
    delivery.attempt_log.append(PageDeliveryAttempt(
        number=delivery.attempts, attempted_at=now, ok=result.ok, error=result.error,
        duration_ms=result.duration_ms,
    ))
    if result.ok:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        delivery.last_error = ""
        return []
    delivery.last_error = result.error
    if delivery.attempts < DELIVERY_ATTEMPTS_MAX:
        delivery.status = DeliveryStatus.RETRYING
        delivery.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS_S[delivery.attempts - 1])
        return []
    delivery.status = DeliveryStatus.FAILED
    delivery.next_attempt_at = None
    return [_event(
        page, PageEventKind.DELIVERY_FAILED, at=now, actor=ESCALATION_ACTOR,
        people=(person_handle,),
        details={"channel": delivery.kind, "address": delivery.address_shown,
                 "attempts": delivery.attempts, "error": result.error},
        person=person_handle, channel=f"{delivery.kind} {delivery.address_shown}",
        attempts=delivery.attempts, error=result.error,
    )]


def _notify(
    session: Session, page: Page, *, plan: escalation.Plan, position: escalation.Position,
    recipients: list[_Recipient], now: datetime, settings: ResponderSettings,
) -> list[PageEvent]:
    """Write the notification and delivery rows for one level, send them all side by side,
    and record each result."""
    level = plan.level(position)
    secret = ack_secret(session, settings)
    pending: list[tuple[PageDelivery, str, DeliveryJob]] = []
    for recipient in recipients:
        notification = PageNotification(
            page_id=page.id, step=page.step, level_index=position.level_index,
            cycle=position.cycle, person_handle=recipient.person.handle,
            reason=recipient.reason, notified_at=now,
        )
        page.notifications.append(notification)
        for method in recipient.person.contact_methods:
            delivery = PageDelivery(
                page_id=page.id, contact_method_id=method.id, kind=method.kind,
                address_shown=directory.shown_contact_address(method),
                status=DeliveryStatus.RETRYING, attempts=0,
            )
            notification.deliveries.append(delivery)
            job = _job_for(page, recipient.person, method, level_number=position.level_index + 1,
                           ack_timeout_s=level.ack_timeout_s, now=now, settings=settings,
                           secret=secret)
            pending.append((delivery, recipient.person.handle, job))
    session.flush()
    results = deliver_all([job for _, _, job in pending], settings.smtp,
                          settings.channel_timeout_s)
    events: list[PageEvent] = []
    for (delivery, handle, _), result in zip(pending, results, strict=True):
        events += _record_attempt(page, delivery, result, now=now, person_handle=handle)
    session.flush()
    return events


def _page_from(
    session: Session, page: Page, plan: escalation.Plan, position: escalation.Position | None,
    *, now: datetime, settings: ResponderSettings, timed_out_s: int | None, actor: str,
    outbox: Outbox, details_extra: dict[str, object] | None = None,
    paged_text: str = "paged", paged_values: dict[str, object] | None = None,
) -> None:
    """Page the level at ``position``; a level that reaches nobody is recorded and the next
    one is paged at once. Ends the page as exhausted when the plan runs out. Events go to
    ``outbox`` and are published after all sending, so the audit chain is locked only briefly.

    ``timed_out_s`` is the timeout of the level that went unanswered (None for a new page,
    whose event is written with the ``paged_text`` template and ``paged_values``).
    """
    for _ in range(plan.steps_total + 1):
        if position is None:
            page.status = PageStatus.EXHAUSTED
            page.ack_due_at = None
            page.ended_at = now
            session.flush()
            outbox.append((page, _event(page, PageEventKind.EXHAUSTED, at=now,
                                        actor=ESCALATION_ACTOR, steps=page.step,
                                        details={"steps": page.step, "policy": plan.name}),
                           "page.exhausted"))
            return
        level = plan.level(position)
        level_number = position.level_index + 1
        recipients, problems = _resolve_level(session, level, page.category, now)
        page.step += 1
        page.level_index = position.level_index
        page.cycle = position.cycle
        page.level_paged_at = now
        details: dict[str, object] = {
            "policy": plan.name, "level": level_number, "cycle": position.cycle,
            "ack_timeout_s": level.ack_timeout_s,
            "targets": [t.text() for t in level.targets], "problems": problems,
            **(details_extra or {}),
        }
        if not recipients:
            page.ack_due_at = None
            session.flush()
            outbox.append((page, _event(
                page, PageEventKind.LEVEL_EMPTY, at=now, actor=ESCALATION_ACTOR,
                level_number=level_number, details=details,
                reason="; ".join(problems) or "no targets",
            ), "page.escalate"))
            position = escalation.next_position(plan, position)
            continue
        page.ack_due_at = now + timedelta(seconds=level.ack_timeout_s)
        failures = _notify(session, page, plan=plan, position=position,
                           recipients=recipients, now=now, settings=settings)
        people = tuple(r.person.handle for r in recipients)
        details["reasons"] = {r.person.handle: r.reason for r in recipients}
        details["ack_due_at"] = page.ack_due_at.isoformat()
        if timed_out_s is None:
            event = _event(page, PageEventKind.PAGED, at=now, actor=actor,
                           level_number=level_number, people=people, details=details,
                           text_key=paged_text, policy=plan.name, **(paged_values or {}))
            outbox.append((page, event, "page.send"))
        else:
            event = _event(page, PageEventKind.ESCALATED, at=now, actor=ESCALATION_ACTOR,
                           level_number=level_number, people=people, details=details,
                           timeout_min=max(1, timed_out_s // 60))
            outbox.append((page, event, "page.escalate"))
        outbox += [(page, failure, "page.delivery_failed") for failure in failures]
        return
    raise AssertionError("a plan pages at most steps_total levels")


# --- the public operations -------------------------------------------------------------------


def _settings(settings: ResponderSettings | None) -> ResponderSettings:
    return settings if settings is not None else ResponderSettings()


def page(
    session: Session,
    *,
    incident_id: str,
    summary: str,
    category: str,
    severity: str,
    clock: Clock,
    actor: str = "system:incidents",
    settings: ResponderSettings | None = None,
) -> Page:
    """Page the responders for an incident: choose the policy (route by category and
    severity, else the contact tree), page level 1 and record every delivery attempt.

    Returns the flushed :class:`Page`; its ``events`` hold what happened (also sent to
    :func:`on_page_event` listeners). Escalation continues in :func:`escalation_tick`.
    """
    _check_page_request(incident_id=incident_id, summary=summary, category=category,
                        severity=severity)
    now = clock.now()
    require_aware(now, "clock.now()")
    chosen_plan, rule = directory.choose_plan(session, category, severity)
    new_page = _new_page(session, chosen_plan, incident_id=incident_id, summary=summary,
                         category=category, severity=severity, now=now, actor=actor)
    outbox: Outbox = []
    _page_from(session, new_page, chosen_plan, escalation.FIRST_POSITION, now=now,
               settings=_settings(settings), timed_out_s=None, actor=actor, outbox=outbox,
               details_extra={"rule": rule, "category": category, "severity": severity})
    _publish(session, outbox)
    return new_page


def page_person(
    session: Session,
    *,
    person: str,
    incident_id: str,
    summary: str,
    category: str,
    severity: str,
    reason: str,
    clock: Clock,
    actor: str = "system:incidents",
    ack_timeout_s: int | None = None,
    settings: ResponderSettings | None = None,
) -> Page:
    """Page one named person directly, for example the incident commander, saying why.

    Same channels, ack links, audit entries and page events (so timeline entries) as
    :func:`page`. If ``person`` does not acknowledge within ``ack_timeout_s`` (default: the
    first level's timeout of the policy routing chooses), the page escalates through that
    policy's levels (repeats included), so an unanswered direct page goes on to the on-call.
    """
    _check_page_request(incident_id=incident_id, summary=summary, category=category,
                        severity=severity)
    if not reason.strip() or len(reason) > REASON_LENGTH_MAX:
        raise InvalidInputError(f"say why this person is paged (1..{REASON_LENGTH_MAX} "
                                "characters)")
    named = directory.get_person(session, person)
    if not named.contact_methods:
        raise InvalidInputError(
            f"{person} has no contact method; add one with `haltguard oncall person add "
            f"{person} --name ... --email ...`"
        )
    now = clock.now()
    require_aware(now, "clock.now()")
    routed_plan, rule = directory.choose_plan(session, category, severity)
    timeout_s = ack_timeout_s if ack_timeout_s is not None else routed_plan.levels[0].ack_timeout_s
    try:
        direct_level = escalation.Level(
            timeout_s, (escalation.Target(escalation.TargetKind.PERSON, named.handle),)
        )
        plan = escalation.Plan(
            name=DIRECT_PLAN_NAME,
            levels=(direct_level, *routed_plan.levels)[:escalation.LEVELS_MAX],
            repeat_count=routed_plan.repeat_count,
        )
    except escalation.EscalationError as exc:
        raise InvalidInputError(str(exc)) from exc
    new_page = _new_page(session, plan, incident_id=incident_id, summary=summary,
                         category=category, severity=severity, now=now, actor=actor)
    outbox: Outbox = []
    _page_from(session, new_page, plan, escalation.FIRST_POSITION, now=now,
               settings=_settings(settings), timed_out_s=None, actor=actor, outbox=outbox,
               details_extra={"rule": f"direct page to {named.handle}; then {rule}",
                              "category": category, "severity": severity,
                              "direct_to": named.handle, "reason": reason,
                              "then_policy": routed_plan.name},
               paged_text="paged_directly",
               paged_values={"reason": reason, "then_policy": routed_plan.name,
                             "timeout_min": max(1, timeout_s // 60)})
    _publish(session, outbox)
    return new_page


def _check_page_request(*, incident_id: str, summary: str, category: str, severity: str) -> None:
    try:
        contact_rules.check_category(category)
        contact_rules.check_severity(severity)
    except contact_rules.ContactTreeError as exc:
        raise InvalidInputError(str(exc)) from exc
    if not incident_id.strip() or len(incident_id) > 64:
        raise InvalidInputError("incident_id must be 1..64 characters")
    if not summary.strip() or len(summary) > 2000:
        raise InvalidInputError("summary must be 1..2000 characters")


def _new_page(
    session: Session, plan: escalation.Plan, *, incident_id: str, summary: str, category: str,
    severity: str, now: datetime, actor: str,
) -> Page:
    new_page = Page(
        incident_id=incident_id, summary=summary, category=category, severity=severity,
        policy_name=plan.name, plan=plan.to_json(), status=PageStatus.TRIGGERED,
        level_index=0, cycle=0, step=0, level_paged_at=now, created_at=now, created_by=actor,
    )
    session.add(new_page)
    session.flush()
    return new_page


def get_page(session: Session, page_id: int) -> Page:
    found = session.get(Page, page_id)
    if found is None:
        raise NotFoundError(f"no page {page_id}; list pages with `haltguard oncall pages`")
    return found


def _abandon_retries(session: Session, page_id: int, now: datetime) -> None:
    session.execute(
        update(PageDelivery)
        .where(PageDelivery.page_id == page_id, PageDelivery.status == DeliveryStatus.RETRYING)
        .values(status=DeliveryStatus.ABANDONED, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )


def _rowcount(result: object) -> int:
    count = getattr(result, "rowcount", -1)
    assert isinstance(count, int)
    return count


def acknowledge(
    session: Session, *, page_id: int, actor: str, via: str, clock: Clock, note: str = ""
) -> Page:
    """Stop the page's escalation; ``actor`` is who acknowledged, ``via`` one of api, cli,
    link. Acknowledging an acknowledged page changes nothing; a late acknowledgement of an
    exhausted page is still recorded. A cancelled page cannot be acknowledged."""
    if via not in ACK_VIA:
        raise InvalidInputError(f"via must be one of {', '.join(ACK_VIA)}, got {via!r}")
    if len(note) > 500:
        raise InvalidInputError("an acknowledgement note is limited to 500 characters")
    current = get_page(session, page_id)
    if current.status == PageStatus.ACKNOWLEDGED:
        return current
    now = clock.now()
    require_aware(now, "clock.now()")
    previous_status = current.status
    changed = session.execute(
        update(Page)
        .where(Page.id == page_id,
               Page.status.in_([PageStatus.TRIGGERED, PageStatus.EXHAUSTED]))
        .values(status=PageStatus.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=actor,
                ack_via=via, ack_due_at=None, ended_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(current)
    if _rowcount(changed) != 1:
        if current.status == PageStatus.ACKNOWLEDGED:
            return current
        raise ConflictError(f"page {page_id} is {current.status}; it can no longer be acknowledged")
    _abandon_retries(session, page_id, now)
    level_number = current.level_index + 1
    _emit(session, current, _event(
        current, PageEventKind.ACKNOWLEDGED, at=now, actor=actor, level_number=level_number,
        details={"via": via, "note": note, "status_before": previous_status,
                 "seconds_since_page": int((now - current.created_at).total_seconds())},
        via=via,
    ), "page.ack")
    return current


def page_for_ack_link(
    session: Session, *, page_id: int, token: str, clock: Clock,
    settings: ResponderSettings | None = None,
) -> Page:
    """The page a signed link may acknowledge, changing nothing. The token is checked before
    the page is looked up, so a bad link gets the same :class:`AckRefusedError` whether the
    page exists or not (no telling which page ids exist)."""
    _grant_of(session, page_id=page_id, token=token, clock=clock, settings=settings)
    try:
        return get_page(session, page_id)
    except NotFoundError as exc:
        raise AckRefusedError("no such page") from exc


def acknowledge_with_token(
    session: Session, *, page_id: int, token: str, clock: Clock,
    settings: ResponderSettings | None = None,
) -> Page:
    """Acknowledge through a signed link; :class:`AckRefusedError` when the token is forged,
    expired or made for another page."""
    grant = _grant_of(session, page_id=page_id, token=token, clock=clock, settings=settings)
    return acknowledge(session, page_id=page_id, actor=f"responder:{grant.responder}",
                       via="link", clock=clock)


def _grant_of(
    session: Session, *, page_id: int, token: str, clock: Clock,
    settings: ResponderSettings | None,
) -> AckGrant:
    secret = ack_secret(session, _settings(settings))
    try:
        return verify_ack_token(secret, token, page_id=page_id, now=clock.now())
    except AckTokenError as exc:
        log.warning("refused an ack link for page %s: %s", page_id, exc)
        raise AckRefusedError(str(exc)) from exc


def cancel_page(
    session: Session, *, page_id: int, actor: str, reason: str, clock: Clock
) -> Page:
    """Stop a page nobody needs to answer any more (for example, the incident resolved)."""
    if not reason.strip():
        raise InvalidInputError("say why the page is cancelled")
    current = get_page(session, page_id)
    if current.status == PageStatus.CANCELLED:
        return current
    now = clock.now()
    changed = session.execute(
        update(Page)
        .where(Page.id == page_id, Page.status == PageStatus.TRIGGERED)
        .values(status=PageStatus.CANCELLED, ack_due_at=None, ended_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(current)
    if _rowcount(changed) != 1:
        raise ConflictError(f"page {page_id} is already {current.status}; nothing to cancel")
    _abandon_retries(session, page_id, now)
    _emit(session, current, _event(current, PageEventKind.CANCELLED, at=now, actor=actor,
                                   details={"reason": reason}, reason=reason),
          "page.cancel")
    return current


def cancel_pages_for_incident(
    session: Session, *, incident_id: str, actor: str, reason: str, clock: Clock
) -> list[Page]:
    """Cancel every page of ``incident_id`` that is still escalating."""
    ids = session.execute(
        select(Page.id).where(Page.incident_id == incident_id,
                              Page.status == PageStatus.TRIGGERED).order_by(Page.id)
    ).scalars().all()
    return [cancel_page(session, page_id=page_id, actor=actor, reason=reason, clock=clock)
            for page_id in ids]


# --- the escalation clock --------------------------------------------------------------------


@dataclass(frozen=True)
class TickReport:
    pages_escalated: int
    deliveries_retried: int
    events: list[PageEvent]


def _escalate_due_pages(
    session: Session, now: datetime, settings: ResponderSettings, outbox: Outbox
) -> int:
    due = session.execute(
        select(Page.id, Page.step)
        .where(Page.status == PageStatus.TRIGGERED, Page.ack_due_at <= now)
        .order_by(Page.ack_due_at, Page.id)
        .limit(TICK_PAGES_MAX)
    ).all()
    escalated = 0
    for page_id, step in due:
        # Claim the escalation: only one worker moves a page past a given step.
        claimed = session.execute(
            update(Page)
            .where(Page.id == page_id, Page.status == PageStatus.TRIGGERED,
                   Page.step == step, Page.ack_due_at <= now)
            .values(ack_due_at=None)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(claimed) != 1:
            continue
        current = session.get(Page, page_id, populate_existing=True)
        assert current is not None, "a claimed page exists"
        plan = escalation.Plan.from_json(current.plan)
        position = escalation.Position(current.level_index, current.cycle)
        _page_from(session, current, plan, escalation.next_position(plan, position), now=now,
                   settings=settings, timed_out_s=plan.level(position).ack_timeout_s,
                   actor=ESCALATION_ACTOR, outbox=outbox)
        escalated += 1
    return escalated


def _retry_due_deliveries(
    session: Session, now: datetime, settings: ResponderSettings, outbox: Outbox
) -> int:
    due = session.execute(
        select(PageDelivery.id, PageDelivery.attempts)
        .where(PageDelivery.status == DeliveryStatus.RETRYING,
               PageDelivery.next_attempt_at <= now)
        .order_by(PageDelivery.next_attempt_at, PageDelivery.id)
        .limit(TICK_RETRIES_MAX)
    ).all()
    pending: list[tuple[PageDelivery, Page, str, DeliveryJob]] = []
    secret = ack_secret(session, settings) if due else b""
    for delivery_id, attempts in due:
        claimed = session.execute(
            update(PageDelivery)
            .where(PageDelivery.id == delivery_id,
                   PageDelivery.status == DeliveryStatus.RETRYING,
                   PageDelivery.attempts == attempts, PageDelivery.next_attempt_at <= now)
            .values(next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(claimed) != 1:
            continue
        delivery = session.get(PageDelivery, delivery_id, populate_existing=True)
        assert delivery is not None, "a claimed delivery exists"
        owner = session.get(Page, delivery.page_id)
        notification = session.get(PageNotification, delivery.notification_id)
        assert owner is not None and notification is not None, "deliveries keep their page"
        method = (session.get(ContactMethod, delivery.contact_method_id)
                  if delivery.contact_method_id is not None else None)
        if owner.status not in (PageStatus.TRIGGERED, PageStatus.EXHAUSTED) or method is None:
            delivery.status = DeliveryStatus.ABANDONED
            if method is None:
                delivery.last_error = "the contact method was removed before the retry"
            continue
        plan = escalation.Plan.from_json(owner.plan)
        level = plan.levels[notification.level_index]
        job = _job_for(owner, method.person, method, level_number=notification.level_index + 1,
                       ack_timeout_s=level.ack_timeout_s, now=now, settings=settings,
                       secret=secret)
        pending.append((delivery, owner, notification.person_handle, job))
    results = deliver_all([job for *_, job in pending], settings.smtp,
                          settings.channel_timeout_s)
    for (delivery, owner, handle, _), result in zip(pending, results, strict=True):
        for failure in _record_attempt(owner, delivery, result, now=now,
                                        person_handle=handle):
            outbox.append((owner, failure, "page.delivery_failed"))
    session.flush()
    return len(pending)


def escalation_tick(
    session: Session, now: datetime, *, settings: ResponderSettings | None = None
) -> TickReport:
    """Do whatever is due at ``now``: page the next level of every page whose level timed
    out, and retry deliveries whose backoff has passed. Idempotent and safe to call often
    or from several workers: each escalation is claimed before it is done."""
    require_aware(now, "now")
    chosen = _settings(settings)
    outbox: Outbox = []
    escalated = _escalate_due_pages(session, now, chosen, outbox)
    retried = _retry_due_deliveries(session, now, chosen, outbox)
    events = _publish(session, outbox)
    return TickReport(pages_escalated=escalated, deliveries_retried=retried, events=events)


def run_escalation_loop(
    stop_event: threading.Event,
    session_factory: sessionmaker[Session],
    clock: Clock,
    interval_s: float,
    *,
    settings: ResponderSettings | None = None,
) -> None:
    """Call :func:`escalation_tick` every ``interval_s`` seconds, one transaction per tick,
    until ``stop_event`` is set. A failing tick is logged and tried again next time."""
    if interval_s < LOOP_INTERVAL_S_MIN:
        raise ValueError(f"interval_s must be at least {LOOP_INTERVAL_S_MIN}")
    while not stop_event.is_set():
        try:
            with session_scope(session_factory) as session:
                report = escalation_tick(session, clock.now(), settings=settings)
            if report.events:
                log.info("escalation tick: %d pages escalated, %d deliveries retried",
                         report.pages_escalated, report.deliveries_retried)
        except Exception:
            log.exception("escalation tick failed; trying again in %s s", interval_s)
        stop_event.wait(interval_s)


def start_escalation_thread(
    session_factory: sessionmaker[Session],
    clock: Clock,
    interval_s: float = 5.0,
    *,
    settings: ResponderSettings | None = None,
) -> tuple[threading.Thread, threading.Event]:
    """Run :func:`run_escalation_loop` in a daemon thread; set the event to stop it."""
    stop_event = threading.Event()
    thread = threading.Thread(
        target=run_escalation_loop, name="haltguard-escalation", daemon=True,
        args=(stop_event, session_factory, clock, interval_s), kwargs={"settings": settings},
    )
    thread.start()
    return thread, stop_event


# --- reading pages ---------------------------------------------------------------------------


def list_pages(
    session: Session, *, incident_id: str | None = None, status: str | None = None,
    offset: int = 0, limit: int = 50,
) -> tuple[list[Page], int]:
    """Newest first."""
    directory.check_paging(offset, limit)
    if status is not None and status not in PageStatus.ALL:
        raise InvalidInputError(
            f"status must be one of {', '.join(PageStatus.ALL)}, got {status!r}"
        )
    query = select(Page)
    count = select(func.count()).select_from(Page)
    if incident_id is not None:
        query = query.where(Page.incident_id == incident_id)
        count = count.where(Page.incident_id == incident_id)
    if status is not None:
        query = query.where(Page.status == status)
        count = count.where(Page.status == status)
    rows = session.execute(query.order_by(Page.id.desc()).offset(offset).limit(limit))
    return list(rows.scalars()), int(session.execute(count).scalar_one())


def list_page_events(
    session: Session, *, incident_id: str | None = None, page_id: int | None = None,
    offset: int = 0, limit: int = 50,
) -> tuple[list[PageEventOut], int]:
    """Oldest first, as a timeline reads."""
    directory.check_paging(offset, limit)
    query = select(PageEventRecord)
    count = select(func.count()).select_from(PageEventRecord)
    if incident_id is not None:
        query = query.where(PageEventRecord.incident_id == incident_id)
        count = count.where(PageEventRecord.incident_id == incident_id)
    if page_id is not None:
        query = query.where(PageEventRecord.page_id == page_id)
        count = count.where(PageEventRecord.page_id == page_id)
    rows = session.execute(query.order_by(PageEventRecord.id).offset(offset).limit(limit))
    return [event_out(r) for r in rows.scalars()], int(session.execute(count).scalar_one())


def event_out(record: PageEventRecord) -> PageEventOut:
    return PageEventOut(
        page_id=record.page_id, incident_id=record.incident_id, at=record.at, kind=record.kind,
        actor=record.actor, level_number=record.level_number, people=list(record.people),
        text_ja=record.text_ja, text_en=record.text_en, details=dict(record.details),
    )


def page_out(found: Page) -> PageOut:
    return PageOut(
        id=found.id, incident_id=found.incident_id, summary=found.summary,
        category=found.category, severity=found.severity, policy=found.policy_name,
        status=found.status, level_number=found.level_index + 1, cycle=found.cycle,
        created_at=found.created_at, created_by=found.created_by, ack_due_at=found.ack_due_at,
        acknowledged_at=found.acknowledged_at, acknowledged_by=found.acknowledged_by,
        ack_via=found.ack_via,
        notifications=[
            NotificationOut(
                person=n.person_handle, level_number=n.level_index + 1, cycle=n.cycle,
                reason=n.reason, notified_at=n.notified_at,
                deliveries=[
                    DeliveryOut(
                        kind=d.kind, address=d.address_shown, status=d.status,
                        next_attempt_at=d.next_attempt_at,
                        attempts=[
                            DeliveryAttemptOut(number=a.number, attempted_at=a.attempted_at,
                                               ok=a.ok, error=a.error,
                                               duration_ms=a.duration_ms)
                            for a in d.attempt_log
                        ],
                    )
                    for d in n.deliveries
                ],
            )
            for n in found.notifications
        ],
        events=[event_out(e) for e in found.events],
    )
