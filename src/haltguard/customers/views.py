"""HTTP routes: the customer's own API (``/api/customers/me``, signed requests), support's
(``/api/customers``, operators with ``customer.*`` permissions) and the security centre's
public pages (``/security``, ja/en). Thin: each calls the service or a flow.

A customer authenticates every call here exactly as on ``/v1``: an API key's signature over
timestamp, method, path and body (:mod:`haltguard.customers.signing`). Creating a key with
the withdraw permission, changing security settings, adding an address and withdrawing also
need the second factor; locking the account needs nothing more, so it works at once.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from haltguard.customers import flows, service
from haltguard.customers.errors import SignatureRefusedError
from haltguard.customers.flows import CustomerProtection
from haltguard.customers.models import (
    AddressCreate,
    AddressRead,
    ApiKey,
    CodeOnly,
    CustomerCreate,
    CustomerRead,
    CustomerWithdrawal,
    Enrolment,
    KeyCreate,
    KeyCreated,
    KeyRead,
    LockRequest,
    NoticeRead,
    PhraseChange,
    TermsAccept,
    WithdrawalRead,
)
from haltguard.customers.signing import (
    KeyGrant,
    Permission,
    Refusal,
    check_signed,
    permits,
)
from haltguard.db.session import session_scope
from haltguard.security.dependencies import AuthenticatedOperator, client_address, require
from haltguard.security.permissions import Action
from haltguard.venue.control import VenueControl
from haltguard.web.bounds import DbId
from haltguard.web.dependencies import ClockDep, ContextDep, SessionDep, get_optional_venue
from haltguard.web.errors import ERROR_RESPONSES
from haltguard.web.pagination import Page, PageParamsDep, make_page

router = APIRouter(prefix="/api/customers", tags=["customers"], responses=ERROR_RESPONSES)
pages = APIRouter(tags=["security centre"])

Manager = Annotated[AuthenticatedOperator, Depends(require(Action.CUSTOMER_MANAGE))]
Reviewer = Annotated[AuthenticatedOperator,
                     Depends(require(Action.CUSTOMER_WITHDRAWAL_REVIEW))]
Publisher = Annotated[AuthenticatedOperator, Depends(require(Action.TERMS_PUBLISH))]
OptionalVenue = Annotated[VenueControl | None, Depends(get_optional_venue)]


def protection_of(operations: ContextDep) -> CustomerProtection:
    return operations.part(CustomerProtection)


ProtectionDep = Annotated[CustomerProtection, Depends(protection_of)]


class CodeOnlyOrEmpty(BaseModel):
    code: str = Field(default="", max_length=32,
                      description="The current second-factor code, when one is active.")


async def signed_key(request: Request, protection: ProtectionDep) -> KeyGrant:
    """The key that signed this request, or a refusal (counted by the detectors)."""
    headers = request.headers
    key_id = headers.get("x-api-key", "")
    if not key_id:
        raise SignatureRefusedError(Refusal.MISSING)
    body = await request.body()
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    query: bytes = request.scope.get("query_string", b"")
    target = (raw_path + b"?" + query if query else raw_path).decode("latin-1")
    grant = protection.keys.get(key_id)
    now_ms = int(protection.clock.now().timestamp() * 1000)
    verdict = check_signed(
        grant, timestamp=headers.get("x-api-timestamp", "").encode(),
        signature=headers.get("x-api-signature", "").encode(), method=request.method,
        target=target, body=body, address=client_address(request), now_ms=now_ms,
        window_ms=protection.settings.receive_window_ms,
        replay=protection.replay)
    if verdict.grant is None:
        assert verdict.refusal is not None
        if grant is not None:
            protection.emit(protection.detectors.signature_refused(
                grant.account, verdict.refusal.value, now_ms * 1_000_000))
        raise SignatureRefusedError(verdict.refusal)
    return verdict.grant


Signed = Annotated[KeyGrant, Depends(signed_key)]


def _needs(grant: KeyGrant, permission: Permission) -> int:
    refusal = permits(grant, permission)
    if refusal is not None:
        raise SignatureRefusedError(refusal)
    return grant.account


def _key_read(key: ApiKey) -> KeyRead:
    return KeyRead(key_id=key.key_id, account=key.account, label=key.label,
                   permissions=list(key.permissions), networks=list(key.networks),
                   created_at=key.created_at, expires_at=key.expires_at,
                   revoked_at=key.revoked_at)


def _withdrawal_read(row: CustomerWithdrawal) -> WithdrawalRead:
    return WithdrawalRead(id=row.id, account=row.account, asset=row.asset,
                          amount_minor=row.amount_minor, address=row.address,
                          status=row.status, detail=row.detail, requested_at=row.requested_at)


def _commit_keys(session: Session, protection: CustomerProtection) -> None:
    session.commit()
    protection.keys_changed()


# --- the customer's own API -------------------------------------------------------------


@router.get("/me")
def me(grant: Signed, session: SessionDep) -> CustomerRead:
    account = _needs(grant, Permission.READ)
    customer = service.get_customer(session, account)
    return CustomerRead(account=account, email=customer.email, status=customer.status,
                        two_factor=bool(customer.totp_secret),
                        anti_phishing_phrase_set=bool(customer.anti_phishing_phrase),
                        accepted_terms=service.accepted_versions(session, account))


@router.post("/me/2fa")
def begin_two_factor(body: CodeOnlyOrEmpty, grant: Signed, session: SessionDep,
                     clock: ClockDep, protection: ProtectionDep) -> Enrolment:
    """A new TOTP secret and recovery codes, shown once; active after ``/me/2fa/confirm``.
    Replacing an active second factor needs its current code."""
    enrolment, codes = service.begin_two_factor(
        session, grant.account, code=body.code, issuer=protection.settings.totp_issuer,
        now=clock.now())
    return Enrolment(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri,
                     recovery_codes=codes)


@router.post("/me/2fa/confirm", status_code=204)
def confirm_two_factor(body: CodeOnly, grant: Signed, session: SessionDep,
                       clock: ClockDep) -> None:
    service.confirm_two_factor(session, grant.account, code=body.code, now=clock.now())


@router.put("/me/phrase", status_code=204)
def set_phrase(body: PhraseChange, grant: Signed, session: SessionDep, clock: ClockDep) -> None:
    service.set_phrase(session, grant.account, phrase=body.anti_phishing_phrase,
                       code=body.code, now=clock.now())


@router.get("/me/keys")
def list_keys(grant: Signed, session: SessionDep, params: PageParamsDep) -> Page[KeyRead]:
    """The account's keys (at most 20 active), revoked ones included."""
    keys = service.keys_of(session, _needs(grant, Permission.READ))
    return make_page([_key_read(key) for key in
                      keys[params.offset:params.offset + params.limit]], len(keys), params)


