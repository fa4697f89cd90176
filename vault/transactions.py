"""One transaction per request: committed once when the answer is ready, or rolled back.

The pattern of warehouse's ``pyramid_tm`` and indico's request handler (SQLAlchemy 2.0's
"when do I commit" advice): views and operations change the request's session and flush,
but never commit; ``init_app`` registers the one place that does, which runs after the view
(or the error handler) has built the response and before the response leaves:

- an answer with a status below 400 commits; any other rolls back (a form sent back with
  messages, a refusal, an error page: nothing it did stays);
- an answer that is an error on purpose but must keep what the request did says so with
  ``commit_despite_error()`` (the token endpoint: a replayed code or refresh token revokes
  what it issued and answers 400 ``invalid_grant``; the revocation must stay). It is
  pyramid_tm's ``x-tm: commit``. An exception answered by ``vault.errors`` still rolls
  back (``doom()``);
- a commit that fails (the database went away, a constraint a concurrent request won)
  rolls back, undoes what the request did to the session cookie (its flashes and log-in
  included: the cookie goes back with what it held before) and answers through ``vault.errors``:
  503 with ``Retry-After`` for database trouble, else a 500, logged with the request id.
  So no client is ever told "saved" about a change that did not commit;
- work that must follow the commit (mail, forgetting guessing failures in the throttle's
  own transaction, audit lines about a change) registers with ``after_commit()`` and runs
  only once the commit succeeded, still before the response leaves. A page that reports
  such work (the sign-up's "check your inbox", which says whether the mail went out) is
  built by ``respond_after_commit()``.

Outside this boundary, on purpose: the guessing throttle (``vault.accounts.throttle``)
counts every guess in a short transaction of its own connection, so a failure stays
counted when the request rolls back and parallel requests see it at once. The app
factory's key check commits its own row at start. CLI commands, which have no request,
commit explicitly, one ``with`` block or commit per command. A streamed response body is
produced after the commit: it must only read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, g, request, session
from flask.typing import ResponseReturnValue

from vault.extensions import db

AfterCommit = Callable[[Response], Response]

_STATE = "vault_unit_of_work"


@dataclass
class _UnitOfWork:
    keep_on_error: bool = False
    doomed: bool = False
    after_commit: list[AfterCommit] = field(default_factory=list)


def _current() -> _UnitOfWork:
    state = g.get(_STATE)
    if state is None:
        state = _UnitOfWork()
        setattr(g, _STATE, state)
    return state


def after_commit(callback: AfterCommit) -> AfterCommit:
    """Run ``callback(response)`` (which returns the response, as Flask's
    ``after_this_request``) once this request's transaction committed; never if it rolls
    back. Usable as a decorator."""
    _current().after_commit.append(callback)
    return callback


def respond_after_commit(render: Callable[[], ResponseReturnValue]) -> Response:
    """For a page that reports work done after the commit: ``render()`` builds the answer
    once the commit succeeded. The view returns what this returns (a stand-in that says
    "success" to the boundary; a failed commit answers 503/500 instead)."""
    after_commit(lambda _placeholder: current_app.make_response(render()))
    return Response(status=200)


def commit_despite_error() -> None:
    """Keep this request's changes although its answer is a 4xx (a replay's revocations)."""
    _current().keep_on_error = True


def doom() -> None:
    """Roll this request back whatever its answer (``vault.errors`` calls it for every
    exception it answers, so ``commit_despite_error`` never keeps a half-done request)."""
    _current().doomed = True


def _finish(response: Response) -> Response:
    state = g.pop(_STATE, None) or _UnitOfWork()
    started = db.session.registry.has()  # no session: the request never touched the database
    if response.status_code >= 400 and not (state.keep_on_error and not state.doomed):
        if started:
            db.session.rollback()
        return response
    if started:
        try:
            db.session.commit()
        except Exception as error:  # answered and logged by vault.errors, never swallowed
            from vault import errors

            db.session.rollback()
            session.pop("_flashes", None)  # a "Saved." must not show on the error page
            answer = errors.commit_failed(error)
            _restore_session()
            return answer
    for callback in state.after_commit:
        response = callback(response)
    return response


def _restore_session() -> None:
    """Put back the session the request came with (after rendering the error page, which
    may touch it): no flash about a change that did not happen, no log-in to an account
    that was not created. The cookie is sent again with that content."""
    original = current_app.session_interface.open_session(current_app, request)
    session.clear()
    session.update(original or {})


def init_app(app: Flask) -> None:
    """Register the boundary. Call it after every other ``after_request`` is registered:
    Flask runs those in reverse order, so this one runs first and the others (security
    headers, no-store, rate-limit headers) also dress a 503 it answers."""
    app.after_request(_finish)
