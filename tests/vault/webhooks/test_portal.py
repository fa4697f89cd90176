"""The business portal's webhooks page, on SQLite and on PostgreSQL: URLs checked by
connectors.ssrf (loopback http only in development and tests), the secret shown to the
business's members and rotated, CSRF refused, another business's member kept out."""

from __future__ import annotations

import re

import pytest

from tests import factories
from tests.vault.test_business_portal import make_member
from vault.extensions import db
from vault.webhooks.models import WebhookEndpoint

PAGE = "/business/webhooks"
SECRET = re.compile(r'id="webhook-secret">(whsec_[A-Za-z0-9+/=]+)<')


@pytest.fixture
def member_client(app, client):
    member, vendor_id = make_member(app)
    factories.log_in(client, member.email, member.password)
    client.vendor_id = vendor_id
    return client


def save(client, url: str):
    return factories.post_form(client, PAGE, {"url": url})


def endpoint(app, vendor_id: str) -> WebhookEndpoint | None:
    with app.app_context():
        return db.session.get(WebhookEndpoint, vendor_id)


def shown_secret(client) -> str | None:
    page = client.get(PAGE)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    found = SECRET.search(page.get_data(as_text=True))
    return found.group(1) if found else None


def test_a_member_sets_an_endpoint_sees_the_secret_and_rotates_it(app, member_client):
    assert shown_secret(member_client) is None
    response = save(member_client, "http://127.0.0.1:8081/hooks")
    assert response.status_code == 302
    assert "Webhook endpoint saved" in member_client.get(PAGE).get_data(as_text=True)
    secret = shown_secret(member_client)
    assert secret and secret.startswith("whsec_")
    assert endpoint(app, member_client.vendor_id).url == "http://127.0.0.1:8081/hooks"

    # Changing the URL keeps the secret; rotating changes it.
    assert save(member_client, "https://93.184.215.14/in").status_code == 302
    assert shown_secret(member_client) == secret
    assert (
        factories.post_form(member_client, PAGE + "/rotate", {}, form_page=PAGE).status_code == 302
    )
    rotated = shown_secret(member_client)
    assert rotated and rotated != secret

    assert (
        factories.post_form(member_client, PAGE + "/remove", {}, form_page=PAGE).status_code == 302
    )
    assert endpoint(app, member_client.vendor_id) is None
    assert shown_secret(member_client) is None


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "ftp://example.com/", "http://user:pw@127.0.0.1/", "not a url"],
)
def test_unsafe_urls_are_refused_in_testing(app, member_client, url):
    response = save(member_client, url)
    assert response.status_code == 400
    assert "cannot receive webhooks" in response.get_data(as_text=True)
    assert endpoint(app, member_client.vendor_id) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",  # not https
        "http://127.0.0.1:8081/hooks",  # loopback http
        "https://127.0.0.1/hooks",  # loopback
        "https://localhost/hooks",
        "https://10.0.0.7/hooks",  # private
        "https://192.168.1.1/hooks",
        "https://[::1]/hooks",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
    ],
)
def test_production_refuses_http_loopback_and_private_addresses(app, member_client, url):
    app.config["VAULT_ENV"] = "production"
    try:
        response = save(member_client, url)
    finally:
        app.config["VAULT_ENV"] = "testing"
    assert response.status_code == 400
    assert endpoint(app, member_client.vendor_id) is None


def test_production_accepts_https_on_a_public_address(app, member_client):
    app.config["VAULT_ENV"] = "production"
    try:
        response = save(member_client, "https://93.184.215.14/hooks")
    finally:
        app.config["VAULT_ENV"] = "testing"
    assert response.status_code == 302
    assert endpoint(app, member_client.vendor_id).url == "https://93.184.215.14/hooks"


def test_forms_without_a_csrf_token_are_refused(app, member_client):
    assert member_client.post(PAGE, data={"url": "http://127.0.0.1:9/"}).status_code == 400
    assert endpoint(app, member_client.vendor_id) is None
    save(member_client, "http://127.0.0.1:9/")
    secret = shown_secret(member_client)
    assert member_client.post(PAGE + "/rotate").status_code == 400
    assert member_client.post(PAGE + "/remove").status_code == 400
    assert shown_secret(member_client) == secret


def test_another_business_s_member_neither_sees_nor_changes_it(app, member_client):
    save(member_client, "http://127.0.0.1:9/acme")
    secret = shown_secret(member_client)

    other_member, other_vendor = make_member(app, "Bolt")
    other = app.test_client()
    factories.log_in(other, other_member.email, other_member.password)
    page = other.get(PAGE).get_data(as_text=True)
    assert secret not in page and "127.0.0.1:9/acme" not in page
    # Their forms act on their own business only.
    factories.post_form(other, PAGE + "/rotate", {}, form_page=PAGE)
    factories.post_form(other, PAGE + "/remove", {}, form_page=PAGE)
    assert save(other, "http://127.0.0.1:9/bolt").status_code == 302
    assert shown_secret(member_client) == secret
    assert endpoint(app, member_client.vendor_id).url == "http://127.0.0.1:9/acme"
    assert endpoint(app, other_vendor).url == "http://127.0.0.1:9/bolt"


def test_customers_and_anonymous_are_kept_out(app, client, logged_in):
    assert logged_in.get(PAGE).status_code == 403
    assert app.test_client().get(PAGE).status_code == 302