@router.post("/me/keys", status_code=201)
def create_key(body: KeyCreate, grant: Signed, session: SessionDep, clock: ClockDep,
               protection: ProtectionDep) -> KeyCreated:
    """The secret is in this answer only. Needs a key of the account; the withdraw
    permission also needs the second factor."""
    now = clock.now()
    key, secret = service.create_key(
        session, grant.account, label=body.label, permissions=body.permissions,
        networks=body.networks, expires_in_days=body.expires_in_days, code=body.code,
        actor=f"customer:{grant.account}", now=now)
    read = _key_read(key)
    _commit_keys(session, protection)
    protection.emit(protection.detectors.key_created(grant.account, _ns(now)))
    return KeyCreated(**read.model_dump(), secret=secret)


@router.delete("/me/keys/{key_id}", status_code=204)
def revoke_key(key_id: Annotated[str, Path(max_length=40)], grant: Signed, session: SessionDep,
               clock: ClockDep, protection: ProtectionDep) -> None:
    service.revoke_key(session, grant.account, key_id, actor=f"customer:{grant.account}",
                       now=clock.now())
    _commit_keys(session, protection)


@router.get("/me/addresses")
def list_addresses(grant: Signed, session: SessionDep,
                   params: PageParamsDep) -> Page[AddressRead]:
    """The account's withdrawal allow-list (at most 100 addresses)."""
    rows = service.addresses_of(session, _needs(grant, Permission.READ))
    return make_page([AddressRead(id=a.id, asset=a.asset, address=a.address, label=a.label,
                                  added_at=a.added_at, usable_from=a.usable_from)
                      for a in rows[params.offset:params.offset + params.limit]], len(rows),
                     params)


@router.post("/me/addresses", status_code=201)
def add_address(body: AddressCreate, grant: Signed, session: SessionDep, clock: ClockDep,
                protection: ProtectionDep) -> AddressRead:
    """Usable after the hold (``customers.address_hold_s``, 24 h by default); the customer
    is told at once, so someone else's addition is noticed before it can be used."""
    now = clock.now()
    row = service.add_address(session, grant.account, asset=body.asset, address=body.address,
                              label=body.label, code=body.code,
                              hold_s=protection.settings.address_hold_s, now=now)
    protection.emit(protection.detectors.address_added(grant.account, _ns(now)))
    return AddressRead(id=row.id, asset=row.asset, address=row.address, label=row.label,
                       added_at=row.added_at, usable_from=row.usable_from)


