"""One error hierarchy, answered in one place, in the form the caller reads.

``VaultError`` subclasses carry an HTTP status, a stable ``code`` (the problem type's slug),
a title and the RFC 6749 error code for the OAuth endpoints. ``init_app`` registers the
vault's only error handlers, and where the request went picks the answer:

- ``/oauth/token``, ``/oauth/revoke``, ``/oauth/introspect``: RFC 6749 section 5.2 JSON,
  ``{"error": ..., "error_description": ...}`` (what every OAuth client library parses);
- ``/api/``, ``/.well-known/``, the JWKS and userinfo: ``application/problem+json``
  (RFC 9457, ``problem()`` below, which views also use for answers they build themselves);
- everything else: the styled page ``templates/web/error.html`` (in a frame that asks
  nothing of the database while the database is the problem).

Werkzeug's HTTP errors (400, 404, 405 with its ``Allow``, 413, 429, ...) go through the same
place and keep their headers. Database trouble (unreachable server, timeouts, a read-only
file, a lost connection) is ``DatabaseUnavailable``: 503 with ``Retry-After``. Anything else
unexpected is Flask's 500, answered here without a word of the exception, which Flask logs
(``vault.logs``: with the request id, never the path, which may hold a token).

The domain errors of the features are ``VaultError`` subclasses too (``AccountError``,
``WeakPassword``, ``InvalidLink``, ``EmailInUse``, ``ConsentError``, ``VendorError``, the
vendor API's ``RequestError``): where a view turns one into a message beside a form field it
catches it; anything it lets through is answered here, in the caller's form. Every error
answered here rolls the request's transaction back (``vault.transactions.doom``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import (
    Flask,
    Response,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
)
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger("vault.errors")

# Endpoints whose clients are OAuth client libraries: they read RFC 6749 error JSON.
OAUTH_ENDPOINTS = frozenset({"/oauth/token", "/oauth/revoke", "/oauth/introspect"})
# Machine-readable endpoints outside /api/: they answer problem+json like the API.
JSON_PATHS = ("/api/", "/.well-known/")
JSON_ENDPOINTS = frozenset({"/oauth/jwks.json", "/oauth/userinfo"})

# RFC 6749 5.2: error_description holds only %x20-21 / %x23-5B / %x5D-7E.
_NOT_OAUTH_TEXT = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")

# The RFC 6749 error code for an HTTP error at the OAuth endpoints.
_OAUTH_CODE_BY_STATUS = {
    401: "invalid_client",
    429: "temporarily_unavailable",
    503: "temporarily_unavailable",
}


PROBLEM_BASE = "https://cmr-vault.example/problems/"


def problem(
    status: int, slug: str, title: str, detail: str | None = None, **extensions: Any
) -> Response:
    """An RFC 9457 problem details answer: every API error is one, never a stack trace."""
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


class VaultError(Exception):
    """An error the vault answers on purpose. ``detail`` is shown to the client, so it
    must never carry secrets, personal data or another exception's text. ``status``,
    ``code`` and ``title`` are set per class, or per instance where one class covers
    several answers (the vendor API's ``RequestError``)."""

    status: int = 500
    code: str = "internal-error"
    title: str = "Internal error"
    oauth_error: str = "server_error"

    def __init__(self, detail: str | None = None, *, headers: Mapping[str, str] | None = None):
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers = dict(headers or {})


class InvalidInput(VaultError):
    """Input no view should see: NUL or lone surrogates, JSON nested too deeply,
    characters an OAuth parameter's syntax does not allow."""

    status = 400
    code = "invalid-input"
    title = "Invalid input"
    oauth_error = "invalid_request"


class InvalidClientAuthentication(VaultError):
    """Client credentials that cannot even be read (RFC 6749 2.3.1, 5.2)."""

    status = 401
    code = "invalid-client"
    title = "Invalid client authentication"
    oauth_error = "invalid_client"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Basic realm="vault"'})


class DatabaseUnavailable(VaultError):
    """The database cannot be reached, timed out or refuses writes: the request changed
    nothing and may simply be tried again."""

    status = 503
    code = "database-unavailable"
    title = "Temporarily unavailable"
    oauth_error = "temporarily_unavailable"
    RETRY_AFTER_SECONDS = 5

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail
            or "The vault cannot reach its database right now. Nothing was changed; "
            "please try again in a moment.",
            headers={"Retry-After": str(self.RETRY_AFTER_SECONDS)},
        )


class Misconfigured(VaultError):
    """The vault found at run time that it may not serve (a keyring that does not open its
    data); the reason is logged for the operators, never shown."""

    status = 503
    code = "misconfigured"
    title = "Temporarily unavailable"
    oauth_error = "temporarily_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The vault cannot serve requests until its operators correct its configuration."
        )


