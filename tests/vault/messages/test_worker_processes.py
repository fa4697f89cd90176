"""Worker processes on one PostgreSQL: two ``vault worker --once`` drain 1,000 messages, each
delivered exactly once (``FOR UPDATE SKIP LOCKED`` claims), into a real SMTP server; a worker
killed mid-delivery leaves its message to the next one once its lease runs out."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
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


def _worker_env(
    vault: Vault, database: TestDatabase, keyring_text: str, smtp_url: str
) -> dict[str, str]:
    url = f"{database.url}?options={quote(f'-csearch_path={database.schema}')}"
    return {
        **os.environ,
        "VAULT_ENV": "testing",
        "VAULT_DATABASE_URL": url,
        "VAULT_MASTER_KEY": keyring_text,
        "VAULT_SECRET_KEY": vault.app.config["SECRET_KEY"],
        "VAULT_SMTP_URL": smtp_url,
        "VAULT_MAIL_FROM": "CMR Vault <vault@vault.example>",
        "VAULT_OUTBOX_BATCH": "10",
        "VAULT_LOG_LEVEL": "WARNING",
    }


WORKER_ONCE = [
    sys.executable,
    "-c",
    "import sys; from vault.cli import main; sys.argv[0] = 'vault'; main()",
    "worker",
    "--once",
]


# Worker processes meeting in one PostgreSQL (FOR UPDATE SKIP LOCKED): PostgreSQL only.
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_worker_killed_mid_delivery_leaves_the_message_to_the_next(
    vault: Vault,
    world: World,
    database: TestDatabase,
    keyring_text: str,
    mailbox: MailServer,
    tmp_path: Path,
) -> None:
    [message_id] = _accept_many(vault, world, 1)
    # An SMTP server that accepts the connection and never says a word: the first worker
    # is inside its delivery, holding the claim, when it is killed.
    silent = socket.create_server(("127.0.0.1", 0))
    connected = threading.Event()
    held: list[socket.socket] = []  # kept open (and silent) until the test ends

    def accept() -> None:
        held.append(silent.accept()[0])
        connected.set()

    threading.Thread(target=accept, daemon=True).start()
    port = silent.getsockname()[1]
    env = _worker_env(vault, database, keyring_text, f"smtp://127.0.0.1:{port}?timeout=120")
    env["VAULT_OUTBOX_LEASE"] = "3"
    first = subprocess.Popen(
        WORKER_ONCE, cwd=ROOT, env=env, stderr=(tmp_path / "first.log").open("w")
    )
    try:
        assert connected.wait(timeout=120), (tmp_path / "first.log").read_text()[-2000:]
        first.kill()  # SIGKILL: no clean-up of any kind
        first.wait(timeout=30)
    finally:
        for connection in held:
            connection.close()
        silent.close()
    [(status, attempts, claimed)] = vault.sql(
        "SELECT status, attempts, claim_token IS NOT NULL FROM messages WHERE id = :id",
        id=message_id,
    )
    assert (status, attempts, claimed) == ("queued", 0, True)
    assert mailbox.to(world.user.email) == []
    time.sleep(3.5)  # the dead worker's lease runs out
    env = _worker_env(vault, database, keyring_text, mailbox.url)
    second = subprocess.run(
        WORKER_ONCE, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout.strip().splitlines()[-1])["sent"] == 1
    [mail] = mailbox.to(world.user.email)
    assert str(mail.message["Message-ID"]) == f"<{message_id}@vault.example>"
    [(status, attempts)] = vault.sql(
        "SELECT status, attempts FROM messages WHERE id = :id", id=message_id
    )
    assert (status, attempts) == ("sent", 1)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_two_worker_processes_deliver_each_message_exactly_once(
    vault: Vault,
    world: World,
    database: TestDatabase,
    keyring_text: str,
    mailbox: MailServer,
    tmp_path: Path,
) -> None:
    ids = _accept_many(vault, world, COUNT)
    env = _worker_env(vault, database, keyring_text, mailbox.url)
    command = WORKER_ONCE
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
