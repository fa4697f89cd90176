from __future__ import annotations

import uuid

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Field,
    HiddenField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from vault.oauth.scopes import ALL_SCOPES
from vault.vendors.models import PurposeCategory
from vault.vendors.urls import UnsafeURL, check_vendor_url, loopback_http_allowed


def _vendor_url(form: FlaskForm, field: Field) -> None:
    """The one rule of vault.vendors.urls: https only (http on loopback in development)."""
    try:
        field.data = check_vendor_url(
            field.data, label=field.label.text, loopback_http=loopback_http_allowed()
        )
    except UnsafeURL as exc:
        raise ValidationError(str(exc)) from exc


_url = [Optional(), Length(max=500), _vendor_url]


class VendorProfileForm(FlaskForm):
    name = StringField(
        "Business name",
        validators=[DataRequired(message="Enter the business name."), Length(max=120)],
    )
    website = StringField("Website", validators=_url)
    logo_url = StringField("Logo URL", validators=_url)
    privacy_policy_url = StringField("Privacy policy URL", validators=_url)


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class NewClientForm(FlaskForm):
    name = StringField("Client name", validators=[Optional(), Length(max=120)])
    redirect_uris = TextAreaField(
        "Redirect URIs (one per line, exact match)",
        validators=[DataRequired(message="Enter at least one redirect URI."), Length(max=4000)],
    )
    public = BooleanField("Public client (mobile or single-page app: no secret, PKCE only)")
    scopes = MultiCheckboxField(
        "Scopes it may ask for",
        choices=[SelectChoice(name, f"{name}: {info.title}") for name, info in ALL_SCOPES.items()],
        default=["openid", "profile", "email"],
    )
    id_token_alg = SelectField(
        "id_token signing algorithm",
        choices=[SelectChoice("ES256", "ES256 (recommended)"), SelectChoice("RS256", "RS256")],
        default="ES256",
    )


class TopicForm(FlaskForm):
    name = StringField(
        "Topic", validators=[DataRequired(message="Name the topic."), Length(max=64)]
    )
    description = TextAreaField("What you will contact people about", validators=[Length(max=1000)])
    purpose = SelectField(
        "Purpose", choices=[SelectChoice(p.value, p.value.capitalize()) for p in PurposeCategory]
    )


class SendTestMessageForm(FlaskForm):
    """A message to one customer, sent from the portal through the messages API's own
    operation (``vault.messages.operations.accept_message``): the consent engine decides.
    The channel's rules (a subject for e-mail, SMS length) are the API schema's, applied
    by the view. ``topic`` choices are the vendor's topics, set by the view."""

    sub = StringField(
        "Customer (pairwise sub)",
        validators=[DataRequired(message="Enter the customer's sub."), Length(max=128)],
    )
    channel = SelectField(
        "Channel",
        choices=[SelectChoice("email", "E-mail"), SelectChoice("sms", "Text message (SMS)")],
        default="email",
    )
    topic = SelectField("Topic", choices=[])
    subject = StringField("Subject (e-mail only)", validators=[Optional(), Length(max=200)])
    body = TextAreaField(
        "Message", validators=[DataRequired(message="Write the message."), Length(max=100_000)]
    )
    # Made when the form is shown: sending the same form twice (a double click, a reload)
    # makes one message, as the API's Idempotency-Key does.
    idempotency_key = HiddenField(
        default=lambda: str(uuid.uuid4()),
        validators=[
            DataRequired(message="Reload the page and send again."),
            Regexp(r"^[0-9a-f-]{36}$", message="Reload the page and send again."),
        ],
    )
