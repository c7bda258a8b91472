"""Who may call the gateway and how much: API keys, model allow-lists and rate limits.

A request is authenticated (401 without a known key), then admitted for a model: a model
outside the key's allow-list is a 404, as OpenAI answers for models a key cannot see, and
a key over one of its limits gets a 429 with `Retry-After`. What a request used is charged
to its key afterwards.
"""

from __future__ import annotations

from fastapi import Request

from forgeline.gateway.api_errors import ApiError, model_not_found
from forgeline.gateway.keys import ApiKey, KeyStore
from forgeline.gateway.limits import RateLimited, RateLimiter
from forgeline.gateway.metrics import GatewayMetrics

# Anonymous callers when no keys are configured: no allow-list, no limits.
OPEN_ACCESS = ApiKey(name="anonymous", sha256=b"")


class Access:
    """Authentication and admission against the configured keys.

    Args:
        keys: Accepted API keys; empty means open access.
        metrics: Where refusals over a limit are counted.
        limiter: The per-key rate limits (a fresh one by default).
    """

    def __init__(self, keys: KeyStore, metrics: GatewayMetrics, limiter: RateLimiter | None = None):
        self.keys = keys
        self.metrics = metrics
        self.limiter = limiter or RateLimiter()

    def authenticate(self, request: Request) -> ApiKey:
        """Returns the caller's key.

        Raises:
            ApiError: 401 when keys are required and the bearer key is missing or wrong.
        """
        if not self.keys.enabled:
            return OPEN_ACCESS
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
                code="invalid_api_key",
            )
        key = self.keys.authenticate(presented.strip())
        if key is None:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        return key

    def admit(self, key: ApiKey, model: str) -> dict[str, str]:
        """Checks the key's allow-list and rate limits; returns rate-limit headers.

        Raises:
            ApiError: 404 for a model outside the allow-list, 429 over a limit.
        """
        if not key.allows(model):
            raise model_not_found(model)
        try:
            return self.limiter.admit(key)
        except RateLimited as limited:
            self.metrics.rate_limited.labels(self.metrics.label(model), limited.limit).inc()
            raise ApiError(
                429, str(limited), limited.limit, None, "rate_limit_exceeded", limited.headers
            ) from None

    def charge(self, key: ApiKey, tokens: int) -> None:
        """Charges the tokens a request used to its key's token limits."""
        self.limiter.charge(key, tokens)
