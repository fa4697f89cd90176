"""Signed per-message unsubscribe tokens (``vault.unsubscribe.tokens``), on their own."""

from __future__ import annotations

import hashlib

from flask import Flask
from itsdangerous import URLSafeSerializer

from vault.unsubscribe.tokens import SALT, UnsubscribeTarget, make_token, read_token

TARGET = UnsubscribeTarget(
    "0b7d-msg",
    "6f1c2a3e-0000-4000-8000-000000000001",  # the vault's ids are UUID strings
    "6f1c2a3e-0000-4000-8000-000000000002",
    "email",
    "newsletter",
)


def _app(secret: str = "test-secret-" + "x" * 40) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secret
    return app


def test_a_token_reads_back_as_the_consent_it_names() -> None:
    with _app().app_context():
        token = make_token(TARGET)
        assert read_token(token) == TARGET
    # URL-safe: it goes into a path segment as it is.
    assert all(c.isalnum() or c in "-_." for c in token)


def test_anything_altered_or_signed_elsewhere_reads_as_none() -> None:
    with _app().app_context():
        token = make_token(TARGET)
        payload_end = token.index(".", 1)
        altered = token[: payload_end - 1] + ("A" if token[payload_end - 1] != "A" else "B")
        altered += token[payload_end:]
        for bad in (altered, token[:-1], token[: len(token) // 2], "", "x.y", token + "x"):
            assert read_token(bad) is None, bad
    with _app("another-vault-" + "y" * 40).app_context():
        assert read_token(token) is None  # a rotated SECRET_KEY ends every link


def test_a_good_signature_over_the_wrong_shape_reads_as_none() -> None:
    secret = "test-secret-" + "x" * 40
    signer = URLSafeSerializer(secret, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})
    with _app(secret).app_context():
        assert read_token(signer.dumps(["m", "u", "v", "email", "news"])) is not None
        for fields in (
            ["m", 1, 2, "email", "news"],  # integer ids: not the vault's
            ["m", "u", "v", "email"],
            {"user": "u"},
            "just a string",
        ):
            assert read_token(signer.dumps(fields)) is None, fields


def test_the_link_is_the_unsubscribe_confirm_endpoint(app: Flask) -> None:
    """The endpoint name the messages work builds its List-Unsubscribe link with; the
    one-click POST goes to the same URL (RFC 8058)."""
    from flask import url_for

    with app.test_request_context():
        token = make_token(TARGET)
        path = url_for("unsubscribe.confirm", token=token)
        assert path == f"/unsubscribe/{token}"
        assert url_for("unsubscribe.unsubscribe", token=token) == path
