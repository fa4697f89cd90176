"""Confirmation links at the views: their lifetime, the per-address mail limit, and the
"check your inbox" page that sign-up and e-mail change show whatever the address."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, render_template

from connectors.base import Delivery
from vault import mail
from vault.accounts import ratelimits
from vault.crypto.keyed_hash import blind_index
from vault.services import keys

MAIL_LIMITED = (
    "Too many confirmation mails went to this address recently. Wait an hour and try again."
)


def lifetime() -> timedelta:
    return timedelta(seconds=int(current_app.config["VAULT_EMAIL_LINK_LIFETIME"]))


def hours() -> int:
    return max(1, round(lifetime().total_seconds() / 3600))


def mail_allowed(email: str) -> bool:
    """Confirmation mails per address (sign-up and e-mail change alike), counted by the
    address's blind index: nobody can mail-bomb a stranger through the vault."""
    index = blind_index(keys().secret("blind_index"), email)
    return ratelimits.allow(current_app.config["VAULT_MAIL_RATE_LIMIT"], "mail-to", index.hex())


def written_to(delivery: Delivery) -> str | None:
    """Where the development file connector put the mail, for the page to say."""
    return delivery.location if mail.writes_files() else None


def check_inbox(email: str, delivery: Delivery) -> str:
    return render_template(
        "accounts/check_inbox.html",
        email=email,
        delivered=delivery.ok,
        written_to=written_to(delivery),
        hours=hours(),
    )
