"""Group commit for questions arriving in a burst: one writer thread, one transaction per
batch.

During an outage thousands of customers ask at once. Each question written in its own
transaction costs a commit and a round through the connection pool; here the public routes
hand their question to :class:`TicketWriter`, whose one thread takes everything queued (up
to ``BATCH_MAX``), links it against the open incidents read once, writes it in one
transaction and answers every caller. Bounded: at most ``QUEUE_MAX`` questions wait; one
more is refused with 503 and ``Retry-After`` (the form tells the customer to try again).
If a batch fails as a whole (a redelivered email racing its first delivery), each question
of it is written again on its own, so one bad question never loses the others.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock
from haltguard.common.errors import ErrorKind
from haltguard.db.session import session_scope
from haltguard.support import service
from haltguard.support.errors import SupportError
from haltguard.support.settings import SupportSettings

log = logging.getLogger(__name__)

QUEUE_MAX = 5_000
BATCH_MAX = 500
RETRY_AFTER_S = 2


@dataclass(frozen=True)
class Written:
    """What the caller tells the customer."""

    ref: str
    incident_id: int | None
    created: bool


class IntakeFullError(SupportError):
    kind = ErrorKind.UNAVAILABLE
    code = "support_intake_full"


class TicketWriter:
    """The one writer of new tickets from the public routes; ``start``/``stop`` by its owner
    (the app's lifespan, or the first submission)."""

    def __init__(self, session_factory: sessionmaker[Session], settings: SupportSettings,
                 clock: Clock) -> None:
        self._factory = session_factory
        self._settings = settings
        self._clock = clock
        self._queue: queue.Queue[tuple[service.NewTicket, Future[Written]] | None] = \
            queue.Queue(QUEUE_MAX)
        self._candidates = service.IncidentCandidates()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, new: service.NewTicket) -> Future[Written]:
        """Queue ``new``; the future holds its ticket once the batch is committed."""
        self._ensure_started()
        future: Future[Written] = Future()
        try:
            self._queue.put_nowait((new, future))
        except queue.Full:
            raise IntakeFullError(
                f"{QUEUE_MAX} questions are waiting to be written; try again shortly",
                message_ja="ただいまお問い合わせが集中しています。少し時間をおいて再送してください",
                next_step=f"send it again in {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        return future

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="support-intake",
                                                daemon=True)
                self._thread.start()

    def stop(self, timeout_s: float) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._write(batch)
                    return
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[tuple[service.NewTicket, Future[Written]]]) -> None:
        try:
            results = self._write_together([new for new, _ in batch])
        except (SQLAlchemyError, SupportError):
            log.warning("a batch of %d questions failed; writing each on its own", len(batch))
            for new, future in batch:
                try:
                    future.set_result(self._write_together([new])[0])
                except Exception as exc:
                    future.set_exception(exc)
            return
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), written in zip(batch, results, strict=True):
            future.set_result(written)

    def _write_together(self, items: list[service.NewTicket]) -> list[Written]:
        now = self._clock.now()
        written = []
        with session_scope(self._factory) as session:
            candidates = self._candidates.get(session, now)
            for new in items:
                ticket, created = service.create_ticket(session, new, settings=self._settings,
                                                        now=now, candidates=candidates)
                written.append(Written(ticket.ref, ticket.incident_id, created))
        return written
