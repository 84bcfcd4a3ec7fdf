"""Times in the CLI's tables read at 80 columns: Japan time to the second with UTC beside,
due times say how long until due, and no word is broken a letter at a time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from rich.console import Console

from haltguard.cli import incidents
from haltguard.cli.timefmt import due_time, line_time, table_time, until

NOW = datetime(2025, 1, 6, 0, 30, 5, tzinfo=UTC)


def test_a_table_time_is_japan_time_to_the_second_over_utc() -> None:
    assert table_time("2025-01-06T00:30:05.123456Z") == "2025-01-06 09:30:05 JST\n00:30:05 UTC"
    assert table_time("2025-01-06T20:00:00+00:00") == "2025-01-07 05:00:00 JST\n01-06 20:00:00 UTC"
    assert line_time("2025-01-06T00:30:05.999+00:00") == "2025-01-06 09:30:05 JST (00:30:05 UTC)"
    assert table_time(None) == "-" and table_time("", missing="") == ""


def test_a_due_time_says_how_long_until_it_or_how_late_it_is() -> None:
    assert until(NOW + timedelta(minutes=14, seconds=59), NOW) == "in 14 min"
    assert until(NOW - timedelta(seconds=12), NOW) == "12 s overdue"
    assert until(NOW + timedelta(hours=1, minutes=5), NOW) == "in 1 h 5 min"
    cell = due_time((NOW + timedelta(minutes=10)).isoformat(), NOW)
    assert cell.splitlines() == ["09:40:05 JST", "00:40:05 UTC", "in 10 min"]
    tomorrow = due_time((NOW + timedelta(days=1)).isoformat(), NOW)
    assert tomorrow.splitlines()[0] == "01-07 09:30:05 JST"


def test_a_task_table_at_80_columns_keeps_every_word_whole(monkeypatch: object) -> None:
    out = Console(width=80, record=True, markup=False, highlight=False)
    monkeypatch.setattr(incidents, "console", out)  # type: ignore[attr-defined]
    due = (NOW + timedelta(minutes=15)).isoformat()
    rows = [["assess_situation\n(detect)", "incident_commander", due_time(due, NOW),
             "Assess the situation: which markets, how many customers, since when"]] * 3
    incidents._table("Tasks of INC-1", ["step", "owner", "due", "task"], rows)
    text = out.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for word in ("assess_situation", "incident_commander", "09:45:05 JST", "in 15 min",
                 "customers,"):
        assert word in text, word
    assert "T00:45:05" not in text and ".0000" not in text
    assert not re.search(r"│ \w │", text), "a column shrank to one letter a line"
