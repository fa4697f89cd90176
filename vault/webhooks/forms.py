from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class EndpointForm(FlaskForm):
    # The URL rule itself (https, public addresses) is the operation's, which the worker
    # applies again at every delivery.
    url = StringField(
        "Endpoint URL",
        validators=[
            DataRequired(message="Enter the URL that receives webhooks."),
            Length(max=2048),
        ],
    )


class ActionForm(FlaskForm):
    """Rotate or remove: a button and its CSRF token."""
