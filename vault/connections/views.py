from __future__ import annotations

from collections import Counter
from datetime import timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from vault.auth import customer_required
from vault.consents.operations import end_relationship
from vault.extensions import db
from vault.models import utcnow
from vault.oauth import operations
from vault.oauth.models import Grant
from vault.oauth.scopes import PROFILE_SCOPES
from vault.services import keys

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
