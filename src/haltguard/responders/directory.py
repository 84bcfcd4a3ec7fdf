"""Who can be paged and how: people, schedules, overrides, policies, routes, contact tree.

Plain functions over a session. Each change is validated completely before anything is
written and recorded in the audit chain; the caller's transaction makes it all-or-nothing.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, object_session

from haltguard.common.clock import Clock
from haltguard.db import keys
from haltguard.responders import contacts as contact_rules
from haltguard.responders import escalation, schedules
from haltguard.responders.channels import ChannelError, ChannelKind, check_address, redact
from haltguard.responders.errors import ConflictError, InvalidInputError, NotFoundError
from haltguard.responders.models import (
    ANY,
    ContactIn,
    ContactMethod,
    ContactMethodOut,
    EmergencyContact,
    EscalationPolicy,
    LevelIn,
    LevelTarget,
    OncallConfig,
    OverrideIn,
    OverrideOut,
    Person,
    PersonIn,
    PersonOut,
    PolicyIn,
    PolicyLevel,
    PolicyOut,
    PolicyRoute,
    RouteIn,
    RouteOut,
    Schedule,
    ScheduleIn,
    ScheduleMember,
    ScheduleOut,
    ScheduleOverride,
    ShiftOut,
)
from haltguard.security import audit

LIST_LIMIT_MAX = 200
CONFIG_BYTES_MAX = 1_000_000


def _audit(
    session: Session, *, actor: str, action: str, target: str, details: dict[str, object],
    clock: Clock,
) -> None:
    audit.record(session, actor=actor, action=action, target=target, details=details,
                 at=clock.now())


def check_paging(offset: int, limit: int) -> None:
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidInputError(f"limit must be 1..{LIST_LIMIT_MAX}, got {limit}")
    if offset < 0:
        raise InvalidInputError(f"offset must be 0 or more, got {offset}")


# --- people ----------------------------------------------------------------------------------


def find_person(session: Session, handle: str) -> Person | None:
    return session.execute(select(Person).where(Person.handle == handle)).scalar_one_or_none()


def get_person(session: Session, handle: str) -> Person:
    person = find_person(session, handle)
    if person is None:
        raise NotFoundError(f"no person {handle!r}; add them with `haltguard oncall person add`")
    return person


def list_people(session: Session, *, offset: int = 0, limit: int = 50) -> tuple[list[Person], int]:
    check_paging(offset, limit)
    rows = session.execute(select(Person).order_by(Person.handle).offset(offset).limit(limit))
    total = session.execute(select(func.count()).select_from(Person)).scalar_one()
    return list(rows.scalars()), int(total)


def put_person(session: Session, data: PersonIn, *, actor: str, clock: Clock) -> Person:
    """Create the person or replace their name, language and contact methods."""
    checked: list[tuple[ChannelKind, str, str]] = []
    for number, method in enumerate(data.contacts, start=1):
        kind = ChannelKind(method.kind)
        try:
            checked.append((kind, check_address(kind, method.address), method.label))
        except ChannelError as exc:
            raise InvalidInputError(f"{data.handle} contact #{number}: {exc}") from exc
    person = find_person(session, data.handle)
    created = person is None
    if person is None:
        person = Person(handle=data.handle, display_name=data.display_name)
        session.add(person)
    person.display_name = data.display_name
    person.language = data.language
    person.contact_methods.clear()
    session.flush()
    keyring = keys.keyring_for(session)
    for position, (kind, address, label) in enumerate(checked):
        stored = address if kind is ChannelKind.EMAIL else keys.seal(
            keyring, address, context=keys.contact_address_context(data.handle, position))
        person.contact_methods.append(
            ContactMethod(position=position, kind=kind.value, address=stored, label=label)
        )
    session.flush()
    _audit(
        session, actor=actor, action="oncall.person.put", target=f"person:{data.handle}",
        details={"created": created, "language": data.language,
                 "contacts": [f"{kind.value}:{redact(kind, address)}"
                              for kind, address, _ in checked]},
        clock=clock,
    )
    return person


def delete_person(session: Session, handle: str, *, actor: str, clock: Clock) -> None:
    """Remove someone nobody depends on; says where they are still named otherwise."""
    person = get_person(session, handle)
    uses = _person_uses(session, person)
    if uses:
        raise ConflictError(
            f"{handle} is still named in {', '.join(uses)}; remove them there first"
        )
    session.delete(person)
    session.flush()
    _audit(session, actor=actor, action="oncall.person.delete", target=f"person:{handle}",
           details={}, clock=clock)


def _person_uses(session: Session, person: Person) -> list[str]:
    uses: list[str] = []
    schedule_names = session.execute(
        select(Schedule.name).join(ScheduleMember).where(ScheduleMember.person_id == person.id)
    ).scalars()
    uses += [f"schedule {name}" for name in sorted(set(schedule_names))]
    override_names = session.execute(
        select(Schedule.name).join(ScheduleOverride)
        .where(ScheduleOverride.person_id == person.id)
    ).scalars()
    uses += [f"an override on {name}" for name in sorted(set(override_names))]
    policy_names = session.execute(
        select(EscalationPolicy.name).join(PolicyLevel).join(LevelTarget)
        .where(LevelTarget.person_id == person.id)
    ).scalars()
    uses += [f"policy {name}" for name in sorted(set(policy_names))]
    categories = session.execute(
        select(EmergencyContact.category).where(
            (EmergencyContact.person_id == person.id)
            | (EmergencyContact.backup_person_id == person.id)
        )
    ).scalars()
    uses += [f"the contact tree for {category}" for category in sorted(set(categories))]
    return uses


SEALED_ADDRESS_SHOWN = "(sealed under another secrets key)"


def contact_address(method: ContactMethod) -> str:
    """The contact's address in clear: apprise URLs carry tokens, so they are stored sealed
    with the secrets key, bound to the person and the contact's place; email addresses as
    given. :class:`keys.KeyringError` if the secrets key does not open it."""
    if method.kind == ChannelKind.EMAIL.value:
        return method.address
    session = object_session(method)
    assert session is not None, "a contact method is read through its session"
    return keys.open_sealed(keys.keyring_for(session), method.address,
                            context=keys.contact_address_context(method.person.handle,
                                                                 method.position))


def shown_contact_address(method: ContactMethod) -> str:
    """The address as operators see it (apprise URLs masked)."""
    try:
        return redact(ChannelKind(method.kind), contact_address(method))
    except keys.KeyringError:
        return SEALED_ADDRESS_SHOWN


def person_out(person: Person) -> PersonOut:
    return PersonOut(
        handle=person.handle,
        display_name=person.display_name,
        language=person.language,
        contacts=[
            ContactMethodOut(
                kind=method.kind,
                address=shown_contact_address(method),
                label=method.label,
            )
            for method in person.contact_methods
        ],
    )


def _people_by_handle(session: Session, handles: list[str], where: str) -> dict[str, Person]:
    wanted = set(handles)
    found = {
        person.handle: person
        for person in session.execute(select(Person).where(Person.handle.in_(wanted))).scalars()
    }
    missing = sorted(wanted - set(found))
    if missing:
        raise InvalidInputError(
            f"{where} names unknown people: {', '.join(missing)}; add them first"
        )
    return found


# --- schedules -------------------------------------------------------------------------------


def find_schedule(session: Session, name: str) -> Schedule | None:
    return session.execute(select(Schedule).where(Schedule.name == name)).scalar_one_or_none()


def get_schedule(session: Session, name: str) -> Schedule:
    schedule = find_schedule(session, name)
    if schedule is None:
        raise NotFoundError(
            f"no schedule {name!r}; list them with `haltguard oncall schedule list`"
        )
    return schedule


def list_schedules(
    session: Session, *, offset: int = 0, limit: int = 50
) -> tuple[list[Schedule], int]:
    check_paging(offset, limit)
    rows = session.execute(select(Schedule).order_by(Schedule.name).offset(offset).limit(limit))
    total = session.execute(select(func.count()).select_from(Schedule)).scalar_one()
    return list(rows.scalars()), int(total)


def _handoff_time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def put_schedule(session: Session, data: ScheduleIn, *, actor: str, clock: Clock) -> Schedule:
    """Create or replace a schedule's rotation; its overrides are kept."""
    try:
        schedules.Rotation(
            members=tuple(data.members),
            start_date=data.start_date,
            handoff=_handoff_time(data.handoff),
            length_days=data.rotation_days,
        )
        schedules.zone(data.timezone)
    except schedules.ScheduleError as exc:
        raise InvalidInputError(f"schedule {data.name}: {exc}") from exc
    people = _people_by_handle(session, data.members, f"schedule {data.name}")
    schedule = find_schedule(session, data.name)
    created = schedule is None
    if schedule is None:
        schedule = Schedule(name=data.name)
        session.add(schedule)
    schedule.description = data.description
    schedule.timezone = data.timezone
    schedule.start_date = data.start_date
    schedule.handoff = data.handoff
    schedule.rotation_days = data.rotation_days
    schedule.members.clear()
    session.flush()
    for position, handle in enumerate(data.members):
        schedule.members.append(ScheduleMember(position=position, person_id=people[handle].id))
    session.flush()
    _audit(
        session, actor=actor, action="oncall.schedule.put", target=f"schedule:{data.name}",
        details={"created": created, "members": list(data.members),
                 "rotation_days": data.rotation_days, "handoff": data.handoff,
                 "timezone": data.timezone, "start_date": data.start_date.isoformat()},
        clock=clock,
    )
    return schedule


