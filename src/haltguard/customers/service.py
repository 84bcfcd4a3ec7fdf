"""Customers' own protection as plain functions over a session, ``now`` passed in.

Every change that touches a customer's security records an audit entry and a notice to the
customer (with the customer's anti-phishing phrase) in the caller's transaction, so a
change and its notice are committed together or not at all. Checks come first: a refused
request changes nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from haltguard.common.errors import ErrorKind
from haltguard.common.network import parse_networks
from haltguard.customers.errors import (
    AccountLockedError,
    CustomerConflictError,
    CustomerError,
    CustomerNotFoundError,
    SecondFactorRequiredError,
    SecondFactorWrongError,
)
from haltguard.customers.models import (
    ADDRESSES_PER_ACCOUNT_MAX,
    KEYS_PER_ACCOUNT_MAX,
    RECOVERY_CODES_COUNT,
    ApiKey,
    Customer,
    CustomerDevice,
    CustomerNotice,
    CustomerNoticeMail,
    CustomerStatus,
    CustomerWithdrawal,
    NoticeKind,
    NoticeMailStatus,
    RecoveryCode,
    TermsAcceptance,
    TermsVersion,
    WithdrawalAddress,
    WithdrawalStatus,
)
from haltguard.customers.signing import KeyGrant, Permission
from haltguard.customers.texts import notice_text
from haltguard.db.keys import Keyring, keyring_for, open_sealed, seal
from haltguard.security import audit, totp

KEY_ID_PREFIX = "hgk_"
KEY_SECRET_BYTES = 32
RECOVERY_CODE_BYTES = 8


def _secret_context(key_id: str) -> str:
    return f"customer_api_keys.secret:{key_id}"


def _totp_context(account: int) -> str:
    return f"customers.totp_secret:{account}"


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


# --- customers ------------------------------------------------------------------------


def create_customer(session: Session, *, account: int, email: str, phrase: str, actor: str,
                    now: datetime) -> Customer:
    """A customer for venue ``account``; refused when the account already has one."""
    if session.get(Customer, account) is not None:
        raise CustomerConflictError(f"account {account} already has a customer record",
                       message_ja=f"口座 {account} は既に登録されています")
    customer = Customer(account=account, email=email, anti_phishing_phrase=phrase,
                        status=CustomerStatus.ACTIVE.value, totp_secret="", totp_pending="",
                        totp_last_step=0, created_at=now, lock_reason="")
    session.add(customer)
    session.flush()
    audit.record(session, actor=actor, action="customer.created", target=f"account:{account}",
                 details={"email_domain": email.rpartition("@")[2]}, at=now)
    return customer


def get_customer(session: Session, account: int) -> Customer:
    customer = session.get(Customer, account)
    if customer is None:
        raise CustomerNotFoundError(f"no customer for account {account}; support creates it with "
                       "`haltguard customers create`",
                       message_ja=f"口座 {account} のお客様情報がありません")
    return customer


def notify(session: Session, customer: Customer, kind: NoticeKind,
           detail: tuple[str, str], now: datetime) -> CustomerNotice:
    """A notice to ``customer`` alone, carrying that customer's own phrase."""
    text = notice_text(kind, customer.anti_phishing_phrase, *detail)
    notice = CustomerNotice(account=customer.account, kind=kind.value,
                            subject_ja=text.subject_ja, subject_en=text.subject_en,
                            body_ja=text.body_ja, body_en=text.body_en, created_at=now)
    session.add(notice)
    session.flush()
    if customer.email:
        session.add(CustomerNoticeMail(notice_id=notice.id, to_address=customer.email,
                                       status=NoticeMailStatus.QUEUED.value, attempts=0,
                                       last_error="", next_attempt_at=now))
    return notice


def notices_of(session: Session, account: int, *, offset: int = 0,
               limit: int = 50) -> tuple[list[CustomerNotice], int]:
    """A page of the account's notices, newest first, and how many there are."""
    where = CustomerNotice.account == account
    total = session.scalar(select(func.count()).select_from(CustomerNotice).where(where)) or 0
    return list(session.scalars(select(CustomerNotice).where(where)
                                .order_by(CustomerNotice.id.desc())
                                .offset(offset).limit(limit))), total


def _ensure_unlocked(customer: Customer) -> None:
    if customer.status == CustomerStatus.LOCKED.value:
        raise AccountLockedError()


# --- second factor --------------------------------------------------------------------


