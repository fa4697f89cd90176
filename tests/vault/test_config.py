"""Configuration: production refuses to start unsafely and says what to set."""

from __future__ import annotations

import pytest

from vault import create_app
from vault.config import ConfigurationError, build_config

SECRET = "pV3q-Jx8Rt0Lw_Zs1Ny6Hk2Ua9Dm4Fe7Gc5Bi0Ko3Qr8"  # 46 characters, 40 different
KEY_FILE = "/etc/vault/master.key"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """``create_app`` also reads os.environ: make sure nothing there helps by accident."""
    import os

    for name in list(os.environ):
        if name.startswith("VAULT_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)


ISSUER = "https://vault.example.com"


@pytest.mark.parametrize("issuer", ["", "http://vault.example.com", "https://vault.example.com/"])
def test_production_requires_an_https_issuer(tmp_path, issuer):
    with pytest.raises(ConfigurationError, match="VAULT_ISSUER"):
        build_config(
            tmp_path,
            production(
                VAULT_SECRET_KEY=SECRET, VAULT_MASTER_KEY_FILE=KEY_FILE, VAULT_ISSUER=issuer
            ),
        )


MAIL = {"VAULT_SMTP_URL": "smtp://mail.example.com", "VAULT_MAIL_FROM": "vault@example.com"}


def production(**values: str) -> dict[str, str]:
    return {"VAULT_ENV": "production", "VAULT_ISSUER": ISSUER, **MAIL, **values}


def test_production_without_secret_key_names_it(tmp_path):
    with pytest.raises(ConfigurationError) as error:
        build_config(tmp_path, production(VAULT_MASTER_KEY_FILE=KEY_FILE))
    message = str(error.value)
    assert "VAULT_SECRET_KEY" in message
    assert "master key" not in message


def test_production_with_short_secret_key_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match=r"VAULT_SECRET_KEY .*shorter than 32"):
        build_config(
            tmp_path, production(VAULT_SECRET_KEY="x" * 31, VAULT_MASTER_KEY_FILE=KEY_FILE)
        )


def test_production_without_master_key_names_both_ways_to_set_it(tmp_path):
    with pytest.raises(ConfigurationError) as error:
        build_config(tmp_path, production(VAULT_SECRET_KEY=SECRET))
    message = str(error.value)
    assert "VAULT_MASTER_KEY_FILE" in message and "VAULT_MASTER_KEY " in message
    assert "vault keys generate" in message
    assert "VAULT_SECRET_KEY" not in message


def test_production_is_the_default_and_lists_every_problem(tmp_path):
    with pytest.raises(ConfigurationError) as error:
        build_config(tmp_path, {})
    message = str(error.value)
    assert "VAULT_SECRET_KEY" in message and "VAULT_MASTER_KEY_FILE" in message
    assert "VAULT_ISSUER" in message
    assert "VAULT_ENV=development" in message
    assert not (tmp_path / "secret_key").exists()


def test_production_with_everything_set_starts(tmp_path):
    config = build_config(
        tmp_path,
        production(VAULT_SECRET_KEY=SECRET, VAULT_MASTER_KEY_FILE=KEY_FILE, VAULT_ISSUER=ISSUER),
    )
    assert config["SECRET_KEY"] == SECRET
    assert config["TESTING"] is False
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["WTF_CSRF_ENABLED"] is True


def test_create_app_refuses_production_without_keys():
    with pytest.raises(ConfigurationError, match="VAULT_SECRET_KEY"):
        create_app({"VAULT_ENV": "production"})
    with pytest.raises(ConfigurationError, match="VAULT_MASTER_KEY"):
        create_app({"VAULT_ENV": "production", "SECRET_KEY": SECRET})


def test_create_app_refuses_production_with_keys_only_in_the_environment_missing(monkeypatch):
    monkeypatch.setenv("VAULT_ENV", "production")
    monkeypatch.setenv("VAULT_SECRET_KEY", SECRET)
    with pytest.raises(ConfigurationError, match="VAULT_MASTER_KEY_FILE"):
        create_app()


@pytest.mark.parametrize("profile", ["prod", "Production", "staging", "debug", " production"])
def test_unknown_profile_is_refused(tmp_path, profile):
    with pytest.raises(ConfigurationError, match="VAULT_ENV must be one of"):
        build_config(tmp_path, {"VAULT_ENV": profile, "VAULT_SECRET_KEY": SECRET})
    with pytest.raises(ConfigurationError, match="VAULT_ENV must be one of"):
        create_app({"VAULT_ENV": profile})


