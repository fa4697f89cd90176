from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from vault.api.problems import problem
from vault.extensions import db
from vault.profile.operations import PROFILE_CLAIMS, load_profile
from vault.services import keys
from vault.web.summary import customer_summary

bp = Blueprint("web", __name__)


@bp.get("/")
def dashboard() -> str:
    if not current_user.is_authenticated:
        return render_template("web/landing.html")
    if not current_user.is_customer:
        return render_template("web/dashboard.html", profile={}, filled=[], missing=[], total=0)
    profile = load_profile(db.session, keys(), current_user.id)
    filled = [claim for claim in PROFILE_CLAIMS if claim in profile]
    return render_template(
        "web/dashboard.html",
        profile=profile,
        filled=filled,
        missing=[claim for claim in PROFILE_CLAIMS if claim not in profile],
        total=len(PROFILE_CLAIMS),
        summary=customer_summary(db.session, current_user.id),
    )


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError) -> tuple[str, int]:
    return render_template(
        "web/error.html",
        title="Form expired",
        message="This form was not sent from this site or has expired. Reload the page and try "
        "again; nothing was changed.",
    ), 400


def _is_api() -> bool:
    return request.path.startswith("/api/")


@bp.app_errorhandler(429)
def too_many_requests(error: HTTPException) -> tuple[str, int] | Response:
    if _is_api() or request.path.startswith("/oauth/"):
        return problem(429, "rate-limited", "Too many requests", str(error.description))
    return render_template(
        "web/error.html",
        title="Too many attempts",
        message="Too many attempts from your address. Wait a minute before trying again.",
    ), 429


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[str, int] | Response:
    if _is_api():
        if error.response is not None:
            return error.response
        slug = (error.name or "error").lower().replace(" ", "-")
        return problem(error.code or 500, slug, error.name, error.description)
    return render_template(
        "web/error.html", title=error.name, message=error.description
    ), error.code or 500
