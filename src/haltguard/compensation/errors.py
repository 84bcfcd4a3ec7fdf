"""Errors of the compensation domain: :class:`CompensationError`, the domain's one base of
:class:`~haltguard.common.errors.HaltguardError`.

Compensation pays money, so bad input is refused as a whole before anything is computed: a
policy file, a reference CSV or a run's inputs with any problem raise one error that lists
every problem found (``problems``, each a :class:`Problem` saying where and what, in English
and Japanese) and says what to do next in both languages.
"""

from __future__ import annotations

from dataclasses import dataclass

from haltguard.common.errors import ErrorKind, HaltguardError

PROBLEMS_SHOWN_MAX = 20
"""An error's message lists at most this many problems; ``problems`` keeps them all."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: ``where`` (``file:line`` or a field), then what."""

    where: str
    en: str
    ja: str

    def text_en(self) -> str:
        return f"{self.where}: {self.en}" if self.where else self.en

    def text_ja(self) -> str:
        return f"{self.where}: {self.ja}" if self.where else self.ja


class CompensationError(HaltguardError):
    """A refused compensation request. ``code`` is stable; both languages say what to do."""

    kind = ErrorKind.INVALID
    code = "compensation_invalid"

    def __init__(
        self, message: str, *, message_ja: str, next_step: str, next_step_ja: str = ""
    ) -> None:
        super().__init__(message, next_step=next_step, message_ja=message_ja)
        self.next_step_ja = next_step_ja


class _ProblemsError(CompensationError):
    """An input refused with every problem found; subclasses fix the headline and next step."""

    headline_en = ""
    headline_ja = ""
    step_en = ""
    step_ja = ""

    def __init__(self, problems: list[Problem]) -> None:
        assert problems, "an input error needs at least one problem"
        self.problems = tuple(problems)
        shown = problems[:PROBLEMS_SHOWN_MAX]
        more = len(problems) - len(shown)
        lines_en = [p.text_en() for p in shown] + ([f"... and {more} more"] if more else [])
        lines_ja = [p.text_ja() for p in shown] + ([f"…ほか{more}件"] if more else [])
        super().__init__(
            f"{self.headline_en} ({len(problems)} problem(s)); nothing was computed:\n"
            + "\n".join(lines_en) + f"\n{self.step_en}",
            message_ja=f"{self.headline_ja}（{len(problems)}件）。何も計算していません:\n"
            + "\n".join(lines_ja) + f"\n{self.step_ja}",
            next_step=self.step_en,
            next_step_ja=self.step_ja,
        )
        self.details = {"problems": [p.text_en() for p in shown], "problem_count": len(problems)}


class PolicyFileError(_ProblemsError):
    """A compensation policy file is malformed (unknown field, missing text, bad value)."""

    code = "policy_file_invalid"
    headline_en = "the compensation policy files are invalid"
    headline_ja = "補償ポリシーファイルに誤りがあります"
    step_en = "Correct the files at the lines named and load them again."
    step_ja = "示した行を修正してから、もう一度読み込んでください。"


class ReferenceDataError(_ProblemsError):
    """A reference price cannot be taken from the data given (bad CSV, no trades in window)."""

    code = "reference_data_invalid"
    headline_en = "the reference trade data cannot be used"
    headline_ja = "参照価格の取引データを使用できません"
    step_en = ("Fix or re-export the trade data (lines named above), or choose a window that "
               "holds trades, and compute the reference price again.")
    step_ja = ("示した行の取引データを修正するか再出力し、または取引のある期間を選んで、"
               "参照価格を計算し直してください。")


class RunInputError(_ProblemsError):
    """A run's inputs do not fit its policies (a missing price or scale, a negative amount)."""

    code = "run_inputs_invalid"
    headline_en = "the compensation run's inputs are incomplete or invalid"
    headline_ja = "補償計算の入力が不足しているか誤っています"
    step_en = "Supply the missing or corrected inputs named above and start a new run."
    step_ja = "示した入力を補うか修正してから、新しい計算を開始してください。"


# --- runs, approval, payout and statements ---------------------------------------------------


class RunNotFoundError(CompensationError):
    """No such run, or no line of it for the account asked about."""

    kind = ErrorKind.NOT_FOUND
    code = "compensation_run_not_found"


class RunStateError(CompensationError):
    """The run is not in the state this step needs (approve twice, pay before approval ...)."""

    kind = ErrorKind.CONFLICT
    code = "compensation_run_state"


class FourEyesError(CompensationError):
    """The proposer of a run tried to approve it: a second operator must."""

    kind = ErrorKind.FORBIDDEN
    code = "four_eyes_required"


class StaleDigestError(CompensationError):
    """An approval named another digest than the run's: the approver reviewed something else."""

    kind = ErrorKind.CONFLICT
    code = "compensation_digest_mismatch"


class ProposalError(CompensationError):
    """A run proposal names something that is not there (a policy or reference file, an
    incident without a journal range) or asks for what cannot be done."""

    kind = ErrorKind.INVALID
    code = "compensation_proposal_invalid"
