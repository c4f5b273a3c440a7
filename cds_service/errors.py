"""The one exception tree of the service; each error knows its HTTP status and FHIR issue code.

    CDSError                      (500, exception)  base: never raised bare
    ├── RequestError              (400, invalid)    body is not a usable CDS Hooks request
    │   └── HookMismatch          (400, invalid)    body.hook differs from the service's hook
    ├── UnsupportedMediaType      (415, not-supported)
    ├── PayloadTooLarge           (413, too-long)   body over CDS_MAX_BODY_BYTES, or too many
    │                                                feedback items
    ├── RequestTimeout            (408, timeout)    body not received in time (slow client)
    ├── AuthError                 (401, security)   client JWT missing, invalid or untrusted
    ├── NotFound                  (404, not-found)  unknown service id
    ├── PrefetchUnavailable       (412, incomplete) a required prefetch key cannot be had
    ├── FHIRClientError           (502, transient)  the EHR's FHIR server failed us (wrapped
    │                                                into PrefetchUnavailable by prefetch)
    └── ConfigError               (startup)         settings, trusted clients or rule set unusable
        └── RuleSetError                            all rule-set load errors, reported at once

api.py maps CDSError to an OperationOutcome response in exactly one place; nothing else in the
package knows about HTTP status codes.
"""

from __future__ import annotations

from collections.abc import Sequence


class CDSError(Exception):
    """Base of every error the service raises on purpose."""

    status: int = 500
    issue_code: str = "exception"
    severity: str = "error"

    def __init__(self, message: str, *, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)


class RequestError(CDSError):
    status = 400
    issue_code = "invalid"


class HookMismatch(RequestError):
    pass


class UnsupportedMediaType(CDSError):
    status = 415
    issue_code = "not-supported"


class PayloadTooLarge(CDSError):
    status = 413
    issue_code = "too-long"


class RequestTimeout(CDSError):
    status = 408
    issue_code = "timeout"


class AuthError(CDSError):
    status = 401
    issue_code = "security"


class NotFound(CDSError):
    status = 404
    issue_code = "not-found"


class PrefetchUnavailable(CDSError):
    status = 412
    issue_code = "incomplete"


class FHIRClientError(CDSError):
    status = 502
    issue_code = "transient"


class ConfigError(CDSError):
    issue_code = "processing"


class RuleSetError(ConfigError):
    """Every problem found while loading the rule set; `details` holds one line per error."""

    def __str__(self) -> str:
        return "\n".join([self.message, *self.details])
