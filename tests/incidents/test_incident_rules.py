"""The pure incident rules: taxonomy, severities, lifecycle, response metrics."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from haltguard.incidents.rules import (
    ALLOWED_TRANSITIONS,
    CATEGORIES,
    SEVERITY_DEFINITIONS,
    Category,
    CategoryGroup,
    IllegalTransitionError,
    IncidentStatus,
    ResponseTimes,
    Severity,
    check_transition,
    mean,
    response_metrics,
)

T0 = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)


def test_every_category_of_chapter_one_has_a_group_and_labels_in_both_languages() -> None:
    assert set(CATEGORIES) == set(Category)
    groups = {category: info.group for category, info in CATEGORIES.items()}
    assert [c for c, g in groups.items() if g == CategoryGroup.SECURITY] == [
        Category.UNAUTHORIZED_ACCESS, Category.DDOS, Category.MALWARE,
    ]
    assert all(info.label_ja and info.label_en for info in CATEGORIES.values())


def test_every_severity_is_defined_in_japanese_and_english_and_only_sev1_sev2_page() -> None:
    assert set(SEVERITY_DEFINITIONS) == set(Severity)
    assert all(d.ja and d.en for d in SEVERITY_DEFINITIONS.values())
    assert [s for s, d in SEVERITY_DEFINITIONS.items() if d.pages_on_open] == [
        Severity.SEV1, Severity.SEV2,
    ]
    assert "all customers" in SEVERITY_DEFINITIONS[Severity.SEV1].en


def test_closed_is_reached_only_from_resolved_and_is_final() -> None:
    reaching_closed = [s for s, targets in ALLOWED_TRANSITIONS.items()
                       if IncidentStatus.CLOSED in targets]
    assert reaching_closed == [IncidentStatus.RESOLVED]
    assert ALLOWED_TRANSITIONS[IncidentStatus.CLOSED] == frozenset()
    with pytest.raises(IllegalTransitionError, match="closed incident cannot change"):
        check_transition(IncidentStatus.CLOSED, IncidentStatus.INVESTIGATING)


def test_an_illegal_move_names_the_legal_ones() -> None:
    with pytest.raises(IllegalTransitionError, match=r"legal next states: .*investigating"):
        check_transition(IncidentStatus.DETECTED, IncidentStatus.CLOSED)


def test_the_happy_path_is_legal_step_by_step() -> None:
    path = list(IncidentStatus)
    for current, following in itertools.pairwise(path):
        check_transition(current, following)


def test_response_metrics_measure_from_start_and_detection() -> None:
    times = ResponseTimes(
        started_at=T0 - timedelta(minutes=4),
        detected_at=T0,
        acknowledged_at=T0 + timedelta(minutes=2),
        mitigated_at=T0 + timedelta(minutes=30),
        resolved_at=T0 + timedelta(hours=2),
    )
    metrics = response_metrics(times)
    assert metrics.time_to_detect_s == 240
    assert metrics.time_to_acknowledge_s == 120
    assert metrics.time_to_mitigate_s == 1800
    assert metrics.time_to_resolve_s == 7200


def test_metrics_not_reached_yet_are_none_and_means_skip_them() -> None:
    metrics = response_metrics(ResponseTimes(None, T0, None, None, None))
    assert metrics.time_to_detect_s is None
    assert metrics.time_to_resolve_s is None
    assert mean([None, 10.0, 20.0]) == 15.0
    assert mean([None]) is None
