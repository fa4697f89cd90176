"""The messages and permits API under /api/v1 (client credentials; scopes messages:*).

Every call acts for the vendor owning the token's client. Answers name the message, its
status and the decision, never an address or the content.
"""

from __future__ import annotations

import re
from typing import Any

from authlib.integrations.flask_oauth2 import current_token
from flask import Blueprint, current_app, jsonify, request, url_for
from marshmallow import ValidationError
from werkzeug.wrappers import Response

from vault import transactions
from vault.api.limits import per_client_limit
from vault.api.vendor_calls import (
    customer_of,
    invalid,
    json_object,
    no_store,
    token_vendor,
    unknown_subject,
)
from vault.errors import problem
from vault.extensions import csrf, db
from vault.messages import operations
from vault.messages.models import Message, Status
from vault.messages.schemas import MessageInputSchema, PermitInputSchema
from vault.models import utcnow
from vault.oauth.scopes import pairwise_sub
from vault.oauth.server import issuer, require_oauth
from vault.services import keys

bp = Blueprint("messages_api", __name__)
csrf.exempt(bp)  # bearer tokens, never cookies

permit_input = PermitInputSchema()
# Built once per segment limit: schema construction deep-copies fields.
_message_inputs: dict[int, MessageInputSchema] = {}


def _message_input() -> MessageInputSchema:
    limit = int(current_app.config["VAULT_SMS_MAX_SEGMENTS"])
    schema = _message_inputs.get(limit)
    if schema is None:
        schema = _message_inputs[limit] = MessageInputSchema(max_segments=limit)
    return schema


# Visible ASCII, as the IETF httpapi Idempotency-Key draft's examples (a UUID...).
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def _refused(error: operations.MessageError) -> Response:
    return problem(error.status, error.slug, error.title, error.detail, **error.extensions)


def _answer(message: Message, replayed: bool) -> Response:
    """The answer to a POST, the same for every repeat of its key: built from the decision
    stored with the message, not from its status now."""
    if message.decision == "deny":
        response = problem(
            403,
            "contact-denied",
            "Contact not allowed",
            message.reason,
            rule=message.rule,
            reason=message.reason,
            id=message.id,
        )
    else:
        body: dict[str, Any] = {"id": message.id, "status": Status.QUEUED.value}
        if message.decision == "defer" and message.deferred_until is not None:
            body = {
                "id": message.id,
                "status": Status.DEFERRED.value,
                "not_before": message.deferred_until.isoformat(),
            }
        response = jsonify(body)
        response.status_code = 202
        response.headers["Location"] = issuer() + url_for(
            "messages_api.get_message", message_id=message.id
        )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return no_store(response)


@bp.post("/api/v1/messages")
@require_oauth("messages:send")
@per_client_limit
def send_message() -> Response:
    """Accept one message: 202 queued or deferred, 403 denied (the blocked row is kept)."""
    key = request.headers.get("Idempotency-Key", "")
    if not _KEY.fullmatch(key):
        return problem(
            400,
            "idempotency-key-required",
            "Idempotency-Key header required",
            "Send an Idempotency-Key header (1 to 255 visible ASCII characters, e.g. a UUID) "
            "that is new for each new message; repeating it repeats the first answer.",
        )
    body = json_object()
    if body is None:
        return invalid({"_schema": ["a JSON object"]})
    try:
        data = _message_input().load(body)
    except ValidationError as error:
        return invalid(error.messages)
    vendor = token_vendor()
    user_id = customer_of(vendor, data["sub"])
    if user_id is None:
        return unknown_subject()
    if data["channel"] == "sms":
        from vault import sms

        if sms.connector() is None:
            return problem(
                422,
                "channel-unavailable",
                "Channel unavailable",
                "This vault has no SMS provider configured; SMS cannot be delivered.",
            )
    try:
        accepted = operations.accept_message(
            db.session,
            keys(),
            vendor,
            current_token.client_id,
            user_id,
            data,
            key,
            utcnow(),
        )
    except operations.MessageError as error:
        return _refused(error)
    if accepted.message.decision == "deny" and accepted.created:
        # The refusal is on record: the blocked message and its contact-log row stay.
        transactions.commit_despite_error()
    return _answer(accepted.message, replayed=not accepted.created)


def message_view(message: Message, sub: str) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": message.id,
        "status": message.status,
        "channel": message.channel,
        "topic": message.topic,
        "sub": sub,
        "not_before": iso(message.not_before)
        if message.status in (Status.QUEUED, Status.DEFERRED)
        else None,
        "attempts": message.attempts,
        "last_error": message.last_error,
        "decision": {
            "outcome": message.decision,
            "rule": message.rule,
            "reason": message.reason,
            "ledger": {"seq": message.ledger_seq, "hash": message.ledger_hash},
        },
        "created_at": iso(message.created_at),
        "updated_at": iso(message.updated_at),
        "sent_at": iso(message.sent_at),
    }


@bp.get("/api/v1/messages/<message_id>")
@require_oauth("messages:send")
@per_client_limit
def get_message(message_id: str) -> Response:
    """One of the vendor's messages: status, attempts, last error, times."""
    vendor = token_vendor()
    message = operations.vendor_message(db.session, vendor.id, message_id)
    only_user = current_token.user_id
    if message is None or only_user not in (None, message.user_id):
        return problem(404, "not-found", "Not found", "No such message of yours.")
    sub = pairwise_sub(keys(), vendor.id, message.user_id)
    return no_store(jsonify(message_view(message, sub)))


@bp.post("/api/v1/permits")
@require_oauth("messages:permit")
@per_client_limit
def permit() -> Response:
    """A signed permit for one contact through the vendor's own systems, or 403."""
    body = json_object()
    if body is None:
        return invalid({"_schema": ["a JSON object"]})
    try:
        data = permit_input.load(body)
    except ValidationError as error:
        return invalid(error.messages)
    vendor = token_vendor()
    user_id = customer_of(vendor, data["sub"])
    if user_id is None:
        return unknown_subject()
    try:
        issued = operations.issue_permit(
            db.session,
            keys(),
            issuer=issuer(),
            vendor=vendor,
            client_id=current_token.client_id,
            user_id=user_id,
            sub=data["sub"],
            channel=data["channel"],
            topic_name=data["topic"],
            now=utcnow(),
            lifetime=current_app.config["VAULT_PERMIT_LIFETIME"],
        )
    except operations.MessageError as error:
        return _refused(error)
    response = jsonify(
        {
            "permit": issued.token,
            "id": issued.permit_id,
            "expires_at": issued.expires_at.isoformat(),
        }
    )
    response.status_code = 201
    return no_store(response)
