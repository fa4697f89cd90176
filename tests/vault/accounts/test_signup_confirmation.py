"""Sign-up is double opt-in, and it tells nobody which addresses have an account.

Every mail is read from a real SMTP server on loopback (``mailbox``). The attacker's view
is the page: the same status and the same words for a taken and a free address; the
difference is only in the mail, which goes to the address's owner.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests import factories
from vault import create_app
from vault.accounts.models import EmailConfirmation, User
from vault.accounts.views import LOGIN_FAILED
from vault.extensions import db
from vault.models import utcnow


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **app_config,
        "VAULT_LOGIN_RATE_LIMIT": "1000 per minute",
        "VAULT_SIGNUP_RATE_LIMIT": "1000 per hour",
        "VAULT_ISSUER": "https://vault.example.com",
    }


def signup(client, email: str):
    """Sign up as the attacker of issue 9 did, password fields and all: the form now takes
    only the address, so a password sent along is ignored (the link's follower sets it)."""
    password = "attacker's long password"
    return factories.post_form(
        client, "/signup", {"email": email, "password": password, "confirm": password}
    )


def page_without_tokens(response) -> str:
    """The page as an observer compares it: the CSRF token differs on every page anyway."""
    page = response.get_data(as_text=True)
    return re.sub(r'name="csrf_token"[^>]*value="[^"]*"', "", page)


def count(app: Flask, model: Any) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def test_taken_and_free_addresses_get_the_same_answer(app, mailbox):
    owner = factories.customer(app)
    free = factories.unique_email("free")
    # The same address spelled the way the owner typed it, and spelled differently.
    answers = {}
    for email in (owner.email, free):
        response = signup(app.test_client(), email)
        answers[email] = (
            response.status_code,
            page_without_tokens(response).replace(email, "ADDRESS"),
        )
    assert answers[owner.email] == answers[free]
    status, page = answers[free]
    assert status == 200
    assert "Check your inbox" in page and "ADDRESS" in page
    assert "already" not in page.lower() and "exists" not in page.lower()

    # The mail is what differs, and it goes to the address's owner only.
    link_mail = mailbox.only_to(free)
    assert link_mail.link("/signup/confirm/").startswith("https://vault.example.com/")
    note = mailbox.only_to(owner.email)
    assert note.subject == "Someone tried to sign up with your address"
    assert "already" in note.text and "Nothing was changed" in note.text
    assert "/confirm/" not in note.text
    # Nothing pending for the taken address; the free one waits for its link.
    assert count(app, EmailConfirmation) == 1
    assert count(app, User) == 1


def test_no_account_before_the_link_and_log_in_says_only_what_it_always_says(app, mailbox):
    email = factories.unique_email("pending")
    signup(app.test_client(), email)
    assert count(app, User) == 0
    unconfirmed = factories.post_form(
        app.test_client(), "/login", {"email": email, "password": factories.DEFAULT_PASSWORD}
    )
    unknown = factories.post_form(
        app.test_client(),
        "/login",
        {"email": "never-seen@example.com", "password": factories.DEFAULT_PASSWORD},
    )
    assert unconfirmed.status_code == unknown.status_code == 401
    assert LOGIN_FAILED in unconfirmed.get_data(as_text=True)
    assert page_without_tokens(unconfirmed).replace(email, "X") == page_without_tokens(
        unknown
    ).replace("never-seen@example.com", "X")


def test_following_the_link_is_a_form_not_a_change(app, mailbox):
    """Mail scanners open links: a GET shows the password form and creates nothing."""
    email = factories.unique_email("scanned")
    signup(app.test_client(), email)
    link = factories.confirmation_path(mailbox, email)
    for _ in range(3):
        page = app.test_client().get(link)
        assert page.status_code == 200
        assert email in page.get_data(as_text=True)
        assert "Choose your password" in page.get_data(as_text=True)
    assert count(app, User) == 0
    assert count(app, EmailConfirmation) == 1


def test_a_link_works_once(app, client, mailbox):
    email = factories.unique_email("once")
    signup(client, email)
    link = factories.confirmation_path(mailbox, email)
    factories.post_form(
        client, link, {"password": "first password ok", "confirm": "first password ok"}
    )
    other = app.test_client()
    page = other.get(link)
    assert page.status_code == 404
    assert "not valid" in page.get_data(as_text=True)
    token = factories.csrf_token(other, "/signup")
    again = other.post(link, data={"csrf_token": token, "password": "x" * 20, "confirm": "x" * 20})
    assert again.status_code == 404
    assert count(app, User) == 1
    # The password is the one chosen first.
    assert factories.log_in(app.test_client(), email, "first password ok")


def test_expired_and_made_up_links_are_refused(app, client, mailbox):
    email = factories.unique_email("late")
    signup(client, email)
    link = factories.confirmation_path(mailbox, email)
    with app.app_context():
        db.session.execute(
            sa.update(EmailConfirmation).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert client.get(link).status_code == 404
    assert client.get("/signup/confirm/" + "A" * 43).status_code == 404
    assert client.get("/signup/confirm/%00%0a'\"").status_code == 404
    assert count(app, User) == 0


def test_two_simultaneous_uses_of_one_link_make_one_account(app, mailbox):
    email = factories.unique_email("race")
    signup(app.test_client(), email)
    link = factories.confirmation_path(mailbox, email)
    clients = [app.test_client() for _ in range(4)]
    tokens = [factories.csrf_token(c, link) for c in clients]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def use(client, token, n):
        password = f"racing password {n}"
        barrier.wait()
        response = client.post(
            link, data={"csrf_token": token, "password": password, "confirm": password}
        )
        statuses.append(response.status_code)

    threads = [
        threading.Thread(target=use, args=(c, t, n))
        for n, (c, t) in enumerate(zip(clients, tokens, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [302, 404, 404, 404], statuses
    assert count(app, User) == 1


def test_the_pending_address_is_not_stored_in_the_clear(app, mailbox):
    email = factories.unique_email("sealed")
    signup(app.test_client(), email)
    token = factories.confirmation_path(mailbox, email).rsplit("/", 1)[1]
    with app.app_context():
        rows = db.session.execute(sa.text("SELECT * FROM email_confirmations")).all()
    assert len(rows) == 1
    stored = b"".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in rows[0]
    )
    for secret in (email, email.split("@")[0], token):
        assert secret.encode() not in stored


def test_each_address_gets_few_mails(app, mailbox):
    """Nobody can flood a stranger's inbox (or probe it) through the sign-up form."""
    app.config["VAULT_MAIL_RATE_LIMIT"] = "3 per hour"
    owner = factories.customer(app)
    free = factories.unique_email("flood")
    for email in (owner.email, free):
        statuses = [signup(app.test_client(), email).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429], (email, statuses)
    refused_taken = signup(app.test_client(), owner.email)
    refused_free = signup(app.test_client(), free)
    assert page_without_tokens(refused_taken).replace(owner.email, "A") == page_without_tokens(
        refused_free
    ).replace(free, "A")
    assert "Too many confirmation mails" in refused_free.get_data(as_text=True)
    assert len(mailbox.to(owner.email)) == len(mailbox.to(free)) == 3
    # Another address is not affected.
    assert signup(app.test_client(), factories.unique_email("other")).status_code == 200


def test_signup_is_rate_limited_per_client_address(make_app, mailbox):
    app = make_app(VAULT_SIGNUP_RATE_LIMIT="2 per hour")
    client = app.test_client()
    assert signup(client, factories.unique_email("a")).status_code == 200
    assert signup(client, factories.unique_email("b")).status_code == 200
    assert signup(client, factories.unique_email("c")).status_code == 429


def test_links_name_the_configured_issuer_not_the_request_host(app, mailbox):
    email = factories.unique_email("host")
    client = app.test_client()
    form = client.get("/signup", base_url="http://evil.example").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
    response = client.post(
        "/signup", data={"csrf_token": token, "email": email}, base_url="http://evil.example"
    )
    assert response.status_code == 200
    link = mailbox.only_to(email).link("/confirm/")
    assert link.startswith("https://vault.example.com/signup/confirm/")


def test_a_send_that_fails_is_said_and_logged_without_the_address(make_app, caplog):
    from tests.mailserver import free_port

    app = make_app(VAULT_SMTP_URL=f"smtp://127.0.0.1:{free_port()}?timeout=2")
    email = factories.unique_email("lost")
    with caplog.at_level("WARNING", logger="vault.mail"):
        response = signup(app.test_client(), email)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "could not be sent" in page and "ask for a new link" in page
    assert "signup_confirm" in caplog.text and "temporary_failure" in caplog.text
    assert email not in caplog.text and email.split("@")[0] not in caplog.text


def test_development_without_smtp_writes_the_mail_and_says_where(make_app, tmp_path, mailbox):
    folder = tmp_path / "mail"
    app = make_app(VAULT_SMTP_URL=None, VAULT_MAIL_DIR=str(folder))
    email = factories.unique_email("dev")
    client = app.test_client()
    page = signup(client, email).get_data(as_text=True)
    [written] = list(folder.glob("*.eml"))
    assert str(written) in page and "VAULT_SMTP_URL" in page
    assert mailbox.received == []
    # The file holds a working link.
    link = re.search(r"https://vault\.example\.com(/signup/confirm/\S+)", written.read_text())
    assert link, written.read_text()
    response = factories.post_form(
        client, link.group(1), {"password": "dev password 12345", "confirm": "dev password 12345"}
    )
    assert response.status_code == 302


@pytest.fixture
def make_app(app_config: dict[str, Any]):
    built: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        application = create_app({**app_config, **overrides})
        built.append(application)
        return application

    yield make
    for application in built:
        with application.app_context():
            db.engine.dispose()
