"""Marshmallow schemas of the JSON API; the OpenAPI document is generated from them."""

from __future__ import annotations

from marshmallow import Schema, fields


class AddressClaimSchema(Schema):
    formatted = fields.String()
    street_address = fields.String()
    locality = fields.String()
    region = fields.String()
    postal_code = fields.String()
    country = fields.String()


class ProfileClaimsSchema(Schema):
    """Exactly the claims the token's granted scopes allow; absent values are left out."""

    sub = fields.String(
        required=True, metadata={"description": "Pairwise subject: stable for your business only"}
    )
    name = fields.String()
    given_name = fields.String()
    middle_name = fields.String()
    family_name = fields.String()
    nickname = fields.String()
    birthdate = fields.String(metadata={"format": "date"})
    gender = fields.String()
    locale = fields.String()
    zoneinfo = fields.String()
    website = fields.String()
    email = fields.String(metadata={"description": "scope email"})
    email_verified = fields.Boolean(
        metadata={"description": "scope email, with email: always true (confirmed at sign-up)"}
    )
    phone_number = fields.String(metadata={"description": "scope phone, E.164"})
    phone_number_verified = fields.Boolean(
        metadata={
            "description": "scope phone, with phone_number: true once the customer typed "
            "back a code sent to this number by SMS"
        }
    )
    address = fields.Nested(AddressClaimSchema, metadata={"description": "scope address"})
    interests = fields.List(fields.String(), metadata={"description": "scope interests"})


class ProblemSchema(Schema):
    """RFC 9457 problem details, with the only extension members the vault sends."""

    type = fields.String(
        required=True, metadata={"description": "Stable URI naming the kind of problem"}
    )
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    error = fields.String(metadata={"description": "RFC 6750 error code on bearer failures"})
    error_description = fields.String(
        metadata={"description": "RFC 6750 error description on bearer failures"}
    )
    errors = fields.Dict(
        metadata={
            "description": "invalid-request only: what is wrong, by member of the request "
            "body (nested like the body; lists by index), as lists of sentences"
        }
    )
