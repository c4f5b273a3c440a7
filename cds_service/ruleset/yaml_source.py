"""Reading rule files: YAML with a line number for every key path, duplicate keys refused.

PyYAML silently keeps the last of two equal keys and turns `yes` / `no` / `on` / `off` into
booleans (YAML 1.1). Neither is acceptable in a clinical rule file: a duplicated `value:` would
change what a rule means without anyone noticing, and the tri-state fact values are literally
"yes" / "no" / "unknown". This loader composes the node tree, builds plain Python data from it,
records the line of every key path, and reports duplicate keys as errors. Only `true` and
`false` are booleans here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
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
