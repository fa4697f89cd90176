"""The business portal's webhooks page: a member of the business sets, changes or removes
its endpoint URL, sees the signing secret and rotates it. Every form carries a CSRF token;
a member only ever sees their own business's endpoint (the one of their membership)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from werkzeug.wrappers import Response

from vault.auth import vendor_member_required
from vault.extensions import db
from vault.services import keys
from vault.vendors.models import Vendor
from vault.webhooks import operations
from vault.webhooks.forms import ActionForm, EndpointForm
from vault.webhooks.models import WebhookEndpoint

bp = Blueprint("webhooks", __name__, url_prefix="/business/webhooks")


def _page(form: EndpointForm | None = None, status: int = 200) -> Response:
    vendor: Vendor = g.vendor
    endpoint = db.session.get(WebhookEndpoint, vendor.id)
    secret = operations.reveal_secret(keys(), endpoint) if endpoint is not None else None
    if form is None:
        form = EndpointForm(formdata=None, data={"url": endpoint.url if endpoint else ""})
    response = Response(
        render_template(
            "business/webhooks.html",
            vendor=vendor,
            endpoint=endpoint,
            secret=secret,
            form=form,
            action_form=ActionForm(formdata=None),
            allow_local=operations.local_endpoints_allowed(),
        ),
        status=status,
    )
    # The page shows the signing secret: no cache keeps it.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("")
@vendor_member_required
def index() -> Response:
    return _page()


@bp.post("")
@vendor_member_required
def save() -> Response:
    form = EndpointForm()
    if not form.validate():
        return _page(form, 400)
    had = db.session.get(WebhookEndpoint, g.vendor.id) is not None
    try:
        operations.set_endpoint(
            db.session,
            keys(),
            g.vendor.id,
            form.url.data,
            allow_local=operations.local_endpoints_allowed(),
        )
    except operations.WebhookURLError as exc:
        form.url.errors = [*form.url.errors, exc.detail or str(exc)]
        return _page(form, 400)
    if had:
        flash("Webhook endpoint changed. The signing secret stays the same.", "success")
    else:
        flash(
            "Webhook endpoint saved. Consent changes of your customers are sent to it, "
            "signed with the secret below.",
            "success",
        )
    return redirect(url_for("webhooks.index"))


@bp.post("/rotate")
@vendor_member_required
def rotate() -> Response:
    if not ActionForm().validate():
        abort(400, "The form expired; try again.")
    if operations.rotate_secret(db.session, keys(), g.vendor.id) is None:
        flash("Set an endpoint URL first.", "error")
    else:
        flash(
            "New signing secret. Webhooks from now on, retries included, are signed with "
            "it: update your receiver.",
            "success",
        )
    return redirect(url_for("webhooks.index"))


@bp.post("/remove")
@vendor_member_required
def remove() -> Response:
    if not ActionForm().validate():
        abort(400, "The form expired; try again.")
    if operations.remove_endpoint(db.session, g.vendor.id):
        flash("Webhook endpoint removed: no more webhooks are sent.", "success")
    else:
        flash("There was no endpoint to remove.", "info")
    return redirect(url_for("webhooks.index"))
