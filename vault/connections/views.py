from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from consent.engine import CHANNEL_NAMES
from vault.auth import customer_required
from vault.consents.operations import end_relationship
from vault.extensions import db
from vault.messages import queries
from vault.messages.models import Message
from vault.models import utcnow
from vault.oauth import operations
from vault.oauth.models import Grant
from vault.oauth.scopes import PROFILE_SCOPES
from vault.services import keys
from vault.unsubscribe.tokens import UnsubscribeTarget, make_token

bp = Blueprint("connections", __name__)


def _own_grant(grant_id: str) -> Grant:
    grant = db.session.get(Grant, grant_id)
    # Another customer's grant id gets the same answer as a missing one.
    if grant is None or grant.user_id != current_user.id:
        abort(404)
    return grant


@bp.get("/connections")
@customer_required
def index() -> str:
    grants = operations.customer_grants(db.session, current_user.id)
    now = utcnow()
    return render_template(
        "connections/index.html",
        message_counts=queries.message_counts(db.session, current_user.id),
        active=[g for g in grants if g.is_active(now)],
        ended=[g for g in grants if not g.is_active(now)],
        last_access=operations.last_access_by_grant(db.session, current_user.id),
        scopes=PROFILE_SCOPES,
    )


@bp.post("/connections/<grant_id>/revoke")
@customer_required
def revoke(grant_id: str) -> Response:
    grant = _own_grant(grant_id)
    stop_contact = request.form.get("stop_contact") == "on"
    receipt = end_relationship(db.session, keys(), current_user.id, grant, stop_contact)
    message = f"{grant.vendor.name} can no longer read your data."
    if stop_contact:
        message += " It may no longer contact you either."
    flash(message, "success")
    if receipt is not None:
        flash(
            "Your termination receipt lists everything this ended; "
            "find it under Consents, Receipts.",
            "info",
        )
    return redirect(url_for("connections.index"))


@bp.post("/connections/<grant_id>/scopes")
@customer_required
def narrow(grant_id: str) -> Response:
    grant = _own_grant(grant_id)
    if not grant.is_active():
        abort(409, "This connection has already ended.")
    keep = [s for s in request.form.getlist("keep_scope") if s in grant.scopes]
    operations.narrow_grant(db.session, grant, keep)
    flash(f"{grant.vendor.name} now sees less of your profile.", "success")
    return redirect(url_for("connections.index"))


@bp.get("/activity")
@customer_required
def activity() -> str:
    events = operations.access_events(db.session, current_user.id)
    # Reads per day over the last 30 days, for the chart.
    today = utcnow().date()
    days = [today - timedelta(days=offset) for offset in range(29, -1, -1)]
    per_day = Counter(e.at.date() for e in events)
    series = [(day, per_day.get(day, 0)) for day in days]
    peak = max([count for _, count in series] + [1])
    by_vendor = Counter(e.vendor.name for e in events)
    return render_template(
        "connections/activity.html",
        events=events,
        series=series,
        peak=peak,
        by_vendor=by_vendor.most_common(),
    )


# --- the messages businesses sent the customer ----------------------------------------------

# The overview shows each business's newest few; its own page pages through the rest.
LATEST_PER_BUSINESS = 3
MAX_BUSINESSES = 100
PAGE_SIZE = 20


def _message_context(messages: list[Message]) -> dict[str, Any]:
    """What the message template needs beside the rows: the content (decrypted with the
    customer's key), each message's unsubscribe link (the one its e-mail carried: the
    unsubscribe page confirms, then withdraws through ``vault.unsubscribe``), which of
    those consents are already withdrawn, and the time zone times are shown in."""
    user_id = current_user.id
    return {
        "contents": queries.customer_contents(db.session, keys(), user_id, messages),
        "unsubscribe_urls": {
            m.id: url_for(
                "unsubscribe.confirm",
                token=make_token(
                    UnsubscribeTarget(m.id, m.user_id, m.vendor_id, m.channel, m.topic)
                ),
            )
            for m in messages
        },
        "unsubscribed": queries.unsubscribed(db.session, user_id, messages),
        "descriptions": queries.topic_descriptions(db.session, messages),
        "zone": queries.customer_zone(db.session, keys(), user_id),
        "channel_names": CHANNEL_NAMES,
    }


def _connected(vendor_id: str) -> bool:
    return any(
        g.vendor_id == vendor_id for g in operations.customer_grants(db.session, current_user.id)
    )


@bp.get("/messages")
@customer_required
def messages() -> str:
    businesses = queries.customer_businesses(
        db.session, current_user.id, per_business=LATEST_PER_BUSINESS, limit=MAX_BUSINESSES
    )
    shown = [m for business in businesses for m in business.latest]
    return render_template(
        "connections/messages.html",
        businesses=businesses,
        max_businesses=MAX_BUSINESSES,
        **_message_context(shown),
    )


@bp.get("/messages/from/<vendor_id>")
@customer_required
def business_messages(vendor_id: str) -> str:
    before = request.args.get("before") or None
    try:
        page = queries.customer_page(db.session, current_user.id, vendor_id, before, PAGE_SIZE)
    except queries.CursorNotFound:
        abort(404)
    name = queries.vendor_name(db.session, vendor_id)
    # A business that never wrote to this customer and was never connected to them is not
    # found: the same answer as an id that names nothing.
    if name is None or (not page.messages and not _connected(vendor_id)):
        abort(404)
    return render_template(
        "connections/business_messages.html",
        vendor_id=vendor_id,
        vendor_name=name,
        page=page,
        first_page=before is None,
        **_message_context(page.messages),
    )
