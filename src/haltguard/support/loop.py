"""What ``serve`` runs for the support desk in the background: the inbound mail receiver
(when ``support.smtp_port`` is set) and one loop that answers an incident's tickets in bulk
when a public update is published (``support.bulk_reply_on_update``), sends queued replies
and alerts SLA breaches (each ticket's timer once: a warning in the log and an entry in the
audit chain; ``POST /api/support/sla/alerts`` lists them for agents)."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock
from haltguard.db.session import session_scope
from haltguard.notify.settings import NotifySettings
from haltguard.status.settings import StatusSettings
from haltguard.support import flows, service
from haltguard.support.mail import MailIntake
from haltguard.support.settings import SupportSettings

log = logging.getLogger(__name__)

INTERVAL_S_DEFAULT = 5.0
SEND_ROUNDS_MAX = 50
"""Batches of mail one tick sends before it checks the timers again."""


class SupportLoop:
    """The mail receiver and the send-and-alert thread; ``start`` and ``stop`` by ``serve``."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Clock,
                 settings: SupportSettings, notify_settings: NotifySettings, *,
                 send_mail: bool, status_settings: StatusSettings | None = None,
                 interval_s: float = INTERVAL_S_DEFAULT) -> None:
        self._factory = session_factory
        self._clock = clock
        self._settings = settings
        self._notify = notify_settings
        self._send_mail = send_mail
        self._status = status_settings or StatusSettings()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="support-loop", daemon=True)
        self._candidates = service.IncidentCandidates()
        self.intake: MailIntake | None = None
        if settings.smtp_port:
            self.intake = MailIntake(self._accept_mail, host=settings.smtp_host,
                                     port=settings.smtp_port,
                                     bytes_max=settings.email_bytes_max)

    def _accept_mail(self, raw: bytes) -> str:
        with session_scope(self._factory) as session:
            ticket, _ = flows.ticket_from_mail(session, raw, settings=self._settings,
                                               now=self._clock.now(),
                                               candidates=self._candidates)
            return ticket.ref

    def start(self) -> SupportLoop:
        if self.intake is not None:
            self.intake.start()
        self._thread.start()
        return self

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        if self.intake is not None:
            self.intake.stop()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def tick(self) -> None:
        """One round: answer new public updates in bulk, alert new SLA breaches, then send
        queued mail."""
        now = self._clock.now()
        if self._settings.bulk_reply_on_update:
            with session_scope(self._factory) as session:
                for answer in flows.answer_new_updates(session, settings=self._settings,
                                                       status_settings=self._status, now=now):
                    log.info("support bulk reply: INC-%d update %d, %d tickets, %d mails",
                             answer.incident_id, answer.update_entry_id,
                             answer.tickets_answered, answer.mails_queued)
        with session_scope(self._factory) as session:
            for breach in service.alert_breaches(session, now=now):
                log.warning("support SLA breached: %s %s (due %s)", breach.ref, breach.timer,
                            breach.due_at.isoformat())
                service.audit_change(session, actor="system:support", action="support.sla_breach",
                                     target=breach.ref, details={"timer": breach.timer},
                                     now=now)
        if not self._send_mail:
            return
        for _ in range(SEND_ROUNDS_MAX):
            with session_scope(self._factory) as session:
                counts = flows.send_queued(session, notify_settings=self._notify, now=now)
            if not counts.left or not counts.sent:
                return

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.tick()
            except Exception:
                log.exception("support loop tick failed; retrying next tick")
