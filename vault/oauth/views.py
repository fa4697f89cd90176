from __future__ import annotations

import base64
import binascii
import contextlib
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError
from flask import (
    Blueprint,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter.util import get_remote_address
from flask_login import current_user, logout_user
from werkzeug.wrappers import Response

from vault.api.problems import problem
from vault.extensions import csrf, db, limiter
from vault.oauth import operations
from vault.oauth.models import OAuthClient
from vault.oauth.scopes import ALL_SCOPES, PROFILE_SCOPES, claim_names
from vault.oauth.server import authorization_server, issuer, require_oauth, user_info
from vault.oauth.signing import ALGORITHMS, ensure_signing_keys, jwks
from vault.oauth.syntax import check_authorization_request, check_client_request
from vault.profile.operations import load_profile
from vault.services import keys

bp = Blueprint("oauth", __name__)


def client_rate_key() -> str:
    """Rate-limit the token endpoints per client and address: keyed on the client alone,
    anyone could spend a vendor's budget by sending its client_id with a wrong secret."""
    client_id = request.form.get("client_id", "")
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("basic "):
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            client_id = base64.b64decode(auth[6:]).decode().partition(":")[0]
    return f"client:{client_id}:{get_remote_address()}"


def _token_limit() -> str:
    return current_app.config["VAULT_TOKEN_RATE_LIMIT"]


# --- discovery ------------------------------------------------------------------------------


def server_metadata() -> dict[str, Any]:
    base = issuer()

    def url(endpoint: str) -> str:
        return base + url_for(endpoint)

    return {
        "issuer": base,
        "authorization_endpoint": url("oauth.authorize"),
        "token_endpoint": url("oauth.token"),
        "revocation_endpoint": url("oauth.revoke"),
        "introspection_endpoint": url("oauth.introspect"),
        "userinfo_endpoint": url("oauth.userinfo"),
        "jwks_uri": url("oauth.jwks_document"),
        "scopes_supported": sorted(ALL_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "claims_supported": sorted({c for s in PROFILE_SCOPES for c in claim_names([s])}),
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": False,
        "service_documentation": base + url_for("api.docs"),
    }


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    return jsonify(server_metadata())


@bp.get("/oauth/jwks.json")
def jwks_document() -> Response:
    document = jwks(db.session)
    if {key["alg"] for key in document["keys"]} < set(ALGORITHMS):
        # A fresh vault has not signed anything yet; relying parties fetch the JWKS ahead
        # of the first id_token, so publish the keys that will sign it.
        ensure_signing_keys(db.session, keys())
        db.session.commit()
        document = jwks(db.session)
    response = jsonify(document)
    response.cache_control.max_age = 300
    response.cache_control.public = True
    return response


# --- authorization endpoint and the consent screen ------------------------------------------


def _error_page(error: OAuth2Error) -> tuple[str, int]:
    return render_template(
        "oauth/error.html", error=error.error, description=error.get_error_description()
    ), 400


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    check_authorization_request()
    server = authorization_server()
    end_user = current_user._get_current_object() if current_user.is_authenticated else None
    try:
        grant = server.get_consent_grant(end_user=end_user)
    except OAuth2Error as error:
        # Only after the client and its exact redirect URI checked out may we redirect;
        # before that (unknown client, unregistered URI) the answer is a page, never a redirect.
        if getattr(error, "redirect_uri", None):
            return server.handle_error_response(request, error)
        return _error_page(error)
    if end_user is None:
        return current_app.login_manager.unauthorized()
    if not end_user.is_customer:
        return render_template(
            "oauth/error.html",
            error="access_denied",
            description="Only customer accounts can grant businesses access to a profile.",
        ), 403

    if request.method == "GET" and _needs_fresh_login(grant):
        # prompt=login or an exceeded max_age: the customer proves presence again, then
        # comes back to this request (without prompt=login, so it does not loop).
        logout_user()
        session.clear()
        return redirect(url_for("accounts.login", next=_without_prompt_login()))

    client: OAuthClient = grant.client
    requested = [
        s
        for s in (grant.request.payload.scope or "").split()
        if s in PROFILE_SCOPES and s in client.scope.split()
    ]
    prompt = (grant.request.payload.data.get("prompt") or "").split()
    existing = operations.active_grant(db.session, end_user.id, client.client_id)

    if request.method == "GET":
        if operations.grant_covers(existing, requested) and "consent" not in prompt:
            g.oauth_decision = operations.Decision(existing.id, " ".join(requested))
            response = server.create_authorization_response(grant_user=end_user, grant=grant)
            db.session.commit()
            return response
        if "none" in prompt:
            # The vendor asked for no screen, and consent is missing (OIDC Core 3.1.2.6).
            return server.handle_error_response(
                request,
                ConsentRequiredError(
                    redirect_uri=grant.redirect_uri, state=grant.request.payload.state
                ),
            )
        profile = load_profile(db.session, keys(), end_user.id)
        return render_template(
            "oauth/consent.html",
            client=client,
            vendor=client.vendor,
            scopes=[PROFILE_SCOPES[s] for s in requested],
            preview={s: _preview(profile, s) for s in requested},
            durations=operations.DURATION_LABELS,
            action=request.full_path,
        )

    if request.form.get("decision") != "approve":
        return server.create_authorization_response(grant_user=None, grant=grant)
    duration = request.form.get("duration", "")
    if duration not in operations.DURATIONS:
        return render_template(
            "oauth/error.html", error="invalid_request", description="Choose how long to grant."
        ), 400
    ticked = set(request.form.getlist("approve_scope"))
    approved = [s for s in requested if s == "openid" or s in ticked]
    declined = [s for s in requested if s not in approved]
    g.oauth_decision = operations.approve(
        db.session, keys(), end_user.id, client, approved, duration, declined=declined
    )
    response = server.create_authorization_response(grant_user=end_user, grant=grant)
    db.session.commit()
    return response


def _needs_fresh_login(grant: Any) -> bool:
    data = grant.request.payload.data
    if "login" in (data.get("prompt") or "").split():
        return True
    max_age = data.get("max_age")
    if max_age is not None:
        try:
            limit = int(max_age)
        except ValueError:
            return True
        return time.time() - int(session.get("auth_time") or 0) > limit
    return False


def _without_prompt_login() -> str:
    query = [
        (name, " ".join(p for p in value.split() if p != "login") if name == "prompt" else value)
        for name, value in parse_qsl(request.query_string.decode(), keep_blank_values=True)
    ]
    return request.path + "?" + urlencode([(n, v) for n, v in query if n != "prompt" or v])


def _preview(profile: dict[str, Any], scope: str) -> list[tuple[str, str]]:
    """What this scope would reveal, as (claim, value) the customer can check."""
    shown = []
    for claim in PROFILE_SCOPES[scope].claims:
        value = profile.get(claim)
        if claim == "sub":
            shown.append(("id", "a pseudonym only this business sees"))
        elif isinstance(value, dict):
            shown.append((claim, ", ".join(str(v) for v in value.values())))
        elif isinstance(value, list):
            shown.append((claim, ", ".join(value)))
        elif value:
            shown.append((claim, str(value)))
    return shown


# --- token, revocation, introspection, userinfo ---------------------------------------------


@bp.post("/oauth/token")
@csrf.exempt
@limiter.limit(_token_limit, key_func=client_rate_key)
def token() -> Response:
    check_client_request()
    response = authorization_server().create_token_response()
    db.session.commit()  # replay detection revokes even when the answer is an error
    return response


@bp.post("/oauth/revoke")
@csrf.exempt
@limiter.limit(_token_limit, key_func=client_rate_key)
def revoke() -> Response:
    check_client_request()
    response = authorization_server().create_endpoint_response("revocation")
    db.session.commit()
    return response


@bp.post("/oauth/introspect")
@csrf.exempt
@limiter.limit(_token_limit, key_func=client_rate_key)
def introspect() -> Response:
    check_client_request()
    return authorization_server().create_endpoint_response("introspection")


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@csrf.exempt
@require_oauth("openid")
def userinfo() -> Response:
    from authlib.integrations.flask_oauth2 import current_token

    if current_token.user_id is None:
        return problem(403, "insufficient-scope", "No customer", "This token has no subject.")
    info = dict(
        user_info(current_token.user_id, current_token.client.vendor_id, current_token.scope)
    )
    operations.record_access(
        db.session, current_token, sorted(k for k in info if k != "sub"), "userinfo"
    )
    db.session.commit()
    response = jsonify(info)
    response.headers["Cache-Control"] = "no-store"  # personal data: never cached
    return response
