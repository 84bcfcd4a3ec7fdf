"""Errors of the backup domain: :class:`BackupError`, the one base of the domain.

A backup is only worth something if it restores, so every refusal says which file or which
setting is at fault, in English and Japanese, and what to do next. Nothing is half-applied:
a restore that fails leaves the destination as it was.
"""

from __future__ import annotations

from haltguard.common.errors import ErrorKind, HaltguardError


class BackupError(HaltguardError):
    """A refused or failed backup operation; ``code`` is stable, both languages given."""

    kind = ErrorKind.INVALID
    code = "backup_invalid"

    def __init__(
        self, message: str, *, message_ja: str, next_step: str, next_step_ja: str = "",
        code: str | None = None, kind: ErrorKind | None = None,
    ) -> None:
        super().__init__(message, next_step=next_step, message_ja=message_ja, code=code,
                         kind=kind)
        self.next_step_ja = next_step_ja

    def describe(self) -> str:
        """The message and what to do, as the CLI prints it."""
        return f"{self.message}\n  next: {self.next_step}" if self.next_step else self.message


class TargetUnreachableError(BackupError):
    """The backup target cannot be reached or written (disk missing, S3 endpoint down)."""

    kind = ErrorKind.UNAVAILABLE
    code = "backup_target_unreachable"


class BackupNotFoundError(BackupError):
    kind = ErrorKind.NOT_FOUND
    code = "backup_not_found"


class WrongKeyError(BackupError):
    """The key file given is not the one the backup was encrypted with (or none was given)."""

    code = "backup_wrong_key"


class DamagedBackupError(BackupError):
    """A file of the backup is missing, truncated or corrupted; the message names it."""

    kind = ErrorKind.CONFLICT
    code = "backup_damaged"


class RestoreRefusedError(BackupError):
    """A restore that would overwrite a data directory in use."""

    kind = ErrorKind.CONFLICT
    code = "backup_restore_refused"


class BackupSettingsError(ValueError):
    """A backup setting that cannot be used; the message names it and the fix."""
