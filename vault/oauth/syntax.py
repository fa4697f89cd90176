"""RFC 6749's syntax for OAuth parameters, checked before Authlib sees them.

Authlib repeats some parameters (``redirect_uri``, ``response_type``, a scope) in its error
descriptions, and refuses to build one that holds characters RFC 6749 5.2 forbids there
(``"``, ``\\``, control characters): a ``ValueError``, i.e. a 500. Values outside the
grammar of RFC 6749 Appendix A (and RFC 7636 for PKCE) are refused here first, as
``invalid_request`` without repeating them. Unreadable HTTP Basic credentials are
``invalid_client`` (RFC 6749 2.3.1), also before Authlib decodes them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from flask import request

from vault.errors import InvalidClientAuthentication, InvalidInput

_VSCHAR = r"[\x20-\x7e]"
_NQCHAR = r"[\x21\x23-\x5b\x5d-\x7e]"
_GRAMMAR = {
    # VSCHAR values.
    "client_id": re.compile(f"{_VSCHAR}*"),
    "client_secret": re.compile(f"{_VSCHAR}*"),
    "state": re.compile(f"{_VSCHAR}*"),
    "nonce": re.compile(f"{_VSCHAR}*"),
    "code": re.compile(f"{_VSCHAR}+"),
    "refresh_token": re.compile(f"{_VSCHAR}+"),
    "token": re.compile(f"{_VSCHAR}+"),
    # response-type = response-name *( SP response-name ); response-char = "_" / DIGIT / ALPHA
    "response_type": re.compile(r"[A-Za-z0-9_]+(?: [A-Za-z0-9_]+)*"),
    # scope = scope-token *( SP scope-token ); scope-token = 1*NQCHAR
    "scope": re.compile(f"(?:{_NQCHAR}+(?: {_NQCHAR}+)*)?"),
    # grant-name or an absolute URI
    "grant_type": re.compile(r"[A-Za-z0-9_.\-:/]+"),
    "token_type_hint": re.compile(r"[A-Za-z0-9_.\-]+"),
    # URI-reference (RFC 3986): no space, no control, none of  " < > \ ^ ` { | }
    "redirect_uri": re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*"),
    # RFC 7636 4.1-4.3
    "code_challenge": re.compile(r"[A-Za-z0-9\-._~]{43,128}"),
    "code_verifier": re.compile(r"[A-Za-z0-9\-._~]{43,128}"),
    "code_challenge_method": re.compile(r"[A-Za-z0-9_\-]+"),
}


def _check(values: Mapping[str, str], names: tuple[str, ...]) -> None:
    for name in names:
        value = values.get(name)
        if value is not None and not _GRAMMAR[name].fullmatch(value):
            raise InvalidInput(
                f"{name} holds characters that RFC 6749 (or RFC 7636 for PKCE) does not "
                "allow there."
            )


def check_authorization_request() -> None:
    """The authorization endpoint's parameters (query on GET, form on the consent POST)."""
    names = (
        "client_id",
        "response_type",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    )
    _check(request.args, names)
    if request.method == "POST":
        _check(request.form, names)


def check_client_request() -> None:
    """The token, revocation and introspection endpoints: form parameters and Basic auth."""
    _check(
        request.form,
        (
            "grant_type",
            "code",
            "redirect_uri",
            "refresh_token",
            "scope",
            "client_id",
            "client_secret",
            "code_verifier",
            "token",
            "token_type_hint",
        ),
    )
    authorization = request.headers.get("Authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            base64.b64decode(authorization[6:].strip()).decode("utf-8")
        except (binascii.Error, ValueError):
            # UnicodeDecodeError is a ValueError: credentials that are not UTF-8 text.
            raise InvalidClientAuthentication(
                "The Basic credentials are not base64 of UTF-8 text client_id:client_secret."
            ) from None
