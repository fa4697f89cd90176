"""Bad input is a 4xx with a clear body, never a 500 (issue 9, item 10).

Each answer comes in the form its caller reads: a page on /oauth/authorize and other pages,
RFC 6749 error JSON on the token endpoint, problem+json under /api/. Runs on SQLite and on
PostgreSQL (where NUL characters in text used to be a 500 of their own).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from vault import create_app
from vault.extensions import db
from vault.profile.operations import load_profile
from vault.services import keys
from vault.vendors.operations import create_client, create_vendor

REDIRECT_URI = "https://shop.example/cb"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 appendix B
FORBIDDEN = {"newline": "\n", "quote": '"', "backslash": "\\"}


@dataclass(frozen=True)
class Registered:
    client_id: str
    client_secret: str


@pytest.fixture
def registered(app: Flask) -> Registered:
    with app.app_context():
        vendor = create_vendor(db.session, "Shop")
        new = create_client(
            db.session,
            vendor,
            redirect_uris=[REDIRECT_URI],
            scopes=["openid", "profile", "consent:check", "consent:request"],
        )
        db.session.commit()
        return Registered(new.client.client_id, new.client_secret)


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _client_token(client: FlaskClient, registered: Registered) -> str:
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "consent:check"},
        headers=_basic(registered.client_id, registered.client_secret),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


def _authorize_query(**changes: str) -> str:
    params = {
        "client_id": "",
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile",
        "state": "s1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **changes,
    }
    return "/oauth/authorize?" + urlencode(params)


# --- /oauth/authorize: a page, never a redirect, never a 500 ---------------------------------


@pytest.mark.parametrize("parameter", ["redirect_uri", "response_type"])
@pytest.mark.parametrize("char", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_authorize_parameter_with_forbidden_characters_is_a_page_not_a_500(
    client, registered, parameter, char
):
    value = (REDIRECT_URI if parameter == "redirect_uri" else "code") + char
    # No log-in: anybody can send this link.
    response = client.get(_authorize_query(client_id=registered.client_id, **{parameter: value}))
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers  # no redirect to an unchecked URI
    page = response.get_data(as_text=True)
    assert parameter in page and "RFC 6749" in page


def test_authorize_with_a_forbidden_character_in_the_scope_is_refused(client, registered):
    response = client.get(_authorize_query(client_id=registered.client_id, scope='openid "x'))
    assert response.status_code == 400
    assert "scope" in response.get_data(as_text=True)


# --- the token endpoint: RFC 6749 JSON, never HTML --------------------------------------------


def _assert_oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == error
    assert body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    return body


@pytest.mark.parametrize("char", ['"', "\\"], ids=["quote", "backslash"])
def test_token_request_scope_with_forbidden_characters_is_invalid_request(client, registered, char):
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": f"consent:check x{char}y"},
        headers=_basic(registered.client_id, registered.client_secret),
    )
    body = _assert_oauth_error(response, 400, "invalid_request")
    assert "scope" in body["error_description"]


@pytest.mark.parametrize(
    "credentials",
    [b"\xff\xfe:secret", b"client:\xc3\x28", b"\xed\xa0\x80:x"],
    ids=["latin-1", "broken-utf8", "encoded-surrogate"],
)
def test_token_request_with_non_utf8_basic_credentials_is_invalid_client(client, credentials):
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()},
    )
    _assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_oauth_endpoints_answer_a_wrong_method_in_rfc6749_json_with_allow(client, path):
    response = client.get(path)
    _assert_oauth_error(response, 405, "invalid_request")
    assert "POST" in response.headers["Allow"]


# --- JSON bodies ----------------------------------------------------------------------------


def _check(client: FlaskClient, token: str, body: str) -> Any:
    return client.post(
        "/api/v1/consents/check",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def _assert_problem(response: Any, status: int, words: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert words in body["detail"]
    return body


def test_json_nested_5000_levels_is_a_400_problem(client, registered):
    token = _client_token(client, registered)
    body = '{"items": ' + "[" * 5000 + "]" * 5000 + "}"
    _assert_problem(_check(client, token, body), 400, "nested too deeply")


@pytest.mark.parametrize(
    ("escape", "words"),
    [("\\u0000", "NUL"), ("\\ud800", "lone surrogate"), ("x\\udfffy", "lone surrogate")],
)
def test_json_strings_with_nul_or_lone_surrogates_are_a_400_problem(
    client, registered, escape, words
):
    token = _client_token(client, registered)
    body = '{"items": [{"sub": "SUB", "channel": "email", "topic": "news"}]}'.replace("SUB", escape)
    _assert_problem(_check(client, token, body), 400, words)


def test_json_with_a_proper_surrogate_pair_and_escaped_backslash_u_is_fine(client, registered):
    """The pre-check looks for escapes; what they decode to decides."""
    token = _client_token(client, registered)
    body = '{"items": [{"sub": "\\ud83d\\ude00 \\\\u0000", "channel": "email", "topic": "n"}]}'
    response = _check(client, token, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["results"][0]["error"] == "unknown_subject"


# --- forms and query strings ----------------------------------------------------------------


def test_nul_in_a_form_field_is_a_400_page_naming_the_field(app, client, customer):
    token = factories.csrf_token(client, "/login")
    response = client.post(
        "/login",
        data={"csrf_token": token, "email": customer.email + "\x00", "password": "x"},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "email" in page and "NUL" in page


def test_nul_in_a_query_parameter_is_a_400(client):
    response = client.get("/login?next=%00")
    assert response.status_code == 400
    assert "NUL" in response.get_data(as_text=True)


def test_encoded_surrogate_in_a_form_is_never_a_500(client, customer):
    """Browsers cannot send a lone surrogate; its UTF-8-like bytes decode to U+FFFD."""
    token = factories.csrf_token(client, "/login")
    response = client.post(
        "/login",
        data=f"csrf_token={token}&email=%ED%A0%80&password=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code < 500


# --- profile text ---------------------------------------------------------------------------

INVISIBLE = {
    "zero-width space": "\u200b",
    "zero-width joiner": "\u200d",
    "byte-order mark": "\ufeff",
    "right-to-left override": "\u202e",
    "bell": "\x07",
    "escape": "\x1b",
    "tab": "\t",
    "line separator": "\u2028",
}


@pytest.mark.parametrize("field", ["given_name", "nickname", "address.street_address"])
@pytest.mark.parametrize("char", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_profile_text_refuses_control_and_invisible_characters(
    app, logged_in, customer, field, char
):
    with app.app_context():
        before = load_profile(db.session, keys(), customer.id)
    response = factories.post_form(
        logged_in,
        "/profile",
        {"email": customer.email, field: f"Ada{char}Lovelace"},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f"U+{ord(char):04X}" in page
    with app.app_context():
        assert load_profile(db.session, keys(), customer.id) == before


def test_profile_text_keeps_letters_of_every_script(app, logged_in, customer):
    name = "Zoë Ñúñez 李 O'Brien-Smith"
    response = factories.post_form(
        logged_in, "/profile", {"email": customer.email, "given_name": name}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        assert load_profile(db.session, keys(), customer.id)["given_name"] == name


# --- 405 with Allow, in each form --------------------------------------------------------------


def test_405_on_a_page_carries_allow(client):
    response = client.delete("/login")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert response.mimetype == "text/html"


def test_405_on_the_api_carries_allow_and_is_a_problem(client):
    response = client.put("/api/v1/profile")
    _assert_problem(response, 405, "not allowed")
    assert "GET" in response.headers["Allow"]


# --- error bodies match the OpenAPI document ---------------------------------------------------


def _problem_schema(client: FlaskClient) -> dict[str, Any]:
    return client.get("/api/openapi.json").get_json()["components"]["schemas"]["Problem"]


def test_api_error_bodies_match_the_problem_schema(client, registered):
    import jsonschema_rs  # schemathesis's validator

    schema = _problem_schema(client)
    token = _client_token(client, registered)
    bodies = {
        "invalid request (errors)": _check(client, token, '{"items": [{"sub": 1}]}'),
        "bearer failure (error, error_description)": client.get(
            "/api/v1/profile", headers={"Authorization": "Bearer nope"}
        ),
        "invalid input": _check(client, token, '{"items": ["\\u0000"]}'),
        "method not allowed": client.put("/api/v1/profile"),
    }
    for name, response in bodies.items():
        assert response.mimetype == "application/problem+json", name
        jsonschema_rs.validate(schema, response.get_json())  # raises, naming the member


# --- unexpected errors --------------------------------------------------------------------------


def test_an_unexpected_error_is_a_500_that_never_shows_the_exception(app_config):
    app = create_app({**app_config, "PROPAGATE_EXCEPTIONS": False})

    @app.get("/api/v1/boom")
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret-internal-detail")

    client = app.test_client()
    api = client.get("/api/v1/boom")
    assert api.status_code == 500 and api.mimetype == "application/problem+json"
    page = client.get("/boom")
    assert page.status_code == 500 and page.mimetype == "text/html"
    for response in (api, page):
        assert "secret-internal-detail" not in response.get_data(as_text=True)
        assert "Traceback" not in response.get_data(as_text=True)
    with app.app_context():
        db.engine.dispose()
    assert json.loads(api.get_data())["type"].endswith("/internal-server-error")
