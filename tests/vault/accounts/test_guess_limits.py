"""Guessing limits per account, on top of the per-address limits: growing delays, no lock.

Each client here comes from its own address, so the per-address limit (Flask-Limiter)
never engages: what stops the guessing is the per-account counter. Parallel guesses are
sent from real threads on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests import factories
from vault.accounts import throttle
from vault.accounts.models import GuessThrottle
from vault.accounts.views import LOGIN_FAILED
from vault.extensions import db
from vault.models import utcnow

WRONG = "wrong password, long enough"
_addresses = count(1)


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **app_config,
        "VAULT_LOGIN_RATE_LIMIT": "10 per minute",
        "VAULT_GUESS_FREE_ATTEMPTS": 5,
        "VAULT_GUESS_DELAY": 15,
        "VAULT_GUESS_MAX_DELAY": 900,
    }


def from_new_address(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"198.51.100.{next(_addresses) % 250 + 1}"
    return client


def login(client: FlaskClient, email: str, password: str):
    return factories.post_form(client, "/login", {"email": email, "password": password})


def let_time_pass(app: Flask) -> None:
    """As if every waiting time had run out (instead of sleeping)."""
    with app.app_context():
        db.session.execute(
            sa.update(GuessThrottle).values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()


def rows(app: Flask) -> list[GuessThrottle]:
    with app.app_context():
        found = db.session.scalars(sa.select(GuessThrottle)).all()
        db.session.expunge_all()
        return list(found)


def test_wrong_passwords_from_many_addresses_delay_the_account(app, customer):
    for _ in range(5):
        assert login(from_new_address(app), customer.email, WRONG).status_code == 401
    client = from_new_address(app)
    response = login(client, customer.email, customer.password)
    assert response.status_code == 429
    assert "Wait 15 seconds" in response.get_data(as_text=True)
    # At least the wait (Flask-Limiter raises it to its own window's end when that is later).
    assert int(response.headers["Retry-After"]) >= 14
    assert client.get("/profile").status_code == 302  # not logged in


def test_an_unknown_address_is_delayed_exactly_like_a_known_one(app, customer):
    answers = {}
    for email in (customer.email, "nobody-at-all@example.com"):
        for _ in range(5):
            assert login(from_new_address(app), email, WRONG).status_code == 401
        response = login(from_new_address(app), email, WRONG)
        page = response.get_data(as_text=True).replace(email, "ADDRESS")
        answers[email] = (response.status_code, page)
    known, unknown = answers.values()
    assert known[0] == unknown[0] == 429
    assert "Wait 15 seconds" in known[1] and "Wait 15 seconds" in unknown[1]
    # No e-mail address is kept: the counters are keyed by blind index.
    for row in rows(app):
        assert customer.email.encode() not in bytes(row.subject)


def test_delays_double_up_to_the_cap_and_always_end(app, customer):
    for _ in range(5):
        login(from_new_address(app), customer.email, WRONG)
    waits = []
    for _ in range(8):
        let_time_pass(app)
        assert login(from_new_address(app), customer.email, WRONG).status_code == 401
        response = login(from_new_address(app), customer.email, customer.password)
        assert response.status_code == 429
        waits.append(re.search(r"Wait ([^.]+) and try again", response.get_data(as_text=True))[1])
    assert waits == [
        "30 seconds",
        "60 seconds",
        "2 minutes",
        "4 minutes",
        "8 minutes",
        "15 minutes",
        "15 minutes",
        "15 minutes",
    ]
    # Once the wait is over the right password works, and the count starts again.
    let_time_pass(app)
    client = from_new_address(app)
    assert login(client, customer.email, customer.password).status_code == 302
    assert rows(app) == []
    assert login(from_new_address(app), customer.email, WRONG).status_code == 401


def test_a_stranger_guessing_does_not_delay_the_customers_own_browser(app, customer):
    own = from_new_address(app)
    assert login(own, customer.email, customer.password).status_code == 302
    factories.post_form(own, "/logout", {}, form_page="/profile")
    for _ in range(6):
        login(from_new_address(app), customer.email, WRONG)
    assert login(from_new_address(app), customer.email, customer.password).status_code == 429
    # The browser that logged in before carries its device cookie: its own counter.
    assert login(own, customer.email, customer.password).status_code == 302
    # A forged or foreign device cookie is worth nothing.
    forged = from_new_address(app)
    forged.set_cookie("vault_device", own.get_cookie("vault_device").value + "x")
    assert login(forged, customer.email, customer.password).status_code == 429


def test_wrong_passwords_of_a_logged_in_session_count_for_the_account(app, customer):
    thief = from_new_address(app)
    assert login(thief, customer.email, customer.password).status_code == 302
    thief.delete_cookie("vault_device")  # a stolen session cookie, not the device
    data = {"new_password": "another long password", "confirm": "another long password"}
    for n in range(5):
        response = factories.post_form(
            thief, "/security", {**data, "current_password": f"{n}{WRONG}"}
        )
        assert response.status_code == 400
    response = factories.post_form(
        thief, "/security", {**data, "current_password": customer.password}
    )
    assert response.status_code == 429
    assert "Wait 15 seconds" in response.get_data(as_text=True)


def enable_2fa(app: Flask, person: factories.CreatedUser) -> pyotp.TOTP:
    client = app.test_client()
    factories.log_in(client, person.email, person.password)
    token = factories.csrf_token(client, "/security/2fa")
    with client.session_transaction() as sess:
        totp = pyotp.TOTP(sess["totp_setup"])
    assert (
        client.post("/security/2fa", data={"csrf_token": token, "code": totp.now()}).status_code
        == 200
    )
    return totp


def wrong_code(totp: pyotp.TOTP) -> str:
    step = totp.timecode(datetime.now(UTC))
    window = {totp.generate_otp(step + drift) for drift in range(-2, 3)}
    return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in window)


def test_second_factor_codes_are_limited_per_account(app, customer):
    totp = enable_2fa(app, customer)
    for _ in range(5):
        client = from_new_address(app)
        assert login(client, customer.email, customer.password).status_code == 302
        response = factories.post_form(client, "/login/verify", {"code": wrong_code(totp)})
        assert response.status_code == 401
    client = from_new_address(app)
    login(client, customer.email, customer.password)
    next_code = totp.generate_otp(totp.timecode(datetime.now(UTC)) + 1)
    response = factories.post_form(client, "/login/verify", {"code": next_code})
    assert response.status_code == 429
    assert "Wait 15 seconds" in response.get_data(as_text=True)
    assert client.get("/profile").status_code == 302
    let_time_pass(app)
    response = factories.post_form(client, "/login/verify", {"code": next_code})
    assert response.status_code == 302


@pytest.mark.parametrize(("free", "expected_claims"), [(3, 3), (100, 12)])
def test_parallel_guesses_all_count_and_none_slips_past_the_delay(app, free, expected_claims):
    """12 threads claim at once: every claim counts, and once the free attempts are used
    up no parallel claim gets through before the wait (an atomic conditional UPDATE)."""
    policy = throttle.GuessPolicy(free_attempts=free, delay=60, max_delay=900)
    subject = throttle.subject_of("parallel")
    barrier = threading.Barrier(12)
    outcomes: list[str] = []

    def guess() -> None:
        with app.app_context():
            barrier.wait()
            try:
                with db.engine.begin() as connection:
                    throttle.claim(connection, policy, throttle.PASSWORD, subject, utcnow())
            except throttle.TooManyGuesses:
                outcomes.append("waited")
            else:
                outcomes.append("claimed")

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes.count("claimed") == expected_claims, outcomes
    assert len(outcomes) == 12
    [row] = rows(app)
    assert row.failures == expected_claims


def test_the_policy_grows_and_is_capped():
    policy = throttle.GuessPolicy(free_attempts=5, delay=15, max_delay=900)
    assert [policy.wait_after(n) for n in range(4, 13)] == [0, 15, 30, 60, 120, 240, 480, 900, 900]
    assert policy.wait_after(10_000) == 900
    assert throttle.GuessPolicy(delay=0).wait_after(50) == 0


def test_unknown_address_answer_is_unchanged_below_the_limit(app, customer):
    response = login(from_new_address(app), "nobody-at-all@example.com", WRONG)
    assert response.status_code == 401
    assert LOGIN_FAILED in response.get_data(as_text=True)


@pytest.mark.parametrize(("free", "wrong", "waited"), [(3, 3, 5), (100, 8, 0)])
def test_parallel_wrong_passwords_over_http_all_count(app, customer, free, wrong, waited):
    """Eight log-ins with a wrong password at once, each from its own address, through the
    app on real threads: every one is counted, none gets past the delay."""
    app.config["VAULT_GUESS_FREE_ATTEMPTS"] = free
    clients = [from_new_address(app) for _ in range(8)]
    tokens = [factories.csrf_token(client, "/login") for client in clients]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def guess(client: FlaskClient, token: str) -> None:
        barrier.wait()
        response = client.post(
            "/login", data={"csrf_token": token, "email": customer.email, "password": WRONG}
        )
        statuses.append(response.status_code)

    threads = [
        threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [401] * wrong + [429] * waited, statuses
    [row] = rows(app)
    assert row.failures == wrong
