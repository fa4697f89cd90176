from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

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
