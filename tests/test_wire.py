"""The outgoing wire models refuse what CDS Hooks 2.0 forbids, so a bad card cannot be sent."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cds_service.wire import (
    Action,
    Card,
    CDSResponse,
    Coding,
    Link,
    OverrideReason,
    Source,
    Suggestion,
)

SR = {"resourceType": "ServiceRequest", "status": "draft", "intent": "proposal",
      "subject": {"reference": "Patient/p"}, "code": {"text": "ABL1 kinase-domain mutation analysis"}}


def card(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"summary": "s", "indicator": "info", "source": {"label": "x"}}
    c.update(over)
    return c


@pytest.mark.req("83")
def test_summary_must_be_under_140_characters() -> None:
    Card.model_validate(card(summary="x" * 139))
    with pytest.raises(ValidationError):
        Card.model_validate(card(summary="x" * 140))


@pytest.mark.req("87", "88")
def test_indicator_values() -> None:
    with pytest.raises(ValidationError):
        Card.model_validate(card(indicator="urgent"))
    with pytest.raises(ValidationError):
        Card.model_validate({"summary": "s", "source": {"label": "x"}})


@pytest.mark.req("3")
def test_empty_strings_and_lists_are_refused_and_none_is_not_sent() -> None:
    with pytest.raises(ValidationError):
        Card.model_validate(card(detail=""))
    with pytest.raises(ValidationError):
        Card.model_validate(card(links=[]))
    dumped = Card.model_validate(card()).dump()
    assert None not in dumped.values() and "detail" not in dumped
    assert CDSResponse(cards=[]).dump() == {"cards": []}


@pytest.mark.req("93", "96", "95")
def test_suggestions_need_selection_behavior() -> None:
    s = {"label": "order it", "actions": [{"type": "create", "description": "d", "resource": SR}]}
    with pytest.raises(ValidationError):
        Card.model_validate(card(suggestions=[s]))
    with pytest.raises(ValidationError):
        Card.model_validate(card(suggestions=[s], selectionBehavior="all"))
    ok = Card.model_validate(card(suggestions=[s], selectionBehavior="at-most-one"))
    assert ok.suggestions and ok.suggestions[0].uuid  # 119: every suggestion gets a uuid


@pytest.mark.req("80", "119")
def test_uuids_are_generated_and_unique() -> None:
    a, b = Card.model_validate(card()), Card.model_validate(card())
    assert a.uuid != b.uuid
    assert Suggestion(label="x").uuid != Suggestion(label="x").uuid


@pytest.mark.req("100", "136", "98", "219")
def test_override_reasons_need_a_display() -> None:
    with pytest.raises(ValidationError):
        Card.model_validate(card(overrideReasons=[{"code": "c", "system": "urn:x"}]))
    Card.model_validate(card(overrideReasons=[{"code": "c", "system": "urn:x", "display": "D"}]))


@pytest.mark.req("216", "217", "218", "220")
def test_coding_needs_code_and_system() -> None:
    with pytest.raises(ValidationError):
        Coding.model_validate({"code": "c"})
    with pytest.raises(ValidationError):
        OverrideReason.model_validate({"system": "urn:x", "display": "d"})
    assert Coding(code="c", system="urn:x").dump() == {"code": "c", "system": "urn:x"}


@pytest.mark.req("107", "111", "139")
def test_urls_must_be_absolute() -> None:
    with pytest.raises(ValidationError):
        Source(label="x", url="/relative")
    with pytest.raises(ValidationError):
        Source(label="x", icon="icon.png")
    with pytest.raises(ValidationError):
        Link(label="x", url="doi.org/10.1", type="absolute")


@pytest.mark.req("141", "142", "144", "146", "147")
def test_link_type_and_app_context() -> None:
    with pytest.raises(ValidationError):
        Link(label="x", url="https://a.org", type="relative")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Link(label="x", url="https://a.org", type="absolute", appContext="ctx")
    Link(label="x", url="https://a.org/launch", type="smart", appContext="ctx")


@pytest.mark.req("127", "128", "130", "131", "132", "133", "134", "135")
def test_actions() -> None:
    with pytest.raises(ValidationError):
        Action.model_validate({"type": "create", "description": "d"})  # create needs a resource
    with pytest.raises(ValidationError):
        Action.model_validate({"type": "create", "description": "d",
                               "resource": {"resourceType": "ServiceRequest"}})  # invalid R4
    with pytest.raises(ValidationError):
        Action.model_validate({"type": "create", "description": "d",
                               "resource": {"resourceType": "NoSuchType"}})
    with pytest.raises(ValidationError):
        Action.model_validate({"type": "update", "description": "d"})
    with pytest.raises(ValidationError):
        Action.model_validate({"type": "delete", "description": "d", "resource": SR})
    with pytest.raises(ValidationError):
        Action.model_validate({"type": "merge", "description": "d", "resource": SR})
    with pytest.raises(ValidationError):
        Action.model_validate({"type": "create", "resource": SR})
    Action.model_validate({"type": "delete", "description": "d",
                           "resourceId": "ServiceRequest/1"})
    Action.model_validate({"type": "create", "description": "d", "resource": SR})


@pytest.mark.req("121", "122", "124")
def test_several_recommended_suggestions_need_any() -> None:
    s = [{"label": "a", "isRecommended": True}, {"label": "b", "isRecommended": True}]
    with pytest.raises(ValidationError):
        Card.model_validate(card(suggestions=s, selectionBehavior="at-most-one"))
    Card.model_validate(card(suggestions=s, selectionBehavior="any"))
    with pytest.raises(ValidationError):
        Suggestion.model_validate({"label": "a", "isRecommended": "yes please"})
    with pytest.raises(ValidationError):
        Suggestion.model_validate({"label": "a", "actions": []})
