"""The drill's report: the figures, each against its target, and every check, in Japanese
and English; as a terminal table, a Markdown file and an HTML file that say the same thing.

The files are written with the reports' own document model, so a drill report reads like
the incident reports next to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from haltguard.drill.records import write_record
from haltguard.drill.scenario import DrillResult, Measurements, Targets
from haltguard.incidents.rules import incident_ref
from haltguard.reports.document import (
    Bullets,
    Document,
    Section,
    Table,
    render_html,
    render_markdown,
)
from haltguard.reports.timefmt import jst_utc
from haltguard.status.texts import Bilingual

PASS = Bilingual("合格", "PASS")
FAIL = Bilingual("不合格", "FAIL")
NOT_APPLICABLE = Bilingual("対象外", "n/a")
NO_TARGET = Bilingual("目標なし", "no target")

TITLE = Bilingual("訓練報告", "Drill report")
HEAD_ITEM = Bilingual("項目", "Figure")
HEAD_MEASURED = Bilingual("計測値", "Measured")
HEAD_TARGET = Bilingual("目標", "Target")
HEAD_VERDICT = Bilingual("判定", "Verdict")
HEAD_CHECK = Bilingual("確認項目", "Check")
HEAD_EXPECTED = Bilingual("期待", "Expected")
HEAD_SEEN = Bilingual("結果", "Seen")
SECTION_FIGURES = Bilingual("計測値と目標", "Figures against targets")
SECTION_CHECKS = Bilingual("確認項目", "Checks")
SECTION_EXTRA = Bilingual("シナリオ固有の値", "Scenario figures")
SECTION_NOTES = Bilingual("訓練が代行した操作と補足", "What the drill played, and notes")
SECTION_REPORTS = Bilingual("作成した報告書", "Reports written")
LABEL_SCENARIO = Bilingual("シナリオ", "Scenario")
LABEL_RESULT = Bilingual("結果", "Result")
LABEL_INCIDENT = Bilingual("インシデント", "Incident")
LABEL_STARTED = Bilingual("開始", "Started")
LABEL_FINISHED = Bilingual("終了", "Finished")
NONE = Bilingual("なし", "none")
NO_INCIDENT = Bilingual("開かれず", "none opened")
LEDGER_OK = Bilingual("整合", "holds")
LEDGER_BROKEN = Bilingual("不整合", "broken")


# Japanese names of the scenario figures (``Measurements.extra`` keys); a key missing here
# is shown as written.
EXTRA_JA: dict[str, str] = {
    "acknowledged orders": "受付済み注文",
    "acknowledged before the kill": "強制終了前の受付済み注文",
    "journal last seq": "ジャーナル最終番号",
    "order refusals": "注文の拒否",
    "order failures": "注文の失敗(接続不可など)",
    "pages": "呼び出し(ページ)の記録",
    "restarts": "再起動回数",
    "venue down (s)": "取引所の停止時間(秒)",
    "notices queued": "送信待ちにした通知",
    "outage (s)": "障害時間(秒)",
    "connections refused": "拒否した接続",
    "orders acknowledged during the outage": "障害中に受付した注文",
    "decisions at the signal": "信号に対する判定数",
    "database monitor fired during the outage": "障害中のデータベース監視の発報",
    "poison order answer": "問題の注文への応答",
    "quarantined (this drill)": "隔離された命令(この訓練)",
    "acknowledged_orders": "受付済み注文",
    "crash_trades": "急落中の約定",
    "lowest_trade_price": "最安約定価格",
    "protective_action": "自動保護措置",
    "login_attempts": "ログイン試行",
    "stuffing_incident": "リスト型攻撃のインシデント",
    "stuffing_detect_s": "リスト型攻撃の検知(秒)",
    "attackers": "攻撃元",
    "flood_requests": "大量リクエスト数",
    "flood_rate_per_s": "大量リクエストの速度(毎秒)",
    "flood_seconds": "大量リクエストの継続(秒)",
    "rate_limited_429": "流量制限(429)",
    "refused_while_blocked": "遮断中に拒否",
    "clients_blocked": "遮断したクライアント",
    "status_page_requests": "ステータスページへのリクエスト",
    "status_page_p50_ms": "ステータスページ応答 p50(ミリ秒)",
    "status_page_p99_ms": "ステータスページ応答 p99(ミリ秒)",
    "customer_requests": "一般顧客のリクエスト",
    "customer_p99_ms": "一般顧客の応答 p99(ミリ秒)",
    "host_load_average": "ホストの負荷平均",
    "capacity_per_s": "注文処理能力(毎秒)",
    "wanted_per_s": "目標の注文速度(毎秒)",
    "surge_seconds": "急増の継続(秒)",
    "offered_per_s": "送信した注文速度(毎秒)",
    "admitted_per_s": "受け入れた注文速度(毎秒)",
    "orders_sent": "送信した注文",
    "orders_sent_late": "予定より遅れて送信した注文",
    "orders_acknowledged": "受付済み注文",
    "shed_429": "負荷制御で拒否(429)",
    "shed_503": "負荷制御で拒否(503)",
    "ack_p50_ms": "受付応答 p50(ミリ秒)",
    "ack_p99_ms": "受付応答 p99(ミリ秒)",
    "ack_p99_ms_after_first_s": "最初の1秒以降の受付応答 p99(ミリ秒)",
    "shed_p99_ms": "拒否応答 p99(ミリ秒)",
    "gateway_ack_p50_ms": "ゲートウェイ計測の受付応答 p50(ミリ秒)",
    "gateway_ack_p99_ms": "ゲートウェイ計測の受付応答 p99(ミリ秒)",
}


def extra_label(key: str) -> str:
    """``日本語 / English`` for a scenario figure's name."""
    ja = EXTRA_JA.get(key)
    english = key.replace("_", " ")
    return f"{ja} / {english}" if ja else english


