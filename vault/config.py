"""Configuration read from environment variables, with safe defaults.

``VAULT_ENV`` picks the profile: ``production`` (the default, used by ``wsgi.py``),
``development`` (``make run``: generates a development secret and master key in the
instance folder) or ``testing``. Production refuses to start without a real secret key
and master key, with a weak secret key, cookies without the Secure flag or debug mode, and
says what to set; every profile but testing refuses lifetimes and timeouts of zero or less.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILES = ("production", "development", "testing")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigurationError(RuntimeError):
    """The environment does not describe a vault that may start."""


@dataclass(frozen=True)
class _Env:
    values: Mapping[str, str]

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else default

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        # A typo must not quietly turn a security setting off.
        raise ConfigurationError(f"{name} must be true or false, not {value!r}")

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigurationError(f"{name} must be a whole number, not {value!r}") from exc


def build_config(
    instance_path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the Flask configuration for this process.

    ``overrides`` (from ``create_app(config)``) win over the environment, so tests can
    build an app without touching ``os.environ``.
    """
    env = _Env(os.environ if environ is None else environ)
    overrides = dict(overrides or {})
    profile = overrides.get("VAULT_ENV") or env.get("VAULT_ENV", "production")
    if profile not in PROFILES:
        raise ConfigurationError(f"VAULT_ENV must be one of {', '.join(PROFILES)}, not {profile!r}")
    instance = Path(instance_path)
    development = profile == "development"
    testing = profile == "testing"

    config: dict[str, Any] = {
        "VAULT_ENV": profile,
        "TESTING": testing,
        "SECRET_KEY": env.get("VAULT_SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": env.get("VAULT_DATABASE_URL")
        or env.get("DATABASE_URL")
        or f"sqlite:///{instance / 'vault.db'}",
        # Filled in by _database_options (timeouts, pre-ping) below.
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        # Database trouble must be a quick 503, never a request hanging until the worker is
        # killed (vault.errors): seconds to open a connection, to run one statement (on
        # PostgreSQL; on SQLite how long to wait for the write lock) and to wait for a free
        # pooled connection. Together well under gunicorn's 30 s worker timeout.
        "VAULT_DB_CONNECT_TIMEOUT": env.integer("VAULT_DB_CONNECT_TIMEOUT", 5),
        "VAULT_DB_STATEMENT_TIMEOUT": env.integer("VAULT_DB_STATEMENT_TIMEOUT", 15),
        "VAULT_DB_POOL_TIMEOUT": env.integer("VAULT_DB_POOL_TIMEOUT", 5),
        # Master key: an env var (keyring text) or a key file; see vault.crypto.keyring.
        "VAULT_MASTER_KEY": env.get("VAULT_MASTER_KEY"),
        "VAULT_MASTER_KEY_FILE": env.get("VAULT_MASTER_KEY_FILE")
        or (str(instance / "master.key") if development else None),
        # Cookies are Secure everywhere; browsers treat http://127.0.0.1 as a secure
        # context, so `make run` on loopback still works.
        "SESSION_COOKIE_SECURE": env.flag("VAULT_COOKIE_SECURE", True),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_NAME": "vault_session",
        "REMEMBER_COOKIE_SECURE": True,
        "REMEMBER_COOKIE_HTTPONLY": True,
        # Log-in sessions end after VAULT_SESSION_IDLE_TIMEOUT seconds without a request and
        # VAULT_SESSION_MAX_AGE seconds after logging in, checked on the server from the
        # signed session (vault.accounts.sessions); the cookie itself lasts until the
        # browser closes, which is what lets session_protection="strong" act.
        "VAULT_SESSION_IDLE_TIMEOUT": env.integer("VAULT_SESSION_IDLE_TIMEOUT", 30 * 60),
        "VAULT_SESSION_MAX_AGE": env.integer(
            "VAULT_SESSION_MAX_AGE", env.integer("VAULT_SESSION_LIFETIME", 12 * 3600)
        ),
        "WTF_CSRF_ENABLED": True,
        "WTF_CSRF_TIME_LIMIT": env.integer("VAULT_CSRF_TIME_LIMIT", 3600),
        "MAX_CONTENT_LENGTH": env.integer("VAULT_MAX_CONTENT_LENGTH", 1024 * 1024),
        # In-process counters without a timer thread (vault.ratelimit); redis:// for
        # limits shared by several processes.
        "RATELIMIT_STORAGE_URI": env.get("VAULT_RATELIMIT_STORAGE_URI", "vault-memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "VAULT_LOGIN_RATE_LIMIT": env.get("VAULT_LOGIN_RATE_LIMIT", "10 per minute"),
        "VAULT_SIGNUP_RATE_LIMIT": env.get("VAULT_SIGNUP_RATE_LIMIT", "20 per hour"),
        # Confirmation mails to one address (sign-up and e-mail change alike), and e-mail
        # changes one account may start.
        "VAULT_MAIL_RATE_LIMIT": env.get("VAULT_MAIL_RATE_LIMIT", "3 per hour"),
        "VAULT_EMAIL_CHANGE_RATE_LIMIT": env.get("VAULT_EMAIL_CHANGE_RATE_LIMIT", "5 per hour"),
        # Wrong passwords and second-factor codes per account: the first few are free, then
        # each waits twice as long as the one before, up to the maximum (never a lock).
        "VAULT_GUESS_FREE_ATTEMPTS": env.integer("VAULT_GUESS_FREE_ATTEMPTS", 5),
        "VAULT_GUESS_DELAY": env.integer("VAULT_GUESS_DELAY", 15),
        "VAULT_GUESS_MAX_DELAY": env.integer("VAULT_GUESS_MAX_DELAY", 15 * 60),
        # Mail: SMTP from one URL (connectors.email); outside production, without a URL,
        # each message is written as a .eml file into VAULT_MAIL_DIR instead.
        "VAULT_SMTP_URL": env.get("VAULT_SMTP_URL"),
        "VAULT_MAIL_FROM": env.get("VAULT_MAIL_FROM")
        or (None if profile == "production" else "CMR Vault <vault@localhost>"),
        "VAULT_MAIL_DIR": env.get("VAULT_MAIL_DIR") or str(instance / "mail"),
        "VAULT_EMAIL_LINK_LIFETIME": env.integer("VAULT_EMAIL_LINK_LIFETIME", 24 * 3600),
        # SMS through Twilio's Messages API from one URL (connectors.sms); outside production,
        # without a URL, each SMS is written as a .txt file into VAULT_SMS_DIR instead.
        "VAULT_SMS_URL": env.get("VAULT_SMS_URL"),
        "VAULT_SMS_DIR": env.get("VAULT_SMS_DIR") or str(instance / "sms"),
        # Phone confirmation (vault.profile.phone): a code lives this many seconds and
        # takes this many guesses; codes sent per number and per account.
        "VAULT_PHONE_CODE_LIFETIME": env.integer("VAULT_PHONE_CODE_LIFETIME", 600),
        "VAULT_PHONE_CODE_ATTEMPTS": env.integer("VAULT_PHONE_CODE_ATTEMPTS", 5),
        "VAULT_PHONE_CODE_RATE_LIMIT": env.get(
            "VAULT_PHONE_CODE_RATE_LIMIT", "3 per hour;10 per day"
        ),
        # The outbox of businesses' messages (vault.messages): attempts before a message
        # fails for good, the back-off between them (doubling from the base, with jitter,
        # up to the maximum), how long a worker's claim on a message lasts (past the
        # slowest delivery: a worker killed mid-delivery leaves it to another after that),
        # messages claimed at a time, and the idle worker's wait between looks (seconds).
        "VAULT_OUTBOX_MAX_ATTEMPTS": env.integer("VAULT_OUTBOX_MAX_ATTEMPTS", 8),
        "VAULT_OUTBOX_BACKOFF": env.integer("VAULT_OUTBOX_BACKOFF", 30),
        "VAULT_OUTBOX_MAX_BACKOFF": env.integer("VAULT_OUTBOX_MAX_BACKOFF", 3600),
        "VAULT_OUTBOX_LEASE": env.integer("VAULT_OUTBOX_LEASE", 300),
        "VAULT_OUTBOX_BATCH": env.integer("VAULT_OUTBOX_BATCH", 20),
        "VAULT_OUTBOX_POLL": env.integer("VAULT_OUTBOX_POLL", 2),
        # Consent-change webhooks: attempts before a delivery is marked failed, and each
        # attempt's time-out in seconds (the back-off is the outbox's).
        "VAULT_WEBHOOK_MAX_ATTEMPTS": env.integer("VAULT_WEBHOOK_MAX_ATTEMPTS", 10),
        "VAULT_WEBHOOK_TIMEOUT": env.integer("VAULT_WEBHOOK_TIMEOUT", 10),
        # `vault run` (development) runs a delivery worker thread beside the server.
        "VAULT_RUN_WORKER": env.flag("VAULT_RUN_WORKER", development),
        # Longest SMS a business may send, in segments (connectors.segments).
        "VAULT_SMS_MAX_SEGMENTS": env.integer("VAULT_SMS_MAX_SEGMENTS", 10),
        # Seconds a contact permit stays valid.
        "VAULT_PERMIT_LIFETIME": env.integer("VAULT_PERMIT_LIFETIME", 300),
        "VAULT_FORCE_HTTPS": env.flag("VAULT_FORCE_HTTPS", False),
        # How many reverse proxies in front set X-Forwarded-* (0: trust none).
        "VAULT_TRUSTED_PROXIES": env.integer("VAULT_TRUSTED_PROXIES", 0),
        # OAuth / OpenID Connect. The issuer defaults to the URL the request came in on.
        "VAULT_ISSUER": env.get("VAULT_ISSUER"),
        "VAULT_ACCESS_TOKEN_LIFETIME": env.integer("VAULT_ACCESS_TOKEN_LIFETIME", 900),
        "VAULT_CLIENT_TOKEN_LIFETIME": env.integer("VAULT_CLIENT_TOKEN_LIFETIME", 3600),
        "VAULT_REFRESH_TOKEN_LIFETIME": env.integer("VAULT_REFRESH_TOKEN_LIFETIME", 30 * 86400),
        "VAULT_CODE_LIFETIME": env.integer("VAULT_CODE_LIFETIME", 120),
        # How recent a log-in meets prompt=login and max_age=0 (the one the flow asked for).
        "VAULT_FRESH_LOGIN_SECONDS": env.integer("VAULT_FRESH_LOGIN_SECONDS", 60),
        "VAULT_ID_TOKEN_LIFETIME": env.integer("VAULT_ID_TOKEN_LIFETIME", 900),
        "VAULT_TOKEN_RATE_LIMIT": env.get("VAULT_TOKEN_RATE_LIMIT", "120 per minute"),
        "VAULT_API_RATE_LIMIT": env.get("VAULT_API_RATE_LIMIT", "1200 per minute"),
        # New consent requests of one business to one customer (repeats of a pending one
        # are free).
        "VAULT_CONSENT_REQUEST_RATE_LIMIT": env.get(
            "VAULT_CONSENT_REQUEST_RATE_LIMIT", "3 per day"
        ),
        # Unsubscribe POSTs per link, and refused unsubscribe links (altered, cut off) per
        # client address. Not a plain per-address limit: a big mailbox provider sends its
        # users' one-click unsubscribes from a few addresses, and none may be refused.
        "VAULT_UNSUBSCRIBE_RATE_LIMIT": env.get("VAULT_UNSUBSCRIBE_RATE_LIMIT", "10 per minute"),
        "VAULT_UNSUBSCRIBE_REFUSED_RATE_LIMIT": env.get(
            "VAULT_UNSUBSCRIBE_REFUSED_RATE_LIMIT", "30 per minute"
        ),
        # argon2id cost; RFC 9106 "second recommended option" by default.
        "VAULT_ARGON2_TIME_COST": env.integer("VAULT_ARGON2_TIME_COST", 3),
        "VAULT_ARGON2_MEMORY_COST": env.integer("VAULT_ARGON2_MEMORY_COST", 65536),
        "VAULT_ARGON2_PARALLELISM": env.integer("VAULT_ARGON2_PARALLELISM", 4),
        # vault.logs: JSON lines on stderr at this level; VAULT_LOG_JSON=0 leaves logging
        # as the host process set it up.
        "VAULT_LOG_LEVEL": env.get("VAULT_LOG_LEVEL", "INFO"),
        "VAULT_LOG_JSON": env.flag("VAULT_LOG_JSON", True),
        # FLASK_DEBUG is what `flask run --debug` sets and Flask reads; VAULT_DEBUG in case an
        # operator reaches for the vault's own prefix. Production refuses either.
        "VAULT_DEBUG_REQUESTED": any(
            (env.get(name) or "").strip().lower() not in ("", *_FALSE)
            for name in ("FLASK_DEBUG", "VAULT_DEBUG")
        ),
    }
    config.update(overrides)
    config.setdefault("PERMANENT_SESSION_LIFETIME", config["VAULT_SESSION_MAX_AGE"])
    config["SQLALCHEMY_ENGINE_OPTIONS"] = _database_options(config)

    if config["SECRET_KEY"] is None and (development or testing):
        config["SECRET_KEY"] = _instance_secret(instance)
    _check_rate_limits(config)
    _check_accounts(config)
    _refuse_unsafe(config)
    _warn_per_process_limits(config)
    return config


def _database_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Engine options with the database timeouts, merged into what was given.

    PostgreSQL (psycopg): ``connect_timeout`` bounds opening a connection, also to a server
    that accepts TCP and never answers; ``statement_timeout`` (a server setting, sent with
    the connection's other ``options`` such as a search_path) bounds each statement;
    ``pool_timeout`` bounds the wait for a pooled connection. Pre-ping, which replaces
    connections the server dropped while idle, and a client-side bound for a server that
    stops answering on an open connection are set up in ``vault.database``, as is SQLite's
    wait for its write lock. ``VAULT_DB_STATEMENT_TIMEOUT`` of None (the operator CLI,
    ``vault.cli``) leaves statements unbounded: migrations and ledger verification may
    rightly run long.
    """
    from sqlalchemy.engine import make_url

    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    url = make_url(str(config["SQLALCHEMY_DATABASE_URI"]))
    if url.get_backend_name() == "sqlite":
        return options
    if url.get_backend_name() != "postgresql":
        options.setdefault("pool_pre_ping", True)  # PostgreSQL's is bounded in vault.database
    options.setdefault("pool_timeout", config["VAULT_DB_POOL_TIMEOUT"])
    connect_args = dict(options.get("connect_args") or {})
    if url.get_backend_name() == "postgresql":
        connect_args.setdefault("connect_timeout", config["VAULT_DB_CONNECT_TIMEOUT"])
        statement_timeout = config.get("VAULT_DB_STATEMENT_TIMEOUT")
        # connect_args replace the URL's query arguments of the same name: keep both.
        server_options = str(connect_args.get("options") or url.query.get("options") or "")
        if statement_timeout and "statement_timeout" not in server_options:
            server_options = f"{server_options} -c statement_timeout={statement_timeout * 1000}"
        if server_options:
            connect_args["options"] = server_options.strip()
    options["connect_args"] = connect_args
    return options


def _check_rate_limits(config: Mapping[str, Any]) -> None:
    """A malformed limit would otherwise fail only when the first request hits it."""
    from limits import parse_many

    for name, value in config.items():
        if not (name.startswith("VAULT_") and name.endswith("_RATE_LIMIT")) or value is None:
            continue
        try:
            parse_many(str(value))
        except ValueError as exc:
            raise ConfigurationError(
                f"{name} must be a rate limit such as '10 per minute', not {value!r}"
            ) from exc


def _check_accounts(config: Mapping[str, Any]) -> None:
    """Mail and session settings that cannot work are refused at start, by name."""
    from connectors.email import EmailConfigError, Sender, SmtpSettings

    for name in (
        "VAULT_SESSION_IDLE_TIMEOUT",
        "VAULT_SESSION_MAX_AGE",
        "VAULT_EMAIL_LINK_LIFETIME",
        "VAULT_GUESS_FREE_ATTEMPTS",
        "VAULT_PHONE_CODE_LIFETIME",
        "VAULT_PHONE_CODE_ATTEMPTS",
        "VAULT_OUTBOX_MAX_ATTEMPTS",
        "VAULT_OUTBOX_LEASE",
        "VAULT_OUTBOX_BATCH",
        "VAULT_WEBHOOK_MAX_ATTEMPTS",
        "VAULT_WEBHOOK_TIMEOUT",
        "VAULT_SMS_MAX_SEGMENTS",
        "VAULT_PERMIT_LIFETIME",
    ):
        if int(config[name]) <= 0:
            raise ConfigurationError(f"{name} must be a positive number, not {config[name]!r}")
    for name in (
        "VAULT_GUESS_DELAY",
        "VAULT_GUESS_MAX_DELAY",
        "VAULT_OUTBOX_BACKOFF",
        "VAULT_OUTBOX_MAX_BACKOFF",
        "VAULT_OUTBOX_POLL",
    ):
        if int(config[name]) < 0:
            raise ConfigurationError(f"{name} must not be negative, not {config[name]!r}")
    if config.get("VAULT_SMS_URL"):
        from connectors.sms import SmsConfigError, SmsSettings

        try:
            SmsSettings.from_url(str(config["VAULT_SMS_URL"]))
        except SmsConfigError as exc:
            raise ConfigurationError(f"VAULT_SMS_URL: {exc}") from exc
    try:
        if config.get("VAULT_SMTP_URL"):
            SmtpSettings.from_url(str(config["VAULT_SMTP_URL"]))
        if config.get("VAULT_MAIL_FROM"):
            Sender.parse(str(config["VAULT_MAIL_FROM"]))
    except EmailConfigError as exc:
        raise ConfigurationError(f"mail settings: {exc}") from exc


def _mail_problems(config: Mapping[str, Any]) -> list[str]:
    """Production sends real mail: writing it into files would lose every confirmation."""
    problems = []
    if not config.get("VAULT_SMTP_URL"):
        problems.append(
            "VAULT_SMTP_URL is not set: sign-up and e-mail changes send confirmation links "
            "(e.g. smtp://user:pass@mail.example.com:587?starttls=true)"
        )
    if not config.get("VAULT_MAIL_FROM"):
        problems.append("VAULT_MAIL_FROM is not set (e.g. 'CMR Vault <vault@example.com>')")
    return problems


def _instance_secret(instance: Path) -> str:
    """A per-installation secret for development, kept in the instance folder."""
    import secrets

    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _warn_per_process_limits(config: Mapping[str, Any]) -> None:
    """In-process counters are right for one process and wrong behind several: each worker
    would allow the full login or token budget on its own."""
    uri = str(config["RATELIMIT_STORAGE_URI"])
    if config["VAULT_ENV"] == "production" and uri.split("://")[0] in ("vault-memory", "memory"):
        logging.getLogger("vault").warning(
            "rate limits are counted in each process (%s): with several workers or hosts, "
            "set VAULT_RATELIMIT_STORAGE_URI=redis://HOST:6379 so they share one count",
            uri,
        )


# Settings that are durations or sizes: zero or less would make tokens, sessions or forms
# expire at once, or disable a limit.
POSITIVE_SETTINGS = (
    "PERMANENT_SESSION_LIFETIME",
    "WTF_CSRF_TIME_LIMIT",
    "MAX_CONTENT_LENGTH",
    "VAULT_ACCESS_TOKEN_LIFETIME",
    "VAULT_CLIENT_TOKEN_LIFETIME",
    "VAULT_REFRESH_TOKEN_LIFETIME",
    "VAULT_CODE_LIFETIME",
    "VAULT_ID_TOKEN_LIFETIME",
    "VAULT_DB_CONNECT_TIMEOUT",
    "VAULT_DB_STATEMENT_TIMEOUT",
    "VAULT_DB_POOL_TIMEOUT",
    "VAULT_ARGON2_TIME_COST",
    "VAULT_ARGON2_MEMORY_COST",
    "VAULT_ARGON2_PARALLELISM",
)
# The environment name of each setting whose name differs from it.
_ENV_NAMES = {
    "PERMANENT_SESSION_LIFETIME": "VAULT_SESSION_LIFETIME",
    "WTF_CSRF_TIME_LIMIT": "VAULT_CSRF_TIME_LIMIT",
    "MAX_CONTENT_LENGTH": "VAULT_MAX_CONTENT_LENGTH",
}
SECRET_MIN_LENGTH = 32
SECRET_MIN_DISTINCT = 8
SECRET_MIN_BITS = 85
KEY_ADVICE = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'


def secret_key_problem(secret: str | None) -> str | None:
    """Why ``secret`` is no signing key for sessions and CSRF tokens, or None.

    The rule: at least 32 characters that are not all blank, at least 8 different ones,
    not one shorter sequence repeated, and at least 85 bits by the character frequencies
    (length times Shannon entropy per character: secrets.token_urlsafe(48) has ~350;
    secrets.token_hex(16), the shortest random key that passes every time, 89 or more in
    200,000 draws). It catches blank, repeated and padded keys; it cannot prove
    randomness, so generate the key."""
    import math
    from collections import Counter

    text = (secret or "").strip()
    if not text:
        return "VAULT_SECRET_KEY is missing or blank"
    if len(text) < SECRET_MIN_LENGTH:
        return f"VAULT_SECRET_KEY is shorter than {SECRET_MIN_LENGTH} characters"
    counts = Counter(text)
    if len(counts) < SECRET_MIN_DISTINCT:
        return f"VAULT_SECRET_KEY has fewer than {SECRET_MIN_DISTINCT} different characters"
    if text in (text + text)[1:-1]:
        return "VAULT_SECRET_KEY is one short sequence repeated"
    bits = -sum(n * math.log2(n / len(text)) for n in counts.values())
    if bits < SECRET_MIN_BITS:
        return (
            f"VAULT_SECRET_KEY is too predictable (about {bits:.0f} bits by its character "
            f"frequencies, {SECRET_MIN_BITS} needed)"
        )
    return None


def _refuse_unsafe(config: Mapping[str, Any]) -> None:
    problems = [
        f"{_ENV_NAMES.get(name, name)} must be a positive number, not {config[name]}"
        for name in POSITIVE_SETTINGS
        if isinstance(config.get(name), int) and config[name] <= 0
    ]
    if config["VAULT_ENV"] != "production":
        if problems:
            raise ConfigurationError("refusing to start:\n  - " + "\n  - ".join(problems))
        return
    secret_problem = secret_key_problem(config.get("SECRET_KEY"))
    if secret_problem:
        problems.append(f"{secret_problem} ({KEY_ADVICE})")
    if not config.get("SESSION_COOKIE_SECURE") or not config.get("REMEMBER_COOKIE_SECURE"):
        problems.append(
            "VAULT_COOKIE_SECURE=false would send session cookies over plain HTTP: serve the "
            "vault over HTTPS (TLS at the proxy is fine) and leave it true"
        )
    if config.get("DEBUG") or config.get("VAULT_DEBUG_REQUESTED"):
        problems.append(
            "debug mode (FLASK_DEBUG, VAULT_DEBUG or --debug) runs an interactive debugger "
            "that lets anyone run code on the server: unset it"
        )
    if not config.get("VAULT_MASTER_KEY") and not config.get("VAULT_MASTER_KEY_FILE"):
        problems.append(
            "no master key: set VAULT_MASTER_KEY_FILE to a key file made by "
            "`vault keys generate --file PATH`, or VAULT_MASTER_KEY to its contents"
        )
    issuer = str(config.get("VAULT_ISSUER") or "")
    if not issuer.startswith("https://") or issuer.endswith("/"):
        problems.append(
            "VAULT_ISSUER must be the vault's public https URL without a trailing slash "
            "(e.g. https://vault.example.com): id_tokens and discovery must not take the "
            "issuer from a request's Host header"
        )
    problems += _mail_problems(config)
    if problems:
        raise ConfigurationError(
            "refusing to start in production:\n  - "
            + "\n  - ".join(problems)
            + "\n(set VAULT_ENV=development for a local, throwaway vault)"
        )