def delete_schedule(session: Session, name: str, *, actor: str, clock: Clock) -> None:
    schedule = get_schedule(session, name)
    policy_names = sorted(set(session.execute(
        select(EscalationPolicy.name).join(PolicyLevel).join(LevelTarget)
        .where(LevelTarget.schedule_id == schedule.id)
    ).scalars()))
    if policy_names:
        raise ConflictError(
            f"schedule {name} is paged by policy {', '.join(policy_names)}; change those first"
        )
    session.delete(schedule)
    session.flush()
    _audit(session, actor=actor, action="oncall.schedule.delete", target=f"schedule:{name}",
           details={}, clock=clock)


def add_override(
    session: Session, schedule_name: str, data: OverrideIn, *, actor: str, clock: Clock
) -> ScheduleOverride:
    """``data.person`` covers the schedule for the given time range; later overrides win."""
    schedule = get_schedule(session, schedule_name)
    try:
        schedules.Override(data.person, data.start, data.end)
    except (schedules.ScheduleError, ValueError) as exc:
        raise InvalidInputError(f"override on {schedule_name}: {exc}") from exc
    person = _people_by_handle(session, [data.person], f"override on {schedule_name}")
    override = ScheduleOverride(
        schedule_id=schedule.id,
        person_id=person[data.person].id,
        starts_at=data.start,
        ends_at=data.end,
        reason=data.reason,
        created_by=actor,
        created_at=clock.now(),
    )
    schedule.overrides.append(override)
    session.flush()
    _audit(
        session, actor=actor, action="oncall.override.add", target=f"schedule:{schedule_name}",
        details={"override_id": override.id, "person": data.person,
                 "start": data.start.isoformat(), "end": data.end.isoformat(),
                 "reason": data.reason},
        clock=clock,
    )
    return override


