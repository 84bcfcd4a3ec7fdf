"""``disk-loss``: the disk holding a venue's data directory is lost (manual 1.1, ハードウェア
障害); the venue is rebuilt from the newest backup.

What the drill does, on a venue of its own (never the system's live data directory, which a
drill must not destroy): it starts a venue on a scratch data directory, trades a workload and
takes an encrypted backup to a scratch target, as ``haltguard backup create`` does, then goes
on trading (the work a real disk loss would take with it), stops the venue, deletes its data
directory, restores the newest backup (``haltguard backup restore``) and starts the venue on
it.

What it measures and checks: the recovery time (from the deletion to a venue answering on the
restored directory, against the recovery-time target); that the restored venue is exactly the
journal at the backup's seq (same state hash as the lost journal replayed to that seq, so no
order the backup holds was lost) and keeps the ledger's invariants; and what was lost, which
is the real RPO: the commands after the backup and their span of journal time, against
``rpo_target_s``. The restore is recorded (``backup_restores``, kind ``drill``), which is the
evidence the continuity plan's check reads.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from haltguard.backup import archive, flows
from haltguard.backup import service as backups
from haltguard.backup.models import RestoreKind
from haltguard.backup.settings import AGE_ALERT_S_DEFAULT, BackupSettings, BackupSources
from haltguard.common.clock import utc_now
from haltguard.drill.scenario import Check, DrillContext, DrillResult, Measurements
from haltguard.drill.surface import database
from haltguard.gateway.runtime import VenueRuntime
from haltguard.journal import recover
from haltguard.venue.commands import Command
from haltguard.venue.workload import order_flow, setup_commands

ACCOUNTS = 50
LOST_SHARE = 4
SUBMIT_BATCH_MAX = 200
"""After the backup the drill trades a quarter as many orders again: the work lost."""


class DiskLoss:
    name = "disk-loss"
    title_en = "Disk loss: the venue's data directory deleted, restored from backup"
    title_ja = "ディスク障害: 取引所データの消失とバックアップからの復元"

    def __init__(self, rpo_target_s: float = AGE_ALERT_S_DEFAULT) -> None:
        self.rpo_target_s = rpo_target_s
        """The most journal time a restore may lose (the plan's RPO)."""

    def run(self, context: DrillContext) -> DrillResult:
        progress, scale = context.progress, context.scale
        result = DrillResult(scenario=self.name, incident_id=None, measurements=Measurements(),
                             checks=[])
        result.note(
            "システムの稼働中データは消去せず、訓練専用の取引所(一時ディレクトリ)で実施した。",
            "Run on a venue of the drill's own (a scratch directory): the system's live data "
            "directory is never deleted.",
        )
        with tempfile.TemporaryDirectory(prefix=".drill-disk-loss-",
                                         dir=_scratch_parent(context)) as scratch_name:
            scratch = Path(scratch_name)
            self._run(context, result, scratch, scale.orders)
        progress(f"disk-loss: recovery {result.measurements.recovery_time_s or 0:.2f} s, "
                 f"lost {result.measurements.extra.get('commands lost after the backup')} "
                 "command(s) after the backup")
        return result

    def _run(self, context: DrillContext, result: DrillResult, scratch: Path,
             orders: int) -> None:
        progress, m = context.progress, result.measurements
        data_dir, key_file = scratch / "venue", scratch / "backup.key"
        archive.generate_key_file(key_file)
        settings = BackupSettings(target_url=(scratch / "backups").as_uri(), key_file=key_file)
        commands = setup_commands(accounts=ACCOUNTS)
        flow = order_flow(11, orders + orders // LOST_SHARE, first_seq=len(commands) + 1,
                          accounts=ACCOUNTS)
        runtime = VenueRuntime(data_dir).start()
        try:
            progress(f"disk-loss: trading {orders} orders on a scratch venue")
            _submit(runtime, commands + [next(flow) for _ in range(orders)])
            progress("disk-loss: taking the backup (encrypted, compressed)")
            manifest = flows.create_backup(settings, BackupSources(data_dir), now=utc_now())
            progress("disk-loss: trading on after the backup (this work is lost with the disk)")
            _submit(runtime, list(flow))
        finally:
            runtime.stop()
        assert manifest.venue is not None
        lost_end, _ = recover(data_dir, repair=False)
        expected, _ = recover(data_dir, repair=False, through_seq=manifest.venue.last_seq)
        progress(f"disk-loss: deleting {data_dir} (the lost disk)")
        deleted_at = time.perf_counter()
        shutil.rmtree(data_dir)
        outcome = flows.restore_backup(settings, None, data_dir)
        restored = VenueRuntime(data_dir).start()
        try:
            status = restored.status()
            m.recovery_time_s = time.perf_counter() - deleted_at
            invariants = restored.read(lambda venue: venue.check_invariants())
            restored_hash = restored.read(lambda venue: venue.state_hash())
        finally:
            restored.stop()
        commands_lost = lost_end.last_seq - status.last_seq
        data_lost_s = max(0, lost_end.last_ts - outcome.venue_ts_ns) / 1e9
        same = restored_hash == expected.state_hash() and status.last_seq == expected.last_seq
        m.ledger_invariant_ok = not invariants
        m.acknowledged_orders_lost = 0 if same else status.last_seq
        m.extra.update({
            "backup": manifest.backup_id,
            "backup seq": str(manifest.venue.last_seq),
            "restore (s)": f"{outcome.restore_s:.3f}",
            "commands lost after the backup": str(commands_lost),
            "data lost (s of journal time)": f"{data_lost_s:.3f}",
            "RPO target (s)": f"{self.rpo_target_s:g}",
        })
        result.checks += [
            Check("restored venue equals the journal at the backup's seq", same,
                  f"state hash of the lost journal replayed to seq {manifest.venue.last_seq}",
                  f"seq {status.last_seq}, hash {restored_hash[:16]}... "
                  f"({'same' if same else 'DIFFERENT'})",
                  name_ja="復元した取引所がバックアップ時点のジャーナルと一致",
                  expected_ja=f"seq {manifest.venue.last_seq} まで再生した状態ハッシュ",
                  seen_ja=f"seq {status.last_seq}({'一致' if same else '不一致'})"),
            Check("ledger invariants after the restore", not invariants, "none broken",
                  "; ".join(invariants[:3]) or "none broken",
                  name_ja="復元後の台帳の整合性", expected_ja="違反なし",
                  seen_ja="; ".join(invariants[:3]) or "違反なし"),
            Check("data lost within the RPO", data_lost_s <= self.rpo_target_s,
                  f"at most {self.rpo_target_s:g} s of journal time",
                  f"{data_lost_s:.3f} s ({commands_lost} commands after the backup)",
                  name_ja="消失データが RPO 以内", expected_ja=f"{self.rpo_target_s:g} 秒以内",
                  seen_ja=f"{data_lost_s:.3f} 秒({commands_lost} 件)"),
        ]
        with database(context.system) as session:
            backups.record_restore(
                session, outcome, kind=RestoreKind.DRILL, finished_at=utc_now(),
                ok=all(check.passed for check in result.checks)
                and m.recovery_time_s <= context.targets.recovery_time_s,
                commands_lost=commands_lost, data_lost_s=data_lost_s,
                detail={"recovery_time_s": m.recovery_time_s},
            )


def _scratch_parent(context: DrillContext) -> Path | None:
    """Beside the system's data (same kind of disk) when it is here, else the temp dir."""
    data_dir = context.system.data_dir
    return data_dir if data_dir.is_dir() else None


def _submit(runtime: VenueRuntime, commands: list[Command]) -> None:
    """Submit ``commands`` in bounded batches (the runtime's queue is bounded) and wait for
    each to be acknowledged (journaled and applied)."""
    for start in range(0, len(commands), SUBMIT_BATCH_MAX):
        for future in [runtime.submit(command)
                       for command in commands[start:start + SUBMIT_BATCH_MAX]]:
            future.result()


SCENARIO = DiskLoss()
