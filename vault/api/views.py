from __future__ import annotations

from authlib.integrations.flask_oauth2 import current_token
from flask import Blueprint, jsonify, render_template
from werkzeug.wrappers import Response

from vault.api.limits import per_client_limit
from vault.api.schemas import ProfileClaimsSchema
from vault.errors import problem
from vault.extensions import csrf, db
from vault.oauth import operations
from vault.oauth.scopes import claims_for, disclosed, pairwise_sub
from vault.oauth.server import require_oauth
from vault.profile import phone
from vault.profile.operations import load_profile
from vault.services import keys

bp = Blueprint("api", __name__)
profile_claims = ProfileClaimsSchema()  # built once: schema construction deep-copies fields
csrf.exempt(bp)  # bearer tokens, never cookies: nothing to forge


@bp.get("/api/v1/profile")
@require_oauth()
@per_client_limit
def profile() -> Response:
    """Exactly the claims of the scopes the customer granted this token."""
    token = current_token._get_current_object()  # the Token once, not the proxy each time
    if token.user_id is None:
        return problem(
            403,
            "no-subject",
            "No customer behind this token",
            "Client-credentials tokens act for your business; profile data needs a customer's "
            "authorization (authorization code flow).",
        )
    scopes = token.get_scope().split()  # as narrowed since issue, if it was
    profile_data = load_profile(db.session, keys(), token.user_id)
    claims = claims_for(
        profile_data,
        scopes,
        pairwise_sub(keys(), token.client.vendor_id, token.user_id),
        # token.user came with the token's query: no query more.
        phone_verified=phone.is_confirmed(keys(), token.user, profile_data.get("phone_number")),
    )
    operations.record_access(db.session, token, disclosed(claims), "GET /api/v1/profile")
    response = jsonify(profile_claims.dump(claims))
    response.headers["Cache-Control"] = "no-store"  # personal data: never cached
    return response


@bp.get("/api/openapi.json")
def openapi() -> Response:
    from vault.api.openapi import build_spec

    return jsonify(build_spec())


@bp.get("/api/docs")
def docs() -> str:
    from vault.api.openapi import build_spec

    return render_template("api/docs.html", spec=build_spec())
