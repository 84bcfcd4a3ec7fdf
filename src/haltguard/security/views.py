"""HTTP routes of operator security, all under ``/api``: login, operators, tokens, audit.

Thin: each route opens one unit of work, calls ``service``/``flows``/``audit`` and shapes
the answer. The app must call ``register_error_handlers`` so refusals read
``{"error": {"code", "message"}}``; see ``dependencies`` for what the app's context holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from pydantic import BaseModel, Field

from haltguard.db.session import session_scope
from haltguard.security import audit, flows, service, throttle
from haltguard.security.config import SESSION_COOKIE_NAME
from haltguard.security.dependencies import (
    AuthenticatedOperator,
    client_address,
    clock_of,
    enforce_network,
    login_throttle_of,
    require,
    session_factory_of,
    settings_of,
)
from haltguard.security.errors import InvalidInputError, NotFoundError
from haltguard.security.events import SecurityEvent
from haltguard.security.models import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    AuditEntryRead,
    AuditVerificationRead,
    LoginRequest,
    LoginResult,
    OperatorCreate,
    OperatorCreated,
    OperatorRead,
    RoleChange,
    TotpEnrolmentRead,
)
from haltguard.security.permissions import Action
from haltguard.web.bounds import DbId, Key
from haltguard.web.errors import ERROR_RESPONSES, install_domain_error_handler
from haltguard.web.pagination import Page, PageParamsDep, make_page

router = APIRouter(prefix="/api", tags=["operator security"], responses=ERROR_RESPONSES)

SessionOwner = Annotated[AuthenticatedOperator, Depends(require(Action.SESSION_MANAGE_OWN))]
OperatorReader = Annotated[AuthenticatedOperator, Depends(require(Action.OPERATOR_READ))]
OperatorManager = Annotated[AuthenticatedOperator, Depends(require(Action.OPERATOR_MANAGE))]
TokenOwner = Annotated[AuthenticatedOperator, Depends(require(Action.TOKEN_MANAGE_OWN))]
AuditReader = Annotated[AuthenticatedOperator, Depends(require(Action.AUDIT_READ))]
AuditVerifier = Annotated[AuthenticatedOperator, Depends(require(Action.AUDIT_VERIFY))]


def register_error_handlers(app: FastAPI) -> None:
    """Render every ``SecurityError`` (including those from ``require``), like every other
    domain's error, as a JSON error: the one handler of ``haltguard.web.errors``."""
    install_domain_error_handler(app)


# --- login ---------------------------------------------------------------------------------


def _login_result(outcome: flows.LoginOutcome) -> LoginResult | None:
    if outcome.refusal is not None or outcome.operator is None or outcome.login is None:
        return None
    return LoginResult(
        operator=OperatorRead.model_validate(outcome.operator),
        session_expires_at=outcome.login.expires_at,
    )


@router.post("/auth/login", summary="Log in with password and TOTP code")
def login(body: LoginRequest, request: Request, response: Response) -> LoginResult:
    """Public: the only route without a permission; the network allow-list still applies."""
    enforce_network(request, "auth.login")
    settings = settings_of(request)
    with session_scope(session_factory_of(request)) as session:
        outcome = flows.login(
            session,
            username=body.username,
            password=body.password,
            totp_code=body.totp_code,
            client_address=client_address(request),
            settings=settings,
            now=clock_of(request)(),
            throttle=login_throttle_of(request.app),
        )
        result = _login_result(outcome)
    if outcome.refusal is not None:
        raise outcome.refusal
    assert result is not None
    response.set_cookie(
        SESSION_COOKIE_NAME,
        outcome.session_secret,
        max_age=int(settings.session_duration.total_seconds()),
        httponly=True,
        secure=settings.cookie_secure,
        samesite="strict",
        path="/",
    )
    return result


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, summary="End this session")
def logout(operator: SessionOwner, request: Request, response: Response) -> None:
    if operator.session_id is None:
        raise InvalidInputError(
            "this request used an API token, which has no session to end; revoke the token "
            "with DELETE /api/tokens/{id} instead"
        )
    with session_scope(session_factory_of(request)) as session:
        service.end_session(
            session, operator.session_id, actor=operator.actor, now=clock_of(request)()
        )
    response.delete_cookie(SESSION_COOKIE_NAME, path="/")


