"""The business portal: a vendor member manages the vendor profile, clients and topics,
and sees the vendor's messages (sending a test message through the messages API's own
operation)."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from marshmallow import ValidationError
from sqlalchemy import select
from werkzeug.wrappers import Response

from consent.engine import CHANNEL_NAMES
from vault.auth import vendor_member_required
from vault.extensions import db
from vault.messages import queries as message_queries
from vault.messages.operations import MessageError, accept_message
from vault.messages.schemas import MessageInputSchema
from vault.models import utcnow
from vault.oauth.models import OAuthClient
from vault.oauth.operations import resolve_subjects
from vault.oauth.scopes import pairwise_sub
from vault.services import keys
from vault.vendors import operations
from vault.vendors.forms import (
    NewClientForm,
    SendTestMessageForm,
    TopicForm,
    VendorProfileForm,
)
from vault.vendors.models import Vendor
from vault.vendors.urls import loopback_http_allowed

bp = Blueprint("business", __name__, url_prefix="/business")


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


# --- messages ---------------------------------------------------------------------------------

MESSAGES_PAGE_SIZE = 25
# The portal's messages are told apart from the API's by this prefix of the client id and
# of the idempotency key (which the API keeps per vendor).
PORTAL = "portal"


def _test_form(formdata: Any) -> SendTestMessageForm:
    form = SendTestMessageForm(formdata=formdata)
    form.topic.choices = [(t.name, f"{t.name} ({t.purpose})") for t in g.vendor.topics]
    return form


def _messages_page(form: SendTestMessageForm) -> str:
    vendor: Vendor = g.vendor
    before = request.args.get("before") or None
    try:
        page = message_queries.vendor_page(db.session, vendor.id, before, MESSAGES_PAGE_SIZE)
    except message_queries.CursorNotFound:
        abort(404)
    provider = keys()
    # The customer as this business knows them: the pairwise sub, never an address.
    subs = {
        uid: pairwise_sub(provider, vendor.id, uid) for uid in {m.user_id for m in page.messages}
    }
    return render_template(
        "business/messages.html",
        vendor=vendor,
        page=page,
        first_page=before is None,
        subs=subs,
        form=form,
        channel_names=CHANNEL_NAMES,
    )


@bp.get("/messages")
@vendor_member_required
def messages() -> str:
    return _messages_page(_test_form(None))


def _channel_errors(form: SendTestMessageForm, data: dict[str, Any]) -> bool:
    """The API's own rules per channel (``MessageInputSchema``), onto the form's fields."""
    schema = MessageInputSchema(max_segments=int(current_app.config["VAULT_SMS_MAX_SEGMENTS"]))
    try:
        schema.load(data)
    except ValidationError as error:
        messages: dict[str, Any] = error.messages  # type: ignore[assignment]
        for name, problems in messages.items():
            field = getattr(form, name, None)
            text = problems if isinstance(problems, list) else [str(problems)]
            if field is None:
                form.form_errors.extend(str(p) for p in text)
            else:
                field.errors = [*field.errors, *(str(p) for p in text)]
        return True
    return False


@bp.post("/messages/test")
@vendor_member_required
def send_test_message() -> Response | tuple[str, int]:
    vendor: Vendor = g.vendor
    form = _test_form(request.form)
    if not form.validate():
        return _messages_page(form), 400
    data: dict[str, Any] = {
        "sub": form.sub.data.strip(),
        "channel": form.channel.data,
        "topic": form.topic.data,
        "body": form.body.data.replace("\r\n", "\n"),
    }
    if form.subject.data:
        data["subject"] = form.subject.data
    if _channel_errors(form, data):
        return _messages_page(form), 400
    user_id = resolve_subjects(db.session, vendor.id, [data["sub"]]).get(data["sub"])
    if user_id is None:
        form.sub.errors = [*form.sub.errors, "This sub is not one of your customers."]
        return _messages_page(form), 400
    if data["channel"] == "sms":
        from vault import sms

        if sms.connector() is None:
            form.channel.errors = [
                *form.channel.errors,
                "This vault has no SMS provider configured; SMS cannot be delivered.",
            ]
            return _messages_page(form), 400
    try:
        accepted = accept_message(
            db.session,
            keys(),
            vendor,
            f"{PORTAL}:{current_user.id}",
            user_id,
            data,
            f"{PORTAL}-{form.idempotency_key.data}",
            utcnow(),
        )
    except MessageError as error:
        form.form_errors.append(error.detail)
        return _messages_page(form), error.status if error.status < 500 else 400
    message = accepted.message
    # A redirect in every case, so a reload sends nothing again; a deny's blocked message
    # and its contact-log row commit with it, as they do for the API.
    if message.decision == "deny":
        flash(
            f"Not allowed ({message.rule}): {message.reason} Message {message.id} is on "
            "record as blocked and will not be sent.",
            "error",
        )
    elif message.decision == "defer" and message.deferred_until is not None:
        flash(
            f"Message {message.id} deferred until "
            f"{message.deferred_until.strftime('%Y-%m-%d %H:%M UTC')} ({message.rule}): "
            f"{message.reason}",
            "info",
        )
    else:
        flash(f"Message {message.id} queued: the vault delivers it shortly.", "success")
    return redirect(url_for("business.messages"))
