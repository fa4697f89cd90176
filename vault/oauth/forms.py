from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from vault.accounts.passwords import MAX_PASSWORD_LENGTH


class ReauthenticateForm(FlaskForm):
    """A business asked the customer to prove presence again (prompt=login, max_age)."""

    password = PasswordField(
        "Your password",
        validators=[
            DataRequired(message="Enter your password."),
            Length(max=MAX_PASSWORD_LENGTH, message="That password is too long."),
        ],
    )
    code = StringField(
        "Code from your authenticator app, or a recovery code",
        validators=[Optional(), Length(max=32, message="That code is too long.")],
    )
