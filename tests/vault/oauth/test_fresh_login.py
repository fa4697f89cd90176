"""prompt=login and max_age: the customer proves presence again without ever being logged
out by a link, and the flow completes after a fresh log-in (max_age=0 once looped)."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

PROFILE = {"given_name": "Ann", "family_name": "Lovelace"}


@pytest.fixture
def live_config_overrides() -> dict[str, Any]:
    # A log-in counts as "fresh" for prompt=login for one second here (60 s by default),
    # so the tests need not wait a minute for the first log-in to age.
    return {"VAULT_FRESH_LOGIN_SECONDS": 1}


def _confirm_presence(vault, browser, customer, location):
    """Follow the redirect to the re-authentication page, enter the password, and return
    where the vault sends us next."""
    assert urlsplit(location).path == "/oauth/reauthenticate"
    page = browser.get(vault.base + location, timeout=10)
    assert page.status_code == 200
    assert "Strict RP asks you to confirm who you are" in page.text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    response = browser.post(
        vault.base + location,
        data={"csrf_token": token, "password": customer.password},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text
    return response.headers["Location"]


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "2"}, {"max_age": "0"}])
def test_prompt_login_and_max_age_make_the_customer_log_in_again(vault, extra):
    client = vault.vendor("Strict RP")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    time.sleep(3)  # the first login is now older than max_age, and than any fresh one
    before = int(time.time())
    auth = vault.authorization(client, "openid email", **extra)
    first = browser.get(auth.url, allow_redirects=False, timeout=10)
    assert first.status_code == 302
    back_to = _confirm_presence(vault, browser, customer, first.headers["Location"])
    # Back to the very same request; the fresh log-in satisfies it (max_age=0 once looped).
    assert vault.base + back_to == auth.url
    page = browser.get(auth.url, allow_redirects=False, timeout=10)
    response = vault.decide(browser, page)
    tokens = vault.exchange(auth, response.headers["Location"])
    jwks = KeySet.import_key_set(requests.get(vault.meta["jwks_uri"], timeout=10).json())
    claims = jwt.decode(tokens["id_token"], jwks, algorithms=["ES256"]).claims
    assert claims["auth_time"] >= before


def test_a_slow_way_back_after_re_authentication_still_completes_the_flow(vault):
    client = vault.vendor("Strict RP")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    time.sleep(2)
    auth = vault.authorization(client, "openid email", max_age="0")
    first = browser.get(auth.url, allow_redirects=False, timeout=10)
    back_to = _confirm_presence(vault, browser, customer, first.headers["Location"])
    time.sleep(2.5)  # longer than the fresh-login window of these tests
    page = browser.get(vault.base + back_to, allow_redirects=False, timeout=10)
    assert page.status_code == 200, "the log-in made for this request satisfies it"
    # Once: the same request asked again later demands presence again.
    time.sleep(1.5)
    again = browser.get(auth.url, allow_redirects=False, timeout=10)
    assert urlsplit(again.headers["Location"]).path == "/oauth/reauthenticate"


def test_a_cross_site_prompt_login_link_does_not_log_the_customer_out(vault):
    client = vault.vendor("Strict RP")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    time.sleep(2)
    auth = vault.authorization(client, "openid email", prompt="login")
    # Another site links (or redirects) the customer's browser here; they do nothing more.
    first = browser.get(auth.url, allow_redirects=False, timeout=10)
    assert urlsplit(first.headers["Location"]).path == "/oauth/reauthenticate"
    still = browser.get(vault.base + "/connections", allow_redirects=False, timeout=10)
    assert still.status_code == 200, "the session must survive a link it did not follow up"


def test_a_wrong_password_at_re_authentication_goes_nowhere(vault):
    client = vault.vendor("Strict RP")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    time.sleep(2)
    auth = vault.authorization(client, "openid email", prompt="login")
    location = browser.get(auth.url, allow_redirects=False, timeout=10).headers["Location"]
    page = browser.get(vault.base + location, timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    wrong = browser.post(
        vault.base + location,
        data={"csrf_token": token, "password": "not the password at all"},
        allow_redirects=False,
        timeout=10,
    )
    assert wrong.status_code == 401
    assert "The password is not correct." in wrong.text
    # Still not fresh: the authorization request sends the customer back to confirm.
    again = browser.get(auth.url, allow_redirects=False, timeout=10)
    assert urlsplit(again.headers["Location"]).path == "/oauth/reauthenticate"


@pytest.mark.parametrize(
    "target", ["https://evil.example/oauth/authorize?client_id=x", "/connections", ""]
)
def test_re_authentication_only_ever_returns_to_an_authorization_request(vault, target):
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    page = browser.get(
        vault.base + "/oauth/reauthenticate", params={"next": target}, allow_redirects=False
    )
    assert page.status_code == 400
    assert "Location" not in page.headers


def test_a_customer_who_logs_in_for_prompt_login_is_not_asked_twice(vault):
    client = vault.vendor("Strict RP")
    customer = vault.customer(**PROFILE)
    auth = vault.authorization(client, "openid email", prompt="login")
    browser = requests.Session()
    to_login = browser.get(auth.url, allow_redirects=False, timeout=10)
    assert urlsplit(to_login.headers["Location"]).path == "/login"
    page = browser.get(vault.base + to_login.headers["Location"], timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    logged_in = browser.post(
        vault.base + to_login.headers["Location"],
        data={"csrf_token": token, "email": customer.email, "password": customer.password},
        allow_redirects=False,
        timeout=10,
    )
    # Straight back to the request, which the log-in just made satisfies: the consent screen.
    consent = browser.get(vault.base + logged_in.headers["Location"], allow_redirects=False)
    assert consent.status_code == 200
    response = vault.decide(browser, consent)
    assert "code=" in response.headers["Location"]


def test_guessing_the_password_at_re_authentication_is_delayed_like_at_log_in(vault):
    client = vault.vendor("Strict RP")
    customer = vault.customer(**PROFILE)
    browser = vault.browser(customer)
    time.sleep(2)
    auth = vault.authorization(client, "openid email", prompt="login")
    location = browser.get(auth.url, allow_redirects=False, timeout=10).headers["Location"]
    answers = []
    for _ in range(8):
        page = browser.get(vault.base + location, timeout=10)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
        answers.append(
            browser.post(
                vault.base + location,
                data={"csrf_token": token, "password": "a wrong guess, again"},
                allow_redirects=False,
                timeout=10,
            )
        )
    assert answers[0].status_code == 401
    delayed = [a for a in answers if a.status_code == 429]
    assert delayed, [a.status_code for a in answers]
    assert int(delayed[0].headers["Retry-After"]) > 0
    assert "Too many wrong attempts" in delayed[0].text
    # While the delay runs even the right password waits: guessing gains nothing.
    page = browser.get(vault.base + location, timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    right = browser.post(
        vault.base + location,
        data={"csrf_token": token, "password": customer.password},
        allow_redirects=False,
        timeout=10,
    )
    assert right.status_code == 429
