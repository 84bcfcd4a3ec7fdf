"""The serve configuration: file, environment and command line in that order of weight, every
value checked with a message naming the setting, and the reference in the docs kept current."""

from __future__ import annotations

from pathlib import Path

import pytest

from haltguard.app.config import (
    ConfigError,
    cli_database_url,
    cli_keyring,
    client_config_dir,
    load_config,
    reference_table,
)
from haltguard.incidents.rules import Severity
from haltguard.notify.settings import NotifySettings
from haltguard.responders.settings import ResponderSettings, SmtpSecurity
from haltguard.security.config import SecuritySettings
from haltguard.status.settings import StatusSettings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

FULL_FILE = """\
data_dir = "/srv/haltguard"

[server]
host = "0.0.0.0"
port = 9000

[database]
url = "postgresql://haltguard:s3cret@db.internal:5432/haltguard"

[venue]
admin_token = "a-venue-admin-token-long-enough"
checkpoint_every = 5000
queue_depth_max = 2000

[demo]
rate_per_s = 7.5

[first_admin]
username = "akiko.sato"
email = "akiko@example.jp"

[security]
operator_networks = ["10.0.0.0/8", "192.168.1.0/24"]
cookie_secure = false

[paging]
public_url = "https://ops.example.jp/"
ack_link_ttl_s = 3600

[paging.smtp]
host = "smtp.example.jp"
security = "ssl"
username = "pager"
sender = "pager@example.jp"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "haltguard.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_file_the_defaults_run_sqlite_in_the_data_dir() -> None:
    config = load_config(None, environ={})
    assert config.data_dir == Path("data")
    assert config.port == 8000 and config.host == "127.0.0.1"
    assert config.database_url == f"sqlite:///{(Path('data') / 'haltguard.sqlite3').resolve()}"
    assert config.venue_url == "" and config.venue_admin_token == ""
    assert config.paging.public_url == "http://127.0.0.1:8000"
    assert config.paging.smtp.port == 25
    assert config.security.cookie_secure is True
    assert config.source == "built-in defaults"


def test_every_setting_of_a_full_file_is_used(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL_FILE), environ={})
    assert config.data_dir == Path("/srv/haltguard")
    assert (config.host, config.port) == ("0.0.0.0", 9000)
    assert config.base_url == "http://127.0.0.1:9000"
    assert config.database_url.startswith("postgresql://haltguard:s3cret@db.internal")
    assert config.venue_admin_token == "a-venue-admin-token-long-enough"
    assert (config.checkpoint_every, config.queue_depth_max) == (5000, 2000)
    assert config.demo_rate_per_s == 7.5
    assert (config.first_admin_username, config.first_admin_email) == (
        "akiko.sato", "akiko@example.jp")
    assert [str(n) for n in config.security.allowed_networks] == ["10.0.0.0/8", "192.168.1.0/24"]
    assert config.security.cookie_secure is False
    assert config.paging.public_url == "https://ops.example.jp"
    assert config.paging.ack_link_ttl_s == 3600
    smtp = config.paging.smtp
    assert (smtp.host, smtp.port, smtp.security) == ("smtp.example.jp", 465, SmtpSecurity.SSL)
    assert (smtp.username, smtp.sender) == ("pager", "pager@example.jp")


def test_the_command_line_beats_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[venue]\nadmin_token = "token-from-the-file-000"\n'
                           '[paging.smtp]\nhost = "file.example"\n')
    environ = {"HALTGUARD_VENUE_TOKEN": "token-from-the-environment", "HALTGUARD_SMTP_HOST": ""}
    config = load_config(path, environ=environ, overrides={"venue.admin_token": None})
    assert config.venue_admin_token == "token-from-the-environment"
    assert config.origins["venue.admin_token"] == "environment variable HALTGUARD_VENUE_TOKEN"
    assert config.paging.smtp.host == "file.example"  # an empty variable counts as unset
    assert config.origins["paging.smtp.host"] == str(path)
    config = load_config(path, environ=environ,
                         overrides={"venue.admin_token": "token-from-the-command-line"})
    assert config.venue_admin_token == "token-from-the-command-line"


def test_environment_values_are_parsed_by_the_settings_type() -> None:
    config = load_config(None, environ={
        "HALTGUARD_OPERATOR_NETWORKS": "10.1.0.0/16, 10.2.0.0/16",
        "HALTGUARD_COOKIE_SECURE": "0",
        "HALTGUARD_SMTP_PORT": "2525",
        "HALTGUARD_DATABASE_URL": "postgresql://h@localhost/h",
    })
    assert len(config.security.allowed_networks) == 2
    assert config.security.cookie_secure is False
    assert config.paging.smtp.port == 2525
    assert config.database_url == "postgresql://h@localhost/h"


def test_the_public_url_follows_the_port_unless_set() -> None:
    config = load_config(None, environ={}, overrides={"server.port": 8123})
    assert config.paging.public_url == "http://127.0.0.1:8123"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 8000\n", "unknown setting 'server.prot'; did you mean server.port?"),
        ("[sever]\nport = 8000\n", "unknown table 'sever'; did you mean server?"),
        ('[server]\nport = "eighty"\n', "server.port must be an integer (e.g. port = 8000)"),
        ("[server]\nport = 70000\n", "server.port = 70000 (from "),
        ("[server]\nport = true\n", "server.port must be an integer"),
        ("[paging.smtp]\nsecurity = \"tls\"\n", "must be one of none, starttls, ssl"),
        ('[database]\nurl = "mysql://x"\n', "database.url = 'mysql://x'"),
        ('[security]\noperator_networks = ["10.0.0.0/33"]\n', "'10.0.0.0/33' is not a network"),
        ('[venue]\nurl = "http://venue:8000"\n', "venue.admin_token is empty"),
        ("[demo]\nrate_per_s = 0\n", "must be 0.1..10000"),
        ("port = \n", "is not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_with_the_setting_and_the_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text), environ={})
    assert message in str(refused.value)


def test_a_bad_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match="environment variable HALTGUARD_COOKIE_SECURE must be "
                                          "true or false"):
        load_config(None, environ={"HALTGUARD_COOKIE_SECURE": "maybe"})
    with pytest.raises(ConfigError, match="HALTGUARD_SMTP_PORT must be an integer"):
        load_config(None, environ={"HALTGUARD_SMTP_PORT": "twenty-five"})


def test_secrets_are_not_repeated_in_error_messages(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, '[paging]\nack_secret = "too-short-secret"\n'), environ={})
    assert "too-short-secret" not in str(refused.value)
    assert "paging.ack_secret = <hidden>" in str(refused.value)


def test_a_missing_file_says_how_to_go_on(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; create it"):
        load_config(tmp_path / "nowhere.toml", environ={})


def test_the_documented_reference_is_the_one_the_code_checks() -> None:
    assert reference_table() in DOCS.read_text(encoding="utf-8"), (
        "docs/configuration.md is out of date: paste haltguard.app.config.reference_table()"
    )


FULL_FILE_YAML = """\
data_dir: /srv/haltguard
server:
  host: 0.0.0.0
  port: 9000
