from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from marshmallow import ValidationError
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from connectors.base import Message
from vault import mail, sms, transactions
from vault.accounts import confirmations, guards, links, ratelimits, throttle
from vault.accounts.forms import ConfirmForm
from vault.accounts.models import ConfirmationPurpose
from vault.auth import customer_required
from vault.crypto.keyed_hash import blind_index
from vault.extensions import db, limiter
from vault.logs import audit
from vault.models import utcnow
from vault.profile import phone
from vault.profile.forms import ConfirmCodeForm, SendCodeForm
from vault.profile.operations import (
    ADDRESS_PARTS,
    PROFILE_CLAIMS,
    EmailInUse,
    load_profile,
    save_profile,
)
from vault.profile.schemas import ProfileSchema
from vault.services import keys

bp = Blueprint("profile", __name__)

SIMPLE_CLAIMS = tuple(c for c in PROFILE_CLAIMS if c not in {"address", "interests"})


def form_to_input(form: MultiDict[str, str]) -> dict[str, Any]:
    """Form fields are named after the claims they hold; address parts as ``address.part``."""
    data: dict[str, Any] = {claim: form.get(claim, "") for claim in SIMPLE_CLAIMS}
    data["address"] = {part: form.get(f"address.{part}", "") for part in ADDRESS_PARTS}
    data["interests"] = form.get("interests", "")
    return data


FORM_FIELDS = frozenset(
    {*SIMPLE_CLAIMS, "interests", "csrf_token", *(f"address.{part}" for part in ADDRESS_PARTS)}
)


def unknown_fields(form: MultiDict[str, str]) -> list[str]:
    """Names the form does not have (a typo, or someone trying ``role`` or ``address``)."""
    return sorted(set(form) - FORM_FIELDS)


def profile_to_form(profile: dict[str, Any]) -> dict[str, str]:
    values = {claim: str(profile.get(claim) or "") for claim in SIMPLE_CLAIMS}
    for part in ADDRESS_PARTS:
        values[f"address.{part}"] = (profile.get("address") or {}).get(part, "")
    values["interests"] = ", ".join(profile.get("interests") or [])
    return values


def flatten_errors(messages: dict[str, Any], prefix: str = "") -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    for key, value in messages.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if all(isinstance(k, int) for k in value):  # list items: interests
                flat[name] = [m for item in value.values() for m in item]
            else:
                flat.update(flatten_errors(value, f"{name}."))
        else:
            flat[name] = list(value)
    return flat


EMAIL_CHANGE_LIMITED = (
    "You asked to change your e-mail address too often. Wait an hour and try again."
)


def _email_change_allowed(email: str) -> str | None:
    """Why a change to ``email`` may not start now (per account, then per address), or None.
    The same for a taken and a free address: the limits never look at who uses it."""
    config = current_app.config
    if not ratelimits.allow(
        config["VAULT_EMAIL_CHANGE_RATE_LIMIT"], "email-change", current_user.id
    ):
        return EMAIL_CHANGE_LIMITED
    if not links.mail_allowed(email):
        return links.MAIL_LIMITED
    return None


def _send_change_mail(link: confirmations.LinkRequest) -> str:
    """Mail the new address (a link) or its owner (someone tried); the flash to show."""
    if link.address_taken:
        delivery = mail.send("email_change_taken", link.email)
    else:
        delivery = mail.send(
            "email_change_confirm",
            link.email,
            link=mail.external_url("profile.confirm_email", token=link.token),
            hours=links.hours(),
        )
    message = (
        f"Your profile was saved. To use {link.email} we sent a link to it: your current "
        f"address stays your login until you follow that link within {links.hours()} hours."
    )
    if not delivery.ok:
        message += " The mail could not be sent just now; save the address again later."
    if (where := links.written_to(delivery)) is not None:
        message += f" (Development: no VAULT_SMTP_URL is set, so the mail is in {where}.)"
    return message


def _start_email_change(
    data: dict[str, Any],
) -> tuple[confirmations.LinkRequest | None, str | None]:
    """A new address in ``data`` becomes a link to mail (or a refusal by the limits), and
    ``data`` keeps the current address, which stays until the link is followed."""
    new_email = data["email"]
    if blind_index(keys().secret("blind_index"), new_email) == current_user.email_index:
        return None, None  # the same address, perhaps in other letters: saved as typed
    refusal = _email_change_allowed(new_email)
    if refusal:
        return None, refusal
    link = confirmations.request_email_change(
        db.session, keys(), current_user, new_email, lifetime=links.lifetime(), now=utcnow()
    )
    data["email"] = load_profile(db.session, keys(), current_user.id).get("email")
    return link, None


