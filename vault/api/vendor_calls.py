"""What every business API endpoint does around its own work: whose token it is, which
customer a sub names, the JSON body, and the answers shared by all of them."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import current_token
from flask import request
from werkzeug.wrappers import Response

from vault.errors import problem
from vault.extensions import db
from vault.oauth.operations import resolve_subjects
from vault.vendors.models import Vendor


def token_vendor() -> Vendor:
    """The business whose client holds the request's token."""
    vendor = db.session.get(Vendor, current_token.client.vendor_id)
    assert vendor is not None  # a client's vendor cascades with it
    return vendor


def customer_of(vendor: Vendor, sub: str) -> str | None:
    """The user id behind one of the vendor's subs (only the token's own customer, for a
    token issued for one)."""
    return resolve_subjects(db.session, vendor.id, [sub], current_token.user_id).get(sub)


def json_object() -> dict[str, Any] | None:
    """The request's JSON body if it is an object, else None."""
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


def invalid(errors: Any) -> Response:
    return problem(
        422,
        "invalid-request",
        "Invalid request body",
        "The request body does not match the schema; see errors.",
        errors=errors,
    )


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def unknown_subject() -> Response:
    return problem(
        404, "unknown-subject", "Unknown subject", "This sub is not one of your customers."
    )
