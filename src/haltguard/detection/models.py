"""Detection's tables and the shapes that cross its API.

``detection_decisions`` is the decisions log: every decision, executed or dry-run, with the
rule, the observed value, the condition, the signal's labels, the actions planned and what
each did. Dry-run records are the rows with ``dry_run`` true. ``detection_rule_sets`` keeps
every rule set that came into force, with its text, so any decision can be traced to the
exact rules that made it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from haltguard.db.base import Base
from haltguard.db.types import UtcDateTime

KEY_LENGTH_MAX = 300
NAME_LENGTH_MAX = 128
SOURCE_LENGTH_MAX = 500


class DecisionRecord(Base):
    __tablename__ = "detection_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    key: Mapped[str] = mapped_column(String(KEY_LENGTH_MAX), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    ruleset_version: Mapped[str] = mapped_column(String(32))
    classification: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX * 2))
    signal_source: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    signal_name: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    signal_value: Mapped[str] = mapped_column(String(64))
    signal_ts_ns: Mapped[int] = mapped_column(BigInteger)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    details: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    observed: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    condition: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    planned: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    outcomes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    dry_run: Mapped[bool] = mapped_column(Boolean, index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    explanation: Mapped[str] = mapped_column(Text)


class RuleSetRecord(Base):
    __tablename__ = "detection_rule_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), index=True)
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH_MAX))
    loaded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    loaded_by: Mapped[str] = mapped_column(String(NAME_LENGTH_MAX))
    rule_count: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


# --- API shapes -------------------------------------------------------------------------------


class DecisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    decided_at: datetime
    key: str
    kind: str
    rule_id: str
    ruleset_version: str
    classification: str
    severity: str
    title: str
    signal_source: str
    signal_name: str
    signal_value: str
    labels: dict[str, str]
    observed: str
    condition: str
    planned: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    dry_run: bool
    incident_id: int | None
    explanation: str


class RuleRead(BaseModel):
    id: str
    signal: str
    match: dict[str, str]
    condition: str
    classification: str
    severity: str
    actions: list[str]
    dry_run: bool
    line: int
    description: str


class RuleSetRead(BaseModel):
    version: str
    source: str
    dry_run: bool
    rules: list[RuleRead]


class RulesCheckRequest(BaseModel):
    """A rules file's text to check (or load), and a name for messages."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1 << 20)
    source: str = Field(default="<request>", max_length=SOURCE_LENGTH_MAX)


class RulesReloadRequest(BaseModel):
    """Reload from the configured file (no text), or from the text given."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=1 << 20)
    source: str = Field(default="<request>", max_length=SOURCE_LENGTH_MAX)


class ProblemRead(BaseModel):
    source: str
    line: int
    message: str


class RulesCheckResult(BaseModel):
    ok: bool
    version: str | None
    rule_count: int
    problems: list[ProblemRead]


class DryRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    reason: str = Field(min_length=1, max_length=1000)


class DryRunRead(BaseModel):
    enabled: bool
