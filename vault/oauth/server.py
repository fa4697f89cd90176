"""Authlib's authorization server and resource protector, wired to the vault's models.

Policy lives here as small subclasses: PKCE with S256 for every client, codes and refresh
tokens that detect replay, client credentials limited to vendor-level scopes. Token and
PKCE mechanics are Authlib's.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, current_app, g, request, session
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from vault import transactions
from vault.accounts.models import User
from vault.errors import problem
from vault.extensions import db
from vault.logs import audit
from vault.models import utcnow
from vault.oauth import operations
from vault.oauth.models import (
    AuthorizationCode,
    OAuthClient,
    Token,
    secret_hash,
)
from vault.oauth.scopes import API_SCOPES, claims_for, pairwise_sub
from vault.oauth.signing import current_signing_key
from vault.profile import phone
from vault.profile.operations import load_profile
from vault.services import keys

CONFIDENTIAL_OR_PUBLIC = ["client_secret_basic", "client_secret_post", "none"]
CONFIDENTIAL = ["client_secret_basic", "client_secret_post"]


def issuer() -> str:
    return current_app.config.get("VAULT_ISSUER") or request.host_url.rstrip("/")


def _replayed(event: str, **fields: str | None) -> None:
    """A replay answers 400 invalid_grant, and what it revoked must stay revoked."""
    audit(event, **fields)
    transactions.commit_despite_error()


class VaultAuthorizationServer(AuthorizationServer):
    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        """Authlib tries one method after another; a request carrying two (HTTP Basic and a
        secret in the body) is refused instead, as RFC 6749 2.3 requires."""
        if request.headers.get("Authorization") and request.form.get("client_secret"):
            raise InvalidRequestError(
                "Use one client authentication method: HTTP Basic or client_secret in the "
                "body, not both (RFC 6749 section 2.3)."
            )
        return super().authenticate_client(request, methods, endpoint)


class RequiredS256(CodeChallenge):
    """PKCE for every client, S256 only (RFC 9700 2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code: AuthorizationCode) -> str:
        return authorization_code.code_challenge or ""

    def get_authorization_code_challenge_method(self, authorization_code: AuthorizationCode) -> str:
        return authorization_code.code_challenge_method or "S256"


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_OR_PUBLIC

    def save_authorization_code(self, code: str, request: Any) -> AuthorizationCode:
        # The view stores the customer's decision (approved scopes, the grant) in g.
        decision: operations.AuthorizationDecision = g.oauth_decision
        payload = request.payload
        row = AuthorizationCode(
            code_hash=secret_hash(code),
            client_id=request.client.client_id,
            user_id=request.user.id,
            grant_id=decision.grant_id,
            redirect_uri=payload.redirect_uri or request.client.get_default_redirect_uri(),
            scope=decision.scope,
            nonce=payload.data.get("nonce"),
            code_challenge=payload.data.get("code_challenge"),
            code_challenge_method=payload.data.get("code_challenge_method"),
            auth_time=int(session.get("auth_time") or time.time()),
            expires_at=utcnow() + timedelta(seconds=current_app.config["VAULT_CODE_LIFETIME"]),
        )
        db.session.add(row)
        db.session.flush()
        return row

    def query_authorization_code(self, code: str, client: OAuthClient) -> AuthorizationCode | None:
        row = db.session.scalar(
            select(AuthorizationCode).where(AuthorizationCode.code_hash == secret_hash(code))
        )
        if row is None or row.client_id != client.client_id:
            return None
        if row.used_at is not None:
            # A replayed code: whoever holds it may be an attacker, so everything the first
            # exchange issued dies too (RFC 6749 4.1.2).
            operations.revoke_tokens_of_code(db.session, row.id)
            _replayed("code_replay", client_id=client.client_id, grant_id=row.grant_id)
            return None
        if row.expires_at <= utcnow() or not row.grant.is_active():
            # A code waiting while the customer ended the connection reveals nothing.
            return None
        return row

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Spend the code, atomically: of two requests redeeming it at once, only the one
        whose UPDATE claims the row wins; the other is a replay, and what either issued
        is revoked before its tokens ever leave (Authlib calls this after save_token)."""
        if not operations.claim_code(db.session, authorization_code.id):
            operations.revoke_tokens_of_code(db.session, authorization_code.id)
            _replayed(
                "code_replay",
                client_id=authorization_code.client_id,
                grant_id=authorization_code.grant_id,
            )
            raise InvalidGrantError("The authorization code was already used.")

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Any:
        user = authorization_code.user
        return user if user is not None and user.is_active else None


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_OR_PUBLIC
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotate on every use

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = db.session.scalar(
            select(Token).where(Token.refresh_token_hash == secret_hash(refresh_token))
        )
        if token is None:
            return None
        if token.refresh_used_at is not None:
            # Reuse of a spent refresh token: end the whole grant (RFC 9700 4.14.2).
            if token.grant is not None:
                operations.revoke_grant(db.session, token.grant, reason="refresh_token_replay")
            _replayed("refresh_replay", client_id=token.client_id, grant_id=token.grant_id)
            return None
        return token if token.is_refresh_usable() else None

    def authenticate_user(self, refresh_token: Token) -> Any:
        user = refresh_token.user
        return user if user is not None and user.is_active else None

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Spend the refresh token, atomically (Authlib calls this after save_token): if a
        concurrent request spent it first, this one is a replay and the grant ends, which
        revokes what both requests issued."""
        if not operations.claim_refresh_token(db.session, refresh_token.id):
            if refresh_token.grant is not None:
                operations.revoke_grant(
                    db.session, refresh_token.grant, reason="refresh_token_replay"
                )
            else:
                operations.revoke_tokens(db.session, Token.id == refresh_token.id)
            _replayed(
                "refresh_replay",
                client_id=refresh_token.client_id,
                grant_id=refresh_token.grant_id,
            )
            raise InvalidGrantError("The refresh token was already used.")


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """For vendor-level API calls; never reaches a customer's profile."""

    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = scope_to_list(self.request.payload.scope) or []
        not_vendor_level = [s for s in requested if s not in API_SCOPES]
        if not_vendor_level:
            names = " ".join(not_vendor_level)
            raise InvalidScopeError(
                f"client credentials carry vendor-level scopes only, not {names}"
            )


