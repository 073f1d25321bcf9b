"""The CryptoMate API client used by processors: `CryptoMateClient.from_settings()`."""

from hookstream.api.client import PRODUCTION_URL, SANDBOX_URL, CryptoMateClient
from hookstream.api.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PendingApiError,
    PermanentApiError,
    RateLimitedError,
    ServerError,
    TransientApiError,
    UnauthorizedError,
    ValidationFailedError,
)
from hookstream.api.models import Pending

__all__ = [
    "PRODUCTION_URL", "SANDBOX_URL", "CryptoMateClient", "Pending",
    "ApiError", "TransientApiError", "PermanentApiError", "RateLimitedError", "ServerError",
    "ApiConnectionError", "ApiTimeoutError", "ConflictError", "PendingApiError", "BadRequestError",
    "UnauthorizedError", "NotFoundError", "ValidationFailedError",
]
