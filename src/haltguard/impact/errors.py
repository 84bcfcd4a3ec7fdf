"""Errors the impact domain answers with: :class:`ImpactError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`; each has a stable code, a kind the web layer
maps to the HTTP status, and a message (English and Japanese) that says what to do next."""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class ImpactError(HaltguardError):
    kind = ErrorKind.INVALID
    code = "impact_invalid"


class InvalidWindowError(ImpactError):
    """A window or point in time asked for in a way that cannot be answered (both a seq and a
    time, neither, an end before its start)."""

    code = "impact_invalid_window"


class OutsideJournalError(ImpactError):
    """A seq or time outside the retained journal; the message says the range that exists."""

    code = "outside_journal"


class NoJournalError(ImpactError):
    """The directory holds no journal the analysis can read."""

    kind = ErrorKind.NOT_FOUND
    code = "no_journal"


class JournalUnreadableError(ImpactError):
    """The journal is damaged where the analysis needs it."""

    kind = ErrorKind.CONFLICT
    code = "journal_unreadable"


class UnknownNameError(ImpactError):
    """A market or asset the venue did not list at that point."""

    kind = ErrorKind.NOT_FOUND
    code = "impact_unknown_name"
