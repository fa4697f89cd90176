"""Forms of the phone confirmation (the profile itself is parsed by ``ProfileSchema``)."""

from __future__ import annotations

import re

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Regexp

from vault.profile.phone import CODE_DIGITS


def _digits_only(value: str | None) -> str | None:
    # People copy codes as "123 456" or "123-456"; only the digits count.
    return re.sub(r"[\s-]", "", value) if isinstance(value, str) else value


class SendCodeForm(FlaskForm):
    """The "Send code" button: a POST with its CSRF token, nothing else."""


class ConfirmCodeForm(FlaskForm):
    code = StringField(
        f"The {CODE_DIGITS}-digit code from the text message",
        validators=[
            DataRequired(message="Enter the code from the text message."),
            Regexp(
                rf"^[0-9]{{{CODE_DIGITS}}}$",
                message=f"The code is {CODE_DIGITS} digits, e.g. 123456.",
            ),
        ],
        filters=[_digits_only],
    )