class VaultOpenIDCode(OpenIDCode):
    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return (
            db.session.scalar(
                select(AuthorizationCode.id)
                .where(
                    AuthorizationCode.client_id == request.payload.client_id,
                    AuthorizationCode.nonce == nonce,
                )
                .limit(1)
            )
            is not None
        )

    def get_client_algorithm(self, client: OAuthClient) -> str:
        return client.id_token_signed_response_alg

    def resolve_client_private_key(self, client: OAuthClient) -> Any:
        return current_signing_key(db.session, keys(), client.id_token_signed_response_alg)

    def get_encode_header(self, client: OAuthClient) -> dict[str, str]:
        alg = client.id_token_signed_response_alg
        key = current_signing_key(db.session, keys(), alg)
        return {"alg": alg, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client: OAuthClient) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": issuer(),
            "aud": [client.client_id],
            "iat": now,
            "exp": now + current_app.config["VAULT_ID_TOKEN_LIFETIME"],
        }

    def generate_user_info(self, user: Any, scope: str) -> UserInfo:
        """The id_token says who signed in (a pairwise ``sub``) and nothing more: profile
        claims go out only through userinfo and the API, where each read is recorded
        against a live grant (OIDC Core 5.4 allows this)."""
        client: OAuthClient = request_client()
        return UserInfo(sub=pairwise_sub(keys(), client.vendor_id, user.id))

    def process_token(self, grant: Any, response: Any) -> Any:
        token = super().process_token(grant, response)
        if "id_token" in token and grant.request.authorization_code is not None:
            # The sign-in is a disclosure too (of the pseudonymous id): on /activity.
            operations.record_access(db.session, grant.request.authorization_code, [], "id_token")
        return token


def request_client() -> OAuthClient:
    return g.oauth_client


def user_info(user: User, vendor_id: str, scope: str) -> UserInfo:
    profile = load_profile(db.session, keys(), user.id)
    return UserInfo(
        claims_for(
            profile,
            scope,
            pairwise_sub(keys(), vendor_id, user.id),
            phone_verified=phone.is_confirmed(keys(), user, profile.get("phone_number")),
        )
    )


def query_client(client_id: str) -> OAuthClient | None:
    client = db.session.get(OAuthClient, client_id)
    if client is None or client.disabled_at is not None:
        return None
    g.oauth_client = client
    return client


def save_token(token: dict[str, Any], request: Any) -> None:
    client: OAuthClient = request.client
    grant_id = None
    code_id = None
    if request.authorization_code is not None:
        grant_id = request.authorization_code.grant_id
        code_id = request.authorization_code.id
    elif getattr(request, "refresh_token", None) is not None:
        grant_id = request.refresh_token.grant_id
        code_id = request.refresh_token.code_id
    refresh = token.get("refresh_token")
    now = int(time.time())
    db.session.add(
        Token(
            client_id=client.client_id,
            user_id=request.user.id if request.user is not None else None,
            grant_id=grant_id,
            code_id=code_id,
            access_token_hash=secret_hash(token["access_token"]),
            refresh_token_hash=secret_hash(refresh) if refresh else None,
            token_type=token.get("token_type", "Bearer"),
            scope=token.get("scope", ""),
            issued_at=now,
            expires_in=int(token["expires_in"]),
            refresh_expires_at=now + current_app.config["VAULT_REFRESH_TOKEN_LIFETIME"]
            if refresh
            else None,
        )
    )
    db.session.flush()


