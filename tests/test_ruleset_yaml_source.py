"""The rule-file YAML reader: line numbers per key path, duplicate keys refused, no yes/no booleans."""

from __future__ import annotations

import datetime as dt

from cds_service.yaml_source import format_path, parse_yaml


def test_lines_are_recorded_per_key_path() -> None:
    doc = parse_yaml("a: 1\nb:\n  - x: 1\n  - y:\n      z: 2\n")
    assert doc.problems == []
    assert doc.lines[("a",)] == 1
    assert doc.lines[("b", 0, "x")] == 3
    assert doc.lines[("b", 1, "y", "z")] == 5
    assert doc.line_of(("b", 1, "y", "missing", 3)) == 4  # nearest known ancestor


def test_duplicate_keys_are_problems_and_the_first_value_is_kept() -> None:
    doc = parse_yaml("a: 1\nb: 2\na: 3\n")
    assert doc.data == {"a": 1, "b": 2}
    assert [(p.line, p.path, p.message) for p in doc.problems] == [
        (3, ("a",), "duplicate key 'a' (first defined on line 1)")
    ]


def test_only_true_and_false_are_booleans() -> None:
    doc = parse_yaml("a: yes\nb: no\nc: on\nd: off\ne: true\nf: False\ng: 2025-06-01\n")
    assert doc.data == {
        "a": "yes",
        "b": "no",
        "c": "on",
        "d": "off",
        "e": True,
        "f": False,
        "g": dt.date(2025, 6, 1),
    }


def test_syntax_errors_carry_a_line() -> None:
    doc = parse_yaml("a: 1\nb: [1, 2\nc: 3\n")
    assert len(doc.problems) == 1
    assert doc.problems[0].message.startswith("YAML syntax")
    assert doc.problems[0].line >= 2


def test_non_string_keys_are_problems() -> None:
    doc = parse_yaml("1: a\n")
    assert doc.problems[0].message == "key 1 is not a string (quote it)"


def test_format_path() -> None:
    assert format_path(("when", "all", 1, "op")) == "when.all[1].op"
    assert format_path(()) == ""
    assert format_path(("cases", 0)) == "cases[0]"
