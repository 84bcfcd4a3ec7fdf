"""Errors of the continuity domain: :class:`ContinuityError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`.

A plan, register or scanner file with any problem is refused as a whole: one error lists
every problem with its file and line (``problems``), in English and Japanese, and nothing of
it is stored or used.
"""

from __future__ import annotations

from dataclasses import dataclass

from haltguard.common.errors import ErrorKind, HaltguardError

PROBLEMS_SHOWN_MAX = 20
"""An error's message lists at most this many problems; ``problems`` keeps them all."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: ``where`` (``file:line``), then what, in both
    languages."""

    where: str
    en: str
    ja: str

    def text_en(self) -> str:
        return f"{self.where}: {self.en}" if self.where else self.en

    def text_ja(self) -> str:
        return f"{self.where}: {self.ja}" if self.where else self.ja


class ContinuityError(HaltguardError):
    """A refused continuity request; ``code`` is stable, both languages say what to do."""

    kind = ErrorKind.INVALID
    code = "continuity_invalid"

    def __init__(self, message: str, *, message_ja: str, next_step: str) -> None:
        super().__init__(message, next_step=next_step, message_ja=message_ja)


class ContinuityFileError(ContinuityError):
    """A plan, risk register or scanner file that cannot be used; every problem is listed."""

    code = "continuity_file_invalid"

    def __init__(self, what_en: str, what_ja: str, problems: list[Problem]) -> None:
        assert problems, "a file error needs at least one problem"
        self.problems = tuple(problems)
        shown = problems[:PROBLEMS_SHOWN_MAX]
        more = len(problems) - len(shown)
        lines_en = [p.text_en() for p in shown] + ([f"... and {more} more"] if more else [])
        lines_ja = [p.text_ja() for p in shown] + ([f"…ほか{more}件"] if more else [])
        step = "Correct the file at the lines named and run the command again."
        super().__init__(
            f"{what_en} is invalid ({len(problems)} problem(s)); nothing was used:\n"
            + "\n".join(lines_en) + f"\n{step}",
            message_ja=f"{what_ja}に誤りがあります（{len(problems)}件）。何も使用していません:\n"
            + "\n".join(lines_ja) + "\n示した行を修正してから、もう一度実行してください。",
            next_step=step,
        )
        self.details = {"problems": [p.text_en() for p in shown],
                        "problem_count": len(problems)}


class RecordNotFoundError(ContinuityError):
    """No insurance policy, training record or finding with that id."""

    kind = ErrorKind.NOT_FOUND
    code = "continuity_record_not_found"


class RecordStateError(ContinuityError):
    """The record is not in a state this step allows (closing a closed finding ...)."""

    kind = ErrorKind.CONFLICT
    code = "continuity_record_state"


class RecordInputError(ContinuityError):
    """A value given for a record is wrong (an unknown person, an expiry before the start)."""

    code = "continuity_record_invalid"


def not_found(what: str, key: object, how_to_list: str) -> RecordNotFoundError:
    return RecordNotFoundError(
        f"no {what} {key!s}; {how_to_list}",
        message_ja=f"{what} {key!s} は見つかりません。一覧の確認: {how_to_list}",
        next_step=how_to_list,
    )