def verify_second_factor(session: Session, customer: Customer, code: str, now: datetime,
                         *, what: str, what_ja: str) -> None:
    """Accept a current TOTP code (each step once) or one unused recovery code (spent)."""
    if not customer.totp_secret:
        raise SecondFactorRequiredError(what, what_ja)
    candidate = code.strip()
    if candidate.isdigit():
        secret = open_sealed(keyring_for(session), customer.totp_secret,
                             context=_totp_context(customer.account))
        check = totp.check_code(secret, candidate, now, customer.totp_last_step)
        if not check.accepted:
            raise SecondFactorWrongError(check.reason)
        customer.totp_last_step = check.step
        return
    spent = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.account == customer.account,
               RecoveryCode.code_hash == _hash_code(candidate),
               RecoveryCode.used_at.is_(None))
        .values(used_at=now)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise SecondFactorWrongError("not a current code nor an unused recovery code")


def begin_two_factor(session: Session, account: int, *, code: str, issuer: str,
                     now: datetime) -> tuple[totp.TotpEnrolment, list[str]]:
    """A new TOTP secret (pending until confirmed) and fresh recovery codes, shown once.
    Replacing an active second factor needs a code from the current one."""
    customer = get_customer(session, account)
    _ensure_unlocked(customer)
    if customer.totp_secret:
        verify_second_factor(session, customer, code, now, what="replacing two-factor "
                             "authentication", what_ja="二段階認証の再設定")
    enrolment = totp.new_enrolment(f"account-{account}", issuer)
    customer.totp_pending = seal(keyring_for(session), enrolment.secret,
                                 context=_totp_context(account))
    codes = [secrets.token_hex(RECOVERY_CODE_BYTES // 2) + "-"
             + secrets.token_hex(RECOVERY_CODE_BYTES // 2) for _ in range(RECOVERY_CODES_COUNT)]
    session.execute(update(RecoveryCode).where(RecoveryCode.account == account,
                                               RecoveryCode.used_at.is_(None))
                    .values(used_at=now))
    session.add_all(RecoveryCode(account=account, code_hash=_hash_code(c)) for c in codes)
    session.flush()
    return enrolment, codes


def confirm_two_factor(session: Session, account: int, *, code: str, now: datetime) -> None:
    """Turn the pending secret on once the customer shows a code from it."""
    customer = get_customer(session, account)
    if not customer.totp_pending:
        raise CustomerConflictError("no two-factor enrolment is pending; start one first",
                       message_ja="設定中の二段階認証がありません。先に設定を開始してください")
    keyring = keyring_for(session)
    secret = open_sealed(keyring, customer.totp_pending, context=_totp_context(account))
    check = totp.check_code(secret, code, now, 0)
    if not check.accepted:
        raise SecondFactorWrongError(check.reason)
    customer.totp_secret, customer.totp_pending = customer.totp_pending, ""
    customer.totp_last_step = check.step
    notify(session, customer, NoticeKind.SECURITY_CHANGED, ("二段階認証が有効になりました。",
            "Two-factor authentication was turned on."), now)
    audit.record(session, actor=f"customer:{account}", action="customer.two_factor_on",
                 target=f"account:{account}", details={}, at=now)


def set_phrase(session: Session, account: int, *, phrase: str, code: str,
               now: datetime) -> None:
    customer = get_customer(session, account)
    _ensure_unlocked(customer)
    verify_second_factor(session, customer, code, now, what="changing the anti-phishing "
                         "phrase", what_ja="フィッシング対策フレーズの変更")
    customer.anti_phishing_phrase = phrase
    notify(session, customer, NoticeKind.SECURITY_CHANGED,
           ("フィッシング対策フレーズが変更されました。",
            "Your anti-phishing phrase was changed."), now)


# --- API keys -------------------------------------------------------------------------


def create_key(session: Session, account: int, *, label: str,
               permissions: Sequence[Permission | str], networks: Sequence[str],
               expires_in_days: int,
               code: str, actor: str, now: datetime) -> tuple[ApiKey, str]:
    """A new key and its secret (returned once, stored sealed). The withdraw permission
    needs the second factor."""
    customer = get_customer(session, account)
    _ensure_unlocked(customer)
    wanted = sorted({Permission(p) for p in permissions})
    if not wanted:
        raise CustomerError("a key needs at least one permission: read, trade or withdraw",
                            message_ja="キーには read・trade・withdraw のいずれかの権限が必要です")
    try:
        parsed = parse_networks(",".join(networks), "networks") if networks else ()
    except ValueError as exc:
        raise CustomerError(f"{exc}; write CIDRs such as 203.0.113.0/24",
                            message_ja="IP許可リストは 203.0.113.0/24 のようなCIDRで書いて"
                                       "ください") from None
    active = session.scalar(select(func.count()).select_from(ApiKey).where(
        ApiKey.account == account, ApiKey.revoked_at.is_(None))) or 0
    if active >= KEYS_PER_ACCOUNT_MAX:
        raise CustomerConflictError(
            f"account {account} has {active} active keys, the most allowed; revoke one first",
            message_ja="有効なキーの上限に達しています。先に1つ無効化してください")
    if Permission.WITHDRAW in wanted:
        verify_second_factor(session, customer, code, now, what="a key with the withdraw "
                             "permission", what_ja="出金権限のあるキーの作成")
    key_id = KEY_ID_PREFIX + secrets.token_urlsafe(18)
    secret = secrets.token_urlsafe(KEY_SECRET_BYTES)
    key = ApiKey(key_id=key_id, account=account, label=label,
                 secret=seal(keyring_for(session), secret, context=_secret_context(key_id)),
                 permissions=[p.value for p in wanted], networks=[str(n) for n in parsed],
                 created_at=now, changed_at=now,
                 expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None)
    session.add(key)
    session.flush()
    notify(session, customer, NoticeKind.NEW_KEY,
           (f"APIキー {key_id}（権限: {', '.join(key.permissions)}）が作成されました。",
            f"API key {key_id} (permissions: {', '.join(key.permissions)}) was created."), now)
    audit.record(session, actor=actor, action="customer.key_created", target=f"key:{key_id}",
                 details={"account": account, "permissions": key.permissions,
                          "networks": key.networks}, at=now)
    return key, secret


def revoke_key(session: Session, account: int, key_id: str, *, actor: str,
               now: datetime) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or key.account != account:
        raise CustomerNotFoundError(f"account {account} has no key {key_id}",
                       message_ja=f"キー {key_id} は見つかりません")
    if key.revoked_at is None:
        key.revoked_at = now
        key.changed_at = now
        audit.record(session, actor=actor, action="customer.key_revoked",
                     target=f"key:{key_id}", details={"account": account}, at=now)
    return key


def keys_of(session: Session, account: int) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.account == account)
                                .order_by(ApiKey.created_at)))


