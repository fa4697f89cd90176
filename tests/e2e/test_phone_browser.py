"""Confirming a phone number in a real (headless) chromium, without JavaScript tricks: the
profile offers "Send code", the development file connector writes the text, the page names
the file, and the code typed in confirms the number."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests import factories

pytestmark = pytest.mark.browser


def test_a_customer_confirms_their_number(
    live_app: Flask, live_server: str, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    live_app.config["VAULT_SMS_DIR"] = str(tmp_path / "sms")  # before the first text
    customer = factories.customer_with_phone(live_app, confirmed=False)
    page.goto(live_server + "/login")
    page.get_by_label("E-mail").fill(customer.email)
    page.get_by_label("Password").fill(customer.password)
    page.get_by_role("button", name="Log in").click()

    page.goto(live_server + "/profile")
    section = page.locator("#phone-confirmation")
    expect(section).to_contain_text(f"{factories.PHONE} is not confirmed")
    section.get_by_role("button", name="Send code").click()

    expect(page).to_have_url(re.compile(r"/profile/phone$"))
    status = page.get_by_role("status")
    expect(status).to_contain_text(f"We sent a 6-digit code to {factories.PHONE}")
    written = re.search(r"the text is in (\S+?\.txt)", status.inner_text()).group(1)
    code = re.search(r"\b(\d{6}) is your CMR Vault code", Path(written).read_text()).group(1)

    field = page.get_by_label("The 6-digit code from the text message")
    field.fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="Confirm number").click()
    expect(page.get_by_text("That code is not right. 4 more tries with this code.")).to_be_visible()

    page.get_by_label("The 6-digit code from the text message").fill(code)
    page.get_by_role("button", name="Confirm number").click()
    expect(page).to_have_url(re.compile(r"/profile$"))
    expect(page.get_by_role("status")).to_contain_text(
        f"Your phone number {factories.PHONE} is confirmed"
    )
    expect(page.locator("#phone-confirmation")).to_contain_text(f"{factories.PHONE} is confirmed")
    expect(page.get_by_role("button", name="Send code")).to_have_count(0)
