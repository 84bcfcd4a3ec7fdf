"""The two keys kept outside the database, and the private files and directories they live in.

Whoever can write the database must not be able to rewrite the audit history, and whoever can
read it (a copied file, a backup, a read-only console) must not learn the secrets in it. Both
need a key the database does not hold:

- the **audit key** seals each audit entry with HMAC-SHA256 (``security/audit.py``) and signs
  the lines of the audit anchor, an append-only file outside the database;
- the **secrets key** encrypts secrets at rest with AES-256-GCM: TOTP seeds, the generated
  ack-link key, the generated notify link key, webhook subscribers' signing secrets, and
  webhook and apprise URLs (subscribers, on-call contacts), which carry tokens. Each
  sealed value is bound to where it is stored (its *context*, e.g.
  ``operators.totp_secret:akiko``), so it cannot be moved to another row.

A key comes from the environment (``HALTGUARD_AUDIT_KEY``, ``HALTGUARD_SECRETS_KEY``: 32 bytes
as 64 hex digits or base64url, read by ``app/config.py`` for ``serve`` and for the other
commands) or else from a file in ``<data_dir>/keys/`` (directory 0700, files 0600), created
on first use. Which one an engine uses is fixed when the engine is made
(:func:`attach`); code holding only a session finds it with :func:`keyring_for`.

A sealed value is ``hgs1.<key id>.<base64url(nonce || ciphertext || tag)>``; the key id is the
first 8 hex digits of HMAC-SHA256(key, "haltguard-key-id"), so a value sealed under another
key is named as such instead of failing as "corrupt".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_HEX_DIGITS = 8
KEYS_DIR_NAME = "keys"
AUDIT_KEY_FILE_NAME = "audit.key"
SECRETS_KEY_FILE_NAME = "secrets.key"
ANCHOR_FILE_NAME = "audit-anchor.log"
AUDIT_KEY_ENV = "HALTGUARD_AUDIT_KEY"
SECRETS_KEY_ENV = "HALTGUARD_SECRETS_KEY"
ANCHOR_FILE_ENV = "HALTGUARD_AUDIT_ANCHOR_FILE"
SEALED_PREFIX = "hgs1"
SEALED_TEXT_LENGTH_MAX = 4_096
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_KEY_ID_LABEL = b"haltguard-key-id"


class KeyringError(ValueError):
    """A key cannot be loaded or a sealed value cannot be opened; the message says what to do."""


# --- private files and directories ---------------------------------------------------------


def private_directory(path: Path, *, tighten: bool = False) -> Path:
    """``path`` as a directory only its owner can enter, created 0700 when missing (its
    missing parents too). An existing one is left as it is unless ``tighten``: then, when it
    is ours and others may enter it, it is made 0700 (for directories haltguard owns, such as
    ``keys/``; never for a data directory an operator chose, which may be shared)."""
    if not path.exists():
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        path.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    elif tighten:
        status = path.stat()
        if status.st_uid == os.getuid() and stat.S_IMODE(status.st_mode) & 0o077:
            path.chmod(PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make an existing file of ours owner-only (0600); a missing file is left missing."""
    with contextlib.suppress(FileNotFoundError):
        status = path.stat()
        if status.st_uid == os.getuid() and stat.S_IMODE(status.st_mode) & 0o077:
            path.chmod(PRIVATE_FILE_MODE)
    return path