def remove_override(
    session: Session, schedule_name: str, override_id: int, *, actor: str, clock: Clock
) -> None:
    schedule = get_schedule(session, schedule_name)
    override = next((o for o in schedule.overrides if o.id == override_id), None)
    if override is None:
        raise NotFoundError(f"schedule {schedule_name} has no override {override_id}")
    schedule.overrides.remove(override)
    session.flush()
    _audit(session, actor=actor, action="oncall.override.remove",
           target=f"schedule:{schedule_name}", details={"override_id": override_id},
           clock=clock)


def schedule_spec(schedule: Schedule) -> schedules.Schedule:
    """The pure form the on-call rules work on."""
    return schedules.Schedule(
        name=schedule.name,
        timezone=schedule.timezone,
        rotation=schedules.Rotation(
            members=tuple(member.person.handle for member in schedule.members),
            start_date=schedule.start_date,
            handoff=_handoff_time(schedule.handoff),
            length_days=schedule.rotation_days,
        ),
        overrides=tuple(
            schedules.Override(o.person.handle, o.starts_at, o.ends_at)
            for o in schedule.overrides
        ),
    )


def schedule_out(schedule: Schedule) -> ScheduleOut:
    return ScheduleOut(
        name=schedule.name,
        description=schedule.description,
        timezone=schedule.timezone,
        start_date=schedule.start_date,
        handoff=schedule.handoff,
        rotation_days=schedule.rotation_days,
        members=[member.person.handle for member in schedule.members],
        overrides=[
            OverrideOut(id=o.id, person=o.person.handle, start=o.starts_at, end=o.ends_at,
                        reason=o.reason, created_by=o.created_by)
            for o in schedule.overrides
        ],
    )


