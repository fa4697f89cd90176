"""Small factories that build test data through the same operations the app uses."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from vault.accounts.models import Role, User
from vault.accounts.operations import create_account
from vault.extensions import db
from vault.services import keys, passwords

_counter = itertools.count(1)
DEFAULT_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class CreatedUser:
    id: str
    email: str
    password: str

    def load(self) -> User:
        user = db.session.get(User, self.id)
        assert user is not None
        return user


def unique_email(prefix: str = "person") -> str:
    return f"{prefix}{next(_counter)}@example.com"


def customer(
    app: Flask,
    *,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    profile: dict[str, Any] | None = None,
    role: Role = Role.CUSTOMER,
) -> CreatedUser:
    """An active account with a confirmed address, made directly (as ``vault users create``
    does); ``sign_up`` goes through the pages and the mailed link instead."""
    email = email or unique_email()
    with app.app_context():
        user = create_account(
            db.session,
            keys(),
            passwords(),
            email=email,
            password=password,
            role=role,
            profile=profile,
        )
        db.session.commit()
        return CreatedUser(user.id, email, password)


PHONE = "+14155550123"


def customer_with_phone(
    app: Flask, *, number: str = PHONE, confirmed: bool = True, **kwargs: Any
) -> CreatedUser:
    """A customer whose profile holds ``number``, confirmed (by default) the way the pages
    do it: a code made for the number and typed back (``vault.profile.phone``)."""
    profile = {**(kwargs.pop("profile", None) or {}), "phone_number": number}
    created = customer(app, profile=profile, **kwargs)
    if confirmed:
        confirm_phone(app, created.id)
    return created


def give_confirmed_phone(app: Flask, user_id: str, number: str = PHONE) -> None:
    """Put ``number`` into an existing customer's profile and confirm it."""
    from vault.profile.operations import load_profile, save_profile

    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        profile = load_profile(db.session, keys(), user_id)
        save_profile(db.session, keys(), user, {**profile, "phone_number": number})
        db.session.commit()
    confirm_phone(app, user_id)


def confirm_phone(app: Flask, user_id: str) -> None:
    """Confirm the number now in the customer's profile, through the operations."""
    from datetime import timedelta

    from vault.models import utcnow
    from vault.profile import phone
    from vault.profile.operations import load_profile

    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        number = load_profile(db.session, keys(), user_id).get("phone_number")
        now = utcnow()
        sent = phone.request_code(
            db.session, keys(), user, number, lifetime=timedelta(minutes=10), now=now
        )
        phone.confirm(db.session, keys(), user, number, sent.code, attempts_left=4, now=now)
        db.session.commit()


_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    match = _CSRF.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path} (status {page.status_code})"
    return match.group(1)


def post_form(
    client: FlaskClient, path: str, data: dict[str, Any], *, form_page: str | None = None
) -> TestResponse:
    """POST like a browser: first load the form to get its CSRF token."""
    token = csrf_token(client, form_page or path)
    return client.post(path, data={"csrf_token": token, **data})


def log_in(client: FlaskClient, email: str, password: str) -> TestResponse:
    response = post_form(client, "/login", {"email": email, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def sign_up(
    client: FlaskClient, mailbox: Any, email: str, password: str = DEFAULT_PASSWORD
) -> TestResponse:
    """Sign up through the pages: the address, the link from the mail, the password."""
    response = post_form(client, "/signup", {"email": email})
    assert response.status_code == 200, response.get_data(as_text=True)
    link = confirmation_path(mailbox, email)
    response = post_form(client, link, {"password": password, "confirm": password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def confirmation_path(mailbox: Any, email: str) -> str:
    """The path of the one link in the newest mail to ``email``."""
    from urllib.parse import urlsplit

    mails = mailbox.to(email)
    assert mails, f"no mail to {email}"
    return urlsplit(mails[-1].link("/confirm/")).path
