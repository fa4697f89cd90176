"""What one ``GET /api/v1/profile`` asks of the database: the token with everything its
refusal depends on (client, grant, customer) in one query, the key and encrypted fields in
another, and one access-log row; no lazy load of the ORM ``Token`` creeps onto this path."""

from __future__ import annotations

from sqlalchemy import event

from tests.vault.oauth.conftest import Vault
from vault.extensions import db


def test_a_profile_read_is_two_reads_and_one_access_log_row(vault: Vault):
    customer = vault.customer(given_name="Ann", family_name="Lovelace")
    _, tokens = vault.connect(vault.vendor(), vault.browser(customer))
    with vault.app.app_context():
        engine = db.engine
    statements: list[str] = []

    def record(connection, cursor, statement, parameters, context, executemany) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        response = vault.api(tokens["access_token"])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200 and response.json()["given_name"] == "Ann"

    statements = [s for s in statements if s != "SELECT 1"]  # PostgreSQL's checkout ping
    token, profile, log = statements
    assert token.startswith("SELECT oauth_tokens.id")
    for joined in ("JOIN oauth_clients", "JOIN oauth_grants", "JOIN users"):
        assert joined in token
    assert profile.startswith("SELECT data_keys.master_key_id")
    assert log.startswith("INSERT INTO access_events")
