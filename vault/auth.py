"""Who may see a page: decorators shared by every feature's views (none imports another's)."""

from __future__ import annotations

from functools import wraps
from typing import Any

from flask import abort
from flask_login import current_user, login_required


def customer_required(view: Any) -> Any:
    """Customer pages; staff and vendor members get 403 even when logged in."""

    @wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_customer:
            abort(403, "This page is for customers only.")
        return view(*args, **kwargs)

    return wrapper
