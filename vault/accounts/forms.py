from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from vault.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

_password_length = Length(
    min=MIN_PASSWORD_LENGTH,
    max=MAX_PASSWORD_LENGTH,
    message=f"Use between {MIN_PASSWORD_LENGTH} and {MAX_PASSWORD_LENGTH} characters.",
)


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


_email = [
    DataRequired(message="Enter your e-mail address."),
    Length(max=254, message="An e-mail address has at most 254 characters."),
    Email(message="Enter an e-mail address like name@example.com."),
]


class SignupForm(FlaskForm):
    """Sign-up asks only for the address; the password is chosen after following the link
    mailed to it (``ChoosePasswordForm``), so only the mailbox's owner can set it."""

    email = EmailField("E-mail", validators=_email, filters=[_strip])


class ChoosePasswordForm(FlaskForm):
    password = PasswordField(
        "Password", validators=[DataRequired(message="Choose a password."), _password_length]
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[
            DataRequired(message="Repeat the password."),
            EqualTo("password", message="The two passwords differ."),
        ],
    )


class ConfirmForm(FlaskForm):
    """A button behind a mailed link: following a link (GET) changes nothing, so mail
    scanners that open every link confirm nothing."""


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=_email, filters=[_strip])
    password = PasswordField(
        "Password",
        validators=[
            DataRequired(message="Enter your password."),
            Length(max=MAX_PASSWORD_LENGTH, message="That password is too long."),
        ],
    )


class SecondFactorForm(FlaskForm):
    code = StringField(
        "Code from your authenticator app, or a recovery code",
        validators=[
            DataRequired(message="Enter the code."),
            Length(max=32, message="That code is too long."),
        ],
    )


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(message="Enter your current password.")]
    )
    new_password = PasswordField(
        "New password",
        validators=[DataRequired(message="Choose a new password."), _password_length],
    )
    confirm = PasswordField(
        "Repeat new password",
        validators=[
            DataRequired(message="Repeat the new password."),
            EqualTo("new_password", message="The two passwords differ."),
        ],
    )


class EnableTotpForm(FlaskForm):
    code = StringField(
        "6-digit code from your app",
        validators=[
            DataRequired(message="Enter the code your app shows."),
            Length(min=6, max=7, message="The code has 6 digits."),
        ],
    )


class PasswordConfirmForm(FlaskForm):
    password = PasswordField(
        "Password", validators=[DataRequired(message="Enter your password to confirm.")]
    )


class DeleteAccountForm(PasswordConfirmForm):
    confirm = BooleanField(
        "I understand that my profile will be destroyed and cannot be recovered",
        validators=[DataRequired(message="Tick the box to confirm.")],
    )
