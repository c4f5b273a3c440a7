"""Start the node test FHIR server (tests/fhir_server/server.mjs) as a real process on 127.0.0.1.

A thin wrapper over `cds_service.fhir_testserver`, which `cds-service demo` uses too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cds_service.fhir_testserver import FHIRServerError
from cds_service.fhir_testserver import running_fhir_server as _running

FHIRServerStartError = FHIRServerError


@contextmanager
def running_fhir_server(
    resources: list[dict[str, Any]],
    token: str | None,
    *,
    base_path: str = "",
    page_size: int | None = None,
    cors_origins: Sequence[str] = (),
) -> Iterator[str]:
    """Run the test FHIR server holding `resources`; yield its base URL; stop it afterwards.

    With `token`, every read and search needs `Authorization: Bearer <token>`. The token is
    handed over in the environment, not on the command line.
    """
    with _running(
        resources, token, base_path=base_path, page_size=page_size, cors_origins=cors_origins
    ) as server:
        yield server.base_url
