"""Mail and session settings: production refuses to start without a mail server, and
settings that cannot work are refused at start, by name."""

from __future__ import annotations

import pytest

from connectors.email import FileConnector, SmtpConnector
from vault.config import ConfigurationError, build_config
from vault.mail import build_connector

PRODUCTION = {
    "VAULT_ENV": "production",
    "VAULT_ISSUER": "https://vault.example.com",
    "VAULT_SECRET_KEY": "Zq8vN2rT5xW1cL7pB4mH9dK6sF3gJ0yAe5R2tU8iO1pQ",
    "VAULT_MASTER_KEY_FILE": "/etc/vault/master.key",
    "VAULT_SMTP_URL": "smtp://user:pass@mail.example.com:587?starttls=true",
    "VAULT_MAIL_FROM": "CMR Vault <vault@example.com>",
}


@pytest.mark.parametrize("missing", ["VAULT_SMTP_URL", "VAULT_MAIL_FROM"])
def test_production_refuses_to_start_without_mail(tmp_path, missing):
    environ = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ConfigurationError, match=missing) as error:
        build_config(tmp_path, environ)
    assert "refusing to start in production" in str(error.value)


def test_production_with_mail_starts_and_sends_over_smtp(tmp_path):
    config = build_config(tmp_path, PRODUCTION)
    connector = build_connector(config)
    assert isinstance(connector, SmtpConnector)
    assert connector.settings.security == "starttls"
    assert connector.sender.address == "vault@example.com"


def test_development_writes_files_into_the_instance_folder(tmp_path):
    config = build_config(tmp_path, {"VAULT_ENV": "development"})
    connector = build_connector(config)
    assert isinstance(connector, FileConnector)
    assert connector.folder == tmp_path / "mail"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("VAULT_SMTP_URL", "http://mail.example.com", "smtp:// or smtps://"),
        ("VAULT_SMTP_URL", "smtp://u:p@mail.example.com", "without TLS"),
        ("VAULT_MAIL_FROM", "not an address", "not a sender address"),
        ("VAULT_SESSION_IDLE_TIMEOUT", "0", "VAULT_SESSION_IDLE_TIMEOUT must be a positive"),
        ("VAULT_SESSION_MAX_AGE", "-5", "VAULT_SESSION_MAX_AGE must be a positive"),
        ("VAULT_EMAIL_LINK_LIFETIME", "0", "VAULT_EMAIL_LINK_LIFETIME must be a positive"),
        ("VAULT_GUESS_DELAY", "-1", "VAULT_GUESS_DELAY must not be negative"),
        ("VAULT_MAIL_RATE_LIMIT", "three an hour", "VAULT_MAIL_RATE_LIMIT must be a rate limit"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(tmp_path, name, value, words):
    with pytest.raises(ConfigurationError, match=words):
        build_config(tmp_path, {"VAULT_ENV": "development", name: value})


def test_session_limits_are_read_and_the_cookie_check_follows_the_absolute_limit(tmp_path):
    config = build_config(
        tmp_path,
        {
            "VAULT_ENV": "development",
            "VAULT_SESSION_IDLE_TIMEOUT": "300",
            "VAULT_SESSION_MAX_AGE": "7200",
        },
    )
    assert config["VAULT_SESSION_IDLE_TIMEOUT"] == 300
    assert config["PERMANENT_SESSION_LIFETIME"] == 7200
