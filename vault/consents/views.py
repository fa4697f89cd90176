from __future__ import annotations

from flask import Blueprint

bp = Blueprint("consents", __name__)
