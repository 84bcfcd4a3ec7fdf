"""Alert intake routes on the operations API, and the detection pieces that API carries.

``POST /api/detection/alerts/alertmanager`` takes Alertmanager's webhook as it is;
``POST /api/detection/alerts/webhook`` takes the generic JSON documented on
:class:`haltguard.detection.intake.GenericWebhook`. Both need
``Authorization: Bearer <intake token>``: monitors are machines, not operators, so they get
tokens of their own (``HALTGUARD_INTAKE_TOKENS``, comma-separated, one per monitor so each
can be rotated alone) instead of an operator's API token. In Alertmanager::

    receivers:
      - name: haltguard
        webhook_configs:
          - url: https://ops.example.com/api/detection/alerts/alertmanager
            http_config:
              authorization: {type: Bearer, credentials_file: /etc/alertmanager/haltguard}
            send_resolved: true

Each new alert state becomes one signal handed to the detection service. If the service
cannot take a signal the answer is ``503`` and every alert not yet handed over is forgotten,
so Alertmanager's retry delivers exactly those.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from pydantic import BaseModel

from haltguard.common.network import IPNetwork
from haltguard.detection.intake import (
    TOKENS_ENV,
    AlertIntake,
    AlertmanagerPayload,
    GenericWebhook,
    IntakeOutcome,
    IntakeSettings,
)
from haltguard.detection.metrics import DetectionMetrics
from haltguard.detection.monitors import SignalOutbox, SignalSink
from haltguard.detection.security_detectors import (
    OperatorNetworkDetector,
    OperatorNetworkMiddleware,
)
from haltguard.web.context import context
from haltguard.web.errors import ERROR_RESPONSES, ApiError


class IntakeError(ApiError):
    """An intake refusal, rendered by the one error handler (``code`` and ``message``)."""


class IntakeResult(BaseModel):
    received: int
    signals: int
    duplicates: int
    decisions: int


@dataclass(frozen=True)
class IntakeParts:
    """The alert intake's part of the operations context: its tokens and mapping, the intake
    that remembers alerts already seen, and where signals go."""

    settings: IntakeSettings
    intake: AlertIntake
    sink: SignalSink


def intake_parts(settings: IntakeSettings | None, sink: SignalSink) -> IntakeParts:
    """The intake for ``settings`` (none: the intake refuses every alert)."""
    chosen = settings if settings is not None else IntakeSettings()
    return IntakeParts(settings=chosen, intake=AlertIntake(chosen.mapping), sink=sink)


def parts_of(request: Request) -> IntakeParts:
    return context(request).part(IntakeParts)


def settings_of(request: Request) -> IntakeSettings:
    return parts_of(request).settings


def intake_of(request: Request) -> AlertIntake:
    return parts_of(request).intake


def sink_of(request: Request) -> SignalSink:
    return parts_of(request).sink


def require_intake_token(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    tokens = settings_of(request).tokens
    if not tokens:
        raise IntakeError(
            403, "intake_disabled",
            f"alert intake is disabled: no intake token is configured; set {TOKENS_ENV} and "
            "give the monitor that token",
        )
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise IntakeError(
            401, "not_authenticated",
            "alert intake needs the header 'Authorization: Bearer <intake token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented.encode(), token.encode())
    if not matched:
        raise IntakeError(403, "forbidden",
                          f"the intake token is not valid; use one listed in {TOKENS_ENV}")


router = APIRouter(
    prefix="/api/detection/alerts", tags=["detection"],
    dependencies=[Depends(require_intake_token)], responses=ERROR_RESPONSES,
)


@router.post("/alertmanager", summary="Receive a Prometheus Alertmanager webhook")
def receive_alertmanager(payload: AlertmanagerPayload, request: Request) -> IntakeResult:
    """Alertmanager's ``webhook_config`` payload, version 4, firing or resolved, grouped.
    Repeats of an alert already seen in the same state (same fingerprint and start) are
    counted and dropped."""
    intake = intake_of(request)
    return _deliver(request, intake, intake.alertmanager(payload), "alertmanager")


@router.post("/webhook", summary="Receive an alert from any other monitor")
def receive_webhook(payload: GenericWebhook, request: Request) -> IntakeResult:
    intake = intake_of(request)
    return _deliver(request, intake, intake.webhook(payload), "webhook")


def _deliver(request: Request, intake: AlertIntake, outcome: IntakeOutcome,
             source: str) -> IntakeResult:
    metrics = context(request).part(DetectionMetrics)
    sink = sink_of(request)
    decisions = 0
    for index, signal in enumerate(outcome.signals):
        try:
            result = sink(signal)
        except Exception as exc:
            for undelivered in outcome.signals[index:]:
                intake.forget(undelivered)
            raise IntakeError(
                503, "detection_unavailable",
                f"the detection service did not take the alerts ({exc}); "
                f"{len(outcome.signals) - index} were not accepted, send them again",
                headers={"Retry-After": "5"},
            ) from None
        decisions += len(result) if isinstance(result, list) else 0
        metrics.count_signal(signal)
        metrics.alerts.labels(source, "resolved" if signal.resolved else "firing").inc()
    if outcome.duplicates:
        metrics.alerts_duplicate.labels(source).inc(outcome.duplicates)
    return IntakeResult(received=outcome.received, signals=len(outcome.signals),
                        duplicates=outcome.duplicates, decisions=decisions)


def watch_operator_networks(
    app: FastAPI, operator_networks: tuple[IPNetwork, ...], sink: SignalSink
) -> None:
    """When ``operator_networks`` (the detection allow-list) names any, watch where
    operators act from: a request from elsewhere becomes a signal handed to ``sink``."""
    if operator_networks:
        app.add_middleware(OperatorNetworkMiddleware,
                           detector=OperatorNetworkDetector(operator_networks),
                           outbox=SignalOutbox(sink))