def on_call(session: Session, schedule_name: str, at: datetime) -> ShiftOut:
    """Who holds ``schedule_name`` at ``at``, and from when until when."""
    shift = schedules.shift_at(schedule_spec(get_schedule(session, schedule_name)), at)
    if shift is None:
        return ShiftOut(schedule=schedule_name, person=None, start=None, end=None, override=False)
    return ShiftOut(schedule=schedule_name, person=shift.person, start=shift.start,
                    end=shift.end, override=shift.override)


def upcoming_shifts(
    session: Session, schedule_name: str, start: datetime, end: datetime
) -> list[ShiftOut]:
    spec = schedule_spec(get_schedule(session, schedule_name))
    try:
        shifts = schedules.shifts_between(spec, start, end)
    except schedules.ScheduleError as exc:
        raise InvalidInputError(str(exc)) from exc
    return [
        ShiftOut(schedule=schedule_name, person=s.person, start=s.start, end=s.end,
                 override=s.override)
        for s in shifts
    ]


# --- escalation policies and routes ----------------------------------------------------------


def find_policy(session: Session, name: str) -> EscalationPolicy | None:
    query = select(EscalationPolicy).where(EscalationPolicy.name == name)
    return session.execute(query).scalar_one_or_none()


def get_policy(session: Session, name: str) -> EscalationPolicy:
    policy = find_policy(session, name)
    if policy is None:
        raise NotFoundError(f"no escalation policy {name!r}; list them with "
                       "`haltguard oncall policy list`")
    return policy


def list_policies(
    session: Session, *, offset: int = 0, limit: int = 50
) -> tuple[list[EscalationPolicy], int]:
    check_paging(offset, limit)
    query = select(EscalationPolicy).order_by(EscalationPolicy.name).offset(offset).limit(limit)
    total = session.execute(select(func.count()).select_from(EscalationPolicy)).scalar_one()
    return list(session.execute(query).scalars()), int(total)


def _parse_levels(name: str, levels: list[LevelIn]) -> list[escalation.Level]:
    parsed: list[escalation.Level] = []
    for number, level in enumerate(levels, start=1):
        try:
            targets = tuple(escalation.Target.parse(text) for text in level.targets)
            parsed.append(escalation.Level(level.ack_timeout_s, targets))
        except escalation.EscalationError as exc:
            raise InvalidInputError(f"policy {name} level {number}: {exc}") from exc
    return parsed


def put_policy(session: Session, data: PolicyIn, *, actor: str, clock: Clock) -> EscalationPolicy:
    """Create or replace a policy; every schedule and person it names must exist."""
    levels = _parse_levels(data.name, data.levels)
    try:
        escalation.Plan(data.name, tuple(levels), data.repeat_count)
    except escalation.EscalationError as exc:
        raise InvalidInputError(f"policy {data.name}: {exc}") from exc
    targets = [target for level in levels for target in level.targets]
    person_handles = [t.ref for t in targets if t.kind is escalation.TargetKind.PERSON]
    people = _people_by_handle(session, person_handles, f"policy {data.name}")
    schedule_ids: dict[str, int] = {}
    for target in targets:
        if target.kind is escalation.TargetKind.SCHEDULE and target.ref not in schedule_ids:
            found = find_schedule(session, target.ref)
            if found is None:
                raise InvalidInputError(
                    f"policy {data.name} names unknown schedule {target.ref!r}; create it first"
                )
            schedule_ids[target.ref] = found.id
    policy = find_policy(session, data.name)
    created = policy is None
    if policy is None:
        policy = EscalationPolicy(name=data.name)
        session.add(policy)
    policy.description = data.description
    policy.repeat_count = data.repeat_count
    policy.levels.clear()
    session.flush()
    for position, level in enumerate(levels):
        row = PolicyLevel(position=position, ack_timeout_s=level.ack_timeout_s)
        for target_position, target in enumerate(level.targets):
            row.targets.append(LevelTarget(
                position=target_position,
                kind=target.kind.value,
                schedule_id=schedule_ids.get(target.ref)
                if target.kind is escalation.TargetKind.SCHEDULE else None,
                person_id=people[target.ref].id
                if target.kind is escalation.TargetKind.PERSON else None,
            ))
        policy.levels.append(row)
    session.flush()
    _audit(
        session, actor=actor, action="oncall.policy.put", target=f"policy:{data.name}",
        details={"created": created, **policy_plan(policy).to_json()}, clock=clock,
    )
    return policy


