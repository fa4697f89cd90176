"""The vendor consent API under /api/v1 (client credentials; scopes consent:*)."""

from __future__ import annotations

from flask import Blueprint

from vault.extensions import csrf

bp = Blueprint("consent_api", __name__)
csrf.exempt(bp)  # bearer tokens, never cookies
