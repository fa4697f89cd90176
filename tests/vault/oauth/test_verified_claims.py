"""``email_verified`` and ``phone_number_verified`` (OIDC Core 5.1) beside the claims they
qualify, at userinfo and the profile API: the e-mail always (confirmed at sign-up), the
phone number only once confirmed by its code, and no longer after it changes."""

from __future__ import annotations

import json

from tests import factories

NUMBER, OTHER = "+14155550123", "+14155550177"


def _reads(vault, user_id):
    rows = vault.sql(
        "SELECT endpoint, claims FROM access_events WHERE user_id = :u ORDER BY id", u=user_id
    )
    return [(e, json.loads(c) if isinstance(c, str) else c) for e, c in rows]


def test_the_flags_follow_the_phone_confirmation(vault):
    client = vault.vendor()
    customer = factories.customer_with_phone(vault.app, number=NUMBER, confirmed=False)
    browser = vault.browser(customer)
    _, tokens = vault.connect(client, browser, "openid email phone")

    def both() -> list[dict]:
        return [
            vault.api(tokens["access_token"]).json(),
            vault.api(tokens["access_token"], "/oauth/userinfo").json(),
        ]

    for claims in both():
        assert claims["email"] == customer.email and claims["email_verified"] is True
        assert claims["phone_number"] == NUMBER and claims["phone_number_verified"] is False

    factories.confirm_phone(vault.app, customer.id)
    for claims in both():
        assert claims["phone_number"] == NUMBER and claims["phone_number_verified"] is True

    # A new number in the profile is unconfirmed again.
    response = browser.post(
        vault.base + "/profile",
        data={
            "csrf_token": vault.csrf(browser, "/profile"),
            "email": customer.email,
            "phone_number": OTHER,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302
    for claims in both():
        assert claims["phone_number"] == OTHER and claims["phone_number_verified"] is False

    # The access log names the fields read, not the flags that go with them.
    reads = [claims for endpoint, claims in _reads(vault, customer.id) if endpoint != "id_token"]
    assert reads and all(claims == ["email", "phone_number"] for claims in reads)


def test_no_flag_without_its_claim(vault):
    client = vault.vendor()
    customer = vault.customer(given_name="Ann")  # no phone number
    _, tokens = vault.connect(client, vault.browser(customer), "openid profile email phone")
    claims = vault.api(tokens["access_token"]).json()
    assert "phone_number" not in claims and "phone_number_verified" not in claims
    assert claims["email_verified"] is True
    # Without the email scope, neither the address nor its flag.
    other = vault.vendor("Other")
    _, narrow = vault.connect(other, vault.browser(customer), "openid profile")
    assert not {"email", "email_verified"} & set(vault.api(narrow["access_token"]).json())


def test_discovery_lists_the_flags(vault):
    supported = set(vault.meta["claims_supported"])
    assert {"email_verified", "phone_number_verified", "email", "phone_number"} <= supported
