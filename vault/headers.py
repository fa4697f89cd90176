"""Response headers a view sets for itself where an app-wide extension sets them for all.

Flask-Talisman sends one ``Referrer-Policy`` for every answer (``same-origin``) and offers no
per-view setting for it; a page whose URL is a bearer token (an unsubscribe link) must send
none at all. ``referrer_policy("no-referrer")`` marks such a view; the hook that applies
the mark is registered before Talisman's, and Flask runs ``after_request`` hooks in reverse,
so it runs after Talisman's and its value stands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, Response, current_app, request

_MARK = "vault_referrer_policy"
View = TypeVar("View", bound=Callable[..., object])


def referrer_policy(policy: str) -> Callable[[View], View]:
    def mark(view: View) -> View:
        setattr(view, _MARK, policy)
        return view

    return mark


def _apply(response: Response) -> Response:
    view = current_app.view_functions.get(request.endpoint or "")
    policy = getattr(view, _MARK, None)
    if policy:
        response.headers["Referrer-Policy"] = policy
    return response


def init_app(app: Flask) -> None:
    """Call before ``talisman.init_app``."""
    app.after_request(_apply)
