"""`vault users create`: staff accounts from the command line, password only from stdin."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests import factories
from vault.accounts.models import Role, User
from vault.extensions import db

PASSWORD = "operator chosen passphrase"


def create(app: Flask, *args: str, input: str | None = None):
    runner = app.test_cli_runner()
    return runner.invoke(args=["users", "create", *args], input=input)


def user_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User)) or 0


@pytest.mark.parametrize("role", ["admin", "compliance"])
def test_creates_staff_who_can_log_in(app, role):
    email = factories.unique_email(role)
    result = create(
        app, "--role", role, "--email", email, "--password-stdin", input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    user_id = json.loads(result.output.strip().splitlines()[-1])["user_id"]
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user.role == role and user.is_staff
    client = app.test_client()
    factories.log_in(client, email, PASSWORD)
    assert "You are signed in as staff" in client.get("/").get_data(as_text=True)
    assert client.get("/profile").status_code == 403


def test_password_is_read_from_the_first_line_only(app):
    email = factories.unique_email("firstline")
    result = create(
        app, "--role", "admin", "--email", email, "--password-stdin",
        input=PASSWORD + "\r\nsecond line ignored\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    factories.log_in(app.test_client(), email, PASSWORD)


def test_without_password_stdin_it_prompts_twice(app):
    email = factories.unique_email("prompt")
    result = create(app, "--role", "admin", "--email", email, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    factories.log_in(app.test_client(), email, PASSWORD)


def test_there_is_no_password_option(app):
    for option in ("--password", "-p"):
        result = create(app, "--role", "admin", "--email", "a@example.com", option, PASSWORD)
        assert result.exit_code == 2
        assert "No such option" in result.output
    assert user_count(app) == 0


@pytest.mark.parametrize("password", ["short pass", "", "x" * 1025])
def test_bad_password_is_refused(app, password):
    result = create(
        app, "--role", "admin", "--email", "weak@example.com", "--password-stdin",
        input=password + "\n",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "password refused" in result.output
    assert password not in result.output or password == ""
    assert user_count(app) == 0


def test_empty_stdin_is_refused(app):
    result = create(
        app, "--role", "admin", "--email", "x@example.com", "--password-stdin", input=""
    )
    assert result.exit_code != 0
    assert "standard input was empty" in result.output
    assert user_count(app) == 0


def test_duplicate_email_is_refused_whatever_its_case(app):
    existing = factories.customer(app)
    result = create(
        app, "--role", "admin", "--email", existing.email.upper(), "--password-stdin",
        input=PASSWORD + "\n",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert user_count(app) == 1
    with app.app_context():
        assert existing.load().role == Role.CUSTOMER


@pytest.mark.parametrize("role", ["superuser", "vendor_member", "ADMIN ", ""])
def test_invalid_role_is_refused(app, role):
    result = create(
        app, "--role", role, "--email", "r@example.com", "--password-stdin", input=PASSWORD + "\n"
    )
    assert result.exit_code == 2
    assert "--role" in result.output
    assert user_count(app) == 0


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com"])
def test_invalid_email_is_refused(app, email):
    result = create(
        app, "--role", "admin", "--email", email, "--password-stdin", input=PASSWORD + "\n"
    )
    assert result.exit_code != 0
    assert "--email" in result.output
    assert user_count(app) == 0