@dataclass(frozen=True)
class FigureRow:
    """One line of the figures table, with its verdict (``None``: nothing to judge)."""

    label: Bilingual
    measured: Bilingual
    target: Bilingual
    passed: bool | None


def both(text: Bilingual) -> str:
    """``日本語 / English`` for a single cell read by either reader."""
    return text.en if text.ja == text.en else f"{text.ja} / {text.en}"


def _seconds(value: float | None) -> Bilingual:
    if value is None:
        return NOT_APPLICABLE
    return Bilingual(f"{value:.2f} 秒", f"{value:.2f} s")


def _timed(label: Bilingual, value: float | None, target_s: float) -> FigureRow:
    target = Bilingual(f"{target_s:g} 秒以内", f"<= {target_s:g} s")
    passed = None if value is None else value <= target_s
    return FigureRow(label, _seconds(value), target, passed)


def figure_rows(
    measurements: Measurements, targets: Targets, *, measured: bool = True
) -> list[FigureRow]:
    """Every figure of the report, judged against ``targets`` where it has one; with
    ``measured`` False (a drill stopped midway) every figure is "n/a"."""
    m = measurements
    lost = m.acknowledged_orders_lost
    if not measured:
        return [FigureRow(row.label, NOT_APPLICABLE, row.target, None)
                for row in figure_rows(Measurements(), targets)]
    return [
        _timed(Bilingual("検知までの時間", "Time to detect"), m.time_to_detect_s,
               targets.time_to_detect_s),
        _timed(Bilingual("取引停止までの時間", "Time to halt"), m.time_to_halt_s,
               targets.time_to_halt_s),
        _timed(Bilingual("最初の公開情報までの時間", "Time to first public update"),
               m.time_to_first_update_s, targets.time_to_first_update_s),
        _timed(Bilingual("復旧時間", "Recovery time"), m.recovery_time_s,
               targets.recovery_time_s),
        FigureRow(Bilingual("受付済み注文の消失", "Acknowledged orders lost"),
                  Bilingual(f"{lost} 件", str(lost)), Bilingual("0 件", "0"), lost == 0),
        FigureRow(Bilingual("復旧後の台帳の整合性", "Ledger invariant after recovery"),
                  LEDGER_OK if m.ledger_invariant_ok else LEDGER_BROKEN, LEDGER_OK,
                  m.ledger_invariant_ok),
        FigureRow(Bilingual("送信した通知", "Notices sent"),
                  Bilingual(f"{m.notices_sent} 件", str(m.notices_sent)), NO_TARGET, None),
    ]


def target_failures(measurements: Measurements, targets: Targets) -> list[str]:
    """The figures that missed their target, as sentences (English, for exit messages)."""
    return [
        f"{row.label.en}: {row.measured.en} (target {row.target.en})"
        for row in figure_rows(measurements, targets) if row.passed is False
    ]


def verdict(passed: bool | None) -> Bilingual:
    if passed is None:
        return NOT_APPLICABLE
    return PASS if passed else FAIL


def _check_texts(result: DrillResult) -> list[tuple[Bilingual, Bilingual, Bilingual, bool]]:
    return [
        (Bilingual(check.name_ja or check.name, check.name),
         Bilingual(check.expected_ja or check.expected, check.expected),
         Bilingual(check.seen_ja or check.seen, check.seen),
         check.passed)
        for check in result.checks
    ]


def failure_lines(result: DrillResult) -> tuple[str, ...]:
    """Why the drill failed, one bilingual line per failed check."""
    if not result.checks:
        return ("確認項目がなく何も証明されていない / the drill recorded no check, so nothing "
                "was proved",)
    return tuple(
        f"{name.ja}: 期待 {expected.ja}、結果 {seen.ja} / {name.en}: expected {expected.en}; "
        f"seen {seen.en}"
        for name, expected, seen, passed in _check_texts(result) if not passed
    )


def _title(result: DrillResult) -> str:
    return f"{TITLE.ja} / {TITLE.en}: {result.scenario}"