def key_grants(session: Session, keyring: Keyring | None = None) -> list[KeyGrant]:
    """Every usable key as the gateway holds it (secrets opened, accounts' locks applied)."""
    keyring = keyring or keyring_for(session)
    rows = session.execute(
        select(ApiKey, Customer.status).join(Customer, Customer.account == ApiKey.account)
        .where(ApiKey.revoked_at.is_(None))
    ).all()
    grants = []
    for key, status in rows:
        expires_at: datetime | None = key.expires_at
        grants.append(KeyGrant(
            key_id=key.key_id, account=key.account,
            secret=open_sealed(keyring, key.secret, context=_secret_context(key.key_id))
            .encode(),
            permissions=frozenset(Permission(p) for p in key.permissions),
            networks=parse_networks(",".join(key.networks), "networks") if key.networks
            else (),
            expires_ms=int(expires_at.timestamp() * 1000) if expires_at is not None else 0,
            locked=status == CustomerStatus.LOCKED.value,
        ))
    return grants


def keys_version(session: Session) -> tuple[int, int, str]:
    """Changes to any key or lock move this (keys, revoked keys, newest change): the
    gateway's cache reloads when it moves (changes made in-process reload at once)."""
    count, revoked, newest = session.execute(select(
        func.count(), func.count(ApiKey.revoked_at), func.max(ApiKey.changed_at))).one()
    return int(count or 0), int(revoked or 0), str(newest or "")


# --- devices --------------------------------------------------------------------------


def record_device(session: Session, account: int, address: str, now: datetime,
                  location_e6: tuple[int, int] | None = None) -> bool:
    """Remember ``address`` for ``account``; True (and a notice) when it is new."""
    device = session.scalar(select(CustomerDevice).where(
        CustomerDevice.account == account, CustomerDevice.address == address))
    if device is not None:
        device.last_seen_at = now
        return False
    customer = get_customer(session, account)
    latitude, longitude = location_e6 if location_e6 is not None else (None, None)
    session.add(CustomerDevice(account=account, address=address, first_seen_at=now,
                               last_seen_at=now, latitude_e6=latitude, longitude_e6=longitude))
    notify(session, customer, NoticeKind.NEW_DEVICE,
           (f"新しいIPアドレス {address} から口座が利用されました。",
            f"Your account was used from a new address, {address}."), now)
    return True


