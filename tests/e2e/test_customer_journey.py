"""A person's whole journey through the vault, in a real (headless) chromium.

Sign up, fill in the profile, get a validation error, download the data, delete the
account, and find that the old password no longer opens anything. Screenshots of the
main pages go to ``VAULT_E2E_SCREENSHOTS`` (default: the system temp dir) as
``vault-*.png`` so a person can look at the layout.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests import factories

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(os.environ.get("VAULT_E2E_SCREENSHOTS", tempfile.gettempdir()))
PHONE = "+14155550123"
MOBILE = {"width": 375, "height": 812}


def expect() -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"vault-{name}.png"), full_page=True)


def assert_no_horizontal_scroll(page: Any) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the viewport"


def test_sign_up_fill_profile_export_and_delete(live_server: str, page: Any, mailbox: Any) -> None:
    check = expect()
    email = factories.unique_email("journey")
    password = factories.DEFAULT_PASSWORD

    # The landing page leads to sign-up.
    page.goto(live_server + "/")
    check(page.get_by_role("heading", name="Your data. Your terms.")).to_be_visible()
    screenshot(page, "landing")
    page.get_by_role("link", name="Create your vault").click()
    check(page).to_have_url(re.compile(r"/signup$"))

    page.get_by_label("E-mail").fill(email)
    page.get_by_role("button", name="Create account").click()
    check(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    check(page.get_by_role("status")).to_contain_text(email)
    screenshot(page, "check-inbox")

    # The link in the mail (read from the loopback SMTP server) leads to the password.
    page.goto(live_server + factories.confirmation_path(mailbox, email))
    check(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat password").fill(password)
    page.get_by_role("button", name="Create my vault").click()

    # A new account lands on its profile, with the e-mail already filled in.
    check(page).to_have_url(re.compile(r"/profile$"))
    check(page.get_by_role("status")).to_contain_text("Welcome to your vault")
    check(page.get_by_label("E-mail (also your login)")).to_have_value(email)

    page.get_by_label("Given name").fill("Ada")
    page.get_by_label("Family name").fill("Lovelace")
    page.get_by_label("Phone number").fill(PHONE)
    page.get_by_label("City").fill("San Francisco")
    page.get_by_label("Birthdate").fill("1990-05-17")
    page.get_by_label("Interests").fill("cycling, jazz, Cycling, cooking")
    page.get_by_role("button", name="Save profile").click()

    check(page.get_by_role("status")).to_have_text("Your profile was saved.")
    check(page.get_by_label("Given name")).to_have_value("Ada")
    check(page.get_by_label("Family name")).to_have_value("Lovelace")
    check(page.get_by_label("Phone number")).to_have_value(PHONE)
    check(page.get_by_label("City")).to_have_value("San Francisco")
    check(page.get_by_label("Birthdate")).to_have_value("1990-05-17")
    check(page.get_by_label("Interests")).to_have_value("cycling, jazz, cooking")
    screenshot(page, "profile")

    # A bad phone number: the error sits beside the field and nothing is saved.
    page.get_by_label("Phone number").fill("0123 not a phone")
    page.get_by_label("Given name").fill("Changed")
    page.get_by_role("button", name="Save profile").click()
    summary = page.get_by_role("alert")
    check(summary).to_have_count(1)
    check(summary).to_contain_text("Nothing was saved.")
    phone = page.get_by_label("Phone number")
    check(phone).to_have_attribute("aria-invalid", "true")
    # The field's description is its hint and its error: a screen reader reads both.
    check(phone).to_have_accessible_description(re.compile(r"^International format.*E\.164"))
    field_error = page.locator(".field.has-error #phone_number-error")
    check(field_error).to_contain_text("E.164")
    check(page.locator(".field.has-error")).to_have_count(1)
    screenshot(page, "profile-error")
    # The error summary links to the field.
    summary.get_by_role("link", name="phone number").click()
    check(phone).to_be_focused()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Profile").click()
    check(page.get_by_label("Phone number")).to_have_value(PHONE)
    check(page.get_by_label("Given name")).to_have_value("Ada")

    # The overview knows the name and how much of the profile is filled in.
    page.get_by_role("link", name="Overview").click()
    check(page.get_by_role("heading", level=1)).to_have_text("Hello, Ada")
    check(page.locator("figcaption")).to_contain_text("7 of 13")
    screenshot(page, "dashboard")

    # My data: the download holds the decrypted profile.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My data").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download my data (JSON)").click()
    download = download_info.value
    assert re.fullmatch(r"cmr-vault-my-data-\d{4}-\d{2}-\d{2}\.json", download.suggested_filename)
    document = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert document["format"] == "cmr-vault-export/1"
    assert document["account"]["status"] == "active"
    assert document["profile"] == {
        "given_name": "Ada",
        "family_name": "Lovelace",
        "email": email,
        "phone_number": PHONE,
        "address": {"locality": "San Francisco"},
        "birthdate": "1990-05-17",
        "interests": ["cycling", "jazz", "cooking"],
    }

    # Security -> Delete account, with the password and the box ticked.
    page.get_by_role("link", name="Security").click()
    check(page.get_by_role("heading", name="Security", level=1)).to_be_visible()
    page.get_by_role("link", name="Delete my account").click()
    check(page.get_by_role("heading", name="Delete your account")).to_be_visible()
    page.get_by_label("Password").fill(password)
    page.get_by_label("I understand that my profile will be destroyed").check()
    page.get_by_role("button", name="Delete my account for good").click()
    check(page.get_by_role("heading", name="Your account is deleted")).to_be_visible()
    check(page.get_by_role("link", name="Log out")).to_have_count(0)

    # The old credentials open nothing any more.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Log in").click()
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    check(page.get_by_role("alert")).to_have_text("The e-mail or password is not correct.")
    check(page).to_have_url(re.compile(r"/login$"))
    page.goto(live_server + "/profile")
    check(page).to_have_url(re.compile(r"/login\?next="))


def test_pages_fit_a_phone_screen(live_server: str, live_app: Flask, browser: Any) -> None:
    check = expect()
    person = factories.customer(
        live_app,
        profile={
            "given_name": "Grace",
            "family_name": "Hopper",
            "phone_number": PHONE,
            "interests": ["compilers", "navy"],
        },
    )
    context = browser.new_context(viewport=MOBILE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        for path in ("/", "/signup", "/login"):
            page.goto(live_server + path)
            assert_no_horizontal_scroll(page)
        screenshot(page, "mobile-login")

        page.get_by_label("E-mail").fill(person.email)
        page.get_by_label("Password").fill(person.password)
        page.get_by_role("button", name="Log in").click()
        check(page.get_by_role("heading", level=1)).to_have_text("Hello, Grace")
        assert_no_horizontal_scroll(page)
        screenshot(page, "mobile-dashboard")

        for path, name in (
            ("/profile", "profile"),
            ("/my-data", "my-data"),
            ("/security", "security"),
            ("/account/delete", "delete"),
        ):
            page.goto(live_server + path)
            assert_no_horizontal_scroll(page)
            screenshot(page, f"mobile-{name}")
        # Every profile input is usable: at least as wide as half the screen.
        page.goto(live_server + "/profile")
        box = page.get_by_label("Given name").bounding_box()
        assert box is not None and box["width"] >= MOBILE["width"] / 2
    finally:
        context.close()
