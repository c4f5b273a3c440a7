"""CDS Hooks 2.0 wire-format models for what the service emits and the feedback it accepts.

Outgoing models are strict: unknown fields refused, no null and no empty string or list (the
one exception being `cards: []`), summary under 140 characters, FHIR resources inside actions
validated as R4 (fhir.resources R4B). `dump()` drops None fields, so nothing null goes out.
The request envelope is *not* modelled with pydantic on purpose (see envelope.py): the
prefetch can be megabytes and only its shape at the top level is checked.
"""

from __future__ import annotations

import uuid as uuid_mod
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Indicator = Literal["info", "warning", "critical"]
INDICATOR_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


def new_uuid() -> str:
    return str(uuid_mod.uuid4())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_min_length=1)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _absolute_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an absolute http(s) URL")
    return value


class Coding(_Strict):
    code: str
    system: str
    display: str | None = None


class OverrideReason(Coding):
    """Override reasons must carry a display (CDS Hooks 2.0 req 100, 136)."""

    display: str


class Source(_Strict):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None

    _url = field_validator("url", "icon")(lambda v: v if v is None else _absolute_url(v))


@lru_cache(maxsize=64)
def _fhir_class(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def validate_fhir_resource(resource: dict[str, Any]) -> None:
    """Raise ValueError unless `resource` is a valid FHIR R4 resource (checked with R4B)."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise ValueError("FHIR resource without resourceType")
    try:
        cls = _fhir_class(rtype)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unknown FHIR resourceType {rtype!r}") from exc
    cls.model_validate(resource)


class Action(_Strict):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Action:
        if self.type in ("create", "update"):
            if self.resource is None:
                raise ValueError(f"a {self.type} action needs a resource")
            validate_fhir_resource(self.resource)
        elif self.resource is not None:
            raise ValueError("a delete action names resourceId, not a resource")
        return self


class Suggestion(_Strict):
    label: str
    uuid: str = Field(default_factory=new_uuid)
    isRecommended: bool | None = None
    actions: list[Action] | None = Field(default=None, min_length=1)


class Link(_Strict):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None

    _url = field_validator("url")(_absolute_url)

    @model_validator(mode="after")
    def _app_context_only_for_smart(self) -> Link:
        if self.type == "absolute" and self.appContext is not None:
            raise ValueError("appContext is only valid on smart links (req 147)")
        return self


class Card(_Strict):
    uuid: str = Field(default_factory=new_uuid)
    summary: str = Field(max_length=139)
    detail: str | None = None
    indicator: Indicator
    source: Source
    suggestions: list[Suggestion] | None = Field(default=None, min_length=1)
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[OverrideReason] | None = Field(default=None, min_length=1)
    links: list[Link] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _selection_behavior(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("selectionBehavior is required when suggestions are present")
        if not self.suggestions and self.selectionBehavior is not None:
            raise ValueError("selectionBehavior without suggestions")
        recommended = sum(1 for s in self.suggestions or () if s.isRecommended)
        if self.selectionBehavior == "at-most-one" and recommended > 1:
            raise ValueError("several recommended suggestions need selectionBehavior any")
        return self


class CDSResponse(_Strict):
    cards: list[Card]
    systemActions: list[Action] | None = Field(default=None, min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceDescriptor(_Strict):
    hook: str
    title: str
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(_Strict):
    services: list[ServiceDescriptor]


# ---- feedback (incoming) -------------------------------------------------------------------


class _Lenient(BaseModel):
    """Incoming feedback: unknown fields are ignored, required ones enforced."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class FeedbackCoding(_Lenient):
    code: str = Field(min_length=1)
    system: str | None = None
    display: str | None = None


class OverrideReasonFeedback(_Lenient):
    reason: FeedbackCoding | None = None
    userComment: str | None = None


class AcceptedSuggestion(_Lenient):
    id: str = Field(min_length=1)


class FeedbackItem(_Lenient):
    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReasonFeedback | None = None
    outcomeTimestamp: str = Field(min_length=1)

    @model_validator(mode="after")
    def _outcome_shape(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("an accepted outcome needs acceptedSuggestions")
        if self.outcome == "overridden" and self.acceptedSuggestions:
            raise ValueError("an overridden outcome carries no acceptedSuggestions")
        return self


class FeedbackRequest(_Lenient):
    feedback: list[FeedbackItem] = Field(min_length=1)
