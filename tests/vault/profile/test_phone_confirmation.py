"""Phone confirmation through the pages: a code sent over the SMS connector (the development
file connector, and a real local HTTP server playing Twilio), typed back in; wrong, expired
and used-up codes, the limits, a changed number, CSRF, and a vault without SMS."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from tests.connectors.httpserver import LocalHTTPServer
from tests.connectors.test_sms import BROKEN, twilio
from vault.accounts.models import User
from vault.extensions import db
from vault.models import utcnow
from vault.profile.models import PhoneCode
from vault.profile.operations import load_profile
from vault.services import keys

NUMBER = factories.PHONE
OTHER = "+14155550177"
PROFILE_FORM = {"email": None, "phone_number": NUMBER}
_CODE = re.compile(r"\b(\d{6}) is your CMR Vault code\b")
_WRITTEN = re.compile(r"the text is in (\S+?\.txt)")


@pytest.fixture
def sms_dir(tmp_path: Path) -> Path:
    return tmp_path / "sms"


@pytest.fixture
def app_config(app_config: dict[str, Any], sms_dir: Path) -> dict[str, Any]:
    return {**app_config, "VAULT_SMS_DIR": str(sms_dir)}


@pytest.fixture
def person(app: Flask) -> factories.CreatedUser:
    return factories.customer_with_phone(app, confirmed=False)


@pytest.fixture
def browser(client: FlaskClient, person: factories.CreatedUser) -> FlaskClient:
    factories.log_in(client, person.email, person.password)
    return client


def user_row(app: Flask, user_id: str) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        db.session.expunge(user)
        return user


def code_rows(app: Flask) -> list[PhoneCode]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(PhoneCode)))
        db.session.expunge_all()
        return rows


def send_code(client: FlaskClient) -> Any:
    return factories.post_form(client, "/profile/phone/send", {}, form_page="/profile")


def sms_files(sms_dir: Path) -> list[Path]:
    files = sms_dir.glob("*.txt") if sms_dir.exists() else []
    return sorted(files, key=lambda path: path.stat().st_mtime_ns)  # oldest first


def code_from_file(path: Path) -> str:
    match = _CODE.search(path.read_text())
    assert match, path.read_text()
    return match.group(1)


def enter(client: FlaskClient, code: str) -> Any:
    return factories.post_form(client, "/profile/phone", {"code": code})


def save_number(client: FlaskClient, person: factories.CreatedUser, number: str) -> Any:
    return factories.post_form(client, "/profile", {"email": person.email, "phone_number": number})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- the development file connector -------------------------------------------------------


def test_a_code_sent_to_a_file_confirms_the_number(app, browser, person, sms_dir):
    page = browser.get("/profile").get_data(as_text=True)
    assert f"<strong>{NUMBER}</strong> is not confirmed" in page
    assert "Send code" in page
    assert user_row(app, person.id).phone_confirmed_index is None

    response = send_code(browser)
    assert response.status_code == 302 and response.location.endswith("/profile/phone")
    [written] = sms_files(sms_dir)
    text = written.read_text()
    assert f"To: {NUMBER}" in text
    code = code_from_file(written)

    # The page says where the development connector put the text.
    page = browser.get("/profile/phone").get_data(as_text=True)
    assert f"We sent a 6-digit code to {NUMBER}" in page
    assert _WRITTEN.search(page).group(1) == str(written)
    assert 'autocomplete="one-time-code"' in page

    # Only keyed hashes are stored: neither the code nor the number.
    [row] = code_rows(app)
    stored = row.code_hash + row.number_index
    assert code.encode() not in stored and NUMBER.encode() not in stored
    assert len(row.code_hash) == 32 and row.attempts == 0

    response = enter(browser, f"{code[:3]} {code[3:]}")  # typed with a space: still the code
    assert response.status_code == 302 and response.location.endswith("/profile")
    user = user_row(app, person.id)
    assert user.phone_confirmed_index is not None and user.phone_confirmed_at is not None
    assert NUMBER.encode() not in user.phone_confirmed_index
    assert code_rows(app) == []  # used once
    page = browser.get("/profile").get_data(as_text=True)
    assert f"Your phone number {NUMBER} is confirmed" in page
    assert f"<strong>{NUMBER}</strong> is confirmed" in page
    assert "Send code" not in page
    # A confirmed number gets no more codes.
    assert send_code(browser).status_code == 400
    assert len(sms_files(sms_dir)) == 1


def test_a_profile_without_a_number_gets_no_code(app, client, sms_dir):
    someone = factories.customer(app)
    factories.log_in(client, someone.email, someone.password)
    assert "There is no phone number in your profile" in client.get("/profile").get_data(
        as_text=True
    )
    response = send_code(client)
    assert response.status_code == 400
    assert "Add a phone number to your profile first" in response.get_data(as_text=True)
    assert sms_files(sms_dir) == [] and code_rows(app) == []


def test_a_wrong_code_is_refused_and_counted_although_the_request_rolls_back(app, browser):
    send_code(browser)
    response = enter(browser, "12345")  # five digits: the form says so, nothing counted
    assert response.status_code == 400
    assert "The code is 6 digits" in response.get_data(as_text=True)
    assert code_rows(app)[0].attempts == 0

    [row] = code_rows(app)
    code = code_from_file(sms_files(Path(app.config["VAULT_SMS_DIR"]))[0])
    response = enter(browser, wrong(code))
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "That code is not right. 4 more tries with this code." in body
    assert code_rows(app)[0].attempts == 1
    assert user_row(app, row.user_id).phone_confirmed_index is None
    # The right code still works after a wrong one.
    assert enter(browser, code).status_code == 302


def test_an_expired_code_is_refused(app, browser, person):
    send_code(browser)
    code = code_from_file(sms_files(Path(app.config["VAULT_SMS_DIR"]))[0])
    with app.app_context():
        db.session.execute(sa.update(PhoneCode).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    response = enter(browser, code)
    assert response.status_code == 400
    assert "This code has expired: send a new code." in response.get_data(as_text=True)
    assert user_row(app, person.id).phone_confirmed_index is None
    # The page offers a new code instead of the form.
    page = browser.get("/profile/phone").get_data(as_text=True)
    assert 'name="code"' not in page and "Send code" in page


class TestTooManyAttempts:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "VAULT_PHONE_CODE_ATTEMPTS": 3}

    def test_a_code_stops_working_after_its_attempts(self, app, browser, person, sms_dir):
        send_code(browser)
        code = code_from_file(sms_files(sms_dir)[0])
        answers = [enter(browser, wrong(code)).get_data(as_text=True) for _ in range(3)]
        assert "2 more tries" in answers[0] and "1 more try " in answers[1]
        assert "That was the last try with this code" in answers[2]
        # Now even the right code is refused: the code is used up.
        response = enter(browser, code)
        assert response.status_code == 429
        assert "this code no longer works" in response.get_data(as_text=True)
        assert code_rows(app)[0].attempts == 3
        assert user_row(app, person.id).phone_confirmed_index is None
        # A new code starts afresh.
        assert send_code(browser).status_code == 302
        new_code = code_from_file(sms_files(sms_dir)[-1])
        assert enter(browser, new_code).status_code == 302
        assert user_row(app, person.id).phone_confirmed_index is not None


class TestGuessDelays:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "VAULT_GUESS_FREE_ATTEMPTS": 2, "VAULT_PHONE_CODE_ATTEMPTS": 5}

    def test_wrong_codes_delay_the_account_like_wrong_passwords(self, app, browser, sms_dir):
        send_code(browser)
        code = code_from_file(sms_files(sms_dir)[0])
        assert enter(browser, wrong(code)).status_code == 400
        assert enter(browser, wrong(code)).status_code == 400
        response = enter(browser, code)
        assert response.status_code == 429
        assert "Too many wrong attempts. Wait 15 seconds" in response.get_data(as_text=True)
        assert int(response.headers.get("Retry-After", "15")) > 0


# --- a real local HTTP server playing Twilio -----------------------------------------------


class TestTwilio:
    @pytest.fixture
    def provider(self) -> Any:
        with LocalHTTPServer(twilio(("ACtest", "secret"))) as server:
            yield server

    @pytest.fixture
    def app_config(self, app_config: dict[str, Any], provider: LocalHTTPServer) -> dict[str, Any]:
        rest = provider.url.partition("://")[2]
        url = f"http://ACtest:secret@{rest}?from=%2B15005550006"
        return {**app_config, "VAULT_SMS_URL": url}

    def test_the_code_goes_through_the_provider(self, app, browser, person, provider, sms_dir):
        assert send_code(browser).status_code == 302
        [request] = provider.requests
        assert request.path == "/2010-04-01/Accounts/ACtest/Messages.json"
        fields = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        assert fields["To"] == NUMBER and fields["From"] == "+15005550006"
        code = _CODE.search(fields["Body"]).group(1)
        page = browser.get("/profile/phone").get_data(as_text=True)
        assert f"We sent a 6-digit code to {NUMBER}" in page
        assert "Development" not in page and sms_files(sms_dir) == []
        assert enter(browser, code).status_code == 302
        assert user_row(app, person.id).phone_confirmed_index is not None

    def test_a_provider_failure_is_said_on_the_page(self, app, client, provider):
        # The fake provider answers 500 for this number.
        someone = factories.customer_with_phone(app, number=BROKEN, confirmed=False)
        factories.log_in(client, someone.email, someone.password)
        assert send_code(client).status_code == 302
        page = client.get("/profile/phone").get_data(as_text=True)
        assert "The text message could not be sent just now" in page


# --- a changed number, CSRF, limits, no SMS -------------------------------------------------


def test_changing_the_number_clears_the_confirmation(app, client, sms_dir):
    person = factories.customer_with_phone(app)
    factories.log_in(client, person.email, person.password)
    confirmed = user_row(app, person.id).phone_confirmed_index
    assert confirmed is not None
    # Saving the profile with the same number keeps it.
    assert save_number(client, person, NUMBER).status_code == 302
    assert user_row(app, person.id).phone_confirmed_index == confirmed

    response = save_number(client, person, OTHER)
    assert response.status_code == 302
    assert user_row(app, person.id).phone_confirmed_index is None
    page = client.get("/profile").get_data(as_text=True)
    assert "Your phone number changed, so it is unconfirmed" in page
    assert f"<strong>{OTHER}</strong> is not confirmed" in page
    # Back to the old number: still unconfirmed until a new code is typed in.
    save_number(client, person, NUMBER)
    assert user_row(app, person.id).phone_confirmed_index is None
    # Removing the number leaves nothing confirmed either.
    factories.confirm_phone(app, person.id)
    save_number(client, person, "")
    user = user_row(app, person.id)
    assert user.phone_confirmed_index is None and user.phone_confirmed_at is None


def test_a_code_sent_to_the_old_number_does_not_confirm_the_new_one(app, browser, person):
    send_code(browser)
    code = code_from_file(sms_files(Path(app.config["VAULT_SMS_DIR"]))[0])
    save_number(browser, person, OTHER)
    response = enter(browser, code)
    assert response.status_code == 400
    assert "Your phone number changed since this code was sent" in response.get_data(as_text=True)
    assert user_row(app, person.id).phone_confirmed_index is None
    with app.app_context():
        assert load_profile(db.session, keys(), person.id)["phone_number"] == OTHER
    # The page offers a code for the new number, no form for the old one's.
    page = browser.get("/profile/phone").get_data(as_text=True)
    assert 'name="code"' not in page and ">Send code<" in page


def test_both_forms_need_their_csrf_token(app, browser, person, sms_dir):
    assert browser.post("/profile/phone/send", data={}).status_code == 400
    assert sms_files(sms_dir) == [] and code_rows(app) == []
    send_code(browser)
    code = code_from_file(sms_files(sms_dir)[0])
    response = browser.post("/profile/phone", data={"code": code})
    assert response.status_code == 400
    assert user_row(app, person.id).phone_confirmed_index is None
    assert code_rows(app)[0].attempts == 0  # refused before any guess was counted
    forged = browser.post("/profile/phone", data={"code": code, "csrf_token": "forged"})
    assert forged.status_code == 400
    assert user_row(app, person.id).phone_confirmed_index is None


class TestSendLimit:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any]) -> dict[str, Any]:
        return {**app_config, "VAULT_PHONE_CODE_RATE_LIMIT": "2 per hour"}

    def test_codes_per_number_and_account_are_limited(self, app, browser, sms_dir):
        assert send_code(browser).status_code == 302
        assert send_code(browser).status_code == 302
        response = send_code(browser)
        assert response.status_code == 429
        assert "Too many codes were sent recently" in response.get_data(as_text=True)
        assert len(sms_files(sms_dir)) == 2
        # The last code sent is the one that works; the first was replaced.
        first, second = (code_from_file(p) for p in sms_files(sms_dir))
        assert len(code_rows(app)) == 1
        if first != second:
            assert enter(browser, first).status_code == 400
        assert enter(browser, second).status_code == 302


def test_without_an_sms_provider_confirmation_is_unavailable(app, browser, person, sms_dir):
    app.extensions["vault.sms"] = None  # what vault.sms builds in production without a URL
    page = browser.get("/profile").get_data(as_text=True)
    assert "Phone confirmation is unavailable" in page
    assert "Send code" not in page
    response = send_code(browser)
    assert response.status_code == 503
    assert "Phone confirmation is unavailable" in response.get_data(as_text=True)
    assert sms_files(sms_dir) == [] and code_rows(app) == []


def test_production_without_sms_url_has_no_connector(tmp_path):
    from vault.sms import build_connector

    assert build_connector({"VAULT_ENV": "production", "VAULT_SMS_DIR": str(tmp_path)}) is None


def test_closing_the_account_forgets_the_confirmation_and_codes(app, browser, person):
    from vault.accounts.operations import close_account

    send_code(browser)  # a code waiting for this customer
    confirmed = factories.customer_with_phone(app, number=OTHER)
    bystander = factories.customer_with_phone(app, number="+15005550001")
    with app.app_context():
        for user_id in (person.id, confirmed.id):
            close_account(db.session, db.session.get(User, user_id))
        db.session.commit()
    for user_id in (person.id, confirmed.id):
        user = user_row(app, user_id)
        assert user.phone_confirmed_index is None and user.phone_confirmed_at is None
    assert code_rows(app) == []
    assert user_row(app, bystander.id).phone_confirmed_index is not None