class WithdrawalBody(BaseModel):
    """A withdrawal: the amount in the asset's minor units (integers, never floats)."""

    asset: str = Field(pattern=r"^[A-Z0-9]{1,16}$", max_length=16)
    amount_minor: int = Field(ge=1, le=2**63 - 1, strict=True)
    address: str = Field(min_length=1, max_length=256)
    code: str = Field(min_length=6, max_length=32)


@router.get("/me/withdrawals")
def list_withdrawals(grant: Signed, session: SessionDep,
                     params: PageParamsDep) -> Page[WithdrawalRead]:
    rows, total = service.withdrawals_of(session, _needs(grant, Permission.READ),
                                         offset=params.offset, limit=params.limit)
    return make_page([_withdrawal_read(row) for row in rows], total, params)


@router.post("/me/withdrawals", status_code=201)
def withdraw(body: WithdrawalBody, grant: Signed, session: SessionDep, *, clock: ClockDep,
             venue: OptionalVenue, protection: ProtectionDep) -> WithdrawalRead:
    """Needs a key with the withdraw permission, the second factor and an allow-listed
    address past its hold; above the asset's review limit it is held for support."""
    account = _needs(grant, Permission.WITHDRAW)
    row = flows.request_withdrawal(
        session, venue, protection.settings, account=account, asset=body.asset,
        amount_minor=body.amount_minor, address=body.address, code=body.code,
        now=clock.now())
    return _withdrawal_read(row)


@router.post("/me/lock")
def lock(body: LockRequest, grant: Signed, session: SessionDep, *, clock: ClockDep,
         venue: OptionalVenue, protection: ProtectionDep) -> dict[str, object]:
    """Freeze my account: at once, with any key of the account. Only support unlocks it."""
    problems = flows.lock_account(session, venue, account=grant.account, reason=body.reason,
                                  actor=f"customer:{grant.account}", now=clock.now())
    _commit_keys(session, protection)
    return {"account": grant.account, "status": "locked", "problems": problems}


@router.get("/me/notices")
def notices(grant: Signed, session: SessionDep, params: PageParamsDep) -> Page[NoticeRead]:
    """The notices sent to this account, newest first, each with its own phrase."""
    rows, total = service.notices_of(session, _needs(grant, Permission.READ),
                                     offset=params.offset, limit=params.limit)
    return make_page([NoticeRead(id=n.id, kind=n.kind, subject_ja=n.subject_ja,
                                 subject_en=n.subject_en, body_ja=n.body_ja,
                                 body_en=n.body_en, created_at=n.created_at) for n in rows],
                     total, params)


@router.post("/me/terms", status_code=204)
def accept_terms(body: TermsAccept, grant: Signed, session: SessionDep, clock: ClockDep,
                 request: Request) -> None:
    service.accept_terms(session, grant.account, version=body.version,
                         address=client_address(request), now=clock.now())


# --- support ----------------------------------------------------------------------------


class CustomerCreated(BaseModel):
    account: int
    first_key: KeyCreated


class UnlockBody(BaseModel):
    verification: str = Field(min_length=1, max_length=1_000,
                              description="How the customer was verified (recorded).")


class TermsBody(BaseModel):
    version: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$", max_length=32)
    text_ja: str = Field(min_length=1, max_length=100_000)
    text_en: str = Field(min_length=1, max_length=100_000)


@router.post("", status_code=201)
def create_customer(body: CustomerCreate, operator: Manager, session: SessionDep,
                    clock: ClockDep, protection: ProtectionDep) -> CustomerCreated:
    """A customer for a venue account and a first key (read, trade) whose secret is in this
    answer only; the customer turns on 2FA and makes other keys with it."""
    now = clock.now()
    actor = f"operator:{operator.username}"
    service.create_customer(session, account=body.account, email=body.email,
                            phrase=body.anti_phishing_phrase, actor=actor, now=now)
    key, secret = service.create_key(
        session, body.account, label="first key", permissions=[Permission.READ,
                                                               Permission.TRADE],
        networks=[], expires_in_days=0, code="", actor=actor, now=now)
    created = KeyCreated(**_key_read(key).model_dump(), secret=secret)
    _commit_keys(session, protection)
    return CustomerCreated(account=body.account, first_key=created)


@router.post("/{account}/unlock", status_code=204)
def unlock(account: Annotated[int, Path(ge=1, le=2**63 - 1)], body: UnlockBody, *,
           operator: Manager, session: SessionDep, clock: ClockDep, venue: OptionalVenue,
           protection: ProtectionDep) -> None:
    flows.unlock_account(session, venue, account=account, verification=body.verification,
                         actor=f"operator:{operator.username}", now=clock.now())
    _commit_keys(session, protection)


