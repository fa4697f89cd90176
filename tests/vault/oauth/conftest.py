"""A live vault for OAuth tests: the vendor is Authlib's real OAuth 2.0 client, the customer
a ``requests`` session that logs in and clicks through the consent screen over HTTP.

Every test that takes ``vault`` runs on SQLite and on PostgreSQL (see ``tests/conftest.py``).
Session cookies are Secure in the app; python-requests does not send Secure cookies over
http://127.0.0.1, so the live app here turns that off (and nothing else).
"""

from __future__ import annotations

import html
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask
from werkzeug.serving import make_server

from tests import factories
from tests.conftest import TestDatabase, _app_config
from vault import create_app
from vault.extensions import db

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_FORM_ACTION = re.compile(r'<form method="post" action="(/oauth/authorize[^"]*)"')


@dataclass(frozen=True)
class Client:
    vendor_id: str
    client_id: str
    client_secret: str | None
    redirect_uri: str
    vendor_name: str


@dataclass
class Authorization:
    """One authorization request as the vendor built it."""

    url: str
    state: str
    verifier: str
    nonce: str
    oauth: OAuth2Session


class Vault:
    def __init__(self, app: Flask, base: str) -> None:
        self.app = app
        self.base = base
        self.meta: dict[str, Any] = requests.get(
            base + "/.well-known/openid-configuration", timeout=10
        ).json()

    # --- set-up through the app's own operations --------------------------------------------

    def vendor(
        self,
        name: str = "Acme",
        *,
        scopes: tuple[str, ...] = ("openid", "profile", "email", "phone"),
        public: bool = False,
        redirect_uri: str | None = None,
        id_token_alg: str = "ES256",
    ) -> Client:
        from vault.vendors.operations import create_client, create_vendor

        redirect_uri = redirect_uri or f"{self.base}/cb/{secrets.token_hex(4)}"
        with self.app.app_context():
            vendor = create_vendor(db.session, name)
            new = create_client(
                db.session,
                vendor,
                redirect_uris=[redirect_uri],
                public=public,
                scopes=scopes,
                id_token_alg=id_token_alg,
            )
            db.session.commit()
            return Client(vendor.id, new.client.client_id, new.client_secret, redirect_uri, name)

    def customer(self, **profile: Any) -> factories.CreatedUser:
        return factories.customer(self.app, profile=profile or None)

    def sql(self, statement: str, **params: Any) -> list[Any]:
        import sqlalchemy as sa

        with self.app.app_context():
            result = db.session.execute(sa.text(statement), params)
            rows = list(result) if result.returns_rows else []
            db.session.commit()
            return rows

    # --- the customer's browser ---------------------------------------------------------------

    def browser(self, user: factories.CreatedUser) -> requests.Session:
        session = requests.Session()
        page = session.get(self.base + "/login", timeout=10)
        token = _CSRF.search(page.text).group(1)
        response = session.post(
            self.base + "/login",
            data={"csrf_token": token, "email": user.email, "password": user.password},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, response.text
        return session

    def csrf(self, browser: requests.Session, path: str) -> str:
        page = browser.get(self.base + path, timeout=10)
        match = _CSRF.search(page.text)
        assert match, f"no CSRF token on {path} ({page.status_code})"
        return match.group(1)

    # --- the vendor ---------------------------------------------------------------------------

    def oauth(self, client: Client, scope: str = "openid profile email phone") -> OAuth2Session:
        return OAuth2Session(
            client.client_id,
            client.client_secret,
            scope=scope,
            redirect_uri=client.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if client.client_secret else "none",
        )

    def authorization(
        self, client: Client, scope: str = "openid profile email phone", **extra: str
    ) -> Authorization:
        oauth = self.oauth(client, scope)
        verifier = generate_token(48)
        nonce = generate_token(16)
        url, state = oauth.create_authorization_url(
            self.meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra
        )
        return Authorization(url, state, verifier, nonce, oauth)

    def consent_page(self, browser: requests.Session, url: str) -> requests.Response:
        return browser.get(url, allow_redirects=False, timeout=10)

    def decide(
        self,
        browser: requests.Session,
        page: requests.Response,
        *,
        decision: str = "approve",
        scopes: list[str] | None = None,
        duration: str = "1y",
    ) -> requests.Response:
        """Submit the consent form like a browser: ``scopes`` are the ticked boxes."""
        assert page.status_code == 200, page.text
        action = html.unescape(_FORM_ACTION.search(page.text).group(1))
        token = _CSRF.search(page.text).group(1)
        if scopes is None:  # leave every box ticked
            scopes = re.findall(r'name="approve_scope" value="([^"]+)"', page.text)
        response = browser.post(
            self.base + action,
            data={
                "csrf_token": token,
                "decision": decision,
                "approve_scope": scopes,
                "duration": duration,
            },
            allow_redirects=False,
            timeout=10,
        )
        return response

    def exchange(self, auth: Authorization, location: str, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("code_verifier", auth.verifier)
        return dict(
            auth.oauth.fetch_token(
                self.meta["token_endpoint"], authorization_response=location, **kwargs
            )
        )

    def connect(
        self,
        client: Client,
        browser: requests.Session,
        scope: str = "openid profile email phone",
        *,
        approve: list[str] | None = None,
        duration: str = "1y",
    ) -> tuple[Authorization, dict[str, Any]]:
        """The whole code flow: authorize, consent, exchange. Returns the tokens."""
        auth = self.authorization(client, scope)
        page = self.consent_page(browser, auth.url)
        response = self.decide(browser, page, scopes=approve, duration=duration)
        assert response.status_code == 302, response.text
        return auth, self.exchange(auth, response.headers["Location"])

    def refresh(self, auth: Authorization) -> dict[str, Any]:
        """Refresh like a vendor that keeps what was granted: no ``scope`` parameter (the
        session's own is what it asked for, which may be more than the customer approved)."""
        auth.oauth.scope = None
        return dict(auth.oauth.refresh_token(self.meta["token_endpoint"]))

    def api(self, access_token: str, path: str = "/api/v1/profile") -> requests.Response:
        return requests.get(
            self.base + path, headers={"Authorization": f"Bearer {access_token}"}, timeout=10
        )

    def introspect(self, client: Client, token: str) -> dict[str, Any]:
        response = requests.post(
            self.meta["introspection_endpoint"],
            data={"token": token},
            auth=(client.client_id, client.client_secret or ""),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def token_request(
        self, data: dict[str, str], client: Client | None = None
    ) -> requests.Response:
        auth = (client.client_id, client.client_secret) if client and client.client_secret else None
        return requests.post(self.meta["token_endpoint"], data=data, auth=auth, timeout=10)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def live_config_overrides() -> dict[str, Any]:
    """Settings a test module changes for its live vault (override this fixture)."""
    return {}


@pytest.fixture
def live_oauth_app(
    database: TestDatabase, keyring_text: str, live_config_overrides: dict[str, Any]
) -> Iterator[Flask]:
    app = create_app(
        _app_config(
            database,
            keyring_text,
            SESSION_COOKIE_SECURE=False,
            VAULT_LOGIN_RATE_LIMIT="1000 per minute",
            **live_config_overrides,
        )
    )
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def vault(live_oauth_app: Flask) -> Iterator[Vault]:
    server = make_server("127.0.0.1", 0, live_oauth_app, threaded=True)
    # A short poll interval: shutdown() otherwise waits up to half a second per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Vault(live_oauth_app, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(timeout=5)
