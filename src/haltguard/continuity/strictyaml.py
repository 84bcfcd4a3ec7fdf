"""Strict loading of the continuity files: YAML whose every key is known, checked by a
pydantic model, each problem named with its file and line.

YAML is composed into nodes (which keep their line) and built by hand, so a key given twice
is a problem rather than a silent overwrite; the model (``extra="forbid"``) then refuses
unknown fields, and every error is mapped back to the line of the key or value it is about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, SequenceNode

from haltguard.continuity.errors import ContinuityFileError, Problem

FILE_BYTES_MAX = 512 * 1024
"""A plan or a register is a page or two of text; a larger file is a mistake."""

Model = TypeVar("Model", bound=BaseModel)
Path_ = tuple[str | int, ...]


class _Builder:
    """Builds plain values from nodes, remembering each key's and item's line."""

    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.lines: dict[Path_, int] = {}
        self.problems: list[Problem] = []

    def build(self, node: Node, path: Path_) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            built: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    self.problems.append(Problem(
                        f"{self.source}:{line}", f"the key {key!r} must be a text",
                        f"キー {key!r} は文字列でなければなりません"))
                    continue
                if key in built:
                    self.problems.append(Problem(
                        f"{self.source}:{line}", f"'{key}' is given twice",
                        f"'{key}' が二度指定されています"))
                    continue
                self.lines[(*path, key)] = line
                built[key] = self.build(value_node, (*path, key))
            return built
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def _line_of(lines: dict[Path_, int], loc: Path_) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _inner_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _inner_model(argument)
        if found is not None:
            return found
    return None


def _fields_at(model: type[BaseModel], loc: Path_) -> tuple[str, ...]:
    """The fields allowed where ``loc`` points (to say what could have been written)."""
    current: type[BaseModel] | None = model
    for step in loc:
        if isinstance(step, int) or current is None:
            continue
        field = current.model_fields.get(step)
        current = None if field is None else _inner_model(field.annotation)
    return tuple(current.model_fields) if current is not None else ()


def _problem(model: type[BaseModel], source: str, lines: dict[Path_, int],
             error: Any) -> Problem:
    loc: Path_ = tuple(step for step in error["loc"] if isinstance(step, str | int))
    where = f"{source}:{_line_of(lines, loc)}"
    dotted = ".".join(str(step) for step in loc) or "(the file)"
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_fields_at(model, loc[:-1]))
        parent = dotted.rpartition(".")[0] or "the top level"
        return Problem(where, f"unknown field '{loc[-1]}' in {parent}; the fields here are: "
                       f"{allowed}",
                       f"不明な項目 '{loc[-1]}' です。使える項目: {allowed}")
    if kind == "missing":
        return Problem(where, f"{dotted} is required", f"{dotted} は必須の項目です")
    message = str(error["msg"]).removeprefix("Value error, ")
    return Problem(where, f"{dotted}: {message}", f"{dotted} の値が正しくありません（{message}）")


def load_text(model: type[Model], text: str, source: str, *, what_en: str,
              what_ja: str) -> Model:
    """``text`` as ``model``, or :class:`ContinuityFileError` listing every problem."""
    def refuse(problems: list[Problem]) -> ContinuityFileError:
        return ContinuityFileError(f"{what_en} {source}", f"{what_ja} {source} ", problems)

    if len(text.encode("utf-8")) > FILE_BYTES_MAX:
        raise refuse([Problem(source, f"larger than {FILE_BYTES_MAX} bytes",
                              f"{FILE_BYTES_MAX} バイトを超えています")])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        builder = _Builder(loader, source)
        data = {} if node is None else builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise refuse([Problem(f"{source}:{line}", f"not valid YAML: {exc.problem or exc.context}",
                              f"YAMLとして読めません: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise refuse([Problem(source, f"not valid YAML: {exc}",
                              f"YAMLとして読めません: {exc}")]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise refuse(builder.problems)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise refuse([_problem(model, source, builder.lines, error)
                      for error in exc.errors()]) from None


def load_file(model: type[Model], path: Path, *, what_en: str, what_ja: str) -> Model:
    """The file at ``path`` as ``model`` (see :func:`load_text`); an unreadable file is a
    problem of the same kind."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContinuityFileError(f"{what_en} {path}", f"{what_ja} {path} ", [Problem(
            str(path), f"cannot be read: {exc}", f"読み込めません: {exc}")]) from None
    return load_text(model, text, str(path), what_en=what_en, what_ja=what_ja)
