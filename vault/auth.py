"""Who may see a page: decorators shared by every feature's views (none imports another's)."""

from __future__ import annotations

from functools import wraps
from typing import Any

from flask import abort, g
from flask_login import current_user, login_required

from vault.accounts.models import Role
from vault.extensions import db
from vault.vendors.models import Vendor, VendorMember


def customer_required(view: Any) -> Any:
    """Customer pages; staff and vendor members get 403 even when logged in."""

    @wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_customer:
            abort(403, "This page is for customers only.")
        return view(*args, **kwargs)

    return wrapper


def vendor_member_required(view: Any) -> Any:
    """Business-portal pages: members of a business only; ``g.vendor`` is their business."""

    @wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user.role != Role.VENDOR_MEMBER:
            abort(403, "The business portal is for members of a business.")
        membership = db.session.get(VendorMember, current_user.id)
        if membership is None:
            abort(403, "Your account is not attached to a business.")
        g.vendor = db.session.get(Vendor, membership.vendor_id)
        return view(*args, **kwargs)

    return wrapper
