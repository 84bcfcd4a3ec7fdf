"""Errors of the adapters domain, one base of :class:`~haltguard.common.errors.HaltguardError`.

A bad adapter file is refused as a whole at load, naming the file, the line and the key; a
venue that cannot be reached or does not confirm a brake raises a
:class:`~haltguard.venue.control.VenueControlError` subclass, since callers of the venue
contract already handle that one.
"""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError
from haltguard.venue.control import VenueControlError


class AdapterError(HaltguardError):
    """An adapter that cannot be used as configured."""

    kind = ErrorKind.INVALID
    code = "adapter_invalid"


class AdapterConfigError(AdapterError):
    """The adapter file is wrong; ``where`` is ``file:line (key)``."""

    def __init__(self, where: str, problem: str, problem_ja: str) -> None:
        super().__init__(
            f"{where}: {problem}",
            next_step="correct the adapter file and load it again; nothing was started",
            message_ja=f"{where}: {problem_ja}(アダプタ定義を修正して再読み込みしてください)",
        )
        self.where = where
        self.problem = problem


class AdapterUnreachableError(AdapterError):
    """The venue named by the adapter does not answer at start."""

    kind = ErrorKind.UNAVAILABLE
    code = "adapter_unreachable"


class BrakeUnconfirmedError(VenueControlError):
    """A brake was sent but the venue did not show it in time: it is *not* assumed applied.

    The adapter keeps retrying it (same idempotency key) and reports the outcome."""
