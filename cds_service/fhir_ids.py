"""The FHIR id grammar, checked on every id that can reach a prefetch template or a FHIR URL.

FHIR R4 `id`: 1 to 64 of A-Z a-z 0-9 - and ".". The two ids made only of dots are legal by
that pattern but are path segments with a meaning of their own ("Patient/." is a search of
every patient, "Patient/.." the server's base), so they are refused too.
"""

from __future__ import annotations

import re
from typing import TypeGuard

__all__ = ["FHIR_ID", "is_fhir_id", "is_reference"]

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REFERENCE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")


def is_fhir_id(value: object) -> TypeGuard[str]:
    """True for a string that is a FHIR id and not "." or ".."."""
    if not isinstance(value, str) or value in (".", ".."):
        return False
    return FHIR_ID.fullmatch(value) is not None


def is_reference(value: object, resource_type: str | None = None) -> TypeGuard[str]:
    """True for a relative reference `Type/id` whose id passes `is_fhir_id` (and whose type is
    `resource_type`, when given)."""
    if not isinstance(value, str):
        return False
    match = _REFERENCE.fullmatch(value)
    if match is None or not is_fhir_id(match.group(2)):
        return False
    return resource_type is None or match.group(1) == resource_type