# SQLAlchemy errors that mean "the database is not there right now", not "this code is
# wrong": OperationalError covers refused and timed-out connections, statement timeouts
# (PostgreSQL's query_canceled), "database is locked" and read-only SQLite files;
# InterfaceError a connection that went away; TimeoutError a pool with no connection free.
DATABASE_TROUBLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


def audience() -> str:
    """``"oauth"``, ``"api"`` or ``"web"``: who reads this request's error."""
    path = request.path
    if path in OAUTH_ENDPOINTS:
        return "oauth"
    if path.startswith(JSON_PATHS) or path in JSON_ENDPOINTS:
        return "api"
    return "web"


def oauth_text(text: str) -> str:
    """``text`` within RFC 6749's error_description alphabet (Authlib refuses anything else
    with a ValueError, which would be a 500)."""
    return _NOT_OAUTH_TEXT.sub("?", text)


def error_response(
    status: int,
    code: str,
    title: str,
    detail: str | None,
    *,
    oauth_error: str,
    headers: Mapping[str, str] | None = None,
    page_message: str | None = None,
    bare: bool = False,
) -> Response:
    """The one answer for an error, in the form where the request went expects."""
    where = audience()
    if where == "oauth":
        response = jsonify({"error": oauth_error, "error_description": oauth_text(detail or title)})
        response.status_code = status
        # RFC 6749 5.1/5.2: token endpoint answers are never cached.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    elif where == "api":
        response = problem(status, code, title, detail)
    elif bare:
        # Without Flask's context processors: Flask-Login's would load the logged-in user
        # from the database to offer ``current_user`` to the template.
        template = current_app.jinja_env.get_template("web/error.html")
        page = template.render(title=title, message=page_message or detail, bare=True)
        response = make_response(page, status)
    else:
        response = make_response(
            render_template("web/error.html", title=title, message=page_message or detail),
            status,
        )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _vault_error(error: VaultError) -> Response:
    return error_response(
        error.status,
        error.code,
        error.title,
        error.detail,
        oauth_error=error.oauth_error,
        headers=error.headers,
        # Its page must not load the logged-in user (base.html's navigation) from the database.
        bare=isinstance(error, DatabaseUnavailable),
    )


def _database_trouble(error: Exception) -> Response:
    # The driver's message says why (refused, timed out, read-only) and holds no SQL or
    # parameters; the statement itself could carry personal data, so it is not logged.
    cause = getattr(error, "orig", None) or error
    first_line = (str(cause).strip().splitlines() or [""])[0]
    from vault.logs import route

    log.warning(
        "database unavailable on %s %s: %s: %s",
        request.method,
        route(),
        type(cause).__name__,
        first_line[:200],
    )
    return _vault_error(DatabaseUnavailable())


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "error"


def _http_error(error: HTTPException) -> Response:
    if error.response is not None:
        # abort(response): the response was built on purpose (bearer errors, for one).
        return error.response
    status = error.code or 500
    # Keep what werkzeug says in headers: Allow on 405, WWW-Authenticate, Retry-After.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    title, detail, page_message = error.name, error.description, None
    if isinstance(error, CSRFError):
        title = "Form expired"
        detail = page_message = (
            "This form was not sent from this site or has expired. Reload the page and try "
            "again; nothing was changed."
        )
    elif status == 429:
        title = "Too many requests"
        page_message = "Too many attempts from your address. Wait a minute before trying again."
    elif status >= 500:
        # Never more than werkzeug's generic sentence: the cause is in the log only.
        detail = "The vault ran into an unexpected error. Nothing more is said here; it is logged."
    return error_response(
        status,
        "rate-limited" if status == 429 else _slug(title),
        title,
        detail,
        oauth_error=_OAUTH_CODE_BY_STATUS.get(
            status, "server_error" if status >= 500 else "invalid_request"
        ),
        headers=headers,
        page_message=page_message,
    )


def commit_failed(error: Exception) -> Response:
    """The answer when the request's commit failed (``vault.transactions``): database
    trouble is the usual 503; anything else (a constraint a concurrent request won) a 500
    that says nothing and logs the cause."""
    if isinstance(error, DATABASE_TROUBLE):
        return _database_trouble(error)
    log.error("the request's commit failed", exc_info=error)
    return _http_error(InternalServerError())


_E = TypeVar("_E", bound=Exception)


def _rolled_back(handler: Callable[[_E], Response]) -> Callable[[_E], Response]:
    def answer(error: _E) -> Response:
        from vault import transactions

        transactions.doom()
        return handler(error)

    return answer


def init_app(app: Flask) -> None:
    """Register every error handler of the vault (and nothing else registers one)."""
    app.register_error_handler(VaultError, _rolled_back(_vault_error))
    for error_class in DATABASE_TROUBLE:
        app.register_error_handler(error_class, _rolled_back(_database_trouble))
    app.register_error_handler(HTTPException, _rolled_back(_http_error))
