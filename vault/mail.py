"""Mail from the vault: a template rendered and handed to the connector the configuration picks.

``VAULT_SMTP_URL`` set: SMTP (``connectors.email.SmtpConnector``). Unset, outside production
(which refuses to start without it): each message becomes a ``.eml`` file in
``VAULT_MAIL_DIR`` and the page that sent it says where, so ``make run`` works without a
mail server. Templates live in ``templates/email/<name>/subject.txt`` and ``body.txt``.

Mail goes out after the database commit, never inside the transaction: a link must not
reach someone while the row it names may still roll back. A failed send is logged with the
template name and the connector's reason, never the address; the page offers a new link.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import current_app, render_template, url_for

from connectors.base import Connector, Delivery, Message
from connectors.email import FileConnector, Sender, SmtpConnector, SmtpSettings

log = logging.getLogger("vault.mail")


def build_connector(config: Mapping[str, Any]) -> Connector:
    sender = Sender.parse(str(config["VAULT_MAIL_FROM"]))
    if config.get("VAULT_SMTP_URL"):
        return SmtpConnector(SmtpSettings.from_url(str(config["VAULT_SMTP_URL"])), sender)
    return FileConnector(str(config["VAULT_MAIL_DIR"]), sender)


def connector() -> Connector:
    """The app's mail connector, built on first use from its configuration."""
    extensions = current_app.extensions
    if "vault.mail" not in extensions:
        extensions["vault.mail"] = build_connector(current_app.config)
    return extensions["vault.mail"]


def writes_files() -> bool:
    """True in development without SMTP: pages then say where the message was written."""
    return isinstance(connector(), FileConnector)


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute link for a mail. In production it starts with ``VAULT_ISSUER``, never with
    the request's Host header, which a client chooses (a poisoned link would carry the
    token to someone else's server)."""
    issuer = current_app.config.get("VAULT_ISSUER")
    if issuer:
        return str(issuer).rstrip("/") + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def send(template: str, recipient: str, **context: Any) -> Delivery:
    """Render ``templates/email/<template>/`` for one recipient and deliver it now."""
    subject = render_template(f"email/{template}/subject.txt", **context)
    text = render_template(f"email/{template}/body.txt", **context)
    message = Message(recipient=recipient, subject=" ".join(subject.split()), text=text + "\n")
    delivery = connector().deliver(message)
    if not delivery.ok:
        log.warning(
            "mail %r not delivered: %s (%s)", template, delivery.outcome.value, delivery.detail
        )
    return delivery