@bp.route("/profile", methods=["GET", "POST"])
@customer_required
def edit() -> str | Response | tuple[str, int]:
    """Saves the profile at once, but never a new e-mail address: that is only mailed a
    link (double opt-in), and the answer is the same whether or not another account uses
    the address."""
    errors: dict[str, list[str]] = {}
    status = 400
    if request.method == "POST":
        values = {k: v for k, v in request.form.items() if k != "csrf_token"}
        try:
            data = ProfileSchema().load(form_to_input(request.form))
        except ValidationError as exc:
            errors = flatten_errors(exc.messages if isinstance(exc.messages, dict) else {})
        for name in unknown_fields(request.form):
            errors[name] = ["This form has no such field; nothing was saved."]
        link = None
        if not errors:
            link, refusal = _start_email_change(data)
            if refusal:
                errors, status = {"email": [refusal]}, 429
        if not errors:
            was_confirmed = current_user.phone_confirmed_index is not None
            save_profile(db.session, keys(), current_user, data)
            if was_confirmed and current_user.phone_confirmed_index is None:
                audit("phone_confirmation_cleared", user_id=current_user.id)
                flash(PHONE_CHANGED, "info")
            if link is None:
                flash("Your profile was saved.", "success")
            else:
                # The link's row must be committed before the mail names it.
                transactions.after_commit(_flash_after(lambda: _send_change_mail(link)))
            return redirect(url_for("profile.edit"))
    else:
        values = profile_to_form(load_profile(db.session, keys(), current_user.id))
    return render_template(
        "profile/edit.html",
        values=values,
        errors=errors,
        address_parts=ADDRESS_PARTS,
        phone=_phone_state(),
        send_form=SendCodeForm(),
    ), status if errors else 200


@bp.route("/profile/email/confirm/<token>", methods=["GET", "POST"])
@customer_required
def confirm_email(token: str) -> str | Response | tuple[str, int]:
    """The new address becomes the login when the account that asked follows the link
    (logged in as itself: a link reaching someone else by a typo changes nothing)."""
    try:
        pending = confirmations.open_link(
            db.session, ConfirmationPurpose.EMAIL_CHANGE, token, utcnow(), user_id=current_user.id
        )
    except confirmations.InvalidLink as exc:
        return _invalid_link(str(exc))
    form = ConfirmForm()
    if form.validate_on_submit():
        old_email = load_profile(db.session, keys(), current_user.id).get("email")
        try:
            new_email = confirmations.confirm_email_change(db.session, keys(), current_user, token)
        except confirmations.InvalidLink as exc:
            return _invalid_link(str(exc))
        except EmailInUse:
            return render_template(
                "accounts/link_invalid.html",
                message="Another account uses this address by now, so your address stays.",
            ), 409
        audit("email_change_confirmed", user_id=current_user.id)
        if old_email:
            transactions.after_commit(_mail_after(lambda: mail.send("email_changed", old_email)))
        flash(f"Your e-mail address is now {new_email}. Log in with it from now on.", "success")
        return redirect(url_for("profile.edit"))
    return render_template("profile/confirm_email.html", form=form, email=pending.email)


def _flash_after(message: Callable[[], str]) -> transactions.AfterCommit:
    """An after-commit step that flashes what ``message()`` (sending a mail) returns."""

    def step(response: Response) -> Response:
        flash(message(), "success")
        return response

    return step


def _mail_after(send: Callable[[], object]) -> transactions.AfterCommit:
    def step(response: Response) -> Response:
        send()
        return response

    return step


def _invalid_link(message: str) -> tuple[str, int]:
    return render_template(
        "accounts/link_invalid.html",
        message=message
        + (
            " Log in as the account that asked for the change, or change the address again "
            "on your profile for a new link."
        ),
    ), 404


# --- phone confirmation (vault.profile.phone) ----------------------------------------------

PHONE_CHANGED = (
    "Your phone number changed, so it is unconfirmed: businesses cannot text or call it "
    "until you confirm it with a code."
)
PHONE_UNAVAILABLE = (
    "Phone confirmation is unavailable: this vault has no SMS provider set up, so no "
    "business can text you through it."
)
PHONE_CODES_LIMITED = "Too many codes were sent recently. Wait an hour and try again."


def _phone_state() -> dict[str, Any]:
    """What the pages say about the profile's number: is there one, is it confirmed, is a
    code waiting, can the vault send texts at all."""
    number = load_profile(db.session, keys(), current_user.id).get("phone_number")
    now = utcnow()
    pending = phone.pending_code(db.session, current_user.id, now) if number else None
    if pending is not None and pending.number_index != phone.number_index(keys(), number):
        pending = None  # a code for the number the profile held before: useless now
    return {
        "available": sms.connector() is not None,
        "number": number,
        "confirmed": phone.is_confirmed(keys(), current_user, number),
        "confirmed_at": current_user.phone_confirmed_at,
        "pending": pending is not None,
        "minutes": _code_minutes(),
    }


def _code_minutes() -> int:
    return max(1, round(int(current_app.config["VAULT_PHONE_CODE_LIFETIME"]) / 60))


