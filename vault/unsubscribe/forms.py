"""The unsubscribe form: the page's button sends exactly what an RFC 8058 client sends."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import AnyOf, InputRequired

# RFC 8058 section 3.1: the POST body of a one-click unsubscribe.
ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
_MESSAGE = "To unsubscribe, send List-Unsubscribe=One-Click (RFC 8058), as this button does."


class UnsubscribeForm(FlaskForm):
    """One hidden field, ``List-Unsubscribe=One-Click``, so the page's button and a mail
    client's one-click POST are the same request and get the same treatment.

    No CSRF token (``Meta.csrf``): RFC 8058 clients POST without cookies and without having
    loaded any page, so they cannot send one; the view is exempt from ``CSRFProtect`` too.
    ``vault.unsubscribe.views`` says why that is safe."""

    class Meta:
        csrf = False

    one_click = HiddenField(
        name=ONE_CLICK_FIELD,
        default=ONE_CLICK_VALUE,
        # InputRequired: a missing field would otherwise take the default and pass.
        validators=[InputRequired(message=_MESSAGE), AnyOf([ONE_CLICK_VALUE], message=_MESSAGE)],
    )
