"""The vendor API's per-client rate limit.

It counts with the ``limits`` strategy and storage that Flask-Limiter built from the
``RATELIMIT_*`` settings (the same counters, Redis included), through their public API
(``Limiter.limiter``), keyed by the token's client, which only exists once the bearer
token is accepted. Flask-Limiter's per-request machinery (resolving decorated, default and
blueprint limits twice a request, exemption scopes, its request context) would cost more
than the counting itself on every API read, so the API blueprints are left out of its own
before- and after-request passes (``request_filter``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import ParamSpec

from authlib.integrations.flask_oauth2 import current_token
from flask import current_app, make_response, request
from limits import RateLimitItem, parse_many
from werkzeug.wrappers import Response

from vault.errors import problem
from vault.extensions import limiter

API_BLUEPRINTS = frozenset({"api", "consent_api", "messages_api"})
NAMESPACE = "api-client"

P = ParamSpec("P")


@limiter.request_filter
def _limited_by_the_api_itself() -> bool:
    return request.blueprint in API_BLUEPRINTS


@lru_cache(maxsize=8)
def _limits(text: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(text))


def per_client_limit(view: Callable[P, Response]) -> Callable[P, Response]:
    """Count the request against ``VAULT_API_RATE_LIMIT`` of the token's client; over the
    limit, answer 429 problem+json with ``Retry-After``. Goes below ``require_oauth``, so
    only accepted tokens are counted and the key is the client, not the address."""

    @wraps(view)
    def limited(*args: P.args, **kwargs: P.kwargs) -> Response:
        strategy = limiter.limiter
        client_id = current_token.client_id
        items = _limits(current_app.config["VAULT_API_RATE_LIMIT"])
        for item in items:
            if not strategy.hit(item, NAMESPACE, client_id):
                reset_at = strategy.get_window_stats(item, NAMESPACE, client_id).reset_time
                response = problem(
                    429,
                    "rate-limited",
                    "Too many requests",
                    f"Your client may make {item} API requests; wait before trying again.",
                )
                response.headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
                return response
        response = make_response(view(*args, **kwargs))
        # The tightest of the limits, as Flask-Limiter's X-RateLimit-* headers report it.
        item = items[0]
        stats = strategy.get_window_stats(item, NAMESPACE, client_id)
        for other in items[1:]:
            other_stats = strategy.get_window_stats(other, NAMESPACE, client_id)
            if other_stats.remaining < stats.remaining:
                item, stats = other, other_stats
        response.headers["X-RateLimit-Limit"] = str(item.amount)
        response.headers["X-RateLimit-Remaining"] = str(stats.remaining)
        response.headers["X-RateLimit-Reset"] = str(int(stats.reset_time))
        return response

    return limited
