"""An adapter file: how one venue's own admin API does what the venue contract asks.

The file is YAML (see ``haltguard/adapters/haltguard_venue.yaml`` for a whole one, our own
``/v1/admin`` API described as an operator would describe theirs). It is read once and
checked as a whole before anything is sent: every key is known, every ``{field}`` a
template names is a field of that operation (or a declared variable), every state the venue
is said to use maps to a contract state. A problem is refused with ``file:line (key)``.

    variables      names the templates may use, with defaults (``--set name=value`` overrides)
    headers        sent with every call (templates)
    signing        optional HMAC of each call: secret, header, payload template, encoding
    timeouts       request_s (one HTTP call), confirm_s (until a brake shows), ...
    retries        attempts_max, backoff_s (doubling, capped at backoff_s_max)
    markets        our symbol -> the venue's (identity when not listed)
    states         contract state -> the venue's word
    operations     one HTTP call per contract operation (method, url, body, success, read)
    feed           the event feed: polling with a cursor, or Server-Sent Events
    conformance    what the conformance suite needs: a market, an account, order calls
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from haltguard.adapters.errors import AdapterConfigError
from haltguard.venue.control import FEED_KINDS
from haltguard.venue.types import MarketState

ADAPTER_FORMAT: Final = 1
METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
REQUEST_S_MAX: Final = 30.0
CONFIRM_S_MAX: Final = 60.0
ATTEMPTS_MAX: Final = 10
BACKGROUND_RETRIES_MAX: Final = 1_000

CALL_FIELDS: Final = frozenset({"idempotency_key", "timestamp_ms"})
OPERATION_FIELDS: Final[dict[str, frozenset[str]]] = {
    "market_states": frozenset(),
    "health": frozenset(),
    "set_market_state": frozenset({"market", "state", "actor", "reason", "incident_id",
                                   "cancels_allowed", "auction_seconds", "auction_ms"}),
    "kill_switch": frozenset({"engaged", "actor", "reason", "incident_id"}),
    "freeze_withdrawals": frozenset({"asset", "frozen", "withdrawals_enabled", "actor",
                                     "reason", "incident_id"}),
    "start_resume_plan": frozenset({"market", "phases", "auction_seconds", "auction_ms",
                                    "actor", "reason", "incident_id"}),
    "freeze_account_withdrawals": frozenset({"account", "frozen", "withdrawals_enabled",
                                             "actor", "reason", "incident_id"}),
    "cancel_all": frozenset({"market", "account", "actor", "reason", "incident_id"}),
    "place_order": frozenset({"market", "side", "price", "qty", "client_order_id", "account"}),
    "cancel_order": frozenset({"market", "order_id", "account"}),
}
REQUIRED_OPERATIONS: Final = ("market_states", "set_market_state", "kill_switch", "health")
CONFIRM_KINDS: Final = frozenset({"answer", "state", "all_halted"})
FEED_TYPES: Final = frozenset({"polling", "sse"})
SIGNING_FIELDS: Final = frozenset({"timestamp_ms", "method", "path", "body"})


@dataclass(frozen=True)
class Located:
    """Where a key of the file is, for error messages."""

    path: Path
    lines: Mapping[str, int]

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        while line is None and "." in key:
            key = key.rsplit(".", 1)[0]
            line = self.lines.get(key)
        return f"{self.path}:{line or 1} ({key})"

    def fail(self, key: str, problem: str, problem_ja: str) -> AdapterConfigError:
        return AdapterConfigError(self.where(key), problem, problem_ja)


@dataclass(frozen=True)
class Call:
    """One HTTP call: templates for the URL, headers and body; how to read the answer."""

    key: str  # e.g. operations.set_market_state, for messages
    method: str
    url: str
    headers: dict[str, str]
    body: Any  # a YAML value whose strings are templates; None for no body
    success_status: tuple[int, ...]
    read: dict[str, str]  # name -> dotted path into the JSON answer
    confirm: str


@dataclass(frozen=True)
class FeedSpec:
    type: str
    url: str
    read: dict[str, str]
    kinds: dict[str, str]
    poll_interval_s: float
    page_events_max: int


@dataclass(frozen=True)
class SigningSpec:
    secret: str
    header: str
    payload: str
    encoding: str
    timestamp_header: str


@dataclass(frozen=True)
class AdapterSpec:
    """An adapter file, checked; see the module's docstring for each part."""

    name: str
    source: Located
    variables: dict[str, str]
    headers: dict[str, str]
    signing: SigningSpec | None
    request_s: float
    confirm_s: float
    confirm_poll_s: float
    attempts_max: int
    backoff_s: float
    backoff_s_max: float
    retry_interval_s: float
    background_retries_max: int
    idempotency_header: str
    markets: dict[str, str]
    states: dict[MarketState, str]
    operations: dict[str, Call]
    feed: FeedSpec | None
    conformance: dict[str, str] = field(default_factory=dict)

    def where(self, key: str) -> str:
        return self.source.where(key)

    def venue_market(self, symbol: str) -> str:
        return self.markets.get(symbol, symbol)

    def our_market(self, venue_symbol: str) -> str:
        for ours, theirs in self.markets.items():
            if theirs == venue_symbol:
                return ours
        return venue_symbol

    def our_state(self, word: str) -> MarketState | None:
        for state, theirs in self.states.items():
            if theirs == word:
                return state
        return None


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names a template uses (``{{`` and ``}}`` are literal braces); a
    ValueError for a template that cannot be read (an unclosed brace, ``{a.b}``, ``{a!r}``)."""
    names: list[str] = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"{{{name}}} is not a plain field name")
        names.append(name)
    return names


def load_adapter(path: Path | str, overrides: Mapping[str, str] | None = None) -> AdapterSpec:
    """Read and check the adapter file at ``path``; ``overrides`` set its variables
    (each must be declared). :class:`AdapterConfigError` names the line of any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AdapterConfigError(str(path), f"cannot read the adapter file ({exc})",
                                 f"アダプタ定義を読めません({exc})") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise AdapterConfigError(f"{path}:{line}", f"not valid YAML ({exc})",
                                 "YAML として読めません") from exc
    lines: dict[str, int] = {}
    if node is not None:
        _record_lines(node, "", lines)
    return _Reader(Located(path, lines), overrides or {}).spec(data)


