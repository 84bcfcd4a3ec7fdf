"""``haltguard venue standby``: a venue node on the replicated journal (NATS JetStream).

It follows the journal stream as a hot standby (its lag on ``/metrics``) and takes over as
primary on the same port when the primary's lease runs out; see ``docs/replication.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from haltguard.app.venue_process import (
    VenueProcessSettings,
    VenueStartError,
    lock_data_dir,
    run_venue,
)
from haltguard.gateway.runtime import BatchReplicator
from haltguard.replication.errors import ReplicationError
from haltguard.replication.flows import NodePlace, ReplicatedNode
from haltguard.replication.models import (
    MarketsAfterFailover,
    Replication,
    ReplicationSettings,
)


def standby_command(
    *,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="This node's own journal and "
                                           "snapshots (never another node's).")] = Path(
        "data/standby"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65_535, help="TCP port: /metrics while "
                                      "standby, the venue API once primary.")] = 8002,
    token: Annotated[
        str, typer.Option("--token", envvar="HALTGUARD_VENUE_TOKEN", show_default=False,
                          help="The venue's admin token once it serves. Prefer "
                               "HALTGUARD_VENUE_TOKEN to the flag (seen in `ps`).")
    ] = "",
    nats_url: Annotated[str, typer.Option("--nats-url",
                                          help="The NATS server(s) with JetStream, "
                                               "comma-separated.")] = "nats://127.0.0.1:4222",
    stream: Annotated[str, typer.Option(help="The journal stream's name.")] = (
        "HALTGUARD_JOURNAL"),
    replicas: Annotated[int, typer.Option(min=1, max=5, help="The stream's replicas (1 for "
                                          "one NATS node, 3 in a cluster).")] = 1,
    lease_ttl_ms: Annotated[int, typer.Option(min=200, max=60_000, help="The primary's "
                                              "lease; a standby takes over after it.")] = 1_500,
    markets_after_failover: Annotated[
        MarketsAfterFailover, typer.Option(help="as_journal: markets as the journal says; "
                                           "halt_all: halt every trading market.")
    ] = MarketsAfterFailover.AS_JOURNAL,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Commands between snapshots.")
                                ] = 100_000,
    channel_port: Annotated[int, typer.Option("--channel-port", min=0, max=65_535,
                                              help="The request channel once primary; "
                                                   "0: off.")] = 0,
    stop_with_parent: Annotated[bool, typer.Option("--stop-with-parent",
                                                   help="Stop once the process that started "
                                                        "this one is gone.")] = False,
    allow_fault_injection: Annotated[bool, typer.Option("--allow-fault-injection",
                                                        help="Accept drill faults.")] = False,
    demo: Annotated[bool, typer.Option("--demo", help="Once primary: the demo markets and "
                                       "accounts (listed once) and synthetic orders.")] = False,
    demo_rate: Annotated[float, typer.Option(min=0.1, max=10_000,
                                             help="Demo orders per second.")] = 20.0,
) -> None:
    """Follow the replicated journal as a hot standby; take over when the primary's lease
    runs out. Start two or more on different data directories and ports."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    errors = Console(stderr=True)
    try:
        replication = ReplicationSettings(
            replication=Replication.JETSTREAM, nats_url=nats_url, replicas=replicas,
            lease_ttl_ms=lease_ttl_ms, stream=stream,
            markets_after_failover=markets_after_failover, snapshot_every=checkpoint_every)
    except ValueError as exc:
        errors.print(f"[red]Error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    venue = VenueProcessSettings(
        data_dir=data_dir, host=host, port=port, admin_token=token,
        checkpoint_every=checkpoint_every, channel_port=channel_port,
        stop_with_parent=stop_with_parent, allow_fault_injection=allow_fault_injection,
        demo=demo, demo_rate_per_s=demo_rate)
    def serve_primary(replicator: BatchReplicator, stop_when: threading.Event,
                      halt_reason: str) -> int:
        return run_venue(dataclasses.replace(venue, halt_reason=halt_reason),
                         replicator=replicator, stop_when=stop_when)

    try:
        ReplicatedNode(NodePlace(data_dir, host, port), replication, nats_url,
                       serve_primary=serve_primary, lock_data_dir=lock_data_dir).run()
    except (ReplicationError, VenueStartError) as exc:
        errors.print(f"[red]Error:[/red] {exc}", soft_wrap=True)
        step = getattr(exc, "next_step", None) or "fix what the message names and start again"
        errors.print(f"Next: {step}", soft_wrap=True)
        raise typer.Exit(1) from exc


def main() -> None:
    """``python -m haltguard.cli.venue_standby [options]``: the command without loading every
    other command of the CLI (how ``serve`` and the tests start a node)."""
    command = typer.Typer(add_completion=False)
    command.command("standby")(standby_command)
    command(sys.argv[1:], prog_name="haltguard venue standby")


if __name__ == "__main__":
    main()
