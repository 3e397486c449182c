"""Business errors with a stable code; the API renders them in one shape (API.md "Errors")."""

from __future__ import annotations


class CezbekError(Exception):
    """Base of every error a caller may see: a stable `code`, an HTTP status and a safe message."""

    code = "server_error"
    status = 500

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}

    def as_dict(self) -> dict:
        error: dict = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}


class ValidationFailed(CezbekError):
    code = "validation_error"
    status = 400

    @classmethod
    def for_field(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", fields={field: [message]})


class UnknownWallet(ValidationFailed):
    code = "unknown_wallet"


class Conflict(CezbekError):
    code = "conflict"
    status = 409


class NotFound(CezbekError):
    code = "not_found"
    status = 404


class AuthenticationFailed(CezbekError):
    code = "authentication_failed"
    status = 401


class SignatureExpired(AuthenticationFailed):
    code = "signature_expired"


class ReplayedRequest(AuthenticationFailed):
    code = "replayed_request"


class Throttled(CezbekError):
    code = "throttled"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
