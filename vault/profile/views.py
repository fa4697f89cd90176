from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from marshmallow import ValidationError
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from vault.accounts.views import customer_required
from vault.extensions import db
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


@bp.route("/profile", methods=["GET", "POST"])
@customer_required
def edit() -> str | Response | tuple[str, int]:
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        values = {k: v for k, v in request.form.items() if k != "csrf_token"}
        try:
            data = ProfileSchema().load(form_to_input(request.form))
        except ValidationError as exc:
            errors = flatten_errors(exc.messages if isinstance(exc.messages, dict) else {})
        for name in unknown_fields(request.form):
            errors[name] = ["This form has no such field; nothing was saved."]
        if not errors:
            try:
                save_profile(db.session, keys(), current_user, data)
            except EmailInUse:
                db.session.rollback()
                errors = {"email": ["Another account uses this e-mail address."]}
            else:
                db.session.commit()
                flash("Your profile was saved.", "success")
                return redirect(url_for("profile.edit"))
    else:
        values = profile_to_form(load_profile(db.session, keys(), current_user.id))
    return render_template(
        "profile/edit.html", values=values, errors=errors, address_parts=ADDRESS_PARTS
    ), 400 if errors else 200