@router.get("/auth/me", summary="The operator making the request")
def me(operator: SessionOwner, request: Request) -> OperatorRead:
    with session_scope(session_factory_of(request)) as session:
        return OperatorRead.model_validate(service.get_operator(session, operator.username))


# --- operators (admin) ---------------------------------------------------------------------


@router.get("/operators", summary="List operators")
def list_operators(
    _operator: OperatorReader, request: Request, page: PageParamsDep
) -> Page[OperatorRead]:
    with session_scope(session_factory_of(request)) as session:
        found, total = service.list_operators(session, offset=page.offset, limit=page.limit)
        items = [OperatorRead.model_validate(item) for item in found]
    return make_page(items, total, page)


@router.post("/operators", status_code=status.HTTP_201_CREATED, summary="Create an operator")
def create_operator(
    body: OperatorCreate, operator: OperatorManager, request: Request
) -> OperatorCreated:
    """Returns the new operator's TOTP secret and otpauth URI once; give them to the person."""
    with session_scope(session_factory_of(request)) as session:
        created, enrolment = service.create_operator(
            session,
            username=body.username,
            display_name=body.display_name,
            email=body.email,
            phone=body.phone,
            role=body.role,
            password=body.password,
            actor=operator.actor,
            settings=settings_of(request),
            now=clock_of(request)(),
        )
        return OperatorCreated(
            operator=OperatorRead.model_validate(created),
            totp=TotpEnrolmentRead(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri),
        )


@router.get("/operators/{username}", summary="One operator")
def get_operator(username: Key, _operator: OperatorReader, request: Request) -> OperatorRead:
    with session_scope(session_factory_of(request)) as session:
        return OperatorRead.model_validate(service.get_operator(session, username))


@router.put("/operators/{username}/role", summary="Change an operator's role")
def set_role(
    username: Key, body: RoleChange, operator: OperatorManager, request: Request
) -> OperatorRead:
    with session_scope(session_factory_of(request)) as session:
        changed = service.set_role(
            session, username, body.role, actor=operator.actor, now=clock_of(request)()
        )
        return OperatorRead.model_validate(changed)


@router.post("/operators/{username}/disable", summary="Disable an operator")
def disable_operator(username: Key, operator: OperatorManager, request: Request) -> OperatorRead:
    """Ends every session and revokes every API token of that operator."""
    with session_scope(session_factory_of(request)) as session:
        changed = service.set_disabled(
            session, username, True, actor=operator.actor, now=clock_of(request)()
        )
        return OperatorRead.model_validate(changed)


@router.post("/operators/{username}/enable", summary="Enable an operator and clear any lockout")
def enable_operator(username: Key, operator: OperatorManager, request: Request) -> OperatorRead:
    """Also ends the operator's failed-login wait, even if the account was not disabled."""
    with session_scope(session_factory_of(request)) as session:
        changed = service.set_disabled(
            session, username, False, actor=operator.actor, now=clock_of(request)()
        )
        login_throttle_of(request.app).lift(throttle.account_key(changed.username))
        return OperatorRead.model_validate(changed)


@router.post("/operators/{username}/unlock", summary="End an operator's failed-login wait")
def unlock_operator(username: Key, operator: OperatorManager, request: Request) -> OperatorRead:
    """Clears the account's failed-login count and wait, here and in its row (audited)."""
    with session_scope(session_factory_of(request)) as session:
        changed = service.unlock(session, username, actor=operator.actor, now=clock_of(request)())
        login_throttle_of(request.app).lift(throttle.account_key(changed.username))
        return OperatorRead.model_validate(changed)


