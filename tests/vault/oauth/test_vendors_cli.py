"""`vault vendors create`, `verify` and `unverify`: onboarding and vouching for a business
from the command line; the verified badge and the vendor URL rule end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import factories
from tests.vault.oauth.conftest import Client
from vault.accounts.models import Role
from vault.extensions import db
from vault.oauth.models import OAuthClient, secret_hash
from vault.vendors.models import ContactTopic, Vendor, VendorMember
from vault.vendors.operations import (
    VendorError,
    VendorIdentity,
    check_identity,
    create_vendor,
    update_profile,
    verify_vendor,
)
from vault.vendors.urls import UnsafeURL, check_vendor_url, loopback_http_allowed

VAULT_BIN = Path(sys.executable).with_name("vault")


def _create(app, *args: str):
    return app.test_cli_runner().invoke(args=["vendors", "create", *args])


def _counts(app) -> tuple[int, int, int]:
    with app.app_context():
        return (
            db.session.scalar(sa.select(sa.func.count()).select_from(Vendor)),
            db.session.scalar(sa.select(sa.func.count()).select_from(OAuthClient)),
            db.session.scalar(sa.select(sa.func.count()).select_from(ContactTopic)),
        )


def test_confidential_client_prints_its_secret_once_and_stores_only_a_hash(app):
    result = _create(
        app,
        "--name",
        "Acme Shop",
        "--redirect-uri",
        "https://shop.example/oauth/cb",
        "--redirect-uri",
        "http://127.0.0.1:8080/cb",
        "--scope",
        "openid",
        "--scope",
        "email",
        "--topic",
        "orders:service",
        "--topic",
        "news:marketing",
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == {"vendor_id", "client_id", "client_secret"}
    assert len(printed["client_secret"]) >= 32

    with app.app_context():
        vendor = db.session.get(Vendor, printed["vendor_id"])
        assert vendor.name == "Acme Shop"
        client = db.session.get(OAuthClient, printed["client_id"])
        assert client.vendor_id == vendor.id
        assert client.redirect_uris == ["https://shop.example/oauth/cb", "http://127.0.0.1:8080/cb"]
        assert client.scope.split() == ["openid", "email"]
        assert not client.is_public
        assert client.secret_hash == secret_hash(printed["client_secret"])
        assert client.check_client_secret(printed["client_secret"])
        assert printed["client_secret"] not in repr(
            db.session.execute(sa.text("SELECT * FROM oauth_clients")).all()
        )
        assert {(t.name, t.purpose) for t in vendor.topics} == {
            ("orders", "service"),
            ("news", "marketing"),
        }


def test_public_client_has_no_secret(app):
    result = _create(
        app, "--name", "Mobile", "--redirect-uri", "https://app.example/cb", "--public"
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == {"vendor_id", "client_id"}
    with app.app_context():
        client = db.session.get(OAuthClient, printed["client_id"])
        assert client.is_public
        assert client.secret_hash is None
        assert "client_credentials" not in client.grant_types
        # Defaults when no --scope is given.
        assert client.scope.split() == ["openid", "profile", "email"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redirect-uri", "http://shop.example/cb"], "must use https"),
        (["--redirect-uri", "http://192.168.1.10/cb"], "must use https"),
        (["--redirect-uri", "http://localhost.attacker.example/cb"], "must use https"),
        (["--redirect-uri", "https://shop.example/cb#done"], "fragment"),
        (["--redirect-uri", "https://shop.example/cb#"], "fragment"),
        (["--redirect-uri", "https://*.shop.example/cb"], "wildcard"),
        (["--redirect-uri", "/cb"], "absolute"),
        (["--redirect-uri", "javascript:alert(1)"], "absolute"),
        (
            ["--redirect-uri", "https://shop.example/cb", "--redirect-uri", "http://shop.example/"],
            "must use https",
        ),
        (
            ["--redirect-uri", "https://shop.example/cb", "--scope", "admin"],
            "unknown scopes: admin",
        ),
        (
            ["--redirect-uri", "https://shop.example/cb", "--scope", "openid", "--scope", "emial"],
            "unknown scopes: emial",
        ),
        (["--redirect-uri", "https://shop.example/cb", "--topic", "news:spam"], "purpose must be"),
        (["--redirect-uri", "https://shop.example/cb", "--topic", "news"], "NAME:CATEGORY"),
        (
            ["--redirect-uri", "https://shop.example/cb", "--topic", "ok:service", "--topic", ":x"],
            "topic name has 1 to 64 characters",
        ),
    ],
    ids=[
        "http-remote",
        "http-private-ip",
        "http-localhost-lookalike",
        "fragment",
        "empty-fragment",
        "wildcard",
        "relative",
        "javascript",
        "second-uri-bad",
        "unknown-scope",
        "typo-scope",
        "bad-category",
        "topic-without-category",
        "topic-without-name",
    ],
)
def test_bad_input_is_refused_clearly_and_creates_nothing(app, args, message):
    result = _create(app, "--name", "Acme", *args)
    assert result.exit_code != 0
    assert "Error" in result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.stdout.strip() == ""  # nothing that looks like credentials
    assert _counts(app) == (0, 0, 0)


def test_blank_name_is_refused(app):
    result = _create(app, "--name", "   ", "--redirect-uri", "https://shop.example/cb")
    assert result.exit_code != 0
    assert "name" in result.output
    assert _counts(app) == (0, 0, 0)


def test_loopback_http_is_allowed_for_development(app):
    for uri in ("http://localhost:3000/cb", "http://127.0.0.1/cb", "http://[::1]:8000/cb"):
        result = _create(app, "--name", "Dev", "--redirect-uri", uri, "--public")
        assert result.exit_code == 0, (uri, result.output)


def test_created_client_works_in_a_real_authorization(vault):
    """What the command prints is all a vendor needs for the code flow."""
    redirect_uri = vault.base + "/cb/cli"
    result = _create(
        vault.app,
        "--name",
        "Cli Co",
        "--redirect-uri",
        redirect_uri,
        "--scope",
        "openid",
        "--scope",
        "email",
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    client = Client(
        printed["vendor_id"], printed["client_id"], printed["client_secret"], redirect_uri, "Cli Co"
    )
    customer = vault.customer(given_name="Ann")
    _, tokens = vault.connect(client, vault.browser(customer), "openid email")
    profile = vault.api(tokens["access_token"])
    assert profile.status_code == 200
    assert profile.json()["email"] == customer.email


def test_the_installed_vault_command(sqlite_database, keyring_text, tmp_path):
    """The console script itself, configured only through the environment."""
    env = {
        **os.environ,
        "VAULT_ENV": "testing",
        "VAULT_DATABASE_URL": sqlite_database.url,
        "VAULT_MASTER_KEY": keyring_text,
        "VAULT_SECRET_KEY": "s" * 48,
    }
    ok = subprocess.run(
        [
            VAULT_BIN,
            "vendors",
            "create",
            "--name",
            "Shell",
            "--redirect-uri",
            "https://s.example/cb",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(ok.stdout)) == {"vendor_id", "client_id", "client_secret"}
    bad = subprocess.run(
        [VAULT_BIN, "vendors", "create", "--name", "Bad", "--redirect-uri", "http://s.example/cb"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert bad.returncode != 0
    assert "must use https" in bad.stderr
    assert bad.stdout == ""
    engine = sa.create_engine(sqlite_database.url)
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM vendors")).scalars().all()
    engine.dispose()
    assert names == ["Shell"]


# --- the verified badge (issue 9, item 4) ---------------------------------------------------


def _verify(app, vendor_id: str, *args: str, input: str | None = None):
    return app.test_cli_runner().invoke(args=["vendors", "verify", vendor_id, *args], input=input)


def _portal(vault, vendor_id: str):
    """A member of the vendor, logged in to the business portal in a browser session."""
    member = factories.customer(vault.app, role=Role.VENDOR_MEMBER)
    with vault.app.app_context():
        db.session.add(VendorMember(user_id=member.id, vendor_id=vendor_id))
        db.session.commit()
    return vault.browser(member)


def _save_profile(vault, browser, **fields: str):
    token = vault.csrf(browser, "/business")
    response = browser.post(
        vault.base + "/business/profile",
        data={"csrf_token": token, **fields},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    return browser.get(vault.base + "/business", timeout=10).text


def _badge(vault, client: Client, customer) -> str:
    """What the consent screen says about the vendor."""
    page = vault.consent_page(vault.browser(customer), vault.authorization(client, "openid").url)
    assert page.status_code == 200, page.text
    if "Verified by CMR Vault" in page.text:
        assert "Not verified" not in page.text
        return "Verified"
    assert "Not verified" in page.text
    return "Not verified"


def test_a_renamed_vendor_loses_the_badge_until_an_admin_verifies_again(vault):
    client = vault.vendor("Acme Shop", scopes=("openid",))
    customer = vault.customer()
    assert _badge(vault, client, customer) == "Not verified"

    verified = _verify(vault.app, client.vendor_id, "--by", "alice", input="y\n")
    assert verified.exit_code == 0, verified.output
    assert "Acme Shop" in verified.stderr  # shown before the admin confirms
    printed = json.loads(verified.stdout)
    assert printed["verified"] is True and printed["verified_by"] == "alice"
    assert _badge(vault, client, customer) == "Verified"

    # The attack of the issue: rename and a new website through the portal.
    browser = _portal(vault, client.vendor_id)
    assert "removes your" in browser.get(vault.base + "/business", timeout=10).text
    page = _save_profile(
        vault,
        browser,
        name="CMR Vault Security Team",
        website="https://cmr-vault-security.example/",
    )
    assert "no longer shown as verified" in page
    assert "Not verified yet" in page
    assert _badge(vault, client, customer) == "Not verified"
    with vault.app.app_context():
        vendor = db.session.get(Vendor, client.vendor_id)
        assert (vendor.verified, vendor.verified_at, vendor.verified_by) == (False, None, None)

    # An admin checks the new identity and verifies it again.
    again = _verify(vault.app, client.vendor_id, "--yes")
    assert again.exit_code == 0, again.output
    assert "CMR Vault Security Team" in again.stderr
    assert _badge(vault, client, customer) == "Verified"

    revoked = vault.app.test_cli_runner().invoke(args=["vendors", "unverify", client.vendor_id])
    assert revoked.exit_code == 0, revoked.output
    assert _badge(vault, client, customer) == "Not verified"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Acme Shop Ltd"),
        ("website", "https://acme-shop.example/"),
        ("logo_url", "https://cdn.example/acme.png"),
        ("privacy_policy_url", "https://elsewhere.example/privacy"),
    ],
)
def test_every_change_of_what_the_badge_vouches_for_clears_it(app, field, value):
    with app.app_context():
        vendor = create_vendor(db.session, "Acme Shop", website="https://acme.example/")
        db.session.commit()
        vendor_id = vendor.id
    assert _verify(app, vendor_id, "--yes").exit_code == 0
    member = factories.customer(app, role=Role.VENDOR_MEMBER)
    with app.app_context():
        db.session.add(VendorMember(user_id=member.id, vendor_id=vendor_id))
        db.session.commit()
    browser = app.test_client()
    factories.log_in(browser, member.email, member.password)
    unchanged = {"name": "Acme Shop", "website": "https://acme.example/"}
    # Saving the same details again keeps the badge.
    response = factories.post_form(browser, "/business/profile", unchanged, form_page="/business")
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(Vendor, vendor_id).verified
    response = factories.post_form(
        browser, "/business/profile", {**unchanged, field: value}, form_page="/business"
    )
    assert response.status_code == 302
    with app.app_context():
        vendor = db.session.get(Vendor, vendor_id)
        assert getattr(vendor, field) == value
        assert not vendor.verified and vendor.verified_at is None


def test_verify_refuses_when_the_vendor_changed_since_the_admin_looked(app):
    """The admin vouches for what was shown: a rename in between verifies nothing."""
    with app.app_context():
        vendor = create_vendor(db.session, "Acme Shop")
        db.session.commit()
        vendor_id = vendor.id
        seen = VendorIdentity.of(vendor)
    with app.app_context():
        update_profile(
            db.session,
            db.session.get(Vendor, vendor_id),
            name="CMR Vault Security Team",
            website=None,
            logo_url=None,
            privacy_policy_url=None,
        )
        db.session.commit()
    with app.app_context():
        with pytest.raises(VendorError, match="changed its name"):
            verify_vendor(db.session, vendor_id, seen=seen, by="alice")
        db.session.commit()
        assert not db.session.get(Vendor, vendor_id).verified


def test_a_rename_racing_a_verify_never_keeps_the_badge(app):
    """The admin's verify has updated the row but not committed yet when the business,
    having read the row, saves a new name: whichever way the database orders the two,
    the new name never carries the badge. (PostgreSQL makes the rename wait for the
    verify and then clear it; SQLite refuses the rename's stale write.)"""
    with app.app_context():
        vendor_id = create_vendor(db.session, "Acme Shop").id
        db.session.commit()
    read_done, outcome = threading.Event(), {}

    def rename() -> None:
        with app.app_context():
            vendor = db.session.get(Vendor, vendor_id)
            assert not vendor.verified  # the verify is not committed yet
            read_done.set()
            try:
                update_profile(
                    db.session,
                    vendor,
                    name="CMR Vault Security Team",
                    website=None,
                    logo_url=None,
                    privacy_policy_url=None,
                )
                db.session.commit()
                outcome["renamed"] = True
            except sa.exc.OperationalError:  # SQLite: database is locked
                db.session.rollback()
                outcome["renamed"] = False

    with app.app_context():
        seen = VendorIdentity.of(db.session.get(Vendor, vendor_id))
        verify_vendor(db.session, vendor_id, seen=seen, by="alice")  # row updated, not committed
        worker = threading.Thread(target=rename)
        worker.start()
        assert read_done.wait(10)
        time.sleep(0.5)  # the rename's UPDATE is now waiting for the verify's lock
        db.session.commit()
    worker.join(30)
    assert not worker.is_alive()
    with app.app_context():
        vendor = db.session.get(Vendor, vendor_id)
        if outcome["renamed"]:
            assert (vendor.name, vendor.verified) == ("CMR Vault Security Team", False)
        else:
            assert (vendor.name, vendor.verified) == ("Acme Shop", True)


def test_verify_of_an_unknown_vendor_is_a_clear_error(app):
    result = _verify(app, "no-such-vendor", "--yes")
    assert result.exit_code == 1
    assert "no vendor with id no-such-vendor" in result.output
    assert "Traceback" not in result.output


def test_create_verified_records_who_and_when(app):
    result = _create(
        app,
        "--name",
        "Checked Co",
        "--redirect-uri",
        "https://c.example/cb",
        "--verified",
        "--by",
        "bob",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        vendor = db.session.get(Vendor, json.loads(result.stdout)["vendor_id"])
        assert vendor.verified and vendor.verified_by == "bob" and vendor.verified_at is not None


# --- vendor URLs (issue 9, item 6) ----------------------------------------------------------


@pytest.mark.parametrize("option", ["--website", "--logo-url", "--privacy-policy-url"])
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("javascript:alert(1)", "not javascript:"),
        ("javascript://shop.example/%0Aalert(1)", "not javascript:"),
        ("data:text/html,<script>alert(1)</script>", "not data:"),
        ("http://shop.example/", "must use https"),
        ("https://user:pw@shop.example/", "user name or password"),
        ("https://", "must name a host"),
    ],
)
def test_create_refuses_unsafe_vendor_urls_as_a_usage_error(app, option, url, message):
    result = _create(
        app, "--name", "Acme", "--redirect-uri", "https://shop.example/cb", option, url
    )
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.output
    assert f"Invalid value for {option}" in result.output or f"Invalid value for '{option}'" in (
        result.output
    )
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.stdout.strip() == "" or "Usage:" in result.stdout
    assert _counts(app) == (0, 0, 0)