def _phone_page(
    *, form: ConfirmCodeForm | None = None, error: str | None = None, status: int = 200
) -> tuple[str, int]:
    return render_template(
        "profile/phone.html",
        phone=_phone_state(),
        form=form or ConfirmCodeForm(),
        send_form=SendCodeForm(),
        error=error,
    ), status


def _code_subject() -> guards.Subject:
    """Wrong codes count per account across codes, with the log-in's growing delays."""
    return "phone_code", throttle.subject_of("phone-code", current_user.id)


def _send_code(request_: phone.CodeRequest) -> str:
    """Text the code (after the commit: the row it matches is stored); the flash to show."""
    connector = sms.connector()
    assert connector is not None  # checked before the code was made
    text = (
        f"{request_.code} is your CMR Vault code to confirm this phone number. It expires "
        f"in {_code_minutes()} minutes. Never share it."
    )
    delivery = connector.deliver(Message(recipient=request_.number, subject="", text=text))
    if not delivery.ok:
        current_app.logger.warning(
            "phone code not delivered: %s (%s)", delivery.outcome.value, delivery.detail
        )
        return "The text message could not be sent just now. Try again in a few minutes."
    message = (
        f"We sent a {phone.CODE_DIGITS}-digit code to {request_.number}. Enter it below "
        f"within {_code_minutes()} minutes."
    )
    if sms.writes_files() and delivery.location:
        message += (
            f" (Development: no VAULT_SMS_URL is set, so the text is in {delivery.location}.)"
        )
    return message


def _login_limit() -> str:
    return current_app.config["VAULT_LOGIN_RATE_LIMIT"]


@bp.post("/profile/phone/send")
@customer_required
def send_phone_code() -> str | Response | tuple[str, int]:
    """Send a code to the profile's number: never to a number typed here, so the only
    number a code can confirm is one saved in the profile."""
    form = SendCodeForm()
    if not form.validate_on_submit():
        return _phone_page(error="The form expired. Reload the page and try again.", status=400)
    if sms.connector() is None:
        return _phone_page(error=PHONE_UNAVAILABLE, status=503)
    try:  # refused before the limits count anything
        number = phone.check_sendable(
            keys(),
            current_user,
            load_profile(db.session, keys(), current_user.id).get("phone_number"),
        )
    except phone.PhoneError as exc:
        return _phone_page(error=str(exc.detail), status=exc.status)
    limit = current_app.config["VAULT_PHONE_CODE_RATE_LIMIT"]
    to = phone.number_index(keys(), number).hex()
    if not ratelimits.allow(limit, "phone-code-account", current_user.id) or not (
        ratelimits.allow(limit, "phone-code-to", to)
    ):
        return _phone_page(error=PHONE_CODES_LIMITED, status=429)
    lifetime = timedelta(seconds=int(current_app.config["VAULT_PHONE_CODE_LIFETIME"]))
    request_ = phone.request_code(
        db.session, keys(), current_user, number, lifetime=lifetime, now=utcnow()
    )
    audit("phone_code_sent", user_id=current_user.id)
    transactions.after_commit(_flash_after(lambda: _send_code(request_)))
    return redirect(url_for("profile.phone_confirmation"))


@bp.route("/profile/phone", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])  # per client address, before the account's
@customer_required
def phone_confirmation() -> str | Response | tuple[str, int]:
    """The code typed in confirms the number it was sent to, if that is still the
    profile's number."""
    form = ConfirmCodeForm()
    if request.method == "GET":
        return _phone_page(form=form)
    if not form.validate_on_submit():
        return _phone_page(form=form, status=400)
    subject = _code_subject()
    wait = guards.claim(subject)
    if wait is not None:
        return guards.too_many(_phone_page(form=form, error=wait.message)[0], wait)
    now = utcnow()
    limit = int(current_app.config["VAULT_PHONE_CODE_ATTEMPTS"])
    number = load_profile(db.session, keys(), current_user.id).get("phone_number")
    try:
        with db.engine.begin() as connection:
            left = phone.claim_attempt(connection, current_user.id, limit, now)
        phone.confirm(
            db.session, keys(), current_user, number, form.code.data, attempts_left=left, now=now
        )
    except phone.PhoneError as exc:
        if isinstance(exc, phone.WrongCode):
            audit("phone_code_wrong", user_id=current_user.id)
            form.code.errors = [*form.code.errors, str(exc.detail)]
            return _phone_page(form=form, status=exc.status)
        # The code itself is gone (expired, used up, never sent, another number): the page
        # says so above the "Send a new code" button.
        return _phone_page(form=form, error=str(exc.detail), status=exc.status)
    guards.guessed_right(subject)
    audit("phone_confirmed", user_id=current_user.id)
    flash(
        f"Your phone number {number} is confirmed: businesses you allow may now text or call it.",
        "success",
    )
    return redirect(url_for("profile.edit"))
