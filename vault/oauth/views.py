from __future__ import annotations

import base64
import binascii
import contextlib
import time
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from vault.accounts import guards, sessions
from vault.accounts import operations as account_operations
from vault.errors import problem
from vault.extensions import csrf, db, limiter
from vault.oauth import operations
from vault.oauth.forms import ReauthenticateForm
from vault.oauth.models import OAuthClient
from vault.oauth.scopes import ALL_SCOPES, PROFILE_SCOPES, VERIFIED_CLAIMS, claim_names, disclosed
from vault.oauth.server import authorization_server, issuer, require_oauth, user_info
from vault.oauth.signing import ALGORITHMS, ensure_signing_keys, jwks
from vault.oauth.syntax import check_authorization_request, check_client_request
from vault.profile.operations import load_profile
from vault.services import keys, passwords

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


def _login_limit() -> str:
    return current_app.config["VAULT_LOGIN_RATE_LIMIT"]


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
        "claims_supported": sorted(
            {c for s in PROFILE_SCOPES for c in claim_names([s])} | set(VERIFIED_CLAIMS.values())
        ),
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
        # prompt=login or an exceeded max_age: the customer proves presence again and comes
        # back here. Never a log-out: a link from any site could otherwise end the session.
        return redirect(url_for("oauth.reauthenticate", next=request.full_path))

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
            g.oauth_decision = operations.AuthorizationDecision(existing.id, " ".join(requested))
            return server.create_authorization_response(grant_user=end_user, grant=grant)
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
    return server.create_authorization_response(grant_user=end_user, grant=grant)


def _needs_fresh_login(grant: Any) -> bool:
    """prompt=login and max_age=0 ask for a log-in made within this flow, which the vault
    reads as "in the last VAULT_FRESH_LOGIN_SECONDS" (60 s: long enough to come back from
    the log-in page, too short to pass an old session off); max_age=N asks for one within
    N seconds."""
    data = grant.request.payload.data
    limits = []
    if "login" in (data.get("prompt") or "").split():
        limits.append(0)
    if data.get("max_age") is not None:
        try:
            limits.append(max(int(data["max_age"]), 0))
        except ValueError:
            limits.append(0)
    if not limits:
        return False
    if sessions.presence_just_proved_for(request.full_path):
        # The customer has just logged in for this very request: the flow completes however
        # long the way back took (max_age=0 once looped on a slow round trip).
        return False
    allowed = min(limits) or current_app.config["VAULT_FRESH_LOGIN_SECONDS"]
    return time.time() - int(session.get("auth_time") or 0) > allowed


def _authorization_target(target: str) -> OAuthClient | None:
    """The client of a same-site authorization request URL, or None for anything else
    (this is where the re-authentication page sends the customer back to)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path != url_for("oauth.authorize"):
        return None
    client_id = dict(parse_qsl(parts.query)).get("client_id", "")
    client = db.session.get(OAuthClient, client_id) if client_id else None
    return client if client is not None and client.disabled_at is None else None


@bp.route("/oauth/reauthenticate", methods=["GET", "POST"])
@login_required
@limiter.limit(_login_limit, methods=["POST"])  # each checks the password
def reauthenticate() -> Any:
    target = request.args.get("next", "")
    client = _authorization_target(target)
    if client is None:
        return render_template(
            "oauth/error.html",
            error="invalid_request",
            description="This page continues a business's sign-in request, and none was given.",
        ), 400
    user = current_user._get_current_object()
    form = ReauthenticateForm()
    page = partial(
        render_template,
        "oauth/reauthenticate.html",
        form=form,
        vendor=client.vendor,
        needs_code=user.totp_enabled,
    )
    if form.validate_on_submit():
        # The same guessing limits as at log-in: the password, then the code, each counted.
        password = guards.own_password_subject()
        code = guards.second_factor_subject(user) if user.totp_enabled else None
        for subject in (password, code):
            wait = guards.claim(subject) if subject is not None else None
            if wait is not None:
                form.form_errors.append(wait.message)
                return guards.too_many(page(), wait)
        if passwords().verify(user.password_hash, form.password.data) and (
            code is None
            or account_operations.verify_second_factor(
                db.session, keys(), user, form.code.data or ""
            )
        ):
            session["auth_time"] = int(time.time())  # a spent code is committed with it
            sessions.proved_presence_for(target)
            for subject in (password, code):
                if subject is not None:
                    guards.guessed_right(subject)
            return redirect(target)
        guards.guessed_wrong(password, "reauthenticate", user_id=user.id)
        form.form_errors.append(
            "The password or code is not correct." if code else "The password is not correct."
        )
    return page(), 401 if form.form_errors else 400 if form.errors else 200


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
    # A replay answers 400 and keeps its revocations (vault.oauth.server marks them).
    return authorization_server().create_token_response()


@bp.post("/oauth/revoke")
@csrf.exempt
@limiter.limit(_token_limit, key_func=client_rate_key)
def revoke() -> Response:
    check_client_request()
    return authorization_server().create_endpoint_response("revocation")


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
        user_info(current_token.user, current_token.client.vendor_id, current_token.get_scope())
    )
    operations.record_access(db.session, current_token, disclosed(info), "userinfo")
    response = jsonify(info)
    response.headers["Cache-Control"] = "no-store"  # personal data: never cached
    return response
