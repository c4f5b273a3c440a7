"""The fact reducers' windows and thresholds, read from `rules/facts.yaml` (data, not code).

`load_parameters` reads the file with the shared YAML reader and validates it with pydantic:
every problem is reported at once as `rules/facts.yaml:LINE: key.path: message`. A rule set
without its own `facts.yaml` uses the bundled one.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cds_service.errors import RuleSetError
from cds_service.yaml_source import FileReport, pydantic_problems, read_yaml_file

FILE_NAME = "facts.yaml"
_MUTATION = re.compile(r"^[ACDEFGHIKLMNPQRSTVWY][1-9][0-9]{0,3}[ACDEFGHIKLMNPQRSTVWY]$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExposureParameters(_Strict):
    administration_current_days: int = Field(ge=0, le=3650)
    stale_after_days: int = Field(ge=1, le=36500)
    supersede_within: tuple[str, ...]


class CD19Parameters(_Strict):
    positive_percent: float = Field(gt=0, le=100)


class BcrAbl1Parameters(_Strict):
    trend_factor: float = Field(gt=1)


TKI_NAMES = ("imatinib", "dasatinib", "nilotinib", "bosutinib", "ponatinib", "asciminib")


class SensitivityEntry(_Strict):
    """One row of the mutation × TKI table: substitutions a source reports to reduce a TKI's
    activity, with the source's own words for the effect and its citation key."""

    tki: str
    mutations: tuple[str, ...] = Field(min_length=1)
    effect: str = Field(min_length=3, max_length=80)
    source: str
    """A key of rules/citations.yaml (the rule-set loader checks it exists)."""

    @field_validator("tki")
    @classmethod
    def _known_tki(cls, value: str) -> str:
        if value not in TKI_NAMES:
            raise ValueError(f"'{value}' is not one of {', '.join(TKI_NAMES)}")
        return value

    @field_validator("mutations")
    @classmethod
    def _one_letter(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for m in value:
            if not _MUTATION.match(m):
                raise ValueError(f"'{m}' is not a one-letter substitution such as F317L")
        return value


class Abl1Parameters(_Strict):
    reduced_sensitivity: tuple[SensitivityEntry, ...]


class FactParameters(_Strict):
    """Everything `rules/facts.yaml` holds."""

    exposure: ExposureParameters
    cd19: CD19Parameters
    bcr_abl1: BcrAbl1Parameters
    abl1: Abl1Parameters


def load_parameters(file: Path) -> FactParameters:
    """Read and validate one facts.yaml; RuleSetError lists every problem."""
    report = FileReport(f"{file.parent.name}/{file.name}")
    doc = read_yaml_file(file, report)
    if doc is not None and not doc.problems:
        try:
            return FactParameters.model_validate(doc.data)
        except ValidationError as exc:
            report.extend(pydantic_problems(exc))
    raise RuleSetError(f"{len(report.lines)} error(s) in {file}", details=report.lines)


def default_parameters_file() -> Path:
    """The repository's rules/facts.yaml, else the copy bundled into the wheel."""
    from cds_service.paths import bundled_dir

    return bundled_dir("rules") / FILE_NAME


@functools.lru_cache(maxsize=1)
def default_parameters() -> FactParameters:
    """The bundled parameters, loaded once per process."""
    return load_parameters(default_parameters_file())