@router.post("/operators/{username}/totp-reset", summary="Issue a new TOTP secret")
def reset_totp(username: Key, operator: OperatorManager, request: Request) -> TotpEnrolmentRead:
    """For a lost authenticator: the old one stops working and the operator's sessions end."""
    with session_scope(session_factory_of(request)) as session:
        enrolment = service.reset_totp(
            session,
            username,
            actor=operator.actor,
            settings=settings_of(request),
            now=clock_of(request)(),
        )
    return TotpEnrolmentRead(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


# --- login blocks and waits ----------------------------------------------------------------


class LoginHoldRead(BaseModel):
    """One thing holding logins back: a block of an address, or a failed-login wait."""

    key: str = Field(description="address:<ip>, account:<username> or pair:<ip>/<username>")
    kind: str = Field(description="block, address, account or pair")
    until: datetime | None
    failures: int = Field(description="consecutive failed logins counted")
    refused: int = Field(description="attempts refused by this hold so far")
    reason: str


class LoginBlockCreate(BaseModel):
    address: str = Field(max_length=64, description="an IP address, e.g. 203.0.113.7")
    duration_s: int = Field(ge=1, le=throttle.BLOCK_S_MAX)
    reason: str = Field(min_length=1, max_length=throttle.REASON_LENGTH_MAX)


class LoginHoldLift(BaseModel):
    key: str = Field(max_length=200, description="a key from GET /api/login-blocks")
    reason: str = Field(min_length=1, max_length=throttle.REASON_LENGTH_MAX)


def _hold_read(hold: throttle.LoginHold) -> LoginHoldRead:
    return LoginHoldRead(key=hold.key, kind=hold.kind, until=hold.until,
                         failures=hold.failures, refused=hold.refused, reason=hold.reason)


@router.get("/login-blocks", summary="What holds logins back now: blocks and waits")
def list_login_blocks(
    _operator: AuditReader, request: Request, page: PageParamsDep
) -> Page[LoginHoldRead]:
    """Who may read the audit chain may see this. Blocks of source addresses (by a detection
    rule or an operator) and failed-login waits of addresses, usernames and pairs, longest
    first; accounts whose own row holds a wait are listed as ``account:<username>`` too."""
    now = clock_of(request)()
    holds = [_hold_read(hold) for hold in login_throttle_of(request.app).holds(now)]
    with session_scope(session_factory_of(request)) as session:
        for locked in service.locked_operators(session, now):
            holds.append(LoginHoldRead(
                key=throttle.account_key(locked.username), kind="account",
                until=locked.locked_until, failures=locked.failed_logins, refused=0,
                reason="failed logins of this account (its row)"))
    return make_page(holds[page.offset:page.offset + page.limit], len(holds), page)


@router.post("/login-blocks", status_code=status.HTTP_201_CREATED,
             summary="Block a source address from the login route")
def create_login_block(
    body: LoginBlockCreate, operator: OperatorManager, request: Request
) -> LoginHoldRead:
    """Only the login route: the address keeps trading. An operator's known address still
    gets in with a right password and code."""
    now = clock_of(request)()
    try:
        block = login_throttle_of(request.app).block(
            body.address, body.duration_s, reason=body.reason, actor=operator.actor, now=now)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    with session_scope(session_factory_of(request)) as session:
        audit.record(session, actor=operator.actor, action=SecurityEvent.LOGIN_BLOCKED,
                     target=throttle.address_key(block.address),
                     details={"until": block.until.isoformat(), "reason": block.reason,
                              "duration_s": body.duration_s}, at=now)
    return LoginHoldRead(key=throttle.address_key(block.address), kind="block",
                         until=block.until, failures=0, refused=0, reason=block.reason)


@router.post("/login-blocks/lift", summary="Lift a login block or wait early")
def lift_login_block(
    body: LoginHoldLift, operator: OperatorManager, request: Request
) -> list[LoginHoldRead]:
    """``address:<ip>`` ends the address's block, its wait and its pairs' waits;
    ``account:<username>`` the username's wait (its row's too) and its pairs' waits."""
    key = body.key.strip()
    if key.startswith(throttle.ADDRESS_PREFIX):
        try:
            key = throttle.address_key(throttle.normalise_address(key))
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
    elif key.startswith(throttle.ACCOUNT_PREFIX):
        key = throttle.account_key(service.normalise_username(key.split(":", 1)[1]))
    elif not key.startswith(throttle.PAIR_PREFIX):
        raise InvalidInputError(
            f"{body.key!r} is not a login-block key: write address:<ip>, account:<username> "
            "or pair:<ip>/<username>, as GET /api/login-blocks lists them")
    now = clock_of(request)()
    lifted = [_hold_read(hold) for hold in login_throttle_of(request.app).lift(key)]
    with session_scope(session_factory_of(request)) as session:
        if key.startswith(throttle.ACCOUNT_PREFIX):
            found = service.find_operator(session, key.split(":", 1)[1])
            if found is not None and found.locked_until is not None:
                lifted.append(LoginHoldRead(
                    key=key, kind="account", until=found.locked_until,
                    failures=found.failed_logins, refused=0, reason="its row"))
            if found is not None:
                service.clear_lockout(session, found, actor=operator.actor, now=now)
        if not lifted:
            raise NotFoundError(f"nothing holds {key} back now; GET /api/login-blocks lists "
                                "what does")
        audit.record(session, actor=operator.actor, action=SecurityEvent.LOGIN_HOLD_LIFTED,
                     target=key, details={"reason": body.reason,
                                          "lifted": [hold.key for hold in lifted]}, at=now)
    return lifted


# --- own API tokens ------------------------------------------------------------------------


@router.get("/tokens", summary="List my API tokens")
def list_tokens(operator: TokenOwner, request: Request, page: PageParamsDep) -> Page[ApiTokenRead]:
    with session_scope(session_factory_of(request)) as session:
        found, total = service.list_api_tokens(
            session, operator.id, offset=page.offset, limit=page.limit
        )
        items = [ApiTokenRead.model_validate(item) for item in found]
    return make_page(items, total, page)


@router.post("/tokens", status_code=status.HTTP_201_CREATED, summary="Create an API token")
def create_token(body: ApiTokenCreate, operator: TokenOwner, request: Request) -> ApiTokenCreated:
    """The token is in this response only; it acts with your role until revoked or expired."""
    with session_scope(session_factory_of(request)) as session:
        owner = service.get_operator(session, operator.username)
        created = service.create_api_token(
            session,
            owner,
            name=body.name,
            expires_in_days=body.expires_in_days,
            actor=operator.actor,
            now=clock_of(request)(),
        )
        return ApiTokenCreated(
            token=created.secret, api_token=ApiTokenRead.model_validate(created.record)
        )


@router.delete("/tokens/{token_id}", summary="Revoke one of my API tokens")
def revoke_token(token_id: DbId, operator: TokenOwner, request: Request) -> ApiTokenRead:
    with session_scope(session_factory_of(request)) as session:
        owner = service.get_operator(session, operator.username)
        revoked = service.revoke_api_token(
            session, owner, token_id, actor=operator.actor, now=clock_of(request)()
        )
        return ApiTokenRead.model_validate(revoked)


# --- audit ---------------------------------------------------------------------------------


def audit_entry_read(entry: audit.AuditEntry) -> AuditEntryRead:
    return AuditEntryRead(
        index=entry.index,
        created_at=entry.created_at,
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        details=audit.entry_details(entry),
        prev_hash=entry.prev_hash,
        entry_hash=entry.entry_hash,
    )


@router.get("/audit", summary="Audit entries, newest first")
def list_audit(
    _operator: AuditReader,
    request: Request,
    page: PageParamsDep,
    actor: Annotated[Key | None, Query(description="only this actor")] = None,
    action: Annotated[Key | None, Query(description="only this action")] = None,
) -> Page[AuditEntryRead]:
    with session_scope(session_factory_of(request)) as session:
        found, total = audit.list_entries(
            session, offset=page.offset, limit=page.limit, actor=actor, action=action
        )
        items = [audit_entry_read(entry) for entry in found]
    return make_page(items, total, page)


@router.get("/audit/verify", summary="Verify the whole audit chain")
def verify_audit(_operator: AuditVerifier, request: Request) -> AuditVerificationRead:
    with session_scope(session_factory_of(request)) as session:
        outcome = audit.verify(session)
    return AuditVerificationRead(
        ok=outcome.ok,
        entries_checked=outcome.entries_checked,
        first_bad_index=outcome.first_bad_index,
        problem=outcome.problem,
        anchored_index=outcome.anchored_index,
        anchor_file=outcome.anchor_file,
        summary=outcome.summary(),
    )
