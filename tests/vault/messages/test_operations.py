"""accept_message writes the message and its contact-log row in the caller's transaction:
a rollback leaves neither (on SQLite a savepoint opened before any write would have
committed the message on its own)."""

from __future__ import annotations

import uuid

from tests.vault.messages.helpers import World, email
from tests.vault.oauth.conftest import Vault
from vault.extensions import db
from vault.messages.operations import accept_message
from vault.models import utcnow
from vault.services import keys
from vault.vendors.models import Vendor


def _accept(vault: Vault, world: World, key: str) -> str:
    vendor = db.session.get(Vendor, world.shop.client.vendor_id)
    accepted = accept_message(
        db.session,
        keys(),
        vendor,
        world.shop.client.client_id,
        world.user.id,
        email(world.sub),
        key,
        utcnow(),
    )
    return accepted.message.id


def test_a_rolled_back_request_leaves_no_message_and_no_log(vault: Vault, world: World) -> None:
    with vault.app.app_context():
        _accept(vault, world, str(uuid.uuid4()))
        db.session.rollback()
    assert vault.sql("SELECT count(*) FROM messages")[0][0] == 0
    assert vault.sql("SELECT count(*) FROM contact_log")[0][0] == 0


def test_a_committed_one_keeps_both_and_its_key(vault: Vault, world: World) -> None:
    key = str(uuid.uuid4())
    with vault.app.app_context():
        first = _accept(vault, world, key)
        db.session.commit()
        again = _accept(vault, world, key)
        db.session.commit()
    assert first == again
    assert vault.sql("SELECT count(*) FROM messages")[0][0] == 1
    assert vault.sql("SELECT event FROM contact_log") == [("accepted",)]
