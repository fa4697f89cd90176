"""The business portal: a vendor member manages the vendor profile, clients and topics."""

from __future__ import annotations

from functools import wraps
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from vault.accounts.models import Role
from vault.extensions import db
from vault.oauth.models import OAuthClient
from vault.vendors import operations
from vault.vendors.forms import NewClientForm, TopicForm, VendorProfileForm
from vault.vendors.models import Vendor, VendorMember
from vault.vendors.urls import loopback_http_allowed

bp = Blueprint("business", __name__, url_prefix="/business")


def vendor_member_required(view: Any) -> Any:
    @wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user.role != Role.VENDOR_MEMBER:
            abort(403, "The business portal is for members of a business.")
        membership = db.session.get(VendorMember, current_user.id)
        if membership is None:
            abort(403, "Your account is not attached to a business.")
        g.vendor = db.session.get(Vendor, membership.vendor_id)
        return view(*args, **kwargs)

    return wrapper


def _own_client(client_id: str) -> OAuthClient:
    client = db.session.get(OAuthClient, client_id)
    if client is None or client.vendor_id != g.vendor.id:
        abort(404)
    return client


def _page(**forms: Any) -> str:
    vendor: Vendor = g.vendor
    clients = db.session.scalars(
        select(OAuthClient).where(OAuthClient.vendor_id == vendor.id).order_by(OAuthClient.name)
    ).all()
    context = {
        "vendor": vendor,
        "clients": clients,
        "profile_form": VendorProfileForm(obj=vendor, formdata=None),
        "client_form": NewClientForm(formdata=None),
        "topic_form": TopicForm(formdata=None),
    }
    context.update(forms)
    return render_template("business/index.html", **context)


@bp.get("")
@vendor_member_required
def index() -> str:
    return _page()


@bp.post("/profile")
@vendor_member_required
def update_profile() -> Response | tuple[str, int]:
    form = VendorProfileForm()
    if not form.validate():
        return _page(profile_form=form), 400
    try:
        result = operations.update_profile(
            db.session,
            g.vendor,
            name=form.name.data,
            website=form.website.data,
            logo_url=form.logo_url.data,
            privacy_policy_url=form.privacy_policy_url.data,
            loopback_http=loopback_http_allowed(),
        )
    except operations.VendorError as exc:
        form.form_errors.append(str(exc))
        return _page(profile_form=form), 400
    if result.verification_cleared:
        flash(
            "Business profile saved. Your business is no longer shown as verified: a CMR "
            "Vault admin has to check the new details and verify it again.",
            "info",
        )
    elif result.changed:
        flash("Business profile saved.", "success")
    else:
        flash("Nothing changed.", "info")
    return redirect(url_for("business.index"))


@bp.post("/clients")
@vendor_member_required
def create_client() -> str | tuple[str, int]:
    form = NewClientForm()
    if form.validate():
        uris = [line.strip() for line in form.redirect_uris.data.splitlines() if line.strip()]
        try:
            new = operations.create_client(
                db.session,
                g.vendor,
                redirect_uris=uris,
                public=form.public.data,
                scopes=form.scopes.data or None,
                name=form.name.data or None,
                id_token_alg=form.id_token_alg.data,
            )
        except operations.VendorError as exc:
            form.redirect_uris.errors = [*form.redirect_uris.errors, str(exc)]
        else:
            return render_template(
                "business/secret.html", client=new.client, secret=new.client_secret
            )
    return _page(client_form=form), 400


@bp.post("/clients/<client_id>/rotate-secret")
@vendor_member_required
def rotate_secret(client_id: str) -> str | Response:
    client = _own_client(client_id)
    try:
        secret = operations.rotate_client_secret(db.session, client)
    except operations.VendorError as exc:
        flash(str(exc), "error")
        return redirect(url_for("business.index"))
    return render_template("business/secret.html", client=client, secret=secret)


@bp.post("/topics")
@vendor_member_required
def declare_topic() -> Response | tuple[str, int]:
    form = TopicForm()
    if form.validate():
        try:
            operations.declare_topic(
                db.session, g.vendor, form.name.data, form.purpose.data, form.description.data
            )
        except operations.VendorError as exc:
            form.name.errors = [*form.name.errors, str(exc)]
        else:
            flash("Topic saved.", "success")
            return redirect(url_for("business.index"))
    return _page(topic_form=form), 400
