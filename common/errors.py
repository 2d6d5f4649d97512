"""The application's error hierarchy; `web` maps each class to an HTTP status in one place."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of every error a user may see. `message` is shown (Chinese), `detail` is logged."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, detail: Any = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.field = field


class NotFoundError(AppError):
    status_code = 404
    code = "not_found"


class PermissionDeniedError(AppError):
    status_code = 403
    code = "forbidden"


class AuthenticationError(AppError):
    status_code = 401
    code = "unauthenticated"


class ValidationFailedError(AppError):
    status_code = 422
    code = "invalid"


class ConflictError(AppError):
    status_code = 409
    code = "conflict"


class RateLimitedError(AppError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class StorageUnavailableError(AppError):
    """The media storage (disk or S3-compatible bucket) refused or could not be reached."""

    status_code = 503
    code = "storage_unavailable"


class ImportRowError(ValidationFailedError):
    """One or more bad rows in an uploaded file; nothing was imported."""

    code = "import_rejected"

    def __init__(self, message: str, *, rows: list[dict[str, Any]]) -> None:
        super().__init__(message, detail=rows)
        self.rows = rows