def append_private_line(path: Path, line: str) -> None:
    """Append one line to ``path`` (created 0600) with a single ``write`` in append mode, so
    lines from concurrent writers never interleave, and make it durable."""
    assert line.endswith("\n") and "\n" not in line[:-1], "exactly one line"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
    try:
        os.write(descriptor, line.encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --- keys ----------------------------------------------------------------------------------


def parse_key_text(text: str, name: str) -> bytes:
    """A 32-byte key written as 64 hex digits or as base64url (padding optional)."""
    candidate = text.strip()
    try:
        raw = bytes.fromhex(candidate) if len(candidate) == 2 * KEY_BYTES else \
            base64.urlsafe_b64decode(candidate + "=" * (-len(candidate) % 4))
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise KeyringError(
            f"{name} must be {KEY_BYTES} random bytes as 64 hex digits or base64url; generate "
            "one with `python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return raw


def key_id(key: bytes) -> str:
    """A short public name of a key: which key sealed a value, without revealing it."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:KEY_ID_HEX_DIGITS]


@dataclass(frozen=True)
class KeySettings:
    """Where the keys and the audit anchor are. Keys given here (from the environment) win
    over the files in ``<data_dir>/keys/``; ``anchor_file`` defaults to
    ``<data_dir>/audit-anchor.log``."""

    data_dir: Path
    audit_key: bytes = b""
    secrets_key: bytes = b""
    anchor_file: Path | None = None

    def __post_init__(self) -> None:
        for name, key in (("the audit key", self.audit_key),
                          ("the secrets key", self.secrets_key)):
            if key and len(key) != KEY_BYTES:
                raise KeyringError(f"{name} must be {KEY_BYTES} bytes, got {len(key)}")

    @classmethod
    def from_environment(cls, data_dir: Path, environ: Mapping[str, str]) -> KeySettings:
        """The keys set in ``environ`` (``HALTGUARD_AUDIT_KEY``, ``HALTGUARD_SECRETS_KEY``,
        ``HALTGUARD_AUDIT_ANCHOR_FILE``), the rest from ``data_dir``."""
        audit_text = environ.get(AUDIT_KEY_ENV, "")
        secrets_text = environ.get(SECRETS_KEY_ENV, "")
        anchor_text = environ.get(ANCHOR_FILE_ENV, "")
        return cls(
            data_dir=data_dir,
            audit_key=parse_key_text(audit_text, AUDIT_KEY_ENV) if audit_text else b"",
            secrets_key=parse_key_text(secrets_text, SECRETS_KEY_ENV) if secrets_text else b"",
            anchor_file=Path(anchor_text) if anchor_text else None,
        )


class Keyring:
    """The keys of one deployment, loaded (or created) from their files on first use."""

    def __init__(self, settings: KeySettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._loaded: dict[str, bytes] = {}

    @property
    def keys_dir(self) -> Path:
        return self.settings.data_dir / KEYS_DIR_NAME

    @property
    def anchor_file(self) -> Path:
        return self.settings.anchor_file or self.settings.data_dir / ANCHOR_FILE_NAME

    def audit_key(self) -> bytes:
        return self._key(AUDIT_KEY_FILE_NAME, self.settings.audit_key)

    def secrets_key(self) -> bytes:
        return self._key(SECRETS_KEY_FILE_NAME, self.settings.secrets_key)

    def _key(self, file_name: str, given: bytes) -> bytes:
        if given:
            return given
        with self._lock:
            if file_name not in self._loaded:
                private_directory(self.settings.data_dir)
                self._loaded[file_name] = _load_or_create_key(self.keys_dir / file_name)
            return self._loaded[file_name]


def _load_or_create_key(path: Path) -> bytes:
    """The key in ``path``; a missing one is written once (0600) without ever replacing one
    another process wrote first."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    private_directory(path.parent, tighten=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        os.write(descriptor, (secrets.token_hex(KEY_BYTES) + "\n").encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        os.link(temporary, path)  # fails if another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    status = path.stat()
    if stat.S_IMODE(status.st_mode) & 0o077:
        raise KeyringError(
            f"the key file {path} can be read by other users (mode "
            f"{stat.S_IMODE(status.st_mode):04o}); run `chmod 600 {path}` and consider the "
            "key exposed if others could log in to this machine"
        )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyringError(f"cannot read the key file {path}: {exc}") from exc
    return parse_key_text(text, f"the key file {path}")


# --- which keyring an engine uses ----------------------------------------------------------

_KEYRINGS: weakref.WeakKeyDictionary[Engine, Keyring] = weakref.WeakKeyDictionary()


def attach(engine: Engine, keyring: Keyring) -> None:
    """Every session and connection of ``engine`` uses ``keyring`` from now on."""
    _KEYRINGS[engine] = keyring


def keyring_for_engine(engine: Engine) -> Keyring:
    keyring = _KEYRINGS.get(engine)
    if keyring is None:
        raise KeyringError(
            "this database engine has no keys attached; open it with "
            "haltguard.db.session.make_engine, which finds them in the data directory"
        )
    return keyring


def keyring_for(session: Session) -> Keyring:
    """The keyring of the engine ``session`` is bound to."""
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    return keyring_for_engine(engine)


# --- sealing secrets -----------------------------------------------------------------------


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX + ".")


def seal(keyring: Keyring, clear: str, *, context: str) -> str:
    """``clear`` encrypted under the secrets key and bound to ``context``."""
    key = keyring.secrets_key()
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, clear.encode("utf-8"), context.encode("utf-8"))
    body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
    return f"{SEALED_PREFIX}.{key_id(key)}.{body}"


