"""The domain error hierarchy. Each class carries the HTTP status it stands for; each
server turns a raised one into its JSON answer (docs/PROTOCOL.md, Errors) in one place."""

from __future__ import annotations

from typing import Any, ClassVar


class FsnodeError(Exception):
    """Base of every domain error: a stable code, a human message, optional details."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

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
    status = 400


class Unauthorized(FsnodeError):
    """No credential, or one that is not valid."""

    code = "unauthorized"
    status = 401


class Forbidden(FsnodeError):
    """A valid caller asking for something it may not have (bad or expired signature)."""

    code = "forbidden"
    status = 403


class NotFound(FsnodeError):
    """The named thing does not exist."""

    code = "not_found"
    status = 404


class Gone(FsnodeError):
    """The thing existed but was deleted or expired."""

    code = "gone"
    status = 410


class Conflict(FsnodeError):
    """A conditional write lost a race, or the state forbids the change."""

    code = "conflict"
    status = 409


class PreconditionFailed(FsnodeError):
    """A request's precondition (``If-Match``, ``If-Unmodified-Since``) does not hold."""

    code = "precondition_failed"
    status = 412


# ``details.reason`` of a Conflict for an idempotency key reused with another request:
# the caller must pick a new key (retrying with the same one can never succeed).
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
# ``details.reason`` of a node route's 410 for a node out of the fleet: a dead node's
# edge registers as a new node; a drained node's edge leaves (it must not come back).
NODE_DEAD_REASON = "node_dead"
NODE_DRAINED_REASON = "node_drained"


class RangeNotSatisfiable(FsnodeError):
    """No requested byte range overlaps the representation."""

    code = "range_not_satisfiable"
    status = 416

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message, size=size)
        self.size = size


class Unavailable(FsnodeError):
    """No node can serve the request right now (no live edges, CA not ready...)."""

    code = "unavailable"
    status = 503


class OriginError(FsnodeError):
    """The origin (S3) failed after the retry budget was spent."""

    code = "origin_error"
    status = 502


class OriginTimeout(OriginError):
    """The origin did not answer within the retry budget."""

    code = "origin_timeout"
    status = 504


class IntegrityError(FsnodeError):
    """Bytes did not match their recorded SHA-256."""

    code = "integrity_error"
    status = 502