def delete_policy(session: Session, name: str, *, actor: str, clock: Clock) -> None:
    policy = get_policy(session, name)
    routed = session.execute(
        select(PolicyRoute).where(PolicyRoute.policy_id == policy.id)
    ).scalars().first()
    if routed is not None:
        raise ConflictError(f"policy {name} is used by a route; change the routes first")
    session.delete(policy)
    session.flush()
    _audit(session, actor=actor, action="oncall.policy.delete", target=f"policy:{name}",
           details={}, clock=clock)


def _target_of(row: LevelTarget) -> escalation.Target:
    kind = escalation.TargetKind(row.kind)
    if kind is escalation.TargetKind.SCHEDULE:
        assert row.schedule is not None, "schedule targets keep their schedule (foreign key)"
        return escalation.Target(kind, row.schedule.name)
    if kind is escalation.TargetKind.PERSON:
        assert row.person is not None, "person targets keep their person (foreign key)"
        return escalation.Target(kind, row.person.handle)
    return escalation.Target(kind)


def policy_plan(policy: EscalationPolicy) -> escalation.Plan:
    return escalation.Plan(
        name=policy.name,
        repeat_count=policy.repeat_count,
        levels=tuple(
            escalation.Level(level.ack_timeout_s, tuple(_target_of(t) for t in level.targets))
            for level in policy.levels
        ),
    )


def policy_out(policy: EscalationPolicy) -> PolicyOut:
    plan = policy_plan(policy)
    return PolicyOut(
        name=policy.name,
        description=policy.description,
        repeat_count=policy.repeat_count,
        levels=[
            LevelIn(ack_timeout_s=level.ack_timeout_s,
                    targets=[target.text() for target in level.targets])
            for level in plan.levels
        ],
    )


def list_routes(session: Session) -> list[RouteOut]:
    rows = session.execute(
        select(PolicyRoute).order_by(PolicyRoute.category, PolicyRoute.severity)
    ).scalars()
    return [RouteOut(category=r.category, severity=r.severity, policy=r.policy.name)
            for r in rows]


def set_routes(session: Session, routes: list[RouteIn], *, actor: str, clock: Clock) -> None:
    """Replace the whole routing table: which policy pages for which category and severity."""
    seen: set[tuple[str, str]] = set()
    resolved: list[tuple[str, str, EscalationPolicy]] = []
    for route in routes:
        try:
            if route.category != ANY:
                contact_rules.check_category(route.category)
            if route.severity != ANY:
                contact_rules.check_severity(route.severity)
        except contact_rules.ContactTreeError as exc:
            raise InvalidInputError(f"route to {route.policy}: {exc} (or * for any)") from exc
        key = (route.category, route.severity)
        if key in seen:
            raise InvalidInputError(
                f"two routes for category {route.category} and severity {route.severity}; "
                "keep one"
            )
        seen.add(key)
        policy = find_policy(session, route.policy)
        if policy is None:
            raise InvalidInputError(f"route names unknown policy {route.policy!r}; create it first")
        resolved.append((route.category, route.severity, policy))
    session.execute(delete(PolicyRoute))
    for category, severity, policy in resolved:
        session.add(PolicyRoute(category=category, severity=severity, policy_id=policy.id))
    session.flush()
    _audit(
        session, actor=actor, action="oncall.routes.set", target="routes",
        details={"routes": [f"{c}/{s} -> {p.name}" for c, s, p in resolved]}, clock=clock,
    )


def choose_plan(session: Session, category: str, severity: str) -> tuple[escalation.Plan, str]:
    """The plan for a page and the rule that chose it: the most specific route wins
    (category and severity, then category, then severity, then the ``*``/``*`` default);
    with no route at all, the contact tree's primaries then backups."""
    candidates = [(category, severity), (category, ANY), (ANY, severity), (ANY, ANY)]
    routes = {
        (r.category, r.severity): r
        for r in session.execute(
            select(PolicyRoute).where(
                PolicyRoute.category.in_([category, ANY]),
                PolicyRoute.severity.in_([severity, ANY]),
            )
        ).scalars()
    }
    for key in candidates:
        route = routes.get(key)
        if route is not None:
            return policy_plan(route.policy), f"route {key[0]}/{key[1]}"
    return escalation.fallback_plan(), "no route matched: contact tree fallback"


# --- emergency contact tree ------------------------------------------------------------------


