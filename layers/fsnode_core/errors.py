"""The domain error hierarchy. Each server maps these to HTTP statuses in one place."""

from __future__ import annotations

from typing import Any


class FsnodeError(Exception):
    """Base of every domain error: a stable code, a human message, optional details."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(FsnodeError):
    """The request is malformed or violates a rule (bad JSON, bad id, bad CSR...)."""

    code = "invalid_input"


class Unauthorized(FsnodeError):
    """No credential, or one that is not valid."""

    code = "unauthorized"


class Forbidden(FsnodeError):
    """A valid caller asking for something it may not have (bad or expired signature)."""

    code = "forbidden"


class NotFound(FsnodeError):
    """The named thing does not exist."""

    code = "not_found"


class Gone(FsnodeError):
    """The thing existed but was deleted or expired."""

    code = "gone"


class Conflict(FsnodeError):
    """A conditional write lost a race, or the state forbids the change."""

    code = "conflict"


class PreconditionFailed(FsnodeError):
    """A request's precondition (``If-Match``, ``If-Unmodified-Since``) does not hold."""

    code = "precondition_failed"


# ``details.reason`` of a Conflict for an idempotency key reused with another request:
# the caller must pick a new key (retrying with the same one can never succeed).
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"


class RangeNotSatisfiable(FsnodeError):
    """No requested byte range overlaps the representation."""

    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message, size=size)
        self.size = size


class Unavailable(FsnodeError):
    """No node can serve the request right now (no live edges, CA not ready...)."""

    code = "unavailable"


class OriginError(FsnodeError):
    """The origin (S3) failed after the retry budget was spent."""

    code = "origin_error"


class OriginTimeout(OriginError):
    """The origin did not answer within the retry budget."""

    code = "origin_timeout"


class IntegrityError(FsnodeError):
    """Bytes did not match their recorded SHA-256."""

    code = "integrity_error"
