"""RFC 9457 problem details: every API error is one of these, never a stack trace."""

from __future__ import annotations

import json
from typing import Any

from flask import Response

PROBLEM_BASE = "https://cmr-vault.example/problems/"


def problem(
    status: int, slug: str, title: str, detail: str | None = None, **extensions: Any
) -> Response:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")
