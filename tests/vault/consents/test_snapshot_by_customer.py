"""One customer's consent answer reads that customer's rows, not the business's.

A vendor with a few thousand customers, filled by bulk insert; the statements that
``load_consents`` issues for one of them (what a one-item check and
``GET /api/v1/consents/{sub}`` load) are run under EXPLAIN on SQLite and PostgreSQL. Every
table must be reached through an index led by the customer (``user_id``, or ``id`` for the
account and the topic joined on), never through ``vendor_id`` alone, which walks every row
of the business. The tables are not analysed: that is how SQLite always runs (it never
analyses by itself) and how PostgreSQL runs until autovacuum gets to them, and it is where
the planner chose the vendor's index before migration 0013.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from consent.engine import State
from vault.accounts.models import User
from vault.consents.models import TopicConsent, VendorPreference
from vault.consents.snapshot import load_consents
from vault.extensions import db
from vault.messages.models import Message
from vault.models import new_id, utcnow
from vault.oauth.models import Grant
from vault.vendors.operations import create_client, create_vendor, declare_topic

CUSTOMERS = 3_000

# SQLite: "SEARCH topic_consents USING INDEX ix_... (user_id=? AND vendor_id=?)"
_SQLITE_STEP = re.compile(r"^(SEARCH|SCAN) (\w+)(?: AS \w+)?(?: USING .*?\((.*)\))?")


def _fill(app: Flask) -> tuple[str, str]:
    """One vendor with ``CUSTOMERS`` customers (a grant and two topic consents each, some
    caps and sends); (vendor id, the id of one customer in the middle)."""
    with app.app_context():
        session = db.session
        vendor = create_vendor(session, "Big Shop")
        client = create_client(session, vendor, redirect_uris=["http://127.0.0.1/cb"])
        news = declare_topic(session, vendor, "news", "marketing")
        orders = declare_topic(session, vendor, "orders", "service")
        now = utcnow()
        ids = [new_id() for _ in range(CUSTOMERS)]
        users, grants, consents, prefs, sends = [], [], [], [], []
        for i, user_id in enumerate(ids):
            users.append(
                {
                    "id": user_id,
                    "role": "customer",
                    "status": "active",
                    "session_token": new_id(),
                    "totp_enabled": False,
                    "recovery_code_hashes": [],
                    "created_at": now,
                }
            )
            grants.append(
                {
                    "id": new_id(),
                    "user_id": user_id,
                    "client_id": client.client.client_id,
                    "vendor_id": vendor.id,
                    "scope": "openid",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for topic, channel in ((news, "email"), (orders, "sms")):
                consents.append(
                    {
                        "user_id": user_id,
                        "topic_id": topic.id,
                        "channel": channel,
                        "vendor_id": vendor.id,
                        "state": "granted",
                        "notice_version": 1,
                        "source": "test",
                        "updated_at": now,
                    }
                )
            if i % 10 == 0:
                prefs.append(
                    {
                        "user_id": user_id,
                        "vendor_id": vendor.id,
                        "cap_per_day": 2,
                        "updated_at": now,
                    }
                )
                sends.append(
                    {
                        "id": f"msg-{i}",
                        "vendor_id": vendor.id,
                        "client_id": "bench",
                        "user_id": user_id,
                        "channel": "email",
                        "topic": "news",
                        "body_ciphertext": b"opaque",
                        "status": "sent",
                        "not_before": now - timedelta(hours=1),
                        "decision": "allow",
                        "rule": "granted",
                        "reason": "test",
                        "ledger_seq": 0,
                        "ledger_hash": "0" * 64,
                        "idempotency_key": f"key-{i}",
                        "request_hash": "0" * 64,
                        "sent_at": now - timedelta(hours=1),
                    }
                )
        for model, rows in (
            (User, users),
            (Grant, grants),
            (TopicConsent, consents),
            (VendorPreference, prefs),
            (Message, sends),
        ):
            session.execute(sa.insert(model), rows)
        session.commit()
        return vendor.id, ids[CUSTOMERS // 2]


def _pg_steps(node: dict[str, Any], relation: str = "") -> Iterator[tuple[str, str]]:
    """(what is read, by which condition) for every scan of a PostgreSQL JSON plan; a
    bitmap index scan reads for the table of the heap scan above it."""
    relation = node.get("Relation Name", relation)
    if node["Node Type"] == "Seq Scan":
        yield relation, "(whole table)"
    elif "Index Cond" in node:
        yield relation, node["Index Cond"]
    for child in node.get("Plans", ()):
        yield from _pg_steps(child, relation)


def _steps(connection: sa.Connection, statement: str, parameters: Any) -> list[tuple[str, str]]:
    if connection.dialect.name == "sqlite":
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        steps = []
        for *_, detail in plan:
            match = _SQLITE_STEP.match(detail)
            if match and not detail.endswith("VIRTUAL TABLE INDEX 1:"):  # json_each, the ids
                steps.append((match.group(2), match.group(3) or "(whole table)"))
        return steps
    # On tables this small PostgreSQL may rightly read a table whole; the question here is
    # which index it would take once a table is large.
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    (plan,) = connection.exec_driver_sql(
        f"EXPLAIN (FORMAT JSON) {statement}", parameters
    ).scalar_one()
    return list(_pg_steps(plan["Plan"]))


def _leading_column(condition: str) -> str:
    # "user_id=? AND vendor_id=?" (SQLite), "(((user_id)::text = ANY (...)) AND ..." (PostgreSQL)
    match = re.match(r"[(\s]*(\w+)", condition)
    return match.group(1) if match else condition


@pytest.fixture
def big_shop(app: Flask) -> tuple[str, str]:
    return _fill(app)


def test_one_customer_is_read_by_customer_not_by_vendor(
    app: Flask, big_shop: tuple[str, str]
) -> None:
    vendor_id, user_id = big_shop
    with app.app_context():
        statements: list[tuple[str, Any]] = []

        def record(conn, cursor, statement, parameters, context, executemany):
            statements.append((statement, parameters))

        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            consents = load_consents(db.session, [user_id], utcnow(), vendor_id=vendor_id)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        # The answer itself is this customer's.
        customer = consents[user_id]
        assert {key[1:] for key in customer.topics} == {("news", "email"), ("orders", "sms")}
        assert all(s.state is State.GRANTED for s in customer.topics.values())
        assert vendor_id in customer.active_grant_vendors
        assert customer.caps[vendor_id].per_day == 2
        assert len(customer.sends[(vendor_id, "email")]) == 1

        connection = db.session.connection()
        steps = [step for statement in statements for step in _steps(connection, *statement)]
        db.session.rollback()
    read = {table for table, _ in steps}
    assert {"topic_consents", "oauth_grants", "vendor_preferences", "messages"} <= read
    by_vendor = [
        (table, condition)
        for table, condition in steps
        if _leading_column(condition) not in ("user_id", "id")
    ]
    assert by_vendor == [], f"read by the business, not by the customer: {by_vendor}"