def document(result: DrillResult, targets: Targets, scenario_title: Bilingual) -> Document:
    """The whole report as one bilingual document."""
    overall = PASS if result.passed else FAIL
    preamble = (Table(("", ""), (
        (both(LABEL_SCENARIO), f"{result.scenario}: {both(scenario_title)}"),
        (both(LABEL_RESULT), both(overall)),
        (both(LABEL_INCIDENT), incident_ref(result.incident_id) if result.incident_id is not None
         else both(NO_INCIDENT)),
        (both(LABEL_STARTED), jst_utc(result.started_at)),
        (both(LABEL_FINISHED), jst_utc(result.finished_at)),
    )),)
    figures = tuple(
        (both(row.label), both(row.measured), both(row.target), both(verdict(row.passed)))
        for row in figure_rows(result.measurements, targets, measured=result.completed)
    )
    checks = tuple(
        (both(name), both(expected), both(seen), both(verdict(passed)))
        for name, expected, seen, passed in _check_texts(result)
    )
    extra = tuple((extra_label(name), value)
                  for name, value in sorted(result.measurements.extra.items()))
    notes = tuple(f"{ja} / {en}" if ja != en else en
                  for ja, en in zip(result.notes_ja, result.notes, strict=False))
    notes += tuple(result.notes[len(result.notes_ja):])
    sections: tuple[Section, ...] = (
        Section(both(SECTION_FIGURES), (Table(
            (both(HEAD_ITEM), both(HEAD_MEASURED), both(HEAD_TARGET), both(HEAD_VERDICT)),
            figures),)),
        Section(both(SECTION_CHECKS), (Table(
            (both(HEAD_CHECK), both(HEAD_EXPECTED), both(HEAD_SEEN), both(HEAD_VERDICT)),
            checks, empty=both(NONE)),)),
        Section(both(SECTION_EXTRA), (Table(("", ""), extra, empty=both(NONE)),)),
        Section(both(SECTION_NOTES), (Bullets(notes, empty=both(NONE)),)),
        Section(both(SECTION_REPORTS), (Bullets(tuple(result.report_paths),
                                                empty=both(NONE)),)),
    )
    if not result.passed:
        sections = (Section(both(FAIL), (Bullets(failure_lines(result)),)), *sections)
    return Document(title=_title(result), lang="ja", sections=sections, preamble=preamble)


def write_files(
    result: DrillResult, targets: Targets, scenario_title: Bilingual, report_dir: Path
) -> list[Path]:
    """``drill-<scenario>-<time>.md`` and ``.html`` in ``report_dir``, and the result as a
    ``.json`` record (``drill/records.py``, read back as continuity evidence); returns the
    report paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = (result.finished_at or result.started_at)
    suffix = f"-{stamp:%Y%m%dT%H%M%SZ}" if stamp is not None else ""
    base = report_dir / f"drill-{result.scenario}{suffix}"
    doc = document(result, targets, scenario_title)
    paths = [base.with_suffix(".md"), base.with_suffix(".html")]
    paths[0].write_text(render_markdown(doc), encoding="utf-8")
    paths[1].write_text(render_html(doc), encoding="utf-8")
    write_record(result, base.with_suffix(".json"))
    return paths


def _styled(passed: bool | None, text: str) -> str:
    if passed is None:
        return f"[dim]{text}[/dim]"
    return f"[green]{text}[/green]" if passed else f"[bold red]{text}[/bold red]"


def print_table(
    console: Console, result: DrillResult, targets: Targets, scenario_title: Bilingual
) -> None:
    """The figures and the checks as rich tables, then the overall verdict."""
    figures = RichTable(title=f"{_title(result)} ({both(scenario_title)})")
    for head in (HEAD_ITEM, HEAD_MEASURED, HEAD_TARGET, HEAD_VERDICT):
        figures.add_column(both(head))
    for row in figure_rows(result.measurements, targets, measured=result.completed):
        figures.add_row(both(row.label), both(row.measured), both(row.target),
                        _styled(row.passed, both(verdict(row.passed))))
    console.print(figures)
    checks = RichTable(title=both(SECTION_CHECKS))
    for head in (HEAD_CHECK, HEAD_EXPECTED, HEAD_SEEN, HEAD_VERDICT):
        checks.add_column(both(head))
    for name, expected, seen, passed in _check_texts(result):
        checks.add_row(both(name), both(expected), both(seen),
                       _styled(passed, both(verdict(passed))))
    console.print(checks)
    if result.measurements.extra:
        extra = RichTable(title=both(SECTION_EXTRA))
        extra.add_column("")
        extra.add_column("")
        for key, value in sorted(result.measurements.extra.items()):
            extra.add_row(extra_label(key), value)
        console.print(extra)
    for ja, en in zip(result.notes_ja, result.notes, strict=False):
        console.print(f"- {ja}\n  {en}", highlight=False, markup=False)
    for path in result.report_paths:
        console.print(f"{both(SECTION_REPORTS)}: {path}", markup=False)
    overall = PASS if result.passed else FAIL
    console.print(_styled(result.passed, f"{both(LABEL_RESULT)}: {both(overall)}"))
