"""The business portal: only members of a vendor reach it, and only their own vendor."""

from __future__ import annotations

import json
import re

import pytest

from tests import factories
from vault.accounts.models import Role
from vault.extensions import db
from vault.oauth.models import OAuthClient, secret_hash
from vault.vendors.models import ContactTopic, Vendor, VendorMember
from vault.vendors.operations import create_client, create_vendor


def make_member(app, vendor_name="Acme Corp"):
    with app.app_context():
        vendor = create_vendor(db.session, vendor_name)
        db.session.commit()
        vendor_id = vendor.id
    member = factories.customer(app, role=Role.VENDOR_MEMBER)
    with app.app_context():
        db.session.add(VendorMember(user_id=member.id, vendor_id=vendor_id))
        db.session.commit()
    return member, vendor_id


@pytest.fixture
def member_client(app, client):
    member, vendor_id = make_member(app)
    factories.log_in(client, member.email, member.password)
    client.vendor_id = vendor_id
    return client


def test_customer_and_anonymous_cannot_enter(app, client, logged_in):
    assert logged_in.get("/business").status_code == 403
    assert app.test_client().get("/business").status_code == 302


def test_member_creates_confidential_client_and_sees_secret_once(app, member_client):
    response = factories.post_form(
        member_client,
        "/business/clients",
        {"name": "Shop", "redirect_uris": "https://shop.example/cb", "scopes": ["openid", "email"]},
        form_page="/business",
    )
    assert response.status_code == 200
    secret = re.search(r'id="client-secret">([^<]+)<', response.get_data(as_text=True)).group(1)
    with app.app_context():
        client = db.session.scalars(
            db.select(OAuthClient).where(OAuthClient.vendor_id == member_client.vendor_id)
        ).one()
        assert client.secret_hash == secret_hash(secret)
        assert client.scope == "openid email"
    assert secret not in member_client.get("/business").get_data(as_text=True)


def test_bad_redirect_uri_is_refused_and_nothing_created(app, member_client):
    response = factories.post_form(
        member_client,
        "/business/clients",
        {"redirect_uris": "http://shop.example/cb", "scopes": ["openid"]},
        form_page="/business",
    )
    assert response.status_code == 400
    assert "must use https" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(OAuthClient)) == 0


def test_rotating_a_secret_invalidates_the_old_one(app, member_client):
    with app.app_context():
        vendor = db.session.get(Vendor, member_client.vendor_id)
        new = create_client(db.session, vendor, redirect_uris=["https://a.example/cb"])
        db.session.commit()
        client_id, old_secret = new.client.client_id, new.client_secret
    response = factories.post_form(
        member_client, f"/business/clients/{client_id}/rotate-secret", {}, form_page="/business"
    )
    assert response.status_code == 200
    fresh = re.search(r'id="client-secret">([^<]+)<', response.get_data(as_text=True)).group(1)
    with app.app_context():
        client = db.session.get(OAuthClient, client_id)
        assert client.check_client_secret(fresh)
        assert not client.check_client_secret(old_secret)


def test_member_cannot_touch_another_vendors_client(app, member_client):
    with app.app_context():
        other = create_vendor(db.session, "Other")
        new = create_client(db.session, other, redirect_uris=["https://o.example/cb"])
        db.session.commit()
        client_id, before = new.client.client_id, new.client.secret_hash
    response = factories.post_form(
        member_client, f"/business/clients/{client_id}/rotate-secret", {}, form_page="/business"
    )
    assert response.status_code == 404
    with app.app_context():
        assert db.session.get(OAuthClient, client_id).secret_hash == before


def test_changing_a_topic_description_makes_a_new_version(app, member_client):
    for description in ("Weekly deals", "Weekly deals", "Daily deals"):
        response = factories.post_form(
            member_client,
            "/business/topics",
            {"name": "newsletter", "purpose": "marketing", "description": description},
            form_page="/business",
        )
        assert response.status_code == 302
    with app.app_context():
        topic = db.session.scalars(db.select(ContactTopic)).one()
        assert (topic.version, topic.description) == (2, "Daily deals")


def test_profile_rejects_a_non_url_and_keeps_the_old_values(app, member_client):
    response = factories.post_form(
        member_client,
        "/business/profile",
        {"name": "Acme Corp", "website": "not a url"},
        form_page="/business",
    )
    assert response.status_code == 400
    assert "Website must be a full https:// address" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Vendor, member_client.vendor_id).website is None


UNSAFE_URLS = [
    ("javascript:alert(document.cookie)", "not javascript:"),
    ("JavaScript:alert(1)", "not javascript:"),
    # Passes WTForms' URL() validator, which the portal used before: a scheme and "//".
    ("javascript://shop.example/%0Aalert(1)", "not javascript:"),
    ("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "not data:"),
    ("vbscript:msgbox(1)", "not vbscript:"),
    ("ftp://shop.example/logo.png", "not ftp:"),
    ("http://shop.example/", "must use https"),
    ("http://192.168.1.10/", "must use https"),
    ("http://localhost.attacker.example/", "must use https"),
    ("https://shop.example@attacker.example/", "user name or password"),
    ("https://user:secret@shop.example/", "user name or password"),
    ("https:///just-a-path", "must name a host"),
    ("//shop.example/logo.png", "full https:// address"),
    ("/logo.png", "full https:// address"),
    ("https://shop.example\\@attacker.example/", "backslashes"),
    ("https://shop.example/\tpath", "control characters"),
    ("https://shop.example:99999/", "invalid port"),
    ("https://shop_example.com/", "invalid host name"),
]


@pytest.mark.parametrize("field", ["website", "logo_url", "privacy_policy_url"])
@pytest.mark.parametrize(("url", "message"), UNSAFE_URLS, ids=[u for u, _ in UNSAFE_URLS])
def test_portal_refuses_unsafe_vendor_urls_and_changes_nothing(
    app, member_client, field, url, message
):
    response = factories.post_form(
        member_client,
        "/business/profile",
        {"name": "Renamed Corp", field: url},
        form_page="/business",
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        vendor = db.session.get(Vendor, member_client.vendor_id)
        assert (vendor.name, vendor.website, vendor.logo_url, vendor.privacy_policy_url) == (
            "Acme Corp",
            None,
            None,
            None,
        )


def test_portal_accepts_https_and_loopback_http_in_testing(app, member_client):
    response = factories.post_form(
        member_client,
        "/business/profile",
        {
            "name": "Acme Corp",
            "website": "  https://acme.example/  ",
            "logo_url": "http://127.0.0.1:8000/logo.png",
            "privacy_policy_url": "http://[::1]:8000/privacy",
        },
        form_page="/business",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        vendor = db.session.get(Vendor, member_client.vendor_id)
        assert (vendor.website, vendor.logo_url, vendor.privacy_policy_url) == (
            "https://acme.example/",
            "http://127.0.0.1:8000/logo.png",
            "http://[::1]:8000/privacy",
        )


def test_cli_add_member_creates_a_portal_account(app):
    with app.app_context():
        vendor = create_vendor(db.session, "CLI Co")
        db.session.commit()
        vendor_id = vendor.id
    result = app.test_cli_runner().invoke(
        args=[
            "vendors",
            "add-member",
            "--vendor-id",
            vendor_id,
            "--email",
            "m@cli.example",
            "--password-stdin",
        ],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    user_id = json.loads(result.output)["user_id"]
    client = app.test_client()
    factories.log_in(client, "m@cli.example", "a long enough password")
    assert client.get("/business").status_code == 200
    with app.app_context():
        assert db.session.get(VendorMember, user_id).vendor_id == vendor_id
