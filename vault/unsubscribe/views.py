"""The unsubscribe link of every business message: ``/unsubscribe/<token>``.

``GET`` shows what the link stops (the business, the channel, the topic) and one button;
it never changes anything, since mail scanners and link previews follow links on their own.
``POST`` (that button, and RFC 8058 one-click clients, which send
``List-Unsubscribe=One-Click`` with no cookies) withdraws exactly that consent.

Neither needs a log-in, and the pages name no customer: whoever holds the link sees the
business and the topic, never an address or a profile. The URL is a bearer token, so the
answers are ``no-store``, ``noindex`` and send no Referer onwards.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from flask import Blueprint, Response, current_app, render_template, request
from flask_limiter.util import get_remote_address

from vault.extensions import csrf, db, limiter
from vault.headers import referrer_policy
from vault.logs import audit
from vault.services import keys
from vault.unsubscribe import operations
from vault.unsubscribe.forms import UnsubscribeForm
from vault.unsubscribe.operations import Standing, Subscription
from vault.unsubscribe.tokens import UnsubscribeTarget, read_token

bp = Blueprint("unsubscribe", __name__)

PAGE = "unsubscribe/page.html"


def _link_limit() -> str:
    return current_app.config["VAULT_UNSUBSCRIBE_RATE_LIMIT"]


def _refused_limit() -> str:
    return current_app.config["VAULT_UNSUBSCRIBE_REFUSED_RATE_LIMIT"]


def _link_key() -> str:
    """The link itself, hashed: the limiter's storage (Redis, perhaps) never holds a token."""
    token = (request.view_args or {}).get("token", "")
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _refused(response: Response) -> bool:
    """Only refused links count against the client's address (see VAULT_UNSUBSCRIBE_*)."""
    return response.status_code == 400


@bp.after_request
def _private(response: Response) -> Response:
    # The URL is a bearer token: no cache keeps the page, no search engine lists it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _target(token: str) -> UnsubscribeTarget | None:
    target = read_token(token)
    if target is None or not operations.known_channel(target):
        return None
    return target


def _invalid() -> tuple[str, int]:
    """Altered, cut off or signed by another vault: nothing is changed, the page says so."""
    return render_template(PAGE, subscription=None, form=None, done=False), 400


def _page(
    subscription: Subscription, form: UnsubscribeForm, *, status: int = 200
) -> tuple[str, int]:
    done = subscription.standing == Standing.UNSUBSCRIBED
    return render_template(PAGE, subscription=subscription, form=form, done=done), status


@bp.get("/unsubscribe/<token>")
@referrer_policy("no-referrer")
@limiter.limit(_refused_limit, key_func=get_remote_address, deduct_when=_refused)
def confirm(token: str) -> tuple[str, int]:
    target = _target(token)
    if target is None:
        return _invalid()
    return _page(operations.look_up(db.session, target), UnsubscribeForm(formdata=None))


# CSRF-exempt on purpose. RFC 8058 clients (mailbox providers acting on a person's click)
# POST without cookies and without loading any page first, so there is no session and no
# CSRF token to send; requiring one would break one-click unsubscribe. It is safe because
# CSRF protects what a *session* authorises, and this endpoint uses no session: the signed
# token in the URL is the whole authorisation (HMAC with the app's secret, so it cannot be
# forged or altered into another consent), and a forged cross-site POST could only do what
# the link's holder may do anyway. And the action can only ever withdraw that one consent,
# never grant, read or reveal anything.
@bp.post("/unsubscribe/<token>")
@csrf.exempt
@referrer_policy("no-referrer")
@limiter.limit(_link_limit, key_func=_link_key)
@limiter.limit(_refused_limit, key_func=get_remote_address, deduct_when=_refused)
def unsubscribe(token: str) -> tuple[str, int]:
    target = _target(token)
    if target is None:
        return _invalid()
    # request.form only: the form bodies RFC 8058 names (urlencoded, multipart), not the
    # JSON that Flask-WTF would also read.
    form = UnsubscribeForm(formdata=request.form)
    if not form.validate():
        return _page(operations.look_up(db.session, target), form, status=400)
    result = operations.withdraw(db.session, keys(), target)
    if result.changed:
        audit(
            "unsubscribed",
            user_id=target.user_id,
            vendor_id=target.vendor_id,
            channel=target.channel,
            message_id=target.message_id,
        )
    subscription = result.subscription
    if subscription.standing == Standing.SUBSCRIBED:  # it was, until now
        subscription = replace(subscription, standing=Standing.UNSUBSCRIBED)
    # The same answer however often the link is used; RFC 8058 clients only read the 200.
    return _page(subscription, form)
