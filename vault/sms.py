"""SMS from the vault: the connector the configuration picks, like ``vault.mail`` for e-mail.

``VAULT_SMS_URL`` set: Twilio's Messages API (``connectors.sms.TwilioConnector``). Unset,
outside production: each SMS becomes a ``.txt`` file in ``VAULT_SMS_DIR``, so ``make run``
confirms phone numbers and delivers SMS without a provider. In production without a URL
there is no SMS channel (``connector()`` is None): callers refuse or fail the message
instead of writing personal data into files nobody reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app

from connectors.base import Connector
from connectors.sms import SmsFileConnector, TwilioConnector


def build_connector(config: Mapping[str, Any]) -> Connector | None:
    if config.get("VAULT_SMS_URL"):
        return TwilioConnector.from_url(str(config["VAULT_SMS_URL"]))
    if config.get("VAULT_ENV") == "production":
        return None
    return SmsFileConnector(str(config["VAULT_SMS_DIR"]))


def connector() -> Connector | None:
    """The app's SMS connector, built on first use from its configuration."""
    extensions = current_app.extensions
    if "vault.sms" not in extensions:
        extensions["vault.sms"] = build_connector(current_app.config)
    return extensions["vault.sms"]


def writes_files() -> bool:
    """True in development without a provider: pages then say where the text was written."""
    return isinstance(connector(), SmsFileConnector)