def _record_lines(node: yaml.Node, key: str, lines: dict[str, int]) -> None:
    """Each key's line in the file, by dotted key (``operations.kill_switch.url``)."""
    lines.setdefault(key, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = f"{key}.{key_node.value}" if key else str(key_node.value)
            lines[child] = key_node.start_mark.line + 1
            _record_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, f"{key}.{index}", lines)


class _Reader:
    """Checks one file's data part by part; each method raises on the first problem."""

    def __init__(self, source: Located, overrides: Mapping[str, str]) -> None:
        self.source = source
        self.overrides = overrides

    def fail(self, key: str, en: str, ja: str) -> AdapterConfigError:
        return self.source.fail(key, en, ja)

    def mapping(self, value: Any, key: str, allowed: frozenset[str] | None = None
                ) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, "must be a mapping of keys to values",
                            "キーと値の対応にしてください")
        if allowed is not None:
            for name in value:
                if name not in allowed:
                    raise self.fail(f"{key}.{name}" if key else name,
                                    f"unknown key {name!r}; known: {', '.join(sorted(allowed))}",
                                    f"不明なキー {name!r} です")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.fail(key, "must be a text", "文字列にしてください")
        return str(value)

    def number(self, value: Any, key: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
            low < value <= high
        ):
            raise self.fail(key, f"must be a number above {low:g} and at most {high:g}",
                            f"{low:g} より大きく {high:g} 以下の数にしてください")
        return float(value)

    def spec(self, data: Any) -> AdapterSpec:
        top = self.mapping(data, "", frozenset({
            "adapter", "name", "variables", "headers", "signing", "timeouts", "retries",
            "idempotency_header", "markets", "states", "operations", "feed", "conformance"}))
        if top.get("adapter") != ADAPTER_FORMAT:
            raise self.fail("adapter", f"the first key must be 'adapter: {ADAPTER_FORMAT}' "
                            "(the format version)", f"'adapter: {ADAPTER_FORMAT}' が必要です")
        variables = {name: self.text(value, f"variables.{name}") if value is not None else ""
                     for name, value in self.mapping(top.get("variables"), "variables").items()}
        for name, value in self.overrides.items():
            if name not in variables:
                raise AdapterConfigError(
                    f"{self.source.path} (variables)",
                    f"--set {name}: the adapter declares no variable {name!r}; declared: "
                    f"{', '.join(sorted(variables)) or 'none'}",
                    f"変数 {name!r} は宣言されていません")
            variables[name] = value
        known = frozenset(variables)
        timeouts = self.mapping(top.get("timeouts"), "timeouts", frozenset({
            "request_s", "confirm_s", "confirm_poll_s", "retry_interval_s"}))
        retries = self.mapping(top.get("retries"), "retries", frozenset({
            "attempts_max", "backoff_s", "backoff_s_max", "background_retries_max"}))
        headers = {name: self.template(self.text(value, f"headers.{name}"),
                                       f"headers.{name}", known | CALL_FIELDS)
                   for name, value in self.mapping(top.get("headers"), "headers").items()}
        operations = self.operations(top.get("operations"), known)
        conformance = self.mapping(top.get("conformance"), "conformance", frozenset({
            "market", "account", "buy_price", "sell_price", "qty", "asset"}))
        return AdapterSpec(
            name=self.text(top.get("name", self.source.path.stem), "name"),
            source=self.source,
            variables=variables,
            headers=headers,
            signing=self.signing(top.get("signing"), known),
            request_s=self.number(timeouts.get("request_s", 2.0), "timeouts.request_s",
                                  0, REQUEST_S_MAX),
            confirm_s=self.number(timeouts.get("confirm_s", 3.0), "timeouts.confirm_s",
                                  0, CONFIRM_S_MAX),
            confirm_poll_s=self.number(timeouts.get("confirm_poll_s", 0.02),
                                       "timeouts.confirm_poll_s", 0, 5),
            retry_interval_s=self.number(timeouts.get("retry_interval_s", 1.0),
                                         "timeouts.retry_interval_s", 0, 600),
            attempts_max=int(self.number(retries.get("attempts_max", 3), "retries.attempts_max",
                                         0, ATTEMPTS_MAX)),
            backoff_s=self.number(retries.get("backoff_s", 0.05), "retries.backoff_s", 0, 10),
            backoff_s_max=self.number(retries.get("backoff_s_max", 1.0),
                                      "retries.backoff_s_max", 0, 60),
            background_retries_max=int(self.number(
                retries.get("background_retries_max", 60), "retries.background_retries_max",
                0, BACKGROUND_RETRIES_MAX)),
            idempotency_header=self.text(top.get("idempotency_header", "Idempotency-Key"),
                                         "idempotency_header"),
            markets={self.text(k, f"markets.{k}"): self.text(v, f"markets.{k}")
                     for k, v in self.mapping(top.get("markets"), "markets").items()},
            states=self.states(top.get("states")),
            operations=operations,
            feed=self.feed(top.get("feed"), known),
            conformance={name: self.text(value, f"conformance.{name}")
                         for name, value in conformance.items()},
        )

    def template(self, template: str, key: str, allowed: frozenset[str]) -> str:
        try:
            names = template_fields(template)
        except ValueError as exc:
            raise self.fail(key, f"template {template!r} cannot be read: {exc}",
                            f"テンプレート {template!r} を読めません") from None
        for name in names:
            if name not in allowed:
                raise self.fail(
                    key, f"template names an unknown field {{{name}}}; this part may use: "
                    f"{', '.join('{' + n + '}' for n in sorted(allowed))}",
                    f"テンプレートが不明な項目 {{{name}}} を使っています")
        return template

    def body(self, value: Any, key: str, allowed: frozenset[str]) -> Any:
        if isinstance(value, str):
            return self.template(value, key, allowed)
        if isinstance(value, dict):
            return {name: self.body(item, f"{key}.{name}", allowed) for name, item in value.items()}
        if isinstance(value, list):
            return [self.body(item, f"{key}.{i}", allowed) for i, item in enumerate(value)]
        return value

    def states(self, value: Any) -> dict[MarketState, str]:
        table = self.mapping(value, "states")
        states: dict[MarketState, str] = {state: state.value for state in MarketState}
        for name, word in table.items():
            try:
                state = MarketState(name)
            except ValueError:
                raise self.fail(f"states.{name}", f"{name!r} is not a contract state; states: "
                                f"{', '.join(s.value for s in MarketState)}",
                                f"{name!r} は契約の状態ではありません") from None
            states[state] = self.text(word, f"states.{name}")
        words = list(states.values())
        for state, word in states.items():
            if words.count(word) > 1:
                raise self.fail(f"states.{state.value}", f"the venue's word {word!r} is given "
                                "to two states; each must be distinct",
                                f"{word!r} が二つの状態に使われています")
        return states

    def operations(self, value: Any, known: frozenset[str]) -> dict[str, Call]:
        table = self.mapping(value, "operations", frozenset(OPERATION_FIELDS))
        for name in REQUIRED_OPERATIONS:
            if name not in table:
                raise self.fail("operations", f"operation {name!r} is missing; the contract "
                                "needs it", f"操作 {name!r} がありません")
        return {name: self.call(item, f"operations.{name}", known | OPERATION_FIELDS[name])
                for name, item in table.items()}

    def call(self, value: Any, key: str, allowed: frozenset[str]) -> Call:
        item = self.mapping(value, key, frozenset({
            "method", "url", "headers", "body", "success", "read", "confirm"}))
        method = self.text(item.get("method", "GET"), f"{key}.method").upper()
        if method not in METHODS:
            raise self.fail(f"{key}.method", f"method {method!r} is not one of "
                            f"{', '.join(sorted(METHODS))}", f"メソッド {method!r} は使えません")
        if "url" not in item:
            raise self.fail(key, "needs a url", "url が必要です")
        allowed = allowed | CALL_FIELDS
        success = item.get("success", [200])
        if not isinstance(success, list) or not success or not all(
            isinstance(code, int) and 100 <= code <= 599 for code in success
        ):
            raise self.fail(f"{key}.success", "must be a list of HTTP status codes",
                            "HTTP ステータスの一覧にしてください")
        confirm = self.text(item.get("confirm", "answer"), f"{key}.confirm")
        if confirm not in CONFIRM_KINDS:
            raise self.fail(f"{key}.confirm", f"confirm must be one of "
                            f"{', '.join(sorted(CONFIRM_KINDS))}", "confirm の値が不正です")
        return Call(
            key=key, method=method,
            url=self.template(self.text(item["url"], f"{key}.url"), f"{key}.url", allowed),
            headers={name: self.template(self.text(v, f"{key}.headers.{name}"),
                                         f"{key}.headers.{name}", allowed)
                     for name, v in self.mapping(item.get("headers"), f"{key}.headers").items()},
            body=self.body(item.get("body"), f"{key}.body", allowed),
            success_status=tuple(success),
            read={name: self.text(path, f"{key}.read.{name}")
                  for name, path in self.mapping(item.get("read"), f"{key}.read").items()},
            confirm=confirm,
        )

    def feed(self, value: Any, known: frozenset[str]) -> FeedSpec | None:
        if value is None:
            return None
        item = self.mapping(value, "feed", frozenset({
            "type", "url", "read", "kinds", "poll_interval_s", "page_events_max"}))
        kind = self.text(item.get("type", "polling"), "feed.type")
        if kind not in FEED_TYPES:
            raise self.fail("feed.type", "feed type must be one of "
                            f"{', '.join(sorted(FEED_TYPES))}", "feed.type の値が不正です")
        if "url" not in item:
            raise self.fail("feed", "needs a url", "url が必要です")
        read = {name: self.text(path, f"feed.read.{name}")
                for name, path in self.mapping(item.get("read"), "feed.read", frozenset({
                    "list", "seq", "index", "kind", "market", "cursor"})).items()}
        if "seq" not in read or (kind == "polling" and "list" not in read):
            raise self.fail("feed.read", "must say where the events are (list, polling "
                            "only) and where each event's seq is (seq)",
                            "イベントの位置 (list) と seq の位置が必要です")
        kinds: dict[str, str] = {}
        for word, ours in self.mapping(item.get("kinds"), "feed.kinds").items():
            ours_text = self.text(ours, f"feed.kinds.{word}")
            if ours_text not in FEED_KINDS:
                raise self.fail(f"feed.kinds.{word}", f"{ours_text!r} is not a contract event "
                                f"kind; kinds: {', '.join(sorted(FEED_KINDS))}",
                                f"{ours_text!r} は契約のイベント種別ではありません")
            kinds[str(word)] = ours_text
        return FeedSpec(
            type=kind,
            url=self.template(self.text(item["url"], "feed.url"), "feed.url",
                              known | {"cursor", "limit"}),
            read=read, kinds=kinds,
            poll_interval_s=self.number(item.get("poll_interval_s", 0.05),
                                        "feed.poll_interval_s", 0, 10),
            page_events_max=int(self.number(item.get("page_events_max", 1000),
                                            "feed.page_events_max", 0, 100_000)),
        )

    def signing(self, value: Any, known: frozenset[str]) -> SigningSpec | None:
        if value is None:
            return None
        item = self.mapping(value, "signing", frozenset({
            "scheme", "secret", "header", "payload", "encoding", "timestamp_header"}))
        if item.get("scheme") != "hmac-sha256":
            raise self.fail("signing.scheme", "the signing scheme must be hmac-sha256",
                            "署名方式は hmac-sha256 にしてください")
        encoding = self.text(item.get("encoding", "hex"), "signing.encoding")
        if encoding not in ("hex", "base64"):
            raise self.fail("signing.encoding", "encoding must be hex or base64",
                            "encoding は hex か base64 にしてください")
        for needed in ("secret", "header", "payload"):
            if needed not in item:
                raise self.fail("signing", f"signing needs {needed!r}", f"{needed!r} が必要です")
        return SigningSpec(
            secret=self.template(self.text(item["secret"], "signing.secret"), "signing.secret",
                                 known),
            header=self.text(item["header"], "signing.header"),
            payload=self.template(self.text(item["payload"], "signing.payload"),
                                  "signing.payload", known | SIGNING_FIELDS),
            encoding=encoding,
            timestamp_header=self.text(item.get("timestamp_header", ""),
                                       "signing.timestamp_header"),
        )


def fields_reference() -> str:
    """The Markdown table of each operation's template fields, as docs/adapters.md shows it."""
    lines = ["| operation | fields its templates may use (besides the variables) |",
             "|---|---|"]
    for name, fields in OPERATION_FIELDS.items():
        shown = ", ".join(f"`{{{field}}}`" for field in sorted(fields | CALL_FIELDS))
        lines.append(f"| `{name}` | {shown} |")
    lines.append("| `feed.url` | `{cursor}`, `{limit}` |")
    lines.append("| `signing.payload` | " + ", ".join(
        f"`{{{field}}}`" for field in sorted(SIGNING_FIELDS)) + " |")
    return "\n".join(lines) + "\n"
