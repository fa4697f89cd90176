"""The vendor consent API under /api/v1 (client credentials; scopes consent:*).

Every call acts for the vendor that owns the token's client: another vendor's subjects and
topics do not exist for it. Client-credentials tokens see all of the vendor's subjects (the
customers who have or had a grant with it). A token from the authorization code flow is
accepted too if it carries the scope, but it speaks for one customer: it sees that
customer's subject only, every other ``sub`` is unknown to it.
"""

from __future__ import annotations

import math
import time

from authlib.integrations.flask_oauth2 import current_token
from flask import Blueprint, current_app, jsonify, request, url_for
from limits import parse_many
from marshmallow import ValidationError
from werkzeug.wrappers import Response

from vault.accounts.models import AccountStatus, User
from vault.api.consent_schemas import (
    CheckBatchSchema,
    ConsentRequestInputSchema,
    load_check_batch,
)
from vault.api.limits import per_client_limit
from vault.api.vendor_calls import (
    customer_of,
    invalid,
    json_object,
    no_store,
    token_vendor,
    unknown_subject,
)
from vault.consents import vendor_api
from vault.consents.models import ConsentRequest
from vault.errors import problem
from vault.extensions import csrf, db, limiter
from vault.models import utcnow
from vault.oauth.scopes import pairwise_sub
from vault.oauth.server import issuer, require_oauth
from vault.services import keys

bp = Blueprint("consent_api", __name__)
csrf.exempt(bp)  # bearer tokens, never cookies

# Built once: schema construction deep-copies fields.
check_batch_schema = CheckBatchSchema()
request_input_schema = ConsentRequestInputSchema()

# 10,000 items with 64-character subs are about 1.2 MB of JSON: above the app-wide limit.
CHECK_MAX_BYTES = 4 * 1024 * 1024


@bp.get("/api/v1/consents/<sub>")
@require_oauth("consent:read")
@per_client_limit
def subject_consents(sub: str) -> Response:
    """This vendor's settings and current decisions for one subject."""
    vendor = token_vendor()
    user_id = customer_of(vendor, sub)
    view = (
        vendor_api.subject_view(db.session, vendor, sub, user_id, utcnow())
        if user_id is not None
        else None
    )
    if view is None:
        return unknown_subject()
    return no_store(jsonify(view))


@bp.post("/api/v1/consents/check")
@require_oauth("consent:check")
@per_client_limit
def check() -> Response:
    """A batch of up to 10,000 (sub, channel, topic): one result per item, in order."""
    request.max_content_length = CHECK_MAX_BYTES
    body = json_object()
    if body is None:
        return invalid({"_schema": ['a JSON object {"items": [...]}']})
    try:
        batch = load_check_batch(check_batch_schema, body)
    except ValidationError as error:
        return invalid(error.messages)
    results = vendor_api.check_batch(
        db.session,
        token_vendor(),
        batch["items"],
        utcnow(),
        only_user=current_token.user_id,
    )
    return no_store(jsonify(results=results))


REQUEST_NAMESPACE = "consent-request"


def _admit_request(vendor_id: str, user_id: str) -> None:
    """Count one new consent request of this business to this customer against
    ``VAULT_CONSENT_REQUEST_RATE_LIMIT`` (in the rate limiter's storage, shared by every
    process when it is Redis); over the limit, refuse it with 429 and Retry-After.

    ``hit`` counts and checks in one step (an atomic increment in Redis), so concurrent
    requests cannot all slip under the limit. With several limits (``"3 per day; 10 per
    month"``), one refused by a later limit still counts against the earlier ones, as the
    API's per-client limit does."""
    strategy = limiter.limiter
    keys_ = (REQUEST_NAMESPACE, vendor_id, user_id)
    for item in parse_many(current_app.config["VAULT_CONSENT_REQUEST_RATE_LIMIT"]):
        if not strategy.hit(item, *keys_):
            reset_at = strategy.get_window_stats(item, *keys_).reset_time
            raise vendor_api.RequestError(
                "consent-request-limit",
                "Too many consent requests",
                "Your business may send this customer no more new consent requests for now "
                f"(limit: {item}); wait before asking again.",
                status=429,
                retry_after=max(1, math.ceil(reset_at - time.time())),
            )


def _request_response(row: ConsentRequest, sub: str, status: int) -> Response:
    response = jsonify(vendor_api.request_view(db.session, row, sub))
    response.status_code = status
    response.headers["Location"] = issuer() + url_for(
        "consent_api.consent_request", request_id=row.id
    )
    return no_store(response)


@bp.post("/api/v1/consent-requests")
@require_oauth("consent:request")
@per_client_limit
def create_consent_request() -> Response:
    """Propose topics and channels to a subject; 201 new, 200 an identical pending one."""
    body = json_object()
    if body is None:
        return invalid({"_schema": ["a JSON object"]})
    try:
        data = request_input_schema.load(body)
    except ValidationError as error:
        return invalid(error.messages)
    vendor = token_vendor()
    user_id = customer_of(vendor, data["sub"])
    user = db.session.get(User, user_id) if user_id is not None else None
    if user is None:
        return unknown_subject()
    # A refusal (vendor_api.RequestError) is answered by vault.errors as problem+json.
    result = vendor_api.request_consent(
        db.session,
        vendor,
        user.id,
        data["topics"],
        data["channels"],
        data["message"],
        account_active=user.status == AccountStatus.ACTIVE,
        now=utcnow(),
        admit=lambda: _admit_request(vendor.id, user.id),
    )
    return _request_response(result.request, data["sub"], 201 if result.created else 200)


@bp.get("/api/v1/consent-requests/<request_id>")
@require_oauth("consent:request")
@per_client_limit
def consent_request(request_id: str) -> Response:
    """One of this vendor's requests, with the customer's answer once given."""
    vendor = token_vendor()
    row = db.session.get(ConsentRequest, request_id)
    only_user = current_token.user_id
    if row is None or row.vendor_id != vendor.id or only_user not in (None, row.user_id):
        return problem(404, "not-found", "Not found", "No such consent request of yours.")
    return _request_response(row, pairwise_sub(keys(), vendor.id, row.user_id), 200)
