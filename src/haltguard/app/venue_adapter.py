"""The venue reached through an adapter file (``venue.adapter_file``), and what the
adapter reports turned into detection signals.

The system fills the file's ``base_url`` and ``admin_token`` variables (those it declares)
with the venue's address and admin token; a venue the adapter cannot reach raises
``venue.adapter_unreachable`` and a brake the venue does not show raises
``venue.brake_unconfirmed``, which the shipped rules turn into incidents: the operators hear
of it rather than a brake being assumed.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Final

from haltguard.adapters.control import AdapterReport, AdapterVenueControl
from haltguard.adapters.errors import AdapterConfigError
from haltguard.adapters.spec import load_adapter
from haltguard.app.config import ConfigError, ServeConfig
from haltguard.detection.monitors import deliver, service_sink
from haltguard.detection.signals import Signal

ADAPTER_UNREACHABLE_SIGNAL: Final = "venue.adapter_unreachable"
BRAKE_UNCONFIRMED_SIGNAL: Final = "venue.brake_unconfirmed"

_SIGNALS: Final = {
    "unreachable": (ADAPTER_UNREACHABLE_SIGNAL, False),
    "reachable": (ADAPTER_UNREACHABLE_SIGNAL, True),
    "brake_unconfirmed": (BRAKE_UNCONFIRMED_SIGNAL, False),
    "brake_abandoned": (BRAKE_UNCONFIRMED_SIGNAL, False),
    "brake_confirmed": (BRAKE_UNCONFIRMED_SIGNAL, True),
}


def check_adapter_file(config: ServeConfig, *, replicated: bool) -> None:
    """Before anything starts: the adapter file loads, and the venue will be at an address
    the adapter can call; :class:`ConfigError` saying what to change otherwise."""
    origin = config.origins.get("venue.adapter_file", "the configuration")
    if not (config.venue_url or config.venue_process):
        raise ConfigError(
            f"venue.adapter_file (from {origin}) needs the venue at an address: set "
            f"venue.process = true or venue.url (venue.process is false, from "
            f"{config.origins.get('venue.process', 'the configuration')})")
    if replicated and not config.venue_url:
        raise ConfigError(
            f"venue.adapter_file (from {origin}) cannot reach a replicated venue (primary and "
            "standby behind one transport); leave out one of venue.adapter_file and "
            "continuity.replication")
    assert config.venue_adapter_file is not None
    try:
        load_adapter(config.venue_adapter_file)
    except AdapterConfigError as exc:
        raise ConfigError(f"venue.adapter_file (from {origin}): {exc.message}") from exc


def open_adapter(path: Path, base_url: str, admin_token: str) -> AdapterVenueControl:
    """The adapter of ``path`` pointed at ``base_url``; :class:`ConfigError` naming the
    file's line if the file is wrong."""
    try:
        declared = load_adapter(path).variables
        spec = load_adapter(path, {name: value for name, value in
                                   (("base_url", base_url), ("admin_token", admin_token))
                                   if name in declared})
    except AdapterConfigError as exc:
        raise ConfigError(f"venue.adapter_file: {exc.message}") from exc
    return AdapterVenueControl(spec, on_report=report_to_detection)


def adapter_signal(report: AdapterReport) -> Signal:
    name, resolved = _SIGNALS.get(report.kind, (ADAPTER_UNREACHABLE_SIGNAL, False))
    labels = {"component": "venue"}
    if report.market:
        labels["market"] = report.market
    return Signal(source="venue_adapter", name=name, value=Decimal(0 if resolved else 1),
                  ts_ns=time.time_ns(), labels=labels, resolved=resolved,
                  details={"report": report.kind, "operation": report.operation,
                           "detail": report.detail})


def report_to_detection(report: AdapterReport) -> None:
    deliver(service_sink, adapter_signal(report))