@router.post("/withdrawals/{withdrawal_id}/approve")
def approve_withdrawal(withdrawal_id: Annotated[DbId, Path()], operator: Reviewer,
                       session: SessionDep, clock: ClockDep,
                       venue: OptionalVenue) -> WithdrawalRead:
    row = flows.approve_held(session, venue, withdrawal_id,
                             actor=f"operator:{operator.username}", now=clock.now())
    return _withdrawal_read(row)


@router.post("/terms", status_code=201)
def publish_terms(body: TermsBody, operator: Publisher, session: SessionDep,
                  clock: ClockDep) -> dict[str, str]:
    terms = service.publish_terms(session, version=body.version, text_ja=body.text_ja,
                                  text_en=body.text_en, actor=f"operator:{operator.username}",
                                  now=clock.now())
    return {"version": terms.version, "published_at": terms.published_at.isoformat()}


# --- the security centre (public) -------------------------------------------------------


def _page(title: str, sections: list[tuple[str, str]]) -> HTMLResponse:
    body = "".join(f"<section><h2>{html.escape(heading)}</h2>{content}</section>"
                   for heading, content in sections)
    return HTMLResponse(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
        f"{body}<p><a href=\"/security/terms\">利用規約 / Terms of service</a> · "
        "<a href=\"/status/\">稼働状況 / Status</a></p></main></body></html>")


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


@pages.get("/security", response_class=HTMLResponse, include_in_schema=False)
def security_centre(protection: ProtectionDep) -> HTMLResponse:
    settings = protection.settings
    domains = list(settings.official_domains) or ["(設定されていません / not configured)"]
    senders = list(settings.official_senders) or ["(設定されていません / not configured)"]
    return _page("セキュリティセンター / Security centre", [
        ("フィッシングの見分け方 / Spotting phishing", _list([
            "当社からのメールには、お客様が設定したフィッシング対策フレーズが必ず記載されます。"
            "記載がないメールのリンクは開かないでください。",
            "Every email from us shows the anti-phishing phrase you chose. Do not open links "
            "in a message without it.",
            "パスワード・二段階認証コード・APIシークレットを当社がお尋ねすることはありません。",
            "We never ask for your password, a two-factor code or an API secret.",
        ])),
        ("公式ドメイン / Official domains", _list(domains)),
        ("公式送信元アドレス / Official sender addresses", _list(senders)),
        ("二段階認証の設定 / Turning on two-factor authentication", _list([
            "POST /api/customers/me/2fa で認証アプリ用の秘密鍵とリカバリーコードを受け取り、"
            "POST /api/customers/me/2fa/confirm で現在のコードを送ると有効になります。"
            "リカバリーコードは安全な場所に保管してください（各1回のみ有効）。",
            "POST /api/customers/me/2fa gives the authenticator secret and recovery codes; "
            "POST /api/customers/me/2fa/confirm with the current code turns it on. Keep the "
            "recovery codes somewhere safe (each works once).",
            "出金、出金権限付きAPIキーの作成、出金先の追加、セキュリティ設定の変更には二段階"
            "認証が必要です。",
            "Withdrawals, keys with the withdraw permission, new withdrawal addresses and "
            "security changes need the second factor.",
        ])),
        ("資産の分散 / Spreading your holdings", _list([
            "取引所には必要な分だけを置き、長期保有分はご自身で管理するウォレットに移してください。"
            "一つの取引所に資産を集中させないことが、障害や不正アクセスへの備えになります。",
            "Keep on an exchange only what you need to trade; move long-term holdings to a "
            "wallet you control. Not keeping everything on one exchange protects you from "
            "outages and break-ins.",
        ])),
        ("不審な利用に気づいたら / If something looks wrong", _list([
            "POST /api/customers/me/lock で口座をただちにロックできます（取引と出金を停止、参照は"
            "可能）。解除はサポートによる本人確認後に行います。",
            "POST /api/customers/me/lock locks your account at once (trading and withdrawals "
            "stop, reads work). Support unlocks it after verifying you.",
        ])),
    ])


@pages.get("/security/terms", response_class=HTMLResponse, include_in_schema=False)
def terms_page(protection: ProtectionDep) -> HTMLResponse:
    with session_scope(protection.session_factory) as session:
        versions = service.terms_versions(session)
        sections = [(f"版 / Version {terms.version} ({terms.published_at:%Y-%m-%d})"
                     + (" — 現行 / current" if index == 0 else ""),
                     f"<h3>日本語</h3><pre>{html.escape(terms.text_ja)}</pre>"
                     f"<h3>English</h3><pre>{html.escape(terms.text_en)}</pre>")
                    for index, terms in enumerate(versions)]
    if not sections:
        sections = [("未公開 / Not published", "<p>利用規約はまだ公開されていません。 / No "
                     "terms of service have been published yet.</p>")]
    return _page("利用規約 / Terms of service", sections)



def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
