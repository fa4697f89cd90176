"""Discovery documents (RFC 8414, OpenID Connect Discovery) and the JWKS they point at."""

from __future__ import annotations

import requests
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc.jwk import KeySet

ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
)


def _get(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


def test_both_documents_list_every_endpoint_and_validate(vault):
    oidc = _get(vault.base + "/.well-known/openid-configuration")
    rfc8414 = _get(vault.base + "/.well-known/oauth-authorization-server")
    assert oidc.status_code == rfc8414.status_code == 200
    assert oidc.headers["Content-Type"].startswith("application/json")
    for document in (oidc.json(), rfc8414.json()):
        assert document["issuer"] == vault.base
        for name in ENDPOINTS:
            assert document[name].startswith(vault.base + "/"), name
        assert document["code_challenge_methods_supported"] == ["S256"]
        assert document["response_types_supported"] == ["code"]
        assert "plain" not in document["code_challenge_methods_supported"]
        assert document["subject_types_supported"] == ["pairwise"]
        assert set(document["id_token_signing_alg_values_supported"]) == {"ES256", "RS256"}
        assert {"authorization_code", "refresh_token"} <= set(document["grant_types_supported"])
        assert {"openid", "profile", "email", "phone", "address"} <= set(
            document["scopes_supported"]
        )
    # Authlib's own validators of both specifications accept the documents ...
    AuthorizationServerMetadata(rfc8414.json()).validate()
    OpenIDProviderMetadata(oidc.json()).validate()


def test_every_listed_endpoint_exists(vault):
    meta = vault.meta
    # GET-able documents answer 200; POST endpoints answer an OAuth error, not a 404/405.
    assert _get(meta["jwks_uri"]).status_code == 200
    for name in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        response = requests.post(meta[name], data={}, timeout=10)
        assert response.status_code in (400, 401), (name, response.status_code)
        assert "error" in response.json(), name
    userinfo = _get(meta["userinfo_endpoint"])
    assert userinfo.status_code == 401
    assert "WWW-Authenticate" in userinfo.headers
    authorize = _get(meta["authorization_endpoint"])
    assert authorize.status_code == 400  # no client_id: an error page, not a 404


def test_jwks_serves_es256_and_rs256_public_keys_on_a_fresh_vault(vault):
    """A relying party may fetch the JWKS before the first id_token was ever signed."""
    response = _get(vault.meta["jwks_uri"])
    assert response.status_code == 200
    document = response.json()
    assert document["keys"], "the JWKS of a fresh vault is empty"
    assert {key["alg"] for key in document["keys"]} == {"ES256", "RS256"}
    for key in document["keys"]:
        if key["alg"] == "ES256":
            assert (key["kty"], key["crv"]) == ("EC", "P-256")
        else:
            assert key["kty"] == "RSA" and len(key["n"]) >= 342  # 2048-bit modulus
        assert key["use"] == "sig"
        assert key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "a private key is published"
    KeySet.import_key_set(document)  # a valid JWK Set
    # Serving it again does not mint another key.
    assert _get(vault.meta["jwks_uri"]).json() == document
