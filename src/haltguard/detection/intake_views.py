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
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from haltguard.detection.intake import (
    TOKENS_ENV,
    AlertIntake,
    AlertmanagerPayload,
    GenericWebhook,
    IntakeOutcome,
    IntakeSettings,
)
from haltguard.detection.metrics import DetectionMetrics, install_operations_metrics
from haltguard.detection.monitors import SignalOutbox, SignalSink, service_sink
from haltguard.detection.security_detectors import (
    OperatorNetworkDetector,
    OperatorNetworkMiddleware,
    operator_networks_from_env,
)
from haltguard.web.errors import ERROR_RESPONSES


class IntakeError(HTTPException):
    """An intake refusal in the service's error shape (``code`` and ``message``)."""

    def __init__(self, status_code: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code, message, headers)
        self.code = code
        self.message = message


class IntakeResult(BaseModel):
    received: int
    signals: int
    duplicates: int
    decisions: int


def settings_of(request: Request) -> IntakeSettings:
    settings = getattr(request.app.state, "intake_settings", None)
    if settings is None:
        settings = request.app.state.intake_settings = IntakeSettings.from_env()
    assert isinstance(settings, IntakeSettings)
    return settings


def intake_of(request: Request) -> AlertIntake:
    intake = getattr(request.app.state, "alert_intake", None)
    if intake is None:
        intake = request.app.state.alert_intake = AlertIntake(settings_of(request).mapping)
    assert isinstance(intake, AlertIntake)
    return intake


def sink_of(request: Request) -> SignalSink:
    sink: SignalSink = getattr(request.app.state, "signal_sink", None) or service_sink
    return sink


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
    metrics: DetectionMetrics | None = getattr(request.app.state, "detection_metrics", None)
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
        if metrics is not None:
            metrics.count_signal(signal)
            metrics.alerts.labels(source, "resolved" if signal.resolved else "firing").inc()
    if metrics is not None and outcome.duplicates:
        metrics.alerts_duplicate.labels(source).inc(outcome.duplicates)
    return IntakeResult(received=outcome.received, signals=len(outcome.signals),
                        duplicates=outcome.duplicates, decisions=decisions)


def install_operations_detection(app: FastAPI, *, sink: SignalSink = service_sink) -> None:
    """Give the operations API the alert intake routes, ``/metrics``, and (when an operator
    allow-list is configured, see :func:`operator_networks_from_env`) the watch on where
    operators act from. Reads its settings now, so a bad one stops the service at start."""
    app.state.intake_settings = IntakeSettings.from_env()
    networks = operator_networks_from_env()
    if networks:
        app.add_middleware(OperatorNetworkMiddleware,
                           detector=OperatorNetworkDetector(networks),
                           outbox=SignalOutbox(sink))
    install_operations_metrics(app)
    app.include_router(router)
