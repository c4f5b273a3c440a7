"""Reading knowledge files: YAML with a line number for every key path, duplicate keys refused.

PyYAML silently keeps the last of two equal keys and turns `yes` / `no` / `on` / `off` into
booleans (YAML 1.1). Neither is acceptable in a clinical rule file: a duplicated `value:` would
change what a rule means without anyone noticing, and the tri-state fact values are literally
"yes" / "no" / "unknown". This loader composes the node tree, builds plain Python data from it,
records the line of every key path, and reports duplicate keys as errors. Only `true` and
`false` are booleans here. `FileReport` turns problems (ours and pydantic's) into the one shape
every load error has: `rules/x.yaml:13: when.all[1].op: message`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

KeyPath = tuple[str | int, ...]


class _RuleYamlLoader(yaml.SafeLoader):
    """SafeLoader whose only booleans are true/false (no yes/no/on/off)."""


_RuleYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RuleYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


@dataclass(frozen=True)
class SourceProblem:
    """One problem found while reading a file, with its line (1-based) and key path."""

    line: int
    path: KeyPath
    message: str


@dataclass
class YamlDocument:
    """The data of one YAML file and the line where each key path starts."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    problems: list[SourceProblem] = field(default_factory=list)

    def line_of(self, path: KeyPath) -> int:
        """Line of `path`, or of its nearest ancestor that has one (1 for the whole file)."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return 1


def format_path(path: KeyPath) -> str:
    """`("when", "all", 1, "op")` → `when.all[1].op`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_yaml(text: str) -> YamlDocument:
    """Parse one YAML document; syntax errors and duplicate keys come back as problems."""
    loader = _RuleYamlLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        return YamlDocument(None, problems=[SourceProblem(line, (), f"YAML syntax: {exc.problem}")])
    except yaml.YAMLError as exc:
        return YamlDocument(None, problems=[SourceProblem(1, (), f"YAML syntax: {exc}")])
    finally:
        loader.dispose()
    doc = YamlDocument(None)
    if node is None:
        return doc
    doc.lines[()] = node.start_mark.line + 1
    doc.data = _build(node, (), doc, loader)
    return doc


def _build(node: Node, path: KeyPath, doc: YamlDocument, loader: _RuleYamlLoader) -> Any:
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, loader)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                doc.problems.append(
                    SourceProblem(line, path, f"key {key!r} is not a string (quote it)")
                )
                key = str(key)
            child = (*path, key)
            if key in out:
                first = doc.lines.get(child, line)
                doc.problems.append(
                    SourceProblem(
                        line,
                        child,
                        f"duplicate key '{key}' (first defined on line {first})",
                    )
                )
                continue
            doc.lines[child] = line
            out[key] = _build(value_node, child, doc, loader)
        return out
    if isinstance(node, SequenceNode):
        items: list[Any] = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            doc.lines[child] = item.start_mark.line + 1
            items.append(_build(item, child, doc, loader))
        return items
    return _scalar(node, loader)


def _scalar(node: Node, loader: _RuleYamlLoader) -> Any:
    if isinstance(node, ScalarNode):
        return loader.construct_object(node, deep=True)
    if isinstance(node, MappingNode | SequenceNode):
        return _build(node, (), YamlDocument(None), loader)
    return None  # pragma: no cover - PyYAML has no other node kinds


Problem = tuple[KeyPath, str]


class FileReport:
    """Collects the problems of one file as display lines (`file:line: key.path: message`)."""

    def __init__(self, display: str, doc: YamlDocument | None = None) -> None:
        self.display = display
        self.doc = doc
        self.lines: list[str] = []

    def add(self, path: KeyPath, message: str) -> None:
        line = self.doc.line_of(path) if self.doc is not None else 1
        where = format_path(path)
        self.lines.append(
            f"{self.display}:{line}: {where}: {message}"
            if where
            else f"{self.display}:{line}: {message}"
        )

    def extend(self, problems: Iterable[Problem]) -> None:
        for path, message in problems:
            self.add(path, message)


def read_yaml_file(file: Path, report: FileReport) -> YamlDocument | None:
    """Parse one file into `report.doc`; unreadable files and YAML problems go to the report."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.add((), f"cannot read: {exc}")
        return None
    doc = parse_yaml(text)
    report.doc = doc
    for problem in doc.problems:
        where = format_path(problem.path)
        prefix = f"{report.display}:{problem.line}: "
        report.lines.append(prefix + (f"{where}: {problem.message}" if where else problem.message))
    return doc


def pydantic_problems(exc: ValidationError) -> list[Problem]:
    """A pydantic validation error as (key path, message) problems."""
    return [(_loc(err), _message(err)) for err in exc.errors(include_url=False)]


def _loc(err: ErrorDetails) -> KeyPath:
    return tuple(p for p in err["loc"] if isinstance(p, str | int))


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unexpected key"
    if kind == "missing":
        return "required key missing"
    if kind == "string_type" and isinstance(err.get("input"), int | float):
        return f'must be a string (quote it: "{err["input"]}")'
    return f"{err['msg']} (got {err.get('input')!r})" if kind == "literal_error" else err["msg"]
