"""Validation of profile input, shared by the web form and the JSON API."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from functools import cache
from typing import Any
from zoneinfo import available_timezones

import langcodes
import phonenumbers
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate

NAME_MAX = 100
TAG_PATTERN = re.compile(r"^[\w][\w \-&+.]{0,31}$", re.UNICODE)
MAX_INTERESTS = 30


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def _validate_phone(value: str) -> None:
    if not value.startswith("+"):
        raise ValidationError(
            "Use international E.164 format, starting with + and the country code."
        )
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            "This is not a phone number in E.164 format (e.g. +14155550123)."
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationError("This phone number does not exist in its country's numbering plan.")
    if phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != value:
        raise ValidationError("Write the number in E.164 form without spaces, e.g. +14155550123.")


def _validate_locale(value: str) -> None:
    if not langcodes.tag_is_valid(value):
        raise ValidationError("Not a BCP 47 language tag (e.g. en, en-GB, pt-BR).")


def _validate_zoneinfo(value: str) -> None:
    if value not in _timezones():
        raise ValidationError("Not an IANA time zone (e.g. Europe/Berlin, America/New_York).")


def _validate_birthdate(value: date) -> None:
    if value >= date.today():
        raise ValidationError("A birthdate must lie in the past.")
    if value < date(1900, 1, 1):
        raise ValidationError("A birthdate must be on or after 1900-01-01.")


def _validate_tag(value: str) -> None:
    if not TAG_PATTERN.fullmatch(value):
        raise ValidationError(
            "Interests are short tags: up to 32 letters, digits, spaces or - & + ."
        )


# Control characters (Cc: NUL, tabs, line breaks, escapes), format characters (Cf:
# zero-width spaces and joiners, byte-order marks, bidirectional overrides that make text
# read differently from what it is), surrogates (Cs) and the line and paragraph separators:
# none belongs in a name or an address line, and each can make a value look like another
# to the customer or to a business reading it.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _validate_visible_text(value: str) -> None:
    for char in value:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            raise ValidationError(
                f"Remove the invisible or control character U+{ord(char):04X}: only "
                "visible characters and spaces are allowed here."
            )


def _text(max_length: int, **kwargs: Any) -> fields.String:
    return fields.String(
        allow_none=True,
        validate=[
            validate.Length(min=1, max=max_length, error="At most {max} characters."),
            _validate_visible_text,
        ],
        **kwargs,
    )


class AddressSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    street_address = _text(200)
    locality = _text(100)
    region = _text(100)
    postal_code = _text(20)
    country = _text(100)

    @pre_load
    def _blank_to_none(self, data: Any, **kwargs: Any) -> Any:
        return _strip_blank(data)


def _strip_blank(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    cleaned = {}
    for key, value in data.items():
        if isinstance(value, str):
            value = value.strip() or None
        cleaned[key] = value
    return cleaned


class ProfileSchema(Schema):
    """The editable claims. Unknown keys are an error, so typos never pass silently."""

    given_name = _text(NAME_MAX)
    family_name = _text(NAME_MAX)
    middle_name = _text(NAME_MAX)
    nickname = _text(NAME_MAX)
    email = fields.Email(
        required=True,
        validate=validate.Length(max=254, error="An e-mail address has at most {max} characters."),
        error_messages={
            "required": "Enter your e-mail address; it is also your login.",
            "null": "Enter your e-mail address; it is also your login.",
            "invalid": "Enter an e-mail address like name@example.com.",
        },
    )
    phone_number = fields.String(
        allow_none=True, validate=[validate.Length(max=20), _validate_phone]
    )
    address = fields.Nested(AddressSchema, allow_none=True)
    birthdate = fields.Date(allow_none=True, validate=_validate_birthdate)
    gender = _text(50)
    locale = fields.String(allow_none=True, validate=[validate.Length(max=35), _validate_locale])
    zoneinfo = fields.String(
        allow_none=True, validate=[validate.Length(max=64), _validate_zoneinfo]
    )
    website = fields.URL(
        allow_none=True,
        schemes={"http", "https"},
        require_tld=True,
        validate=validate.Length(max=500),
    )
    interests = fields.List(
        fields.String(validate=[validate.Length(min=1, max=32), _validate_tag]),
        allow_none=True,
        validate=validate.Length(max=MAX_INTERESTS, error=f"At most {MAX_INTERESTS} interests."),
    )

    @pre_load
    def _normalise(self, data: Any, **kwargs: Any) -> Any:
        data = _strip_blank(data)
        if isinstance(data, dict) and isinstance(data.get("interests"), str):
            tags = [tag.strip() for tag in data["interests"].split(",")]
            data["interests"] = [tag for tag in tags if tag] or None
        return data

    @post_load
    def _finish(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        address = data.get("address")
        if isinstance(address, dict):
            address = {key: value for key, value in address.items() if value}
            data["address"] = address or None
        if data.get("interests"):
            # Keep the order the person chose, drop case-insensitive repeats.
            seen: set[str] = set()
            unique = []
            for tag in data["interests"]:
                if tag.casefold() not in seen:
                    seen.add(tag.casefold())
                    unique.append(tag)
            data["interests"] = unique
        return data
