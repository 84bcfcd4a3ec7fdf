"""Errors of the corrections domain: :class:`CorrectionError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`. Each says what was wrong and what to do next
in English and Japanese; none is raised after anything was sent to the venue except
:class:`VenueRefusedError`, which carries the venue's own reason."""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class CorrectionError(HaltguardError):
    kind = ErrorKind.INVALID
    code = "correction_invalid"

    def __init__(self, message: str, *, message_ja: str, next_step: str,
                 details: dict[str, object] | None = None) -> None:
        super().__init__(message, next_step=next_step, message_ja=message_ja, details=details)


class PolicyError(CorrectionError):
    """The erroneous-trade policy file is missing or malformed; every problem is listed."""

    code = "correction_policy_invalid"


class UnknownTradeError(CorrectionError):
    """A trade id that is not in the journal window reviewed."""

    kind = ErrorKind.NOT_FOUND
    code = "unknown_trade"


class AlreadyBustedError(CorrectionError):
    """A trade busted before (alone or by a rollback): a trade is busted at most once."""

    kind = ErrorKind.CONFLICT
    code = "already_busted"


class TradeStandsError(CorrectionError):
    """The policy's window for correcting the trade has passed, or its price is inside the
    band: under the published rules it stands."""

    kind = ErrorKind.CONFLICT
    code = "trade_stands"


class OffGridPriceError(CorrectionError):
    """An adjustment price that is not a whole number of the market's ticks."""

    code = "price_off_grid"


class RollbackTargetError(CorrectionError):
    """A rollback target outside what the journal can rebuild (before the oldest snapshot,
    at or after the last seq)."""

    code = "rollback_target_invalid"


class RollbackTooLargeError(CorrectionError):
    """A rollback touching more balances than one journal record can carry."""

    code = "rollback_too_large"


class NotAllowedError(CorrectionError):
    """The policy does not let this operator's role propose or approve corrections."""

    kind = ErrorKind.FORBIDDEN
    code = "correction_not_allowed"


class FourEyesError(CorrectionError):
    """The proposer tried to approve their own correction: a second operator must."""

    kind = ErrorKind.FORBIDDEN
    code = "four_eyes_required"


class RequestNotFoundError(CorrectionError):
    kind = ErrorKind.NOT_FOUND
    code = "correction_not_found"


class RequestStateError(CorrectionError):
    """The correction is not waiting for approval (approved, applied or refused already)."""

    kind = ErrorKind.CONFLICT
    code = "correction_state"


class StaleDigestError(CorrectionError):
    """An approval naming another digest than the correction's: the approver reviewed
    something else."""

    kind = ErrorKind.CONFLICT
    code = "correction_digest_mismatch"


class VenueRefusedError(CorrectionError):
    """The venue refused the correction (its reason is in the message); nothing changed."""

    kind = ErrorKind.VENUE
    code = "correction_refused_by_venue"