database:
  url: postgresql://haltguard:s3cret@db.internal:5432/haltguard
venue:
  admin_token: a-venue-admin-token-long-enough
  checkpoint_every: 5000
  queue_depth_max: 2000
demo:
  rate_per_s: 7.5
first_admin:
  username: akiko.sato
  email: akiko@example.jp
security:
  operator_networks: ["10.0.0.0/8", "192.168.1.0/24"]
  cookie_secure: false
paging:
  public_url: https://ops.example.jp/
  ack_link_ttl_s: 3600
  smtp:
    host: smtp.example.jp
    security: ssl
    username: pager
    sender: pager@example.jp
"""


def test_a_yaml_file_gives_the_same_configuration_as_the_toml_file(tmp_path: Path) -> None:
    from_toml = load_config(write(tmp_path, FULL_FILE), environ={})
    yaml_path = tmp_path / "haltguard.yaml"
    yaml_path.write_text(FULL_FILE_YAML, encoding="utf-8")
    from_yaml = load_config(yaml_path, environ={})
    assert from_yaml.source == str(yaml_path)
    assert {**vars(from_yaml), "source": "", "origins": {}} == {
        **vars(from_toml), "source": "", "origins": {}}


@pytest.mark.parametrize(("text", "message"), [
    ("server:\n  port: 9000\n   host: x\n", r"not valid YAML at line 3, column \d+"),
    ("- data_dir\n", "must hold a mapping of tables and settings"),
    ("server:\n  prot: 9000\n", "unknown setting 'server.prot'; did you mean server.port"),
    ("venue:\n  process: maybe\n", r"venue.process must be a boolean"),
])
def test_a_bad_yaml_file_is_refused_saying_where_and_what_to_write(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "haltguard.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_the_serve_additions_have_safe_defaults_and_are_checked(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    assert config.venue_process and config.status_loop_interval_s == 5.0
    assert config.drills_allowed(demo=True) and not config.drills_allowed(demo=False)
    assert config.drill_targets.time_to_halt_s == 5.0
    assert config.status_public_url == "http://127.0.0.1:8000/status/"
    explicit = load_config(write(tmp_path, "[drill]\nenabled = false\ntime_to_halt_s = 2.5\n"),
                           environ={})
    assert not explicit.drills_allowed(demo=True)
    assert explicit.drill_targets.time_to_halt_s == 2.5
    with pytest.raises(ConfigError, match=r"status.loop_interval_s = 0.1 .* must be 0 \(off\)"):
        load_config(write(tmp_path, "[status]\nloop_interval_s = 0.1\n"), environ={})


def test_every_domain_gets_its_settings_from_the_one_configuration(tmp_path: Path) -> None:
    path = write(tmp_path, "[security]\nknown_address_days = 30\nlockout_minutes = 20\n"
                           "[notify]\nbatch_max = 50\n[status]\nname_en = \"Example status\"\n")
    config = load_config(path, environ={
        "HALTGUARD_PUBLIC_URL": "https://ops.example.jp",
        "HALTGUARD_NOTIFY_LEASE_S": "60",
        "HALTGUARD_NOTIFY_SECRET": "a-notice-link-secret-long-enough-to-use",
        "HALTGUARD_STATUS_UPDATE_EVERY": "SEV1=10,SEV4=off",
        "HALTGUARD_STATUS_EXPORT_DIR": "/srv/status-a:/srv/status-b",
    })
    assert (config.security.known_address_days, config.security.lockout_minutes) == (30, 20)
    notify = config.notify_settings()
    assert (notify.lease_s, notify.batch_max) == (60, 50)
    assert notify.secret == b"a-notice-link-secret-long-enough-to-use"
    assert notify.public_url == config.paging.public_url == "https://ops.example.jp"
    assert notify.smtp == config.paging.smtp
    status = config.status_settings()
    assert status.url == "https://ops.example.jp/status/"
    assert status.name.en == "Example status"
    assert status.update_every_minutes[Severity.SEV1] == 10
    assert status.update_every_minutes[Severity.SEV4] is None
    assert status.export_dirs == (Path("/srv/status-a"), Path("/srv/status-b"))
    assert status.loop_interval_s == 0.0, "serve runs the status loop, not the page's app"


def test_each_default_exists_once_and_the_domains_agree_with_the_documented_one() -> None:
    config = load_config(None, environ={})
    assert config.paging.public_url == ResponderSettings().public_url == NotifySettings().public_url
    assert config.notify_settings().senders == NotifySettings().senders == 2
    assert config.security == SecuritySettings(), "every security knob defaults as documented"
    assert config.status_settings().url == StatusSettings().url
    assert config.status_settings().name == StatusSettings().name


def test_a_bad_domain_variable_names_the_variable_and_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match=r"HALTGUARD_NOTIFY_LEASE_S must be 1\.\.3600, got 0"):
        load_config(None, environ={"HALTGUARD_NOTIFY_LEASE_S": "0"})
    with pytest.raises(ConfigError, match=r"\(from environment variable "
                                          r"HALTGUARD_STATUS_UPDATE_EVERY\) is not a cadence"):
        load_config(None, environ={"HALTGUARD_STATUS_UPDATE_EVERY": "SEV9=5"})
    with pytest.raises(ConfigError, match=r"security\.known_address_days = 0 \(from "):
        load_config(None, environ={}, overrides={"security.known_address_days": 0})


def test_the_commands_beside_serve_find_the_database_and_keys_from_the_environment(
    tmp_path: Path,
) -> None:
    key = "ab" * 32
    assert cli_database_url({"HALTGUARD_DATABASE_URL": "postgresql://db/haltguard"}) == \
        "postgresql://db/haltguard"
    keyring = cli_keyring("postgresql://db/haltguard",
                          {"HALTGUARD_DATA_DIR": str(tmp_path), "HALTGUARD_AUDIT_KEY": key})
    assert keyring.settings.data_dir == tmp_path
    assert keyring.settings.audit_key == bytes.fromhex(key)
    beside = cli_keyring(f"sqlite:///{tmp_path / 'db' / 'haltguard.sqlite3'}", {})
    assert beside.settings.data_dir == tmp_path / "db"
    assert client_config_dir({"HALTGUARD_CONFIG_DIR": str(tmp_path)}) == tmp_path


def test_only_the_configuration_module_reads_the_environment() -> None:
    source = Path(__file__).resolve().parents[2] / "src" / "haltguard"
    allowed = {source / "app" / "config.py"}
    readers = [str(path.relative_to(source)) for path in sorted(source.rglob("*.py"))
               if path not in allowed
               and ("os.environ" in (text := path.read_text(encoding="utf-8"))
                    or "getenv" in text)]
    assert readers == [], f"read the environment in app/config.py instead: {readers}"
