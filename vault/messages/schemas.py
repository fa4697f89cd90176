"""Marshmallow schemas of the messages and permits API; the OpenAPI document uses them.

Shape first (types, lengths, unknown members: 422), then what depends on the channel:
e-mail needs a subject; an SMS is at most ``VAULT_SMS_MAX_SEGMENTS`` segments
(``connectors.segments``) and has no subject. Bodies are plain text: no NUL or other
control characters but line breaks and tabs.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from connectors.segments import SmsBodyError, check_sms_body
from consent.engine import CHANNELS
from vault.messages.operations import DELIVERED_CHANNELS

MAX_SUBJECT = 200
MAX_EMAIL_BODY = 100_000
# What a plain-text body may not contain: control characters other than tab, LF and CR.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SUB = {"description": "Pairwise subject id of the customer, as your business sees it"}


def _plain(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("plain text only: no control characters but line breaks and tabs")


class MessageInputSchema(Schema):
    sub = fields.String(required=True, validate=validate.Length(1, 128), metadata=SUB)
    channel = fields.String(
        required=True,
        validate=validate.OneOf(DELIVERED_CHANNELS),
        metadata={"description": "email or sms"},
    )
    topic = fields.String(
        required=True,
        validate=validate.Length(1, 64),
        metadata={"description": "Name of a topic your business declared"},
    )
    subject = fields.String(
        validate=[validate.Length(1, MAX_SUBJECT)],
        metadata={"description": f"E-mail only (required there), one line, up to {MAX_SUBJECT}"},
    )
    body = fields.String(
        required=True,
        validate=validate.Length(1, MAX_EMAIL_BODY),
        metadata={
            "description": "Plain text. E-mail: up to 100,000 characters; SMS: up to the "
            "vault's segment limit (10 by default: 1,530 GSM-7 characters or 670 others)"
        },
    )

    def __init__(self, *, max_segments: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_segments = max_segments

    @validates_schema
    def _per_channel(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        body, subject = data.get("body"), data.get("subject")
        if body is not None:
            try:
                _plain(body)
            except ValidationError as error:
                errors["body"] = list(error.messages)  # type: ignore[arg-type]
        channel = data.get("channel")
        if channel == "email":
            if subject is None:
                errors["subject"] = ["an e-mail needs a subject"]
            elif "\n" in subject or "\r" in subject or _CONTROL.search(subject):
                errors["subject"] = ["one line of plain text"]
        elif channel == "sms":
            if subject is not None:
                errors["subject"] = ["an SMS has no subject"]
            if body is not None and "body" not in errors:
                try:
                    check_sms_body(body, max_segments=self.max_segments)
                except SmsBodyError as error:
                    errors["body"] = [str(error)]
        if errors:
            raise ValidationError(errors)


class MessageSchema(Schema):
    """A message as its business sees it: never the address, never the content."""

    id = fields.String(required=True)
    status = fields.String(
        required=True, metadata={"enum": ["queued", "deferred", "sent", "failed", "blocked"]}
    )
    channel = fields.String(required=True)
    topic = fields.String(required=True)
    sub = fields.String(required=True, metadata=SUB)
    not_before = fields.DateTime(
        allow_none=True, metadata={"description": "Not delivered before (deferred, retries)"}
    )
    attempts = fields.Integer(required=True)
    last_error = fields.String(
        allow_none=True, metadata={"description": "The channel's last reason, or the rule"}
    )
    decision = fields.Dict(
        required=True,
        metadata={"description": "outcome, rule, reason and ledger {seq, hash} at acceptance"},
    )
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    sent_at = fields.DateTime(allow_none=True)


class AcceptedSchema(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["queued", "deferred"]})
    not_before = fields.DateTime(metadata={"description": "deferred only: when quiet hours end"})


class PermitInputSchema(Schema):
    sub = fields.String(required=True, validate=validate.Length(1, 128), metadata=SUB)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    topic = fields.String(required=True, validate=validate.Length(1, 64))


class PermitSchema(Schema):
    permit = fields.String(
        required=True,
        metadata={
            "description": "A JWS (ES256, typ contact-permit+jwt) verifiable with the vault's "
            "JWKS: iss, aud and client_id (your client), sub, vendor_id, channel, topic, rule, "
            "reason, ledger {seq, hash}, jti, iat, nbf, exp"
        },
    )
    id = fields.String(required=True, metadata={"description": "The permit's jti"})
    expires_at = fields.DateTime(required=True)
