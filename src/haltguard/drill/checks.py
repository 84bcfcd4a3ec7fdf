"""What every drill checks, the same way in every scenario: the ledger's invariants and
the acknowledged orders judged on a copy of the venue's journal, and the :class:`Check`
builders for the public update, the pages, the timeline and the reports.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from haltguard.drill.load import HTTP_TIMEOUT_S, AcknowledgedOrder, VenueClient
from haltguard.drill.scenario import Check, DrillResult
from haltguard.drill.surface import DrillSurface
from haltguard.drill.waiting import DrillError, wait_for
from haltguard.journal import JournalReader
from haltguard.journal.segments import COMMIT_MARK_NAME, segments_dir
from haltguard.journal.snapshots import snapshots_dir
from haltguard.journal.verify import verify
from haltguard.venue.commands import PlaceOrder

VENUE_FILES = ("quarantine.json",)  # files beside the journal that recovery reads


# --- the ledger and the acknowledged orders -------------------------------------------------

@dataclass(frozen=True)
class LedgerCheck:
    ok: bool
    detail: str
    last_seq: int
    state_hash: str


@dataclass(frozen=True)
class LostOrders:
    lost: list[AcknowledgedOrder]
    checked: int
    journal_last_seq: int
    venue_last_seq: int

    @property
    def count(self) -> int:
        return len(self.lost)


@contextmanager
def journal_copy(data_dir: Path) -> Iterator[Path]:
    """A copy of the venue's journal, snapshots and quarantine list, so checks never touch
    the live files. The commit mark is copied before the segments, so the copy holds at
    least every record the mark promises even while the venue keeps writing."""
    with tempfile.TemporaryDirectory(prefix="haltguard-drill-") as temp:
        copy = Path(temp) / "venue"
        copy.mkdir()
        for name in VENUE_FILES:
            if (data_dir / name).is_file():
                shutil.copy2(data_dir / name, copy / name)
        live_segments, copied_segments = segments_dir(data_dir), segments_dir(copy)
        copied_segments.mkdir()
        mark = live_segments / COMMIT_MARK_NAME
        if mark.exists():
            shutil.copy2(mark, copied_segments / COMMIT_MARK_NAME)
        for path in sorted(live_segments.glob("*")):
            if path.is_file() and path.name != COMMIT_MARK_NAME:
                shutil.copy2(path, copied_segments / path.name)
        if snapshots_dir(data_dir).is_dir():
            shutil.copytree(snapshots_dir(data_dir), snapshots_dir(copy))
        yield copy


def venue_data_dir(system: DrillSurface) -> Path:
    """Where the venue's journal lives (the supervised child uses the system's data dir)."""
    if system.remote_venue_url:
        raise DrillError(
            f"the venue runs elsewhere ({system.remote_venue_url}); the drill can only check "
            "a journal it can read: run the drill on the venue's host"
        )
    return system.data_dir


def ledger_check(system: DrillSurface) -> LedgerCheck:
    """Recover a copy of the journal (snapshot + replay) and check the venue's invariants:
    funds conserved, no negative balance, books not crossed, holds matching orders."""
    with journal_copy(venue_data_dir(system)) as copy:
        report = verify(copy)
    detail = ("invariants hold" if report.ok else "; ".join(report.problems[:5]))
    detail += f" (replayed to seq {report.last_seq}, {report.records_replayed} records)"
    return LedgerCheck(report.ok, detail, report.last_seq, report.state_hash)


def lost_orders(system: DrillSurface, acknowledged: Sequence[AcknowledgedOrder]) -> LostOrders:
    """Every acknowledged order checked against a copy of the journal: the record at its
    seq must be that very order (same client order id, account and market). The live
    venue must also have come back at or past the highest acknowledged seq."""
    with VenueClient.for_system(system) as client:
        venue_seq = wait_for(client.last_seq, HTTP_TIMEOUT_S, "the venue's last seq")
    wanted: dict[int, list[AcknowledgedOrder]] = {}
    for order in acknowledged:
        wanted.setdefault(order.seq, []).append(order)
    found: set[AcknowledgedOrder] = set()
    last_seq = 0
    with journal_copy(venue_data_dir(system)) as copy:
        reader = JournalReader(copy)
        try:
            while True:
                entries = reader.read_available()
                if not entries:
                    break
                for sequenced, _events in entries:
                    last_seq = sequenced.seq
                    command = sequenced.command
                    if type(command) is not PlaceOrder:
                        continue
                    found.update(
                        order for order in wanted.get(sequenced.seq, ())
                        if command.client_order_id == order.client_order_id
                        and command.account == order.account and command.market == order.market
                    )
        finally:
            reader.close()
    lost = [order for order in acknowledged if order not in found or order.seq > venue_seq]
    return LostOrders(lost, len(acknowledged), last_seq, venue_seq)


# --- checks every scenario makes --------------------------------------------------------


def public_update_check(ja: str, en: str) -> Check:
    ok = bool(ja.strip()) and bool(en.strip()) and ja != en
    return Check(
        "public update in Japanese and English", ok,
        "a published update with both texts", f"ja {len(ja)} chars, en {len(en)} chars",
        name_ja="日英の公開情報", expected_ja="日本語と英語の両方の本文を掲載",
        seen_ja=f"日本語 {len(ja)} 文字、英語 {len(en)} 文字")


def paged_check(pages: int) -> Check:
    return Check("on-call paged", pages >= 1, "at least one page in the timeline", str(pages),
                 name_ja="当番への呼び出し", expected_ja="1 件以上", seen_ja=str(pages))


def note_played_support(result: DrillResult, played: list[str]) -> None:
    """Carry the toolkit's note that the drill published the first update, in both
    languages."""
    for line in played:
        result.note("自動の公開告知がなかったため、訓練がサポート担当として日英の定型文を公開"
                    "しました。", line)


def timeline_check(kinds: tuple[str, ...], wanted: tuple[str, ...]) -> Check:
    missing = [kind for kind in wanted if kind not in kinds]
    return Check(
        "incident timeline complete", not missing, f"entries {', '.join(wanted)}",
        f"missing {', '.join(missing)}" if missing else f"{len(kinds)} kinds: {', '.join(kinds)}",
        name_ja="インシデントの時系列記録", expected_ja=f"{', '.join(wanted)} の記録",
        seen_ja=f"不足: {', '.join(missing)}" if missing else f"{len(kinds)} 種類の記録")


def reports_check(paths: Sequence[Path]) -> Check:
    names = sorted(path.name for path in paths)
    ok = len(paths) == 4
    return Check(
        "postmortem and regulatory report written", ok,
        "postmortem and regulatory report, Markdown and HTML", ", ".join(names) or "none",
        name_ja="事後報告書とシステム障害報告書", expected_ja="両報告書を Markdown と HTML で作成",
        seen_ja=", ".join(names) or "なし")


def unfinished(exc: DrillError) -> Check:
    """The drill could not finish the incident: a failed check saying why, so the figures
    measured so far stay in the report."""
    return Check("incident handled end to end", False, "every step of the response done",
                 str(exc), name_ja="インシデント対応の完了", expected_ja="全手順の完了",
                 seen_ja=str(exc))