def _find_token(token_string: str, hint: str | None) -> Token | None:
    digest = secret_hash(token_string)
    columns = [Token.access_token_hash, Token.refresh_token_hash]
    if hint == "refresh_token":
        columns.reverse()
    for column in columns:
        token = db.session.scalar(select(Token).where(column == digest))
        if token is not None:
            return token
    return None


class VaultRevocationEndpoint(RevocationEndpoint):
    CLIENT_AUTH_METHODS = CONFIDENTIAL_OR_PUBLIC

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _find_token(token_string, token_type_hint)

    def revoke_token(self, token: Token, request: Any) -> None:
        token.revoked_at = token.revoked_at or utcnow()


class VaultIntrospectionEndpoint(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CONFIDENTIAL

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _find_token(token_string, token_type_hint)

    def check_permission(self, token: Token, client: OAuthClient, request: Any) -> bool:
        # A vendor may introspect only tokens issued to its own clients.
        return token.client.vendor_id == client.vendor_id

    def introspect_token(self, token: Token) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "active": True,
            "client_id": token.client_id,
            "token_type": token.token_type,
            "scope": token.get_scope(),
            "iss": issuer(),
            "exp": token.get_expires_at(),
            "iat": token.issued_at,
        }
        if token.user_id is not None:
            payload["sub"] = pairwise_sub(keys(), token.client.vendor_id, token.user_id)
        return payload


# The token and everything ``Token.is_revoked`` and ``Token.get_scope`` read, in one query;
# built once, as every API request runs it.
_BEARER_TOKEN_QUERY = (
    select(Token)
    .options(
        joinedload(Token.client, innerjoin=True), joinedload(Token.grant), joinedload(Token.user)
    )
    .where(Token.access_token_hash == bindparam("digest"))
)


class VaultBearerTokenValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> Token | None:
        return db.session.scalar(_BEARER_TOKEN_QUERY, {"digest": secret_hash(token_string)})


class ProblemResourceProtector(ResourceProtector):
    """Bearer errors as problem+json that still carry RFC 6750's ``error`` member and
    ``WWW-Authenticate`` header, so OAuth client libraries understand them too."""

    def raise_error_response(self, error: Any) -> None:
        from werkzeug.exceptions import abort

        body = dict(error.get_body())
        response = problem(
            error.status_code,
            body.get("error", "invalid-request").replace("_", "-"),
            {
                "invalid_token": "Invalid token",
                "insufficient_scope": "Insufficient scope",
                "missing_authorization": "Missing bearer token",
            }.get(body.get("error", ""), "Unauthorized"),
            body.get("error_description") or None,
            **body,
        )
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        if body.get("error") == "insufficient_scope" and "WWW-Authenticate" not in response.headers:
            # RFC 6750 3: every bearer error carries the challenge, 403s included.
            response.headers["WWW-Authenticate"] = 'Bearer error="insufficient_scope"'
        if body.get("error") in ("missing_authorization", "unsupported_token_type"):
            # No bearer token at all: a plain challenge without an error code (RFC 6750
            # 3.1); Authlib's "bearer error=missing_authorization" is no RFC 6750 error.
            response.headers["WWW-Authenticate"] = "Bearer"
        abort(response)


require_oauth = ProblemResourceProtector()
require_oauth.register_token_validator(VaultBearerTokenValidator())


def authorization_server() -> VaultAuthorizationServer:
    return current_app.extensions["vault.oauth"]


def init_oauth(app: Flask) -> None:
    app.config.setdefault(
        "OAUTH2_TOKEN_EXPIRES_IN",
        {
            "authorization_code": app.config["VAULT_ACCESS_TOKEN_LIFETIME"],
            "refresh_token": app.config["VAULT_ACCESS_TOKEN_LIFETIME"],
            "client_credentials": app.config["VAULT_CLIENT_TOKEN_LIFETIME"],
        },
    )
    app.config.setdefault("OAUTH2_REFRESH_TOKEN_GENERATOR", True)
    server = VaultAuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.register_grant(AuthorizationCodeGrant, [RequiredS256(required=True), VaultOpenIDCode()])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(VaultRevocationEndpoint)
    server.register_endpoint(VaultIntrospectionEndpoint)
    app.extensions["vault.oauth"] = server