def open_sealed(keyring: Keyring, value: str, *, context: str) -> str:
    """The clear text of a value :func:`seal` made for ``context``, or :class:`KeyringError`
    saying why not (stored in clear, another key, damaged or moved)."""
    if not is_sealed(value):
        raise KeyringError(
            f"the secret {context} is stored in clear; start haltguard once (or run any "
            "`haltguard` command on this database) so the upgrade encrypts it"
        )
    parts = value.split(".")
    if len(parts) != 3 or len(value) > SEALED_TEXT_LENGTH_MAX:
        raise KeyringError(f"the sealed secret {context} is damaged; set it anew")
    _, sealed_by, body = parts
    key = keyring.secrets_key()
    if sealed_by != key_id(key):
        raise KeyringError(
            f"the secret {context} was encrypted with the secrets key {sealed_by}, but this "
            f"process has key {key_id(key)}; restore {keyring.keys_dir / SECRETS_KEY_FILE_NAME} "
            f"or set {SECRETS_KEY_ENV} to the key this database was used with"
        )
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        clear = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                    context.encode("utf-8"))
    except (ValueError, binascii.Error, InvalidTag) as exc:
        raise KeyringError(
            f"the sealed secret {context} does not open with its key: it was damaged or "
            "copied from another row; set it anew"
        ) from exc
    return clear.decode("utf-8")


def seal_bytes(keyring: Keyring, clear: bytes, *, context: str) -> bytes:
    """Raw key material sealed as ASCII bytes (for binary columns)."""
    text = base64.urlsafe_b64encode(clear).decode("ascii")
    return seal(keyring, text, context=context).encode("ascii")


def open_sealed_bytes(keyring: Keyring, value: bytes, *, context: str) -> bytes:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        text = ""  # raw random bytes: a secret stored in clear
    return base64.urlsafe_b64decode(open_sealed(keyring, text, context=context))


# --- secrets stored before they were sealed ------------------------------------------------


def totp_secret_context(username: str) -> str:
    return f"operators.totp_secret:{username}"


def responder_secret_context(name: str) -> str:
    return f"oncall_secrets.value:{name}"


def notify_secret_context(row_id: int) -> str:
    return f"notify_secrets.value:{row_id}"


def signing_secret_context(address_digest: str) -> str:
    """A webhook's signing secret is bound to its subscription (kind and address, by digest,
    unique), which is known before the row is written."""
    return f"notify_subscribers.signing_secret:{address_digest}"


def seal_signing_secret(keyring: Keyring, address_digest: str, clear: str) -> str:
    """A webhook subscriber's signing secret as stored in ``notify_subscribers``."""
    return seal(keyring, clear, context=signing_secret_context(address_digest))


def open_signing_secret(keyring: Keyring, address_digest: str, stored: str) -> str:
    """The signing secret of the subscription with ``address_digest``, from its stored form."""
    return open_sealed(keyring, stored, context=signing_secret_context(address_digest))


