"""The request's unit of work (``vault.transactions``): one commit when the answer is ready,
or a rollback; what must follow the commit runs after it; a failed commit is a clean error.

Each test adds a small route to the real app (a real database, the real error handlers) that
writes a vendor row and answers as the test asks, then looks at the database from a
connection of its own.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, flash, get_flashed_messages, request, session

from tests.conftest import TestDatabase, _app_config
from vault import create_app, transactions
from vault.extensions import db
from vault.vendors.models import Vendor
from vault.vendors.operations import VendorError, create_vendor

ROOT = Path(__file__).resolve().parents[2]


def _add_routes(app: Flask, seen: list[Any], database: TestDatabase) -> None:
    """``/_t/write?name=&status=&keep=&fail=``: writes a vendor, then answers."""
    observer = database.engine()

    def write() -> Any:
        name = request.args["name"]
        create_vendor(db.session, name)
        if request.args.get("keep"):
            transactions.commit_despite_error()
        if request.args.get("fail"):
            raise VendorError("refused on purpose")

        @transactions.after_commit
        def _look(response: Any) -> Any:
            # Run after the commit: another connection sees the row already.
            with observer.connect() as conn:
                seen.append(conn.scalar(sa.select(sa.func.count()).where(Vendor.name == name)))
            response.headers["X-After-Commit"] = "ran"
            return response

        return "written", int(request.args.get("status", 200))

    def write_unflushed() -> Any:
        # The INSERT is sent only by the commit; the flash and the session value are set
        # before it, as a view does before it redirects.
        db.session.add(Vendor(id=request.args["id"], name=request.args["name"]))
        flash("Saved.", "success")
        session["marker"] = "set"
        transactions.after_commit(lambda response: seen.append("after") or response)
        return "", 302, {"Location": "/"}

    def flashes() -> Any:
        return {"flashes": get_flashed_messages(), "marker": session.get("marker")}

    app.add_url_rule("/_t/write", "t_write", write)
    app.add_url_rule("/_t/unflushed", "t_unflushed", write_unflushed)
    app.add_url_rule("/_t/flashes", "t_flashes", flashes)


@pytest.fixture
def seen() -> list[Any]:
    return []


@pytest.fixture
def routed(app: Flask, seen: list[Any], database: TestDatabase) -> Flask:
    _add_routes(app, seen, database)
    return app


def vendors_named(app: Flask, name: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).where(Vendor.name == name)) or 0


def test_a_success_commits_once_before_the_answer_leaves(routed, seen):
    response = routed.test_client().get("/_t/write", query_string={"name": "Kept"})
    assert response.status_code == 200
    assert vendors_named(routed, "Kept") == 1
    # The after-commit step saw the row from another connection, and its change to the
    # response reached the client: it ran after the commit, before the response left.
    assert seen == [1]
    assert response.headers["X-After-Commit"] == "ran"


@pytest.mark.parametrize("status", [400, 404, 409, 422, 500])
def test_an_error_answer_rolls_back_and_skips_after_commit_work(routed, seen, status):
    response = routed.test_client().get(
        "/_t/write", query_string={"name": "Dropped", "status": status}
    )
    assert response.status_code == status
    assert vendors_named(routed, "Dropped") == 0
    assert seen == []
    assert "X-After-Commit" not in response.headers


def test_commit_despite_error_keeps_a_deliberate_error_answer(routed, seen):
    response = routed.test_client().get(
        "/_t/write", query_string={"name": "Replayed", "status": 400, "keep": 1}
    )
    assert response.status_code == 400
    assert vendors_named(routed, "Replayed") == 1
    assert seen == [1]


def test_an_exception_answered_by_the_error_handlers_rolls_back_even_if_kept(routed, seen):
    response = routed.test_client().get(
        "/_t/write", query_string={"name": "Raised", "keep": 1, "fail": 1}
    )
    assert response.status_code == 400  # VendorError, answered by vault.errors
    assert "refused on purpose" in response.get_data(as_text=True)
    assert vendors_named(routed, "Raised") == 0
    assert seen == []


def test_a_commit_that_breaks_a_constraint_is_a_500_and_changes_nothing(routed, seen):
    with routed.app_context():
        existing = create_vendor(db.session, "First")
        db.session.commit()
        existing_id = existing.id
    client = routed.test_client()
    response = client.get("/_t/unflushed", query_string={"id": existing_id, "name": "Clash"})
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Clash" not in page and "IntegrityError" not in page and "UNIQUE" not in page
    assert vendors_named(routed, "Clash") == 0
    assert seen == []
    # The browser kept the cookie it had: no "Saved." flash, no session value.
    assert client.get("/_t/flashes").get_json() == {"flashes": [], "marker": None}


def test_the_same_route_commits_when_nothing_breaks(routed, seen):
    """The check of the test above: without the clash the flash and the value stay."""
    client = routed.test_client()
    response = client.get("/_t/unflushed", query_string={"id": "fresh-id", "name": "Fine"})
    assert response.status_code == 302
    assert vendors_named(routed, "Fine") == 1
    assert seen == ["after"]
    assert client.get("/_t/flashes").get_json() == {"flashes": ["Saved."], "marker": "set"}


def test_a_commit_blocked_by_the_database_is_a_503_that_changed_nothing(
    database, keyring_text, seen
):
    """The commit waits behind another connection's lock until the statement timeout:
    503 with Retry-After, the row not written, the cookie untouched."""
    app = create_app(_app_config(database, keyring_text, VAULT_DB_STATEMENT_TIMEOUT=1))
    _add_routes(app, seen, database)
    client = app.test_client()
    held = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:
        if database.backend == "sqlite":
            path = database.url.removeprefix("sqlite:///")
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")  # the write lock
            held.set()
            release.wait(30)
            conn.execute("ROLLBACK")
            conn.close()
            return
        engine = database.engine()
        with engine.connect() as conn:
            conn.execute(sa.text("LOCK TABLE vendors IN ACCESS EXCLUSIVE MODE"))
            held.set()
            release.wait(30)
            conn.rollback()
        engine.dispose()

    locker = threading.Thread(target=hold_the_lock)
    locker.start()
    try:
        assert held.wait(10)
        response = client.get("/_t/unflushed", query_string={"id": "locked", "name": "Locked"})
    finally:
        release.set()
        locker.join(10)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert seen == []
    assert vendors_named(app, "Locked") == 0
    assert client.get("/_t/flashes").get_json() == {"flashes": [], "marker": None}
    with app.app_context():
        db.engine.dispose()


# --- the rule itself ---------------------------------------------------------------------------

_COMMIT_OR_ROLLBACK = re.compile(r"\.(commit|rollback)\(")


def test_no_view_commits_or_rolls_back():
    """Views change state through operations; the boundary commits (``grep`` as a test)."""
    views = [*ROOT.glob("vault/**/views.py"), *ROOT.glob("vault/**/*_views.py")]
    assert len(views) >= 10
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in views
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _COMMIT_OR_ROLLBACK.search(line)
    ]
    assert offenders == []