def contact_tree(session: Session) -> contact_rules.ContactTree:
    rows = session.execute(
        select(EmergencyContact).order_by(EmergencyContact.category, EmergencyContact.position)
    ).scalars()
    entries: dict[str, list[contact_rules.Contact]] = {}
    for row in rows:
        entries.setdefault(row.category, []).append(
            contact_rules.Contact(person=row.person.handle, backup=row.backup.handle,
                                  role=row.role)
        )
    return contact_rules.ContactTree({k: tuple(v) for k, v in entries.items()})


def _write_category(
    session: Session, category: str, contacts: tuple[contact_rules.Contact, ...],
    people: dict[str, Person],
) -> None:
    session.execute(delete(EmergencyContact).where(EmergencyContact.category == category))
    for position, contact in enumerate(contacts):
        session.add(EmergencyContact(
            category=category, position=position, role=contact.role,
            person_id=people[contact.person].id, backup_person_id=people[contact.backup].id,
        ))


def replace_contact_tree(
    session: Session, tree: contact_rules.ContactTree, *, actor: str, clock: Clock
) -> list[str]:
    """Replace the whole tree; returns the categories left with nobody to call."""
    people = _people_by_handle(session, sorted(tree.people()), "the contact tree")
    session.execute(delete(EmergencyContact))
    for category, contacts in tree.entries.items():
        _write_category(session, category, contacts, people)
    session.flush()
    gaps = tree.gaps()
    _audit(
        session, actor=actor, action="oncall.contact_tree.replace", target="contact_tree",
        details={"tree": contact_rules.contact_tree_to_data(tree), "gaps": gaps}, clock=clock,
    )
    return gaps


def set_category_contacts(
    session: Session, category: str, contacts: list[ContactIn], *, actor: str, clock: Clock
) -> list[contact_rules.Contact]:
    """Replace who to call for one category (an empty list clears it)."""
    try:
        contact_rules.check_category(category)
        checked = tuple(
            contact_rules.Contact(person=c.person, backup=c.backup, role=c.role)
            for c in contacts
        )
        contact_rules.ContactTree({category: checked})
    except contact_rules.ContactTreeError as exc:
        raise InvalidInputError(str(exc)) from exc
    handles = sorted({h for c in checked for h in (c.person, c.backup)})
    people = _people_by_handle(session, handles, f"the contact tree for {category}")
    _write_category(session, category, checked, people)
    session.flush()
    _audit(
        session, actor=actor, action="oncall.contact_tree.set", target=f"contact_tree:{category}",
        details={"contacts": [{"person": c.person, "backup": c.backup, "role": c.role}
                              for c in checked]},
        clock=clock,
    )
    return list(checked)


# --- the whole set-up as one YAML document ---------------------------------------------------


def _validation_message(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def parse_config_yaml(text: str) -> OncallConfig:
    """Read an on-call YAML document (people, schedules, policies, routes, contact_tree)."""
    if len(text.encode("utf-8")) > CONFIG_BYTES_MAX:
        raise InvalidInputError(f"the on-call file is larger than {CONFIG_BYTES_MAX} bytes")
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"the on-call file is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInputError("the on-call file must be a mapping with people, schedules, "
                           "policies, routes and/or contact_tree")
    try:
        return OncallConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(
            f"the on-call file is not valid: {_validation_message(exc)}"
        ) from exc


def apply_config(
    session: Session, config: OncallConfig, *, actor: str, clock: Clock
) -> dict[str, object]:
    """Apply a whole set-up in dependency order inside the caller's transaction; any error
    raises before commit, so a bad file changes nothing. Sections left out stay as they are."""
    for person in config.people:
        put_person(session, person, actor=actor, clock=clock)
    for schedule in config.schedules:
        put_schedule(session, schedule, actor=actor, clock=clock)
    for policy in config.policies:
        put_policy(session, policy, actor=actor, clock=clock)
    if config.routes:
        set_routes(session, config.routes, actor=actor, clock=clock)
    gaps: list[str] = []
    if config.contact_tree is not None:
        try:
            tree = contact_rules.contact_tree_from_data(
                {k: [c.model_dump() for c in v] for k, v in config.contact_tree.items()}
            )
        except contact_rules.ContactTreeError as exc:
            raise InvalidInputError(f"contact_tree: {exc}") from exc
        gaps = replace_contact_tree(session, tree, actor=actor, clock=clock)
    return {
        "people": len(config.people),
        "schedules": len(config.schedules),
        "policies": len(config.policies),
        "routes": len(config.routes),
        "contact_tree_categories_without_contacts": gaps,
    }