# --- the self-lock --------------------------------------------------------------------


def lock(session: Session, account: int, *, reason: str, actor: str, now: datetime) -> Customer:
    """Lock at once, no second factor needed: someone who fears a takeover must be able to
    stop it with what they have. Reads keep working; trading and withdrawals stop."""
    customer = get_customer(session, account)
    if customer.status != CustomerStatus.LOCKED.value:
        customer.status = CustomerStatus.LOCKED.value
        customer.locked_at = now
        customer.lock_reason = reason
        _touch_keys(session, account, now)
        notify(session, customer, NoticeKind.SECURITY_CHANGED,
               ("口座がロックされました。取引と出金は停止し、参照のみ可能です。",
                "Your account was locked: trading and withdrawals are stopped; reads work."), now)
        audit.record(session, actor=actor, action="customer.locked",
                     target=f"account:{account}", details={"reason": reason}, at=now)
    return customer


def unlock(session: Session, account: int, *, verification: str, actor: str,
           now: datetime) -> Customer:
    """Only support, after verifying the customer (what was checked is recorded)."""
    if not verification.strip():
        raise CustomerError("say how the customer was verified (e.g. 'video call, ID "
                            "checked'); it is recorded in the audit log",
                            message_ja="本人確認の方法を記入してください（監査ログに記録されます）")
    customer = get_customer(session, account)
    if customer.status != CustomerStatus.LOCKED.value:
        raise CustomerConflictError(f"account {account} is not locked",
                       message_ja=f"口座 {account} はロックされていません")
    customer.status = CustomerStatus.ACTIVE.value
    customer.locked_at = None
    _touch_keys(session, account, now)
    notify(session, customer, NoticeKind.SECURITY_CHANGED,
           ("本人確認のうえ、口座のロックが解除されました。",
            "Your account was unlocked after support verified you."), now)
    audit.record(session, actor=actor, action="customer.unlocked", target=f"account:{account}",
                 details={"verification": verification}, at=now)
    return customer


def _touch_keys(session: Session, account: int, now: datetime) -> None:
    """Move the keys' version so the gateway reloads them with the account's lock."""
    session.execute(update(ApiKey).where(ApiKey.account == account).values(changed_at=now))


# --- withdrawal addresses and withdrawals ---------------------------------------------


def add_address(session: Session, account: int, *, asset: str, address: str, label: str,
                code: str, hold_s: int, now: datetime) -> WithdrawalAddress:
    customer = get_customer(session, account)
    _ensure_unlocked(customer)
    verify_second_factor(session, customer, code, now, what="adding a withdrawal address",
                         what_ja="出金先アドレスの追加")
    existing = session.scalar(select(WithdrawalAddress).where(
        WithdrawalAddress.account == account, WithdrawalAddress.asset == asset,
        WithdrawalAddress.address == address))
    if existing is not None:
        return existing
    count = session.scalar(select(func.count()).select_from(WithdrawalAddress)
                           .where(WithdrawalAddress.account == account)) or 0
    if count >= ADDRESSES_PER_ACCOUNT_MAX:
        raise CustomerConflictError(
            f"account {account} has {count} withdrawal addresses, the most allowed",
            message_ja="出金先アドレスの上限に達しています")
    usable_from = now + timedelta(seconds=hold_s)
    row = WithdrawalAddress(account=account, asset=asset, address=address, label=label,
                            added_at=now, usable_from=usable_from)
    session.add(row)
    session.flush()
    notify(session, customer, NoticeKind.NEW_ADDRESS,
           (f"{asset} の出金先 {address} が追加されました。{usable_from:%Y-%m-%d %H:%M} UTC "
           "以降に利用できます。",
            f"{asset} withdrawal address {address} was added; it can be used from "
           f"{usable_from:%Y-%m-%d %H:%M} UTC."), now)
    audit.record(session, actor=f"customer:{account}", action="customer.address_added",
                 target=f"account:{account}", details={"asset": asset, "address": address,
                                                       "usable_from": usable_from.isoformat()},
                 at=now)
    return row


def addresses_of(session: Session, account: int) -> list[WithdrawalAddress]:
    return list(session.scalars(select(WithdrawalAddress)
                                .where(WithdrawalAddress.account == account)
                                .order_by(WithdrawalAddress.id)))


