"""HTTP routes of operator security, all under ``/api``: login, operators, tokens, audit.

Thin: each route opens one unit of work, calls ``service``/``flows``/``audit`` and shapes
the answer. The app must call ``register_error_handlers`` so refusals read
``{"error": {"code", "message"}}``; see ``dependencies`` for what ``app.state`` needs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from fastapi.responses import JSONResponse

from haltguard.db.session import session_scope
from haltguard.security import audit, flows, service
from haltguard.security.config import SESSION_COOKIE_NAME
from haltguard.security.dependencies import (
    AuthenticatedOperator,
    client_address,
    clock_of,
    enforce_network,
    require,
    session_factory_of,
    settings_of,
)
from haltguard.security.errors import InvalidInputError, SecurityError
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
from haltguard.web.errors import ERROR_RESPONSES
from haltguard.web.pagination import Page, PageParamsDep, make_page

router = APIRouter(prefix="/api", tags=["operator security"], responses=ERROR_RESPONSES)

SessionOwner = Annotated[AuthenticatedOperator, Depends(require(Action.SESSION_MANAGE_OWN))]
OperatorReader = Annotated[AuthenticatedOperator, Depends(require(Action.OPERATOR_READ))]
OperatorManager = Annotated[AuthenticatedOperator, Depends(require(Action.OPERATOR_MANAGE))]
TokenOwner = Annotated[AuthenticatedOperator, Depends(require(Action.TOKEN_MANAGE_OWN))]
AuditReader = Annotated[AuthenticatedOperator, Depends(require(Action.AUDIT_READ))]
AuditVerifier = Annotated[AuthenticatedOperator, Depends(require(Action.AUDIT_VERIFY))]


def security_error_response(exc: SecurityError) -> JSONResponse:
    return JSONResponse(
        status_code=exc.status_code,
        content={"error": {"code": exc.code, "message": exc.message}},
        headers=exc.headers,
    )


def register_error_handlers(app: FastAPI) -> None:
    """Render every ``SecurityError`` (including those from ``require``) as a JSON error."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SecurityError)
        return security_error_response(exc)

    app.add_exception_handler(SecurityError, handle)


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
def get_operator(username: str, _operator: OperatorReader, request: Request) -> OperatorRead:
    with session_scope(session_factory_of(request)) as session:
        return OperatorRead.model_validate(service.get_operator(session, username))


@router.put("/operators/{username}/role", summary="Change an operator's role")
def set_role(
    username: str, body: RoleChange, operator: OperatorManager, request: Request
) -> OperatorRead:
    with session_scope(session_factory_of(request)) as session:
        changed = service.set_role(
            session, username, body.role, actor=operator.actor, now=clock_of(request)()
        )
        return OperatorRead.model_validate(changed)


@router.post("/operators/{username}/disable", summary="Disable an operator")
def disable_operator(username: str, operator: OperatorManager, request: Request) -> OperatorRead:
    """Ends every session and revokes every API token of that operator."""
    with session_scope(session_factory_of(request)) as session:
        changed = service.set_disabled(
            session, username, True, actor=operator.actor, now=clock_of(request)()
        )
        return OperatorRead.model_validate(changed)


@router.post("/operators/{username}/enable", summary="Enable a disabled operator")
def enable_operator(username: str, operator: OperatorManager, request: Request) -> OperatorRead:
    with session_scope(session_factory_of(request)) as session:
        changed = service.set_disabled(
            session, username, False, actor=operator.actor, now=clock_of(request)()
        )
        return OperatorRead.model_validate(changed)


@router.post("/operators/{username}/totp-reset", summary="Issue a new TOTP secret")
def reset_totp(username: str, operator: OperatorManager, request: Request) -> TotpEnrolmentRead:
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
def revoke_token(token_id: int, operator: TokenOwner, request: Request) -> ApiTokenRead:
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
    actor: Annotated[str | None, Query(description="only this actor")] = None,
    action: Annotated[str | None, Query(description="only this action")] = None,
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
    )