def test_create_accepts_https_urls_and_loopback_http_in_testing(app):
    result = _create(
        app,
        "--name",
        "Acme",
        "--redirect-uri",
        "https://shop.example/cb",
        "--website",
        "https://shop.example/",
        "--logo-url",
        "http://localhost:8000/logo.png",
        "--privacy-policy-url",
        "https://shop.example/privacy",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        vendor = db.session.get(Vendor, json.loads(result.stdout)["vendor_id"])
        assert vendor.logo_url == "http://localhost:8000/logo.png"
        assert not vendor.verified


def test_the_rule_outside_development_and_in_the_model():
    """Production refuses http even on loopback; the model refuses what no caller may store,
    whichever path sets it."""
    assert check_vendor_url("https://127.0.0.1/x") == "https://127.0.0.1/x"
    with pytest.raises(UnsafeURL, match="must use https"):
        check_vendor_url("http://127.0.0.1:8000/", loopback_http=False)
    assert check_vendor_url("http://127.0.0.1:8000/", loopback_http=True)
    with pytest.raises(UnsafeURL, match="not javascript:"):
        Vendor(name="x", website="javascript:alert(1)")
    with pytest.raises(UnsafeURL, match="not data:"):
        Vendor(name="x").logo_url = "data:image/svg+xml,<svg onload=alert(1)>"
    with pytest.raises(VendorError, match="Privacy policy URL must use https"):
        check_identity("x", privacy_policy_url="http://shop.example/")


def test_loopback_http_follows_the_configuration(app):
    with app.app_context():
        assert loopback_http_allowed()  # testing
        app.config["VAULT_ENV"] = "production"
        try:
            assert not loopback_http_allowed()
        finally:
            app.config["VAULT_ENV"] = "testing"
    assert not loopback_http_allowed()  # no app at all
