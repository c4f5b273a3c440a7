"""logs.JSONFormatter: one bounded JSON object per line, with the hookInstance when known."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from cds_service.logs import (
    MAX_FIELD_CHARS,
    MAX_ITEMS,
    MAX_MESSAGE_CHARS,
    JSONFormatter,
    correlation_scope,
    set_correlation_id,
)


def line(msg: str = "hello", *args: Any, exc: bool = False, **extra: Any) -> dict[str, Any]:
    record = logging.LogRecord("cds_service.test", logging.INFO, __file__, 1, msg, args, None)
    if exc:
        try:
            raise ValueError("secret detail")
        except ValueError:
            record.exc_info = sys.exc_info()
    record.__dict__.update(extra)
    text = JSONFormatter().format(record)
    assert "\n" not in text
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_a_line_has_time_level_logger_message_and_extra_fields() -> None:
    out = line("hook answered", service="phall-order-select", cards=2, ms=1.5)
    assert out["level"] == "INFO" and out["logger"] == "cds_service.test"
    assert out["msg"] == "hook answered"
    assert out["ts"].endswith("Z") and "T" in out["ts"]
    assert (out["service"], out["cards"], out["ms"]) == ("phall-order-select", 2, 1.5)
    assert "hookInstance" not in out


def test_every_string_field_and_the_message_are_cut() -> None:
    huge = "h" * (4 * 1024 * 1024)
    out = line("got %s", huge, reason=huge)
    assert len(out["msg"]) < MAX_MESSAGE_CHARS + 40
    assert len(out["reason"]) < MAX_FIELD_CHARS + 40
    assert out["reason"].endswith(f"[{len(huge)} chars]")


def test_lists_mappings_and_nesting_are_bounded() -> None:
    out = line(
        rules=[f"rule-{i}" for i in range(10_000)],
        detail={f"k{i}": "v" * 10_000 for i in range(1_000)},
        nested=[[[[[["deep"]]]]]],
    )
    assert len(out["rules"]) == MAX_ITEMS + 1 and out["rules"][-1] == f"...{10_000 - MAX_ITEMS} more"
    assert len(out["detail"]) == MAX_ITEMS + 1
    assert all(len(v) < MAX_FIELD_CHARS + 40 for k, v in out["detail"].items() if k != "...")
    assert len(json.dumps(out["nested"])) < 200
    assert len(json.dumps(line(**{f"f{i}": i for i in range(1_000)}))) < 5_000


def test_values_that_json_cannot_hold_are_written_as_text() -> None:
    out = line(ratio=float("nan"), path=__import__("pathlib").Path("/x"), big=10**30)
    assert out["ratio"] == "nan" and out["path"] == "/x" and out["big"] == 10**30


def test_an_exception_gives_its_type_not_its_text() -> None:
    out = line("failed", exc=True)
    assert out["error"] == "ValueError"
    assert "secret detail" not in json.dumps(out)


def test_the_correlation_id_is_the_hookinstance_of_the_scope() -> None:
    with correlation_scope():
        set_correlation_id("d1577c69-dfbe-44ad-ba6d-3e05e953b2ea")
        assert line()["hookInstance"] == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
        with correlation_scope():
            assert "hookInstance" not in line()
        assert line()["hookInstance"] == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    assert "hookInstance" not in line()


def test_a_long_correlation_id_is_cut_too() -> None:
    with correlation_scope():
        set_correlation_id("x" * 100_000)
        assert len(line()["hookInstance"]) < MAX_FIELD_CHARS + 40
