"""The drill report: every figure against its target, in Japanese and English, the same in
the terminal, Markdown and HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from haltguard.drill.report import figure_rows, print_table, target_failures, write_files
from haltguard.drill.runner import failed_result, judge
from haltguard.drill.scenario import Check, DrillResult, Measurements, Targets
from haltguard.status.texts import Bilingual

TITLE = Bilingual("サーバーダウン", "Server down")


def sample(**figures: object) -> DrillResult:
    measurements = Measurements(time_to_detect_s=1.25, time_to_halt_s=None,
                                time_to_first_update_s=12.5, recovery_time_s=42.0,
                                acknowledged_orders_lost=0, ledger_invariant_ok=True,
                                notices_sent=3, extra={"restarts": "1"})
    for name, value in figures.items():
        setattr(measurements, name, value)
    result = DrillResult("server-down", 7, measurements, [
        Check("venue restarted", True, "a new process", "pid 1 -> 2",
              name_ja="再起動", expected_ja="新しいプロセス", seen_ja="pid 1 -> 2")],
        started_at=datetime(2026, 11, 25, 7, 0, tzinfo=UTC),
        finished_at=datetime(2026, 11, 25, 7, 1, tzinfo=UTC))
    result.note("訓練が承認者を務めた。", "The drill played the approver.")
    return result


def test_figure_without_a_value_is_not_applicable_and_not_judged() -> None:
    rows = {row.label.en: row for row in figure_rows(sample().measurements, Targets())}
    assert rows["Time to halt"].passed is None
    assert rows["Time to halt"].measured == Bilingual("対象外", "n/a")
    assert rows["Time to detect"].passed is True
    assert rows["Notices sent"].passed is None


def test_figure_over_its_target_fails_with_measured_and_target() -> None:
    result = sample(recovery_time_s=75.5)
    assert target_failures(result.measurements, Targets(recovery_time_s=60)) == [
        "Recovery time: 75.50 s (target <= 60 s)"]
    judge(result, Targets(recovery_time_s=60))
    assert not result.passed
    assert result.failures() == ["target: recovery time: expected <= 60 s; seen 75.50 s"]


def test_lost_acknowledged_order_fails_the_drill() -> None:
    result = sample(acknowledged_orders_lost=2)
    judge(result, Targets())
    failed = [check for check in result.checks if not check.passed]
    assert [check.name for check in failed] == ["target: acknowledged orders lost"]
    assert failed[0].seen == "2" and failed[0].seen_ja == "2 件"


def test_markdown_and_html_say_the_same_in_both_languages(tmp_path: Path) -> None:
    result = sample()
    judge(result, Targets())
    markdown, html = write_files(result, Targets(), TITLE, tmp_path)
    assert markdown.name == "drill-server-down-20261125T070100Z.md"
    md, page = markdown.read_text(encoding="utf-8"), html.read_text(encoding="utf-8")
    for text in (md, page):
        assert "訓練報告 / Drill report: server-down" in text
        assert "合格 / PASS" in text
        assert "検知までの時間 / Time to detect" in text and "1.25 秒 / 1.25 s" in text
        assert "5 秒以内 / &lt;= 5 s" in text or "5 秒以内 / <= 5 s" in text
        assert "INC-7" in text
        assert "訓練が承認者を務めた。 / The drill played the approver." in text
    assert "| 再起動 / venue restarted | 新しいプロセス / a new process |" in md
    assert "| 再起動回数 / restarts | 1 |" in md
    assert page.startswith("<!DOCTYPE html>") and '<html lang="ja">' in page


def test_failed_drill_report_leads_with_the_reasons(tmp_path: Path) -> None:
    result = failed_result("server-down", "waited 20 s for the supervisor to restart the venue")
    markdown, _ = write_files(result, Targets(), TITLE, tmp_path)
    text = markdown.read_text(encoding="utf-8")
    assert text.index("## 不合格 / FAIL") < text.index("## 計測値と目標 / Figures against targets")
    assert ("| 復旧後の台帳の整合性 / Ledger invariant after recovery | 対象外 / n/a | "
            "整合 / holds | 対象外 / n/a |") in text
    assert ("訓練の完了: 期待 シナリオの全手順を完了、結果 waited 20 s for the supervisor to "
            "restart the venue / drill completed: expected every step of the scenario done; "
            "seen waited 20 s for the supervisor to restart the venue") in text


def test_terminal_table_shows_every_figure_and_the_verdict() -> None:
    console = Console(record=True, width=200)
    result = sample(time_to_first_update_s=31.0)
    judge(result, Targets())
    print_table(console, result, Targets(), TITLE)
    shown = console.export_text()
    assert "最初の公開情報までの時間 / Time to first public update" in shown
    assert "31.00 秒 / 31.00 s" in shown and "30 秒以内 / <= 30 s" in shown
    assert "結果 / Result: 不合格 / FAIL" in shown