def subscriber_address_context(address_digest: str) -> str:
    """A webhook or apprise subscriber's address (its URL carries tokens), bound to the
    subscription like its signing secret."""
    return f"notify_subscribers.address:{address_digest}"


def contact_address_context(handle: str, position: int) -> str:
    """An on-call person's apprise contact (its URL carries tokens), bound to the person and
    the contact's place in their list."""
    return f"oncall_contact_methods.address:{handle}/{position}"


def seal_stored_secrets(connection: Connection, keyring: Keyring) -> int:
    """Encrypt every secret still stored in clear (databases from before secrets were
    sealed), in the caller's transaction; returns how many. This is the whole list of
    secrets the database keeps: a new one belongs here too."""
    sealed = 0
    operators = connection.execute(
        text("SELECT id, username, totp_secret FROM operators")
    ).all()
    for row_id, username, secret in operators:
        if not is_sealed(secret):
            value = seal(keyring, secret, context=totp_secret_context(username))
            connection.execute(text("UPDATE operators SET totp_secret = :v WHERE id = :i"),
                               {"v": value, "i": row_id})
            sealed += 1
    for name, secret in connection.execute(text("SELECT name, value FROM oncall_secrets")).all():
        if not is_sealed(secret):
            value = seal(keyring, secret, context=responder_secret_context(name))
            connection.execute(text("UPDATE oncall_secrets SET value = :v WHERE name = :n"),
                               {"v": value, "n": name})
            sealed += 1
    for row_id, raw in connection.execute(text("SELECT id, value FROM notify_secrets")).all():
        if not bytes(raw).startswith(SEALED_PREFIX.encode("ascii") + b"."):
            value_bytes = seal_bytes(keyring, bytes(raw), context=notify_secret_context(row_id))
            connection.execute(text("UPDATE notify_secrets SET value = :v WHERE id = :i"),
                               {"v": value_bytes, "i": row_id})
            sealed += 1
    webhooks = connection.execute(text(
        "SELECT id, address_digest, signing_secret FROM notify_subscribers "
        "WHERE signing_secret <> ''"
    )).all()
    for row_id, digest, secret in webhooks:
        if not is_sealed(secret):
            value = seal_signing_secret(keyring, digest, secret)
            connection.execute(
                text("UPDATE notify_subscribers SET signing_secret = :v WHERE id = :i"),
                {"v": value, "i": row_id})
            sealed += 1
    return sealed + _seal_stored_addresses(connection, keyring)


def _seal_stored_addresses(connection: Connection, keyring: Keyring) -> int:
    """Webhook and apprise URLs (subscribers, on-call contacts) still stored in clear."""
    sealed = 0
    subscribers = connection.execute(text(
        "SELECT id, address_digest, address FROM notify_subscribers WHERE kind <> 'email'"
    )).all()
    for row_id, digest, address in subscribers:
        if not is_sealed(address):
            value = seal(keyring, address, context=subscriber_address_context(digest))
            connection.execute(
                text("UPDATE notify_subscribers SET address = :v WHERE id = :i"),
                {"v": value, "i": row_id})
            sealed += 1
    contacts = connection.execute(text(
        "SELECT m.id, p.handle, m.position, m.address FROM oncall_contact_methods m "
        "JOIN oncall_people p ON p.id = m.person_id WHERE m.kind = 'apprise'"
    )).all()
    for row_id, handle, position, address in contacts:
        if not is_sealed(address):
            value = seal(keyring, address, context=contact_address_context(handle, position))
            connection.execute(
                text("UPDATE oncall_contact_methods SET address = :v WHERE id = :i"),
                {"v": value, "i": row_id})
            sealed += 1
    return sealed


def seal_totp_secret(session: Session, username: str, secret: str) -> str:
    """An operator's TOTP seed as stored in ``operators.totp_secret``."""
    return seal(keyring_for(session), secret, context=totp_secret_context(username))


def open_totp_secret(session: Session, username: str, stored: str) -> str:
    """The TOTP seed of ``username`` from its stored, sealed form."""
    return open_sealed(keyring_for(session), stored, context=totp_secret_context(username))