def check_withdrawal(session: Session, account: int, *, asset: str, amount_minor: int,
                     address: str, code: str, now: datetime) -> Customer:
    """Everything a customer's withdrawal must pass before the venue sees it."""
    customer = get_customer(session, account)
    _ensure_unlocked(customer)
    if amount_minor <= 0:
        raise CustomerError("amount_minor must be a positive whole number of minor units",
                            message_ja="amount_minor は正の整数（最小単位）で指定してください")
    allowed = session.scalar(select(WithdrawalAddress).where(
        WithdrawalAddress.account == account, WithdrawalAddress.asset == asset,
        WithdrawalAddress.address == address))
    if allowed is None:
        raise CustomerError(
            f"{address} is not on this account's {asset} withdrawal allow-list; add it first "
            "(it becomes usable after the hold)",
            message_ja=f"{address} は {asset} の出金先リストにありません。先に追加してください"
                       "（保留期間後に利用できます）",
            kind=ErrorKind.FORBIDDEN, code="address_not_allowed")
    usable_from: datetime = allowed.usable_from
    if now < usable_from:
        raise CustomerError(
            f"{address} was added recently: it can be used from {usable_from.isoformat()} "
            "(the hold protects you if someone else added it)",
            message_ja=f"{address} は追加直後のため {usable_from.isoformat()} まで利用できません",
            kind=ErrorKind.CONFLICT, code="address_on_hold")
    verify_second_factor(session, customer, code, now, what="a withdrawal",
                         what_ja="出金")
    return customer


def record_withdrawal(session: Session, customer: Customer, *, asset: str, amount_minor: int,
                      address: str, status: WithdrawalStatus, detail: str,
                      now: datetime) -> CustomerWithdrawal:
    row = CustomerWithdrawal(account=customer.account, asset=asset, amount_minor=amount_minor,
                             address=address, status=status.value, detail=detail,
                             requested_at=now,
                             decided_at=None if status is WithdrawalStatus.HELD else now)
    session.add(row)
    session.flush()
    return row


def withdrawals_of(session: Session, account: int, *, offset: int = 0,
                   limit: int = 50) -> tuple[list[CustomerWithdrawal], int]:
    """A page of the account's withdrawals, newest first, and how many there are."""
    where = CustomerWithdrawal.account == account
    total = session.scalar(select(func.count()).select_from(CustomerWithdrawal)
                           .where(where)) or 0
    return list(session.scalars(select(CustomerWithdrawal).where(where)
                                .order_by(CustomerWithdrawal.id.desc())
                                .offset(offset).limit(limit))), total


def held_withdrawal(session: Session, withdrawal_id: int) -> CustomerWithdrawal:
    row = session.get(CustomerWithdrawal, withdrawal_id)
    if row is None or row.status != WithdrawalStatus.HELD.value:
        raise CustomerNotFoundError(f"no withdrawal {withdrawal_id} is held for review",
                       message_ja=f"審査待ちの出金 {withdrawal_id} はありません")
    return row


# --- terms of service -----------------------------------------------------------------


def publish_terms(session: Session, *, version: str, text_ja: str, text_en: str, actor: str,
                  now: datetime) -> TermsVersion:
    if session.get(TermsVersion, version) is not None:
        raise CustomerConflictError(f"terms version {version} exists; a change is a new version",
                       message_ja=f"規約バージョン {version} は既にあります")
    terms = TermsVersion(version=version, published_at=now, text_ja=text_ja, text_en=text_en,
                         published_by=actor)
    session.add(terms)
    session.flush()
    audit.record(session, actor=actor, action="terms.published", target=f"terms:{version}",
                 details={"sha256_en": hashlib.sha256(text_en.encode()).hexdigest()}, at=now)
    return terms


def terms_versions(session: Session) -> list[TermsVersion]:
    return list(session.scalars(select(TermsVersion).order_by(TermsVersion.published_at.desc())))


def accept_terms(session: Session, account: int, *, version: str, address: str,
                 now: datetime) -> TermsAcceptance:
    get_customer(session, account)
    if session.get(TermsVersion, version) is None:
        raise CustomerNotFoundError(f"no terms version {version}; GET /security/terms lists them",
                       message_ja=f"規約バージョン {version} はありません")
    existing = session.scalar(select(TermsAcceptance).where(
        TermsAcceptance.account == account, TermsAcceptance.version == version))
    if existing is not None:
        return existing
    row = TermsAcceptance(account=account, version=version, accepted_at=now, address=address)
    session.add(row)
    session.flush()
    return row


def accepted_versions(session: Session, account: int) -> list[str]:
    return list(session.scalars(select(TermsAcceptance.version)
                                .where(TermsAcceptance.account == account)
                                .order_by(TermsAcceptance.accepted_at)))
