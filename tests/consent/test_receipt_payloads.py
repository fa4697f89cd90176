"""consent.receipts on its own: a receipt built, signed with a key of one's own and checked,
with no vault and no database (an auditor's view)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from joserfc.jwk import ECKey, KeySet

from consent.receipts import (
    ALGORITHM,
    EXTENSION_KEY,
    ReceiptEvent,
    ReceiptPurpose,
    build_payload,
    sign,
    signed_ledger_events,
)


def _receipt(key):
    payload = build_payload(
        receipt_id="r-1",
        kind="consent",
        at=datetime(2026, 12, 1, tzinfo=UTC),
        subject="pseudonym",
        controller_name="Shop",
        controller_id="v-1",
        policy_url="https://shop.example/privacy",
        collection_method="web form",
        purposes=[
            ReceiptPurpose("Newsletter", "marketing", "EXPLICIT", "email", "granted", 2, "none")
        ],
        events=[ReceiptEvent(7, "a" * 64, "topic_consent")],
        jurisdiction="EU",
        public_key=dict(key.as_dict(private=False)),
    )
    return payload, sign(payload, key)


def test_a_signed_receipt_names_its_ledger_events_for_the_key_that_signed_it():
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    payload, token = _receipt(key)
    assert payload["version"] == "KI-CR-v1.1.0"
    assert payload[EXTENSION_KEY]["ledger"] == [
        {"seq": 7, "hash": "a" * 64, "eventType": "topic_consent"}
    ]
    published = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})
    assert signed_ledger_events(token, published) == [ReceiptEvent(7, "a" * 64, "topic_consent")]
    assert ALGORITHM == "ES256"


def test_a_receipt_signed_by_another_key_or_changed_is_refused():
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    other = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    _, token = _receipt(key)
    with pytest.raises(ValueError, match="not a receipt signed by this vault"):
        signed_ledger_events(token, KeySet.import_key_set({"keys": [other.as_dict()]}))
    header, body, signature = token.split(".")
    changed = f"{header}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{signature}"
    with pytest.raises(ValueError):
        signed_ledger_events(changed, KeySet.import_key_set({"keys": [key.as_dict()]}))
