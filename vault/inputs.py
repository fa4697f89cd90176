"""What every request's text must be before a view sees it.

No query parameter, form field or JSON string may hold a NUL character (PostgreSQL text
cannot store one) or a lone UTF-16 surrogate (Python decodes ``"\\ud800"`` in JSON to a
string that cannot be encoded, so it fails wherever it is written); JSON may not nest
deeper than the parser's recursion limit. Each is refused as ``InvalidInput`` (400) with a
sentence naming the problem, answered like every error by ``vault.errors``.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider

from vault.errors import InvalidInput

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# A JSON escape that may decode to NUL or to half a surrogate pair. Only documents that
# hold one are walked, so the common case costs one regular-expression scan in C.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_SUSPECT_ESCAPE_BYTES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be taken as text, or None."""
    if "\x00" in value:
        return "a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (half of a UTF-16 pair), which is no character"
    return None


def _json_problem(document: Any) -> str | None:
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                return problem
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


class VaultJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing documents no view can handle (``request.get_json`` included,
    even with ``silent=True``: these are not malformed JSON but input nobody may send)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            document = super().loads(s, **kwargs)
        except RecursionError:
            raise InvalidInput(
                "The JSON body is nested too deeply; the vault's documents are a few levels deep."
            ) from None
        suspect = (
            _SUSPECT_ESCAPE.search(s)
            if isinstance(s, str)
            else _SUSPECT_ESCAPE_BYTES.search(bytes(s))
        )
        if suspect:
            problem = _json_problem(document)
            if problem:
                raise InvalidInput(f"A string in the JSON body holds {problem}.")
        return document


def _refuse_unusable_text() -> None:
    """Query and form values with NUL or lone surrogates never reach a view."""
    sources = [("query parameter", request.args)]
    if request.mimetype in FORM_TYPES:
        # Only real forms: reading request.form of a JSON body would apply the app-wide
        # size limit before a view that allows more (the consent check) could raise it.
        sources.append(("form field", request.form))
    for kind, values in sources:
        for name, value in values.items(multi=True):
            problem = text_problem(name) or text_problem(value)
            if problem:
                shown = name if text_problem(name) is None else "(unreadable name)"
                raise InvalidInput(f"The {kind} {shown[:40]!r} holds {problem}.")


def init_app(app: Flask) -> None:
    app.json = VaultJSONProvider(app)
    app.before_request(_refuse_unusable_text)