@pytest.mark.parametrize(
    "name",
    ["VAULT_ARGON2_TIME_COST", "VAULT_TRUSTED_PROXIES", "VAULT_SESSION_LIFETIME"],
)
def test_non_numbers_are_refused_by_name(tmp_path, name):
    environ = production(VAULT_SECRET_KEY=SECRET, VAULT_MASTER_KEY_FILE=KEY_FILE, **{name: "3x"})
    with pytest.raises(ConfigurationError, match=name):
        build_config(tmp_path, environ)


@pytest.mark.parametrize("value", ["flase", "ture", "secure", "2"])
def test_mistyped_security_flag_is_refused_not_read_as_false(tmp_path, value):
    environ = production(
        VAULT_SECRET_KEY=SECRET, VAULT_MASTER_KEY_FILE=KEY_FILE, VAULT_COOKIE_SECURE=value
    )
    with pytest.raises(ConfigurationError, match="VAULT_COOKIE_SECURE"):
        build_config(tmp_path, environ)


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("on", True)])
def test_flags_read_the_usual_spellings(tmp_path, value, expected):
    environ = production(
        VAULT_SECRET_KEY=SECRET, VAULT_MASTER_KEY_FILE=KEY_FILE, VAULT_FORCE_HTTPS=value
    )
    assert build_config(tmp_path, environ)["VAULT_FORCE_HTTPS"] is expected


@pytest.mark.parametrize("name", ["VAULT_LOGIN_RATE_LIMIT", "VAULT_SIGNUP_RATE_LIMIT"])
def test_malformed_rate_limit_is_refused_at_start(tmp_path, name):
    environ = production(
        VAULT_SECRET_KEY=SECRET, VAULT_MASTER_KEY_FILE=KEY_FILE, **{name: "ten a minute"}
    )
    with pytest.raises(ConfigurationError, match=name):
        build_config(tmp_path, environ)


def test_development_generates_a_private_secret_once(tmp_path):
    first = build_config(tmp_path, {"VAULT_ENV": "development"})
    second = build_config(tmp_path, {"VAULT_ENV": "development"})
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert len(first["SECRET_KEY"]) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert first["VAULT_MASTER_KEY_FILE"] == str(tmp_path / "master.key")


def test_production_warns_that_in_process_rate_limits_are_per_process(tmp_path, caplog):
    settings = production(VAULT_SECRET_KEY=SECRET, VAULT_MASTER_KEY_FILE=KEY_FILE)
    with caplog.at_level("WARNING", logger="vault"):
        build_config(tmp_path, settings)
    assert "VAULT_RATELIMIT_STORAGE_URI=redis://" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vault"):
        build_config(
            tmp_path, {**settings, "VAULT_RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379"}
        )
        build_config(tmp_path, {"VAULT_ENV": "development"})
    assert "VAULT_RATELIMIT_STORAGE_URI" not in caplog.text


# --- issue 9, item 13: production refuses unsafe settings ------------------------------------

STRONG = {"VAULT_SECRET_KEY": SECRET, "VAULT_MASTER_KEY_FILE": KEY_FILE}


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (" " * 48, "blank"),
        ("\t\n " * 16, "blank"),
        ("x" * 64, "different characters"),
        ("0123456789abcdef" * 3, "repeated"),
        ("ab" * 20 + "cdefgh", "predictable"),
        ("a" * 32 + "bcdefghijklm", "predictable"),
    ],
    ids=["spaces", "whitespace", "one-character", "pattern", "two-characters", "padded"],
)
def test_production_refuses_a_weak_secret_key_and_says_why(tmp_path, secret, reason):
    with pytest.raises(ConfigurationError) as error:
        build_config(tmp_path, production(**{**STRONG, "VAULT_SECRET_KEY": secret}))
    message = str(error.value)
    assert "VAULT_SECRET_KEY" in message and reason in message
    assert "secrets.token_urlsafe" in message  # and how to make a good one


def test_every_generated_secret_key_passes(tmp_path):
    import secrets

    for _ in range(2000):
        for secret in (secrets.token_urlsafe(32), secrets.token_hex(16), secrets.token_hex(32)):
            build_config(tmp_path, production(**{**STRONG, "VAULT_SECRET_KEY": secret}))


