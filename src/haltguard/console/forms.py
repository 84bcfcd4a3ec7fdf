"""The console's forms: urlencoded bodies read without extra dependencies, bounded."""

from __future__ import annotations

import urllib.parse
from enum import StrEnum
from typing import TypeVar

from haltguard.console.errors import FormValueError

FORM_FIELDS_MAX = 200
FORM_VALUE_LENGTH_MAX = 20_000

_E = TypeVar("_E", bound=StrEnum)


class Form:
    """The fields of one submitted form, in the order sent."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        if len(pairs) > FORM_FIELDS_MAX:
            raise FormValueError(f"a form has at most {FORM_FIELDS_MAX} fields",
                                 message_ja=f"フォームの項目は最大 {FORM_FIELDS_MAX} 個です")
        for name, value in pairs:
            if len(value) > FORM_VALUE_LENGTH_MAX:
                raise FormValueError(
                    f"{name} is longer than {FORM_VALUE_LENGTH_MAX} characters; shorten it",
                    message_ja=f"{name} が長すぎます({FORM_VALUE_LENGTH_MAX} 文字まで)")
        self.pairs = pairs

    @classmethod
    def parse(cls, body: bytes) -> Form:
        try:
            decoded = body.decode("utf-8")
        except UnicodeDecodeError:
            raise FormValueError("the form was not UTF-8",
                                 message_ja="フォームが UTF-8 ではありません") from None
        return cls(urllib.parse.parse_qsl(decoded, keep_blank_values=True))

    def get(self, name: str, default: str = "") -> str:
        return next((value for key, value in self.pairs if key == name), default)

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name and value]

    def single(self) -> dict[str, str]:
        """The first value of each field."""
        return dict(reversed(self.pairs))

    def integer(self, name: str, default: int = 0) -> int:
        raw = self.get(name, "").strip()
        if not raw:
            return default
        if not raw.isdigit() or len(raw) > 9:
            raise FormValueError(f"{name} must be a whole number, not {raw!r}",
                                 message_ja=f"{name} には整数を入力してください({raw!r} は不可)")
        return int(raw)

    def choice(self, name: str, kind: type[_E]) -> _E:
        """The field as one of ``kind``'s values, or an error listing them."""
        raw = self.get(name)
        try:
            return kind(raw)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise FormValueError(f"{name} must be one of {allowed}, not {raw!r}",
                                 message_ja=f"{name} は次のいずれかです: {allowed}") from None
