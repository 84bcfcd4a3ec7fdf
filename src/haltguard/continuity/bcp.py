"""The business continuity plan and the risk register as data: YAML files (ja/en), reviewed
like code, loaded strictly (:mod:`haltguard.continuity.strictyaml`: an unknown field is an
error naming it and its line).

The plan (``bcp.example.yaml`` shows every field):

- ``plan``: its title, version, who approved it (the named executive and the board's
  approval date JVCEA's rules ask for) and how often it must be reviewed;
- ``evidence``: how old evidence may be (a drill of each scenario, the last good backup,
  the last verified restore) before it stops counting;
- ``services``: each of the exchange's services with its RTO and RPO (seconds), what it
  depends on, the scenarios that can interrupt it, and whether it is recovered from backups
  or by failing over to the alternate site;
- ``scenarios``: each scenario with its runbook (an incident category's) and the drill that
  rehearses it;
- ``alternate_site``: where the exchange runs if the primary site is lost, and how;
- ``contact_tree``: always ``oncall``: the emergency contact tree is the one kept by
  ``haltguard oncall`` (it is checked for gaps, never copied here).

The risk register (``risks.example.yaml``): each risk with its cause (one of the manual's
chapter 1 categories), likelihood and impact (1-5), owner (a person of ``haltguard oncall``),
controls (rules, runbooks, drills), residual rating and review date.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from haltguard.common.taxonomy import Category
from haltguard.continuity.strictyaml import load_file

EXAMPLES_DIR: Final = Path(__file__).with_name("examples")
PLAN_EXAMPLE: Final = EXAMPLES_DIR / "bcp.example.yaml"
REGISTER_EXAMPLE: Final = EXAMPLES_DIR / "risks.example.yaml"
INSURANCE_EXAMPLE: Final = EXAMPLES_DIR / "insurance.example.yaml"

SERVICES_MAX = 64
SCENARIOS_MAX = 64
RISKS_MAX = 500
CONTROLS_MAX = 32
RATING_MIN = 1
RATING_MAX = 5
TARGET_S_MAX = 30 * 86_400
TEXT_MAX = 2_000
GENERAL_RUNBOOK = "general"
RUNBOOKS: Final = (*(category.value for category in Category), GENERAL_RUNBOOK)
"""A scenario's runbook is an incident category's (``incidents/runbooks/``) or the general
one."""

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
RiskId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
Handle = Annotated[str, Field(min_length=1, max_length=64)]
Rating = Annotated[int, Field(ge=RATING_MIN, le=RATING_MAX)]
Seconds = Annotated[int, Field(ge=0, le=TARGET_S_MAX)]
Days = Annotated[int, Field(ge=1, le=3_650)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    """A text people read, in both languages."""

    ja: str = Field(min_length=1, max_length=TEXT_MAX)
    en: str = Field(min_length=1, max_length=TEXT_MAX)


# --- the plan -------------------------------------------------------------------------------


class Approval(_Strict):
    """Who approved the plan: the named executive, and when the board did."""

    name: str = Field(min_length=1, max_length=200)
    title: Text
    board_approved_on: date


class PlanHead(_Strict):
    title: Text
    version: int = Field(ge=1)
    approved_by: Approval
    review_every_days: Days = 365


class EvidenceLimits(_Strict):
    """How old each kind of evidence may be before it no longer counts (a finding)."""

    drill_age_days_max: Days = 90
    backup_age_hours_max: Annotated[int, Field(ge=1, le=24 * 365)] = 26
    restore_verified_age_days_max: Days = 7
    failover_age_days_max: Days = 180


class Dependency(_Strict):
    """Something a service needs that is not one of the plan's services (a cloud region, a
    bank connection, a wallet provider)."""

    id: Id
    name: Text


class Service(_Strict):
    id: Id
    name: Text
    rto_s: Seconds
    """Recovery time objective: the longest the service may be down, seconds."""
    rpo_s: Seconds
    """Recovery point objective: the most recent data it may lose, seconds (0: none)."""
    depends_on: tuple[Id, ...] = ()
    scenarios: tuple[Id, ...] = Field(min_length=1)
    restored_from_backup: bool = False
    """Whether losing its disk is recovered by restoring a backup (then backup age and the
    last verified restore are evidence against its RPO and RTO)."""
    fails_over: bool = False
    """Whether it is recovered by failing over to the alternate site (then the failover
    figures are evidence)."""


class Scenario(_Strict):
    id: Id
    name: Text
    runbook: str = Field(description="An incident category's runbook, or general.")
    drill: str | None = Field(
        default=None, max_length=64,
        description="The drill scenario that rehearses it (haltguard drill list).")
    drill_age_days_max: Days | None = None
    """Overrides ``evidence.drill_age_days_max`` for this scenario."""

    @model_validator(mode="after")
    def _known_runbook(self) -> Scenario:
        if self.runbook not in RUNBOOKS:
            raise ValueError(f"unknown runbook {self.runbook!r}; the runbooks are: "
                             + ", ".join(RUNBOOKS))
        return self


class AlternateSite(_Strict):
    name: Text
    location: Text
    activation: Text
    """How and by whom the switch is decided and made."""
    runbook: str = GENERAL_RUNBOOK


class Plan(_Strict):
    """The whole plan file."""

    plan: PlanHead
    evidence: EvidenceLimits = EvidenceLimits()
    dependencies: tuple[Dependency, ...] = ()
    services: tuple[Service, ...] = Field(min_length=1, max_length=SERVICES_MAX)
    scenarios: tuple[Scenario, ...] = Field(min_length=1, max_length=SCENARIOS_MAX)
    alternate_site: AlternateSite
    contact_tree: Literal["oncall"] = "oncall"

    @model_validator(mode="after")
    def _references(self) -> Plan:
        problems: list[str] = []
        service_ids = [service.id for service in self.services]
        scenario_ids = {scenario.id for scenario in self.scenarios}
        known = set(service_ids) | {dependency.id for dependency in self.dependencies}
        for ids, what in ((service_ids, "service"),
                          ([s.id for s in self.scenarios], "scenario")):
            twice = sorted({each for each in ids if ids.count(each) > 1})
            if twice:
                problems.append(f"{what} ids must be unique: {', '.join(twice)} twice")
        for service in self.services:
            for needed in service.depends_on:
                if needed == service.id or needed not in known:
                    problems.append(f"service {service.id} depends on {needed!r}, which is "
                                    "neither another service nor one of dependencies")
            for scenario in service.scenarios:
                if scenario not in scenario_ids:
                    problems.append(f"service {service.id} names scenario {scenario!r}, "
                                    "which is not in scenarios")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def scenario(self, scenario_id: str) -> Scenario:
        return next(each for each in self.scenarios if each.id == scenario_id)


# --- the risk register ------------------------------------------------------------------------


class Control(_Strict):
    """What keeps a risk down: a detection rule, a runbook or a drill, by its name."""

    kind: Literal["rule", "runbook", "drill"]
    ref: str = Field(min_length=1, max_length=100)


class ResidualRating(_Strict):
    likelihood: Rating
    impact: Rating


class Risk(_Strict):
    id: RiskId
    title: Text
    cause: Category
    likelihood: Rating
    impact: Rating
    owner: Handle
    """Who reviews it: a person's handle in ``haltguard oncall`` (paged when overdue)."""
    controls: tuple[Control, ...] = Field(default=(), max_length=CONTROLS_MAX)
    residual: ResidualRating
    review_by: date

    @property
    def score(self) -> int:
        return self.likelihood * self.impact

    @property
    def residual_score(self) -> int:
        return self.residual.likelihood * self.residual.impact

    @model_validator(mode="after")
    def _controls_lower_it(self) -> Risk:
        if self.runbook_refs_unknown():
            raise ValueError("unknown runbook in controls: " + ", ".join(
                self.runbook_refs_unknown()) + "; the runbooks are: " + ", ".join(RUNBOOKS))
        if self.residual_score > self.score:
            raise ValueError(f"residual rating {self.residual_score} is above the inherent "
                             f"{self.score}: controls cannot make a risk worse")
        return self

    def runbook_refs_unknown(self) -> list[str]:
        return [c.ref for c in self.controls if c.kind == "runbook" and c.ref not in RUNBOOKS]


class Register(_Strict):
    """The whole risk register file."""

    version: int = Field(ge=1)
    risks: tuple[Risk, ...] = Field(min_length=1, max_length=RISKS_MAX)

    @model_validator(mode="after")
    def _unique(self) -> Register:
        ids = [risk.id for risk in self.risks]
        twice = sorted({each for each in ids if ids.count(each) > 1})
        if twice:
            raise ValueError(f"risk ids must be unique: {', '.join(twice)} twice")
        return self


def load_plan(path: Path) -> Plan:
    """The plan at ``path``; a ContinuityFileError lists every problem with its line."""
    return load_file(Plan, path, what_en="the continuity plan",
                     what_ja="事業継続計画ファイル")


def load_register(path: Path) -> Register:
    """The register at ``path``; a ContinuityFileError lists every problem with its line."""
    return load_file(Register, path, what_en="the risk register",
                     what_ja="リスク登録簿ファイル")
