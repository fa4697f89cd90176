from __future__ import annotations

import json

from flask import Blueprint, Response, render_template
from flask_login import current_user

from vault.auth import customer_required
from vault.extensions import db
from vault.logs import audit
from vault.portability.operations import build_export
from vault.services import keys

bp = Blueprint("portability", __name__)


@bp.get("/my-data")
@customer_required
def overview() -> str:
    return render_template("portability/overview.html")


@bp.get("/my-data/export.json")
@customer_required
def download() -> Response:
    document = build_export(db.session, keys(), current_user)
    audit("data_exported", user_id=current_user.id)
    stamp = document["generated_at"][:10]
    return Response(
        json.dumps(document, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="cmr-vault-my-data-{stamp}.json"',
            "Cache-Control": "no-store",
        },
    )
