"""Consent receipts verified the way an outsider would: fetch the vault's JWKS over HTTP and
check the JWS with PyJWT, a JOSE library other than the one that signed it (joserfc)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from consent import ledger
from consent.engine import State
from tests import factories
from tests.vault.consents.tampering import rewrite_from
from vault.consents.models import ConsentReceipt, LedgerEvent
from vault.consents.operations import ConsentChanges, TopicChoice, save_consents, subject_of
from vault.extensions import db
from vault.oauth.signing import rotate_signing_keys
from vault.services import keys
from vault.vendors.operations import create_vendor, declare_topic

if TYPE_CHECKING:
    from tests.conftest import TestDatabase

KANTARA_FIELDS = {
    "version",
    "jurisdiction",
    "consentTimestamp",
    "collectionMethod",
    "consentReceiptID",
    "publicKey",
    "language",
    "piiPrincipalId",
    "piiControllers",
    "policyUrl",
    "services",
    "sensitive",
    "spiCat",
}
PURPOSE_FIELDS = {
    "purpose",
    "purposeCategory",
    "consentType",
    "piiCategory",
    "primaryPurpose",
    "termination",
    "thirdPartyDisclosure",
}
POLICY = "https://acme.example/privacy"


@dataclass(frozen=True)
class Issued:
    user_id: str
    vendor_id: str
    receipt_id: str
    token: str
    ledger_seq: int
    notice_version: int


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@pytest.fixture
def issued(app: Flask) -> Issued:
    """A topic grant saved through the operations the UI uses, committed."""
    user = factories.customer(app)
    with app.app_context():
        vendor = create_vendor(db.session, "Acme", privacy_policy_url=POLICY)
        topic = declare_topic(db.session, vendor, "news", "marketing", "Monthly news.")
        declare_topic(db.session, vendor, "news", "marketing", "Monthly news, reworded.")
        (receipt,) = save_consents(
            db.session,
            keys(),
            user.id,
            ConsentChanges(topics={(topic.id, "email"): TopicChoice(State.GRANTED)}),
        )
        db.session.commit()
        return Issued(user.id, vendor.id, receipt.id, receipt.jws, receipt.ledger_seq, 2)


def served_jwks(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/oauth/jwks.json")
    assert response.status_code == 200
    return response.get_json()


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify a compact JWS with PyJWT against a JWKS document; return its payload."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    key = jwt.PyJWK(jwk).key
    payload = jwt.PyJWS().decode(token, key=key, algorithms=["ES256"])
    return json.loads(payload)


def test_a_receipt_verifies_with_another_library_against_the_served_jwks(
    app: Flask, issued: Issued
) -> None:
    jwks = served_jwks(app)
    header = jwt.get_unverified_header(issued.token)
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    assert all("d" not in k for k in jwks["keys"])  # public keys only
    payload = verify(issued.token, jwks)
    assert payload["consentReceiptID"] == issued.receipt_id
    # The key named in the payload is the one the JWKS publishes under the header's kid.
    (published,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert payload["publicKey"] == published
    # The stored receipt is exactly what the customer downloads.
    with app.app_context():
        assert db.session.get(ConsentReceipt, issued.receipt_id).jws == issued.token


def test_changing_one_character_of_the_payload_breaks_the_signature(
    app: Flask, issued: Issued
) -> None:
    jwks = served_jwks(app)
    header, body, signature = issued.token.split(".")
    text = unb64url(body).decode()
    targets = [
        text.index('"granted"') + 1,  # the state
        text.index(issued.receipt_id),  # the receipt id
        text.index('"consentTimestamp":') + len('"consentTimestamp":'),  # a digit
        text.index('"noticeVersion":') + len('"noticeVersion":'),
        text.index('"KI-CR-v1.1.0"') + 1,  # the version
    ]
    for position in targets:
        original = text[position]
        replacement = "1" if original.isdigit() and original != "1" else "2"
        if not original.isdigit():
            replacement = "X" if original != "X" else "Y"
        forged = text[:position] + replacement + text[position + 1 :]
        assert forged != text and json.loads(forged)  # still a well-formed receipt
        token = f"{header}.{b64url(forged.encode())}.{signature}"
        with pytest.raises(jwt.InvalidSignatureError):
            verify(token, jwks)
    # The untouched token still verifies (the loop above did not break the key lookup).
    assert verify(issued.token, jwks)["consentReceiptID"] == issued.receipt_id


def test_a_receipt_does_not_verify_with_another_key(app: Flask, issued: Issued) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.PyJWS().decode(issued.token, key=stranger, algorithms=["ES256"])


def test_the_payload_uses_the_kantara_field_names(app: Flask, issued: Issued) -> None:
    payload = verify(issued.token, served_jwks(app))
    # Kantara's fields and exactly one extension key for the vault's own additions.
    assert set(payload) == KANTARA_FIELDS | {"cmrVault"}
    assert payload["version"] == "KI-CR-v1.1.0"
    assert isinstance(payload["jurisdiction"], str) and payload["jurisdiction"]
    now = datetime.now(UTC).timestamp()
    assert isinstance(payload["consentTimestamp"], int)
    assert now - 300 < payload["consentTimestamp"] <= now + 1
    assert isinstance(payload["collectionMethod"], str) and payload["collectionMethod"]
    assert payload["language"] == "en"
    with app.app_context():
        assert payload["piiPrincipalId"] == subject_of(keys(), issued.user_id)
    (controller,) = payload["piiControllers"]
    assert controller["piiController"] == "Acme"
    assert controller["contact"]
    assert payload["policyUrl"] == POLICY
    (service,) = payload["services"]
    assert service["service"] == "Acme"
    (purpose,) = service["purposes"]
    assert set(purpose) >= PURPOSE_FIELDS
    assert purpose["purpose"] == "news"
    assert purpose["purposeCategory"] == ["marketing"]
    assert purpose["consentType"] == "EXPLICIT"
    assert isinstance(purpose["piiCategory"], list) and purpose["piiCategory"]
    assert purpose["primaryPurpose"] is True
    assert isinstance(purpose["termination"], str) and purpose["termination"]
    assert purpose["thirdPartyDisclosure"] is False
    assert payload["sensitive"] is False
    assert payload["spiCat"] == []


def test_the_extension_matches_the_stored_ledger_event(app: Flask, issued: Issued) -> None:
    payload = verify(issued.token, served_jwks(app))
    extension = payload["cmrVault"]
    assert extension["kind"] == "consent"
    (change,) = extension["changes"]
    assert (change["channel"], change["state"]) == ("email", "granted")
    assert change["noticeVersion"] == issued.notice_version == 2  # the reworded notice
    (entry,) = extension["ledger"]
    with app.app_context():
        event = db.session.get(LedgerEvent, entry["seq"])
        assert event is not None
        assert entry == {"seq": event.seq, "hash": event.hash, "eventType": "topic_granted"}
        assert entry["seq"] == issued.ledger_seq
        # The hash in the receipt is the hash of the event's own contents.
        row = {name: getattr(event, name) for name in ledger.HASHED_FIELDS}
        assert ledger.event_hash(row) == event.hash
        assert (event.channel, event.topic, event.notice_version) == ("email", "news", 2)
        assert event.subject == payload["piiPrincipalId"]
        assert event.vendor_id == issued.vendor_id


def test_a_vault_level_change_also_yields_a_verifiable_receipt(app: Flask) -> None:
    user = factories.customer(app)
    with app.app_context():
        (receipt,) = save_consents(
            db.session, keys(), user.id, ConsentChanges(channels={"sms": False})
        )
        db.session.commit()
        token = receipt.jws
    payload = verify(token, served_jwks(app))
    assert set(payload) == KANTARA_FIELDS | {"cmrVault"}
    (change,) = payload["cmrVault"]["changes"]
    assert (change["channel"], change["state"]) == ("sms", "withdrawn")
    assert payload["cmrVault"]["ledger"][0]["eventType"] == "channel_switched"


def test_receipts_still_verify_after_the_signing_key_rotates(app: Flask, issued: Issued) -> None:
    with app.app_context():
        rotate_signing_keys(db.session, keys(), timedelta(days=365))
        db.session.commit()
        user = factories.customer(app)
        (fresh,) = save_consents(
            db.session, keys(), user.id, ConsentChanges(channels={"post": False})
        )
        db.session.commit()
        fresh_token = fresh.jws
    jwks = served_jwks(app)
    old_kid = jwt.get_unverified_header(issued.token)["kid"]
    new_kid = jwt.get_unverified_header(fresh_token)["kid"]
    assert old_kid != new_kid
    assert verify(issued.token, jwks)["consentReceiptID"] == issued.receipt_id
    assert verify(fresh_token, jwks)["cmrVault"]["ledger"][0]["eventType"] == "channel_switched"


def test_the_extension_names_the_topic(app: Flask, issued: Issued) -> None:
    (change,) = verify(issued.token, served_jwks(app))["cmrVault"]["changes"]
    assert change["topic"] == "news"


# --- a receipt as an anchor of the ledger -----------------------------------------------------


def _verify_with_receipt(app: Flask, path: Path) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["ledger", "verify", "--receipt", str(path)])
    return result.exit_code, result.output


def test_a_receipt_anchors_the_ledger_events_it_names(
    app: Flask, issued: Issued, database: TestDatabase, tmp_path: Path
) -> None:
    """The customer's receipt names the ledger event of its change (seq and hash): after
    the ledger is rewritten from that event on, hashes, links and head and all, the chain
    verifies on its own, but not against the receipt."""
    receipt = tmp_path / "receipt.jws"
    receipt.write_text(issued.token)
    code, output = _verify_with_receipt(app, receipt)
    assert code == 0
    assert json.loads(output.strip().splitlines()[-1])["anchors_checked"] == 1

    engine = database.engine()
    try:
        rewrite_from(engine, issued.ledger_seq)
    finally:
        engine.dispose()
    assert app.test_cli_runner().invoke(args=["ledger", "verify"]).exit_code == 0
    code, output = _verify_with_receipt(app, receipt)
    assert code == 1
    verdict = json.loads(output.strip().splitlines()[-1])
    assert verdict["broken_seq"] == issued.ledger_seq and "rewritten" in verdict["problem"]


def test_a_receipt_signed_before_a_key_rotation_still_anchors(
    app: Flask, issued: Issued, tmp_path: Path
) -> None:
    with app.app_context():
        rotate_signing_keys(db.session, keys(), timedelta(days=0))  # no longer published
        db.session.commit()
    receipt = tmp_path / "receipt.jws"
    receipt.write_text(issued.token)
    assert _verify_with_receipt(app, receipt)[0] == 0


@pytest.mark.parametrize("damage", ["payload", "not a jws"])
def test_a_receipt_the_vault_did_not_sign_is_refused(
    app: Flask, issued: Issued, tmp_path: Path, damage: str
) -> None:
    header, payload, signature = issued.token.split(".")
    if damage == "payload":
        claims = json.loads(unb64url(payload))
        claims["cmrVault"]["ledger"][0]["hash"] = "0" * 64
        token = ".".join([header, b64url(json.dumps(claims).encode()), signature])
    else:
        token = "hello"
    receipt = tmp_path / "forged.jws"
    receipt.write_text(token)
    code, output = _verify_with_receipt(app, receipt)
    assert code == 2
    assert "forged.jws: not a receipt signed by this vault" in output
