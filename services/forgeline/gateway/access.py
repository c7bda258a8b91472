"""Who may call the gateway and how much: API keys, model allow-lists and rate limits.

A request is authenticated (401 without a known key), then admitted for a model: a model
outside the key's allow-list is a 404, as OpenAI answers for models a key cannot see, and
a key over one of its limits gets a 429 with `Retry-After`. Admission reserves the tokens
a request can use; what it did use is settled with its key afterwards. When the limits
cannot be checked (their shared Redis does not answer), the request gets a 503 and the
failure is logged: a key's limit is never skipped.
"""

from __future__ import annotations

import logging

from fastapi import Request

from forgeline.gateway.api_errors import ApiError, model_not_found
from forgeline.gateway.keys import ApiKey, KeyStore
from forgeline.gateway.limits import (
    Limiter,
    LimitsUnavailable,
    RateLimited,
    RateLimiter,
    Reservation,
)
from forgeline.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# Anonymous callers when no keys are configured: no allow-list, no limits.
OPEN_ACCESS = ApiKey(name="anonymous", sha256=b"")


class Access:
    """Authentication and admission against the configured keys.

    Args:
        keys: Accepted API keys; empty means open access.
        metrics: Where refusals over a limit are counted.
        limiter: The per-key rate limits (in this process by default).
    """

    def __init__(self, keys: KeyStore, metrics: GatewayMetrics, limiter: Limiter | None = None):
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

    def allow(self, key: ApiKey, model: str) -> None:
        """Checks the key's allow-list.

        Raises:
            ApiError: 404 for a model outside the allow-list.
        """
        if not key.allows(model):
            raise model_not_found(model)

    async def admit(
        self,
        key: ApiKey,
        model: str,
        generations: int = 1,
        tokens: int = 0,
        bounded: bool = True,
    ) -> Reservation:
        """Checks the key's allow-list and rate limits, reserving what the request needs.

        Args:
            key: The caller's key.
            model: The model asked for.
            generations: Generations the request starts (prompts x `n`).
            tokens: Upper bound of the tokens it can use (see `Limiter.reserve`).
            bounded: Whether `tokens` is a real bound.

        Raises:
            ApiError: 404 for a model outside the allow-list, 429 over a limit, 503 when
                the limits cannot be checked.
        """
        self.allow(key, model)
        try:
            return await self.limiter.reserve(key, generations, tokens, bounded)
        except LimitsUnavailable as exc:
            log.error("key %s refused: its rate limits cannot be checked: %s", key.name, exc)
            raise ApiError(
                503,
                "The gateway cannot check this key's rate limits right now; try again shortly.",
                "server_error",
                None,
                "rate_limits_unavailable",
            ) from None
        except RateLimited as limited:
            self.metrics.rate_limited.labels(self.metrics.label(model), limited.limit).inc()
            raise ApiError(
                429, str(limited), limited.limit, None, "rate_limit_exceeded", limited.headers
            ) from None

    def settle(self, reservation: Reservation, used: int) -> None:
        """Settles a finished request's reservation with the tokens it used."""
        self.limiter.settle(reservation, used)
