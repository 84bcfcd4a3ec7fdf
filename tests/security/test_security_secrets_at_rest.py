"""Secrets the database keeps are encrypted with a key kept outside it: a copy of the database
file does not give away TOTP seeds or the generated link-signing keys."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from security_helpers import START, use_key_files
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import ManualClock
from haltguard.db.migrate import upgrade
from haltguard.db.session import make_engine, make_session_factory, session_scope
from haltguard.notify import service as notify_service
from haltguard.notify.models import ChannelCreate, WebhookSubscribe
from haltguard.notify.settings import NotifySettings
from haltguard.responders import directory, paging
from haltguard.responders.directory import contact_address
from haltguard.responders.models import ContactMethodIn, PersonIn
from haltguard.responders.settings import ResponderSettings
from haltguard.security import flows, service
from haltguard.security.permissions import Role
from haltguard.security.testing import fast_test_settings

PASSWORD = "a long enough passphrase"


def create_operator(factory: sessionmaker[Session], username: str) -> str:
    """Create ``username`` and return the TOTP seed shown to them once."""
    with session_scope(factory) as session:
        _operator, enrolment = service.create_operator(
            session, username=username, display_name="Akiko Sato",
            email=f"{username}@example.com", phone="", role=Role.RESPONDER, password=PASSWORD,
            actor="system:test", settings=fast_test_settings(), now=START,
        )
    return enrolment.secret


def database_bytes(engine: Engine) -> bytes:
    """Everything the SQLite file and its WAL hold, as a thief with a copy would read it."""
    database = engine.url.database
    assert database is not None
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return b"".join(
        Path(database + suffix).read_bytes()
        for suffix in ("", "-wal") if os.path.exists(database + suffix)
    )


def test_a_totp_seed_is_stored_encrypted_and_login_still_checks_codes(
    session_factory: sessionmaker[Session], engine: Engine,
) -> None:
    seed = create_operator(session_factory, "akiko")
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT totp_secret FROM operators WHERE username = 'akiko'")
        ).scalar_one()
    assert seed not in stored and stored.startswith("hgs1.")
    if engine.dialect.name == "sqlite":
        assert seed.encode() not in database_bytes(engine)
    moment = START + timedelta(minutes=1)
    with session_scope(session_factory) as session:
        result = flows.login(
            session, username="akiko", password=PASSWORD,
            totp_code=pyotp.TOTP(seed).at(moment), client_address="10.0.0.1",
            settings=fast_test_settings(), now=moment,
        )
    assert result.refusal is None and result.operator is not None


def test_a_sealed_totp_seed_copied_to_another_operator_does_not_open(
    session_factory: sessionmaker[Session], engine: Engine,
) -> None:
    create_operator(session_factory, "akiko")
    create_operator(session_factory, "mallory")
    with engine.begin() as connection:
        connection.execute(text(
            "UPDATE operators SET totp_secret = (SELECT totp_secret FROM operators WHERE "
            "username = 'mallory') WHERE username = 'akiko'"
        ))
    from haltguard.db import keys

    with session_scope(session_factory) as session, pytest.raises(
        keys.KeyringError, match="copied from another row"
    ):
        operator = service.get_operator(session, "akiko")
        keys.open_totp_secret(session, "akiko", operator.totp_secret)


def test_generated_ack_link_and_notice_link_keys_are_stored_encrypted(
    session_factory: sessionmaker[Session], engine: Engine,
) -> None:
    with session_scope(session_factory) as session:
        ack_key = paging.ack_secret(session, ResponderSettings())
        link_key = notify_service.link_secret(session, NotifySettings(), START)
    with session_scope(session_factory) as session:
        assert paging.ack_secret(session, ResponderSettings()) == ack_key
        assert notify_service.link_secret(session, NotifySettings(), START) == link_key
    with engine.connect() as connection:
        stored_ack = connection.execute(text("SELECT value FROM oncall_secrets")).scalar_one()
        stored_link = bytes(
            connection.execute(text("SELECT value FROM notify_secrets")).scalar_one()
        )
    assert ack_key.decode() not in stored_ack and stored_ack.startswith("hgs1.")
    assert link_key not in stored_link and stored_link.startswith(b"hgs1.")


def subscribe_webhook(factory: sessionmaker[Session], url: str) -> str:
    """Subscribe ``url`` as a webhook and return the signing secret shown once."""
    settings = NotifySettings(allow_private_webhook_hosts=True)
    with session_scope(factory) as session:
        outcome = notify_service.subscribe_webhook(
            session, WebhookSubscribe(url=url, contact_email="ops@partner.test",
                                      anti_phishing_phrase="green kite"),
            settings=settings, secret=b"l" * 32, now=START,
        )
    assert outcome.signing_secret is not None
    return outcome.signing_secret


def test_a_webhook_signing_secret_is_stored_encrypted_and_opens_for_its_subscriber_only(
    session_factory: sessionmaker[Session], engine: Engine,
) -> None:
    shown = subscribe_webhook(session_factory, "https://hooks.partner.test/status")
    subscribe_webhook(session_factory, "https://hooks.mallory.test/status")
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT address_digest, signing_secret FROM notify_subscribers ORDER BY id"
        )).all()
    (digest, stored), (other_digest, other_stored) = rows
    assert shown not in stored and stored.startswith("hgs1.")
    if engine.dialect.name == "sqlite":
        assert shown.encode() not in database_bytes(engine)
    from haltguard.db import keys

    keyring = keys.keyring_for_engine(engine)
    assert keys.open_signing_secret(keyring, digest, stored) == shown
    with pytest.raises(keys.KeyringError, match="copied from another row"):
        keys.open_signing_secret(keyring, digest, other_stored)
    assert keys.open_signing_secret(keyring, other_digest, other_stored) != shown


def test_webhook_and_apprise_urls_are_stored_encrypted_and_shown_masked(
    session_factory: sessionmaker[Session], engine: Engine,
) -> None:
    hook = "https://hooks.partner.test/status?key=hook-token-123"
    subscribe_webhook(session_factory, hook)
    channel = "tgram://123456:bot-token-456/-1001"
    contact = "tgram://987654:contact-token-a/-1002"
    with session_scope(session_factory) as session:
        notify_service.add_channel(
            session, ChannelCreate(label="ops chat", url=channel), actor="operator:akiko",
            now=START)
        directory.put_person(session, PersonIn(
            handle="tanaka", display_name="Tanaka", contacts=[
                ContactMethodIn(kind="email", address="tanaka@example.com"),
                ContactMethodIn(kind="apprise", address=contact)]),
            actor="operator:akiko", clock=ManualClock(START))
    with engine.connect() as connection:
        stored = [row[0] for row in connection.execute(text(
            "SELECT address FROM notify_subscribers UNION ALL "
            "SELECT address FROM oncall_contact_methods WHERE kind = 'apprise'"))]
    assert len(stored) == 3 and all(value.startswith("hgs1.") for value in stored)
    if engine.dialect.name == "sqlite":
        everything = database_bytes(engine)
        for token in (b"hook-token-123", b"bot-token-456", b"contact-token-a"):
            assert token not in everything
    with session_scope(session_factory) as session:
        listed, _total = notify_service.list_subscribers(session)
        shown = {item.kind.value: item.address for item in listed}
        found = directory.find_person(session, "tanaka")
        assert found is not None
        person = directory.person_out(found)
    assert shown["webhook"] == "https://hooks.partner.test/status?****"
    assert "bot-token-456" not in shown["apprise"] and shown["apprise"].startswith("tgram://")
    assert person.contacts[0].address == "tanaka@example.com"
    assert "contact-token-a" not in person.contacts[1].address
    assert person.contacts[1].address.startswith("tgram://")


def test_clear_secrets_of_an_older_database_are_encrypted_on_upgrade_and_still_work(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'haltguard.sqlite3'}")
    upgrade(engine, "0002")
    upgrade(engine, "0005_notify")
    seed = pyotp.random_base32()
    ack_key = "k" * 64
    link_key = os.urandom(48)
    signing_secret = "w" * 43
    contact_url = "tgram://987654:old-contact-token-a/-1002"
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO operators (id, username, display_name, email, phone, role, "
            "password_hash, totp_secret, totp_last_step, failed_logins, disabled, created_at, "
            "updated_at) VALUES (1, 'akiko', 'A', 'a@example.com', '', 'responder', 'x', :s, "
            "0, 0, 0, :t, :t)"
        ), {"s": seed, "t": START.replace(tzinfo=None)})
        connection.execute(text("INSERT INTO oncall_secrets (name, value) VALUES "
                                "(:n, :v)"), {"n": paging.ACK_SECRET_NAME, "v": ack_key})
        connection.execute(text("INSERT INTO notify_secrets (id, value, created_at) VALUES "
                                "(1, :v, :t)"), {"v": link_key, "t": START.replace(tzinfo=None)})
        connection.execute(text(
            "INSERT INTO notify_subscribers (id, kind, address, address_digest, contact_email, "
            "label, language, status, all_components, anti_phishing_phrase, signing_secret, "
            "token_generation, created_by, created_at) VALUES (1, 'webhook', "
            "'https://hooks.partner.test/s?old-hook-token', 'd1', 'ops@partner.test', '', 'en', "
            "'confirmed', "
            "1, 'kite', :s, 0, 'test', :t)"
        ), {"s": signing_secret, "t": START.replace(tzinfo=None)})
        connection.execute(text(
            "INSERT INTO oncall_people (id, handle, display_name, language) VALUES "
            "(1, 'tanaka', 'Tanaka', 'ja')"))
        connection.execute(text(
            "INSERT INTO oncall_contact_methods (id, person_id, position, kind, address, label) "
            "VALUES (1, 1, 0, 'apprise', :a, '')"), {"a": contact_url})
    upgrade(engine)
    assert contact_url.encode() not in database_bytes(engine)
    assert b"old-hook-token" not in database_bytes(engine)
    assert seed.encode() not in database_bytes(engine)
    assert ack_key.encode() not in database_bytes(engine)
    assert link_key not in database_bytes(engine)
    assert signing_secret.encode() not in database_bytes(engine)
    factory = make_session_factory(engine)
    from haltguard.db import keys

    with session_scope(factory) as session:
        operator = service.get_operator(session, "akiko")
        assert keys.open_totp_secret(session, "akiko", operator.totp_secret) == seed
        assert paging.ack_secret(session, ResponderSettings()) == ack_key.encode()
        assert notify_service.link_secret(session, NotifySettings(), START) == link_key
        stored = session.execute(text("SELECT signing_secret FROM notify_subscribers")
                                 ).scalar_one()
        assert keys.open_signing_secret(keys.keyring_for(session), "d1", stored) == signing_secret
        [listed], _total = notify_service.list_subscribers(session)
        assert listed.address == "https://hooks.partner.test/s?****"
        person = directory.find_person(session, "tanaka")
        assert person is not None
        assert contact_address(person.contact_methods[0]) == contact_url
    engine.dispose()


def test_the_secrets_key_is_an_owner_only_file_in_an_owner_only_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_key_files(monkeypatch)
    engine = make_engine(f"sqlite:///{tmp_path / 'haltguard.sqlite3'}")
    upgrade(engine)
    create_operator(make_session_factory(engine), "akiko")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "secrets.key").stat().st_mode) == 0o600
    engine.dispose()


def test_a_key_file_others_can_read_is_refused_saying_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_key_files(monkeypatch)
    engine = make_engine(f"sqlite:///{tmp_path / 'haltguard.sqlite3'}")
    upgrade(engine)
    create_operator(make_session_factory(engine), "akiko")
    engine.dispose()
    (tmp_path / "keys" / "secrets.key").chmod(0o644)
    from haltguard.db import keys

    engine = make_engine(f"sqlite:///{tmp_path / 'haltguard.sqlite3'}")
    with pytest.raises(keys.KeyringError, match="chmod 600"):
        create_operator(make_session_factory(engine), "kenji")
    engine.dispose()