def test_production_refuses_cookies_without_the_secure_flag(tmp_path):
    with pytest.raises(ConfigurationError, match="VAULT_COOKIE_SECURE=false"):
        build_config(tmp_path, production(**STRONG, VAULT_COOKIE_SECURE="false"))
    # A development vault on plain http://127.0.0.1 may turn it off.
    dev = build_config(tmp_path, {"VAULT_ENV": "development", "VAULT_COOKIE_SECURE": "false"})
    assert dev["SESSION_COOKIE_SECURE"] is False


LIFETIMES = [
    "VAULT_SESSION_LIFETIME",
    "VAULT_CSRF_TIME_LIMIT",
    "VAULT_MAX_CONTENT_LENGTH",
    "VAULT_ACCESS_TOKEN_LIFETIME",
    "VAULT_CLIENT_TOKEN_LIFETIME",
    "VAULT_REFRESH_TOKEN_LIFETIME",
    "VAULT_CODE_LIFETIME",
    "VAULT_ID_TOKEN_LIFETIME",
    "VAULT_DB_CONNECT_TIMEOUT",
    "VAULT_DB_STATEMENT_TIMEOUT",
    "VAULT_DB_POOL_TIMEOUT",
    "VAULT_ARGON2_TIME_COST",
]


@pytest.mark.parametrize("name", LIFETIMES)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_non_positive_lifetimes_and_timeouts_are_refused_by_name(tmp_path, name, value):
    for environ in (
        production(**STRONG, **{name: value}),
        {"VAULT_ENV": "development", name: value},
    ):
        # The session lifetime may also be read as VAULT_SESSION_MAX_AGE (sessions' own checks).
        expected = name.replace("VAULT_SESSION_LIFETIME", "VAULT_SESSION_(LIFETIME|MAX_AGE)")
        with pytest.raises(ConfigurationError, match=f"{expected} must be a positive number"):
            build_config(tmp_path, environ)


@pytest.mark.parametrize("variable", ["FLASK_DEBUG", "VAULT_DEBUG"])
@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_production_refuses_debug_mode(tmp_path, variable, value):
    with pytest.raises(ConfigurationError, match="debug mode"):
        build_config(tmp_path, production(**STRONG, **{variable: value}))
    build_config(tmp_path, production(**STRONG, **{variable: "0"}))


def test_production_refuses_debug_set_in_the_app_config(tmp_path):
    with pytest.raises(ConfigurationError, match="debug mode"):
        build_config(tmp_path, production(**STRONG), overrides={"DEBUG": True})


# --- database timeouts (issue 9, item 11) ------------------------------------------------------

PG = "postgresql+psycopg://vault@db.example:5432/vault"


def test_postgresql_gets_connect_and_statement_timeouts(tmp_path):
    options = build_config(
        tmp_path, production(**STRONG, VAULT_DATABASE_URL=PG, VAULT_DB_STATEMENT_TIMEOUT="7")
    )["SQLALCHEMY_ENGINE_OPTIONS"]
    assert "pool_pre_ping" not in options  # bounded pre-ping in vault.database instead
    assert options["pool_timeout"] == 5
    assert options["connect_args"] == {
        "connect_timeout": 5,
        "options": "-c statement_timeout=7000",
    }


def test_statement_timeout_joins_server_options_already_given(tmp_path):
    from_url = build_config(
        tmp_path,
        production(**STRONG, VAULT_DATABASE_URL=PG + "?options=-csearch_path%3Dvault"),
    )["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]
    assert from_url["options"] == "-csearch_path=vault -c statement_timeout=15000"
    given = {"connect_args": {"options": "-csearch_path=s1", "connect_timeout": 2}}
    from_options = build_config(
        tmp_path,
        production(**STRONG, VAULT_DATABASE_URL=PG),
        overrides={"SQLALCHEMY_ENGINE_OPTIONS": given},
    )["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]
    assert from_options == {
        "options": "-csearch_path=s1 -c statement_timeout=15000",
        "connect_timeout": 2,
    }


def test_operator_commands_run_without_a_statement_timeout(tmp_path):
    options = build_config(
        tmp_path,
        production(**STRONG, VAULT_DATABASE_URL=PG),
        overrides={"VAULT_DB_STATEMENT_TIMEOUT": None},
    )["SQLALCHEMY_ENGINE_OPTIONS"]
    assert "statement_timeout" not in options["connect_args"].get("options", "")
    assert options["connect_args"]["connect_timeout"] == 5
