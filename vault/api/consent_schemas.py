"""Marshmallow schemas of the vendor consent API; the OpenAPI document is generated from them.

Request schemas validate the *shape* of a request (a malformed request is a 422 problem).
Whether a subject, topic or channel exists is a matter of content: in a batch check that is
a per-item error, never a failed batch.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from consent.engine import CHANNELS, Outcome, Rule

MAX_BATCH = 10_000
MAX_MESSAGE = 500
SUB = {"description": "Pairwise subject id of the customer, as your business sees it"}


class CheckItemSchema(Schema):
    sub = fields.String(required=True, validate=validate.Length(1, 128), metadata=SUB)
    channel = fields.String(
        required=True,
        validate=validate.Length(1, 32),
        metadata={"description": f"One of {', '.join(CHANNELS)}; others get a per-item error"},
    )
    topic = fields.String(
        required=True,
        validate=validate.Length(1, 64),
        metadata={"description": "Name of a topic your business declared"},
    )


class CheckBatchSchema(Schema):
    items = fields.List(
        fields.Nested(CheckItemSchema),
        required=True,
        validate=validate.Length(max=MAX_BATCH),
        metadata={"description": f"Up to {MAX_BATCH:,} contacts to check"},
    )

    @pre_load
    def _bounded(self, data: Any, **_: Any) -> Any:
        # Refuse an oversized batch before deserialising every item of it.
        if isinstance(data, dict):
            items = data.get("items")
            if isinstance(items, list) and len(items) > MAX_BATCH:
                raise ValidationError(
                    [f"at most {MAX_BATCH} items per batch, not {len(items)}"], "items"
                )
        return data


_ITEM_KEYS = frozenset(("sub", "channel", "topic"))
_ITEM_LIMITS = (("sub", 128), ("channel", 32), ("topic", 64))


def load_check_batch(schema: CheckBatchSchema, data: Any) -> dict[str, Any]:
    """``schema.load(data)``, with a fast path for the common, well-formed batch.

    Marshmallow runs every nested item through the whole schema machinery, which is most of
    a 10,000-item check; a plain loop that accepts only what the schema certainly accepts
    (exactly these keys, non-empty strings within the lengths) is far cheaper. Anything else
    goes through the schema, which decides and words the errors, so the two can never
    disagree on what is valid.
    """
    if type(data) is dict and data.keys() == {"items"}:
        items = data["items"]
        if (
            type(items) is list
            and len(items) <= MAX_BATCH
            and all(
                type(item) is dict
                and item.keys() == _ITEM_KEYS
                and all(
                    type(item[key]) is str and 0 < len(item[key]) <= limit
                    for key, limit in _ITEM_LIMITS
                )
                for item in items
            )
        ):
            return {"items": items}
    return schema.load(data)


class CheckResultSchema(Schema):
    """One entry per item, in the order of the request: a decision or an error."""

    sub = fields.String(required=True)
    channel = fields.String(required=True)
    topic = fields.String(required=True)
    outcome = fields.String(validate=validate.OneOf([o.value for o in Outcome]))
    rule = fields.String(
        validate=validate.OneOf([r.value for r in Rule]),
        metadata={"description": "Stable code of the rule that decided"},
    )
    reason = fields.String(metadata={"description": "The rule in the customer's words"})
    not_before = fields.DateTime(
        metadata={"description": "With outcome defer: the earliest time to send (UTC)"}
    )
    error = fields.String(
        validate=validate.OneOf(["unknown_subject", "unknown_topic", "unknown_channel"]),
        metadata={
            "description": "Instead of a decision: the subject is not one of your customers, "
            "the topic is not one your business declared, or the channel does not exist"
        },
    )


class CheckResponseSchema(Schema):
    results = fields.List(fields.Nested(CheckResultSchema), required=True)


class DecisionSchema(Schema):
    outcome = fields.String(required=True)
    rule = fields.String(required=True)
    reason = fields.String(required=True)
    not_before = fields.DateTime()


class TopicSettingSchema(Schema):
    state = fields.String(required=True, validate=validate.OneOf(["granted", "withdrawn"]))
    expires_at = fields.DateTime(allow_none=True)
    notice_version = fields.Integer(
        metadata={"description": "Version of the topic's notice the customer answered"}
    )


class ChannelDecisionSchema(DecisionSchema):
    channel = fields.String(required=True)
    setting = fields.Nested(
        TopicSettingSchema,
        allow_none=True,
        metadata={"description": "The customer's explicit choice; null: none (the default)"},
    )


class TopicDecisionsSchema(Schema):
    topic = fields.String(required=True)
    purpose = fields.String(required=True)
    version = fields.Integer(required=True)
    channels = fields.List(fields.Nested(ChannelDecisionSchema), required=True)


class QuietHoursSchema(Schema):
    start = fields.String(required=True, metadata={"example": "22:00"})
    end = fields.String(required=True, metadata={"example": "07:00"})
    timezone = fields.String(required=True, metadata={"example": "Europe/Berlin"})


class CapsSchema(Schema):
    per_day = fields.Integer(allow_none=True)
    per_week = fields.Integer(allow_none=True)


class SubjectConsentsSchema(Schema):
    """What one customer set that concerns your business, and what it means right now."""

    sub = fields.String(required=True, metadata=SUB)
    at = fields.DateTime(required=True, metadata={"description": "Time of the decisions"})
    account_active = fields.Boolean(required=True)
    active_relationship = fields.Boolean(
        required=True, metadata={"description": "The customer has a live grant with you"}
    )
    blocked = fields.Boolean(
        required=True, metadata={"description": "The customer blocked all contact from you"}
    )
    caps = fields.Nested(CapsSchema, required=True)
    channels_off = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Channels the customer switched off for every business"},
    )
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    topics = fields.List(fields.Nested(TopicDecisionsSchema), required=True)


class ConsentRequestInputSchema(Schema):
    sub = fields.String(required=True, validate=validate.Length(1, 128), metadata=SUB)
    topics = fields.List(
        fields.String(validate=validate.Length(1, 64)),
        required=True,
        validate=validate.Length(1, 50),
        metadata={"description": "Names of topics your business declared"},
    )
    channels = fields.List(
        fields.String(validate=validate.OneOf(CHANNELS)),
        required=True,
        validate=validate.Length(1, len(CHANNELS)),
    )
    message = fields.String(
        load_default="",
        validate=validate.Length(max=MAX_MESSAGE),
        metadata={"description": f"Shown to the customer; at most {MAX_MESSAGE} characters"},
    )


class ConsentRequestSchema(Schema):
    id = fields.String(required=True)
    sub = fields.String(required=True, metadata=SUB)
    topics = fields.List(fields.String(), required=True)
    channels = fields.List(fields.String(), required=True)
    message = fields.String(required=True)
    status = fields.String(
        required=True,
        validate=validate.OneOf(["pending", "approved", "declined", "closed"]),
        metadata={
            "description": "pending until the customer answers (approved or declined); "
            "closed: the customer blocked your business or ended the connection first"
        },
    )
    created_at = fields.DateTime(required=True)
    answered_at = fields.DateTime(allow_none=True)
