"""Two ``vault worker --once`` processes on one PostgreSQL drain 1,000 messages: each is
delivered exactly once (``FOR UPDATE SKIP LOCKED`` claims), into a real SMTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import TestDatabase
from tests.mailserver import MailServer
from tests.vault.messages.helpers import World, email
from tests.vault.oauth.conftest import Vault
from vault.extensions import db
from vault.messages.operations import accept_message
from vault.models import utcnow
from vault.services import keys
from vault.vendors.models import Vendor

ROOT = Path(__file__).resolve().parents[3]
COUNT = 1000


def _accept_many(vault: Vault, world: World, count: int) -> set[str]:
    ids = set()
    with vault.app.app_context():
        vendor = db.session.get(Vendor, world.shop.client.vendor_id)
        for number in range(count):
            accepted = accept_message(
                db.session,
                keys(),
                vendor,
                world.shop.client.client_id,
                world.user.id,
                email(world.sub, body=f"Message {number}"),
                str(uuid.uuid4()),
                utcnow(),
            )
            assert accepted.message.status == "queued"
            ids.add(accepted.message.id)
        db.session.commit()
    return ids


def test_two_worker_processes_deliver_each_message_exactly_once(
    vault: Vault,
    world: World,
    database: TestDatabase,
    keyring_text: str,
    mailbox: MailServer,
    tmp_path: Path,
) -> None:
    if database.backend != "postgresql":
        pytest.skip("several worker processes share a PostgreSQL database")
    ids = _accept_many(vault, world, COUNT)
    url = f"{database.url}?options={quote(f'-csearch_path={database.schema}')}"
    env = {
        **os.environ,
        "VAULT_ENV": "testing",
        "VAULT_DATABASE_URL": url,
        "VAULT_MASTER_KEY": keyring_text,
        "VAULT_SECRET_KEY": vault.app.config["SECRET_KEY"],
        "VAULT_SMTP_URL": mailbox.url,
        "VAULT_MAIL_FROM": "CMR Vault <vault@vault.example>",
        "VAULT_OUTBOX_BATCH": "10",
        "VAULT_LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-c",
        "import sys; from vault.cli import main; sys.argv[0] = 'vault'; main()",
        "worker",
        "--once",
    ]
    workers = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"worker{n}.log").open("w"),
            text=True,
        )
        for n in range(2)
    ]
    results = []
    for process in workers:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0, (tmp_path / "worker0.log").read_text()[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    sent = [result["sent"] for result in results]
    assert sum(sent) == COUNT, sent
    assert all(share > 0 for share in sent), f"one worker did everything: {sent}"
    mails = mailbox.to(world.user.email)
    message_ids = [str(mail.message["Message-ID"]) for mail in mails]
    assert len(message_ids) == COUNT
    assert set(message_ids) == {f"<{message_id}@vault.example>" for message_id in ids}
    rows = vault.sql("SELECT status, attempts, count(*) FROM messages GROUP BY status, attempts")
    assert [tuple(row) for row in rows] == [("sent", 1, COUNT)]
    log = vault.sql("SELECT count(*) FROM contact_log WHERE event = 'sent'")
    assert log[0][0] == COUNT
