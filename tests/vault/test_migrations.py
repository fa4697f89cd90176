"""The migrations build exactly the schema the models describe, on both databases, and
can be walked down and up again."""

from __future__ import annotations

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vault.extensions import db
from vault.models import Base


def _drift(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        return compare_metadata(context, Base.metadata)


def test_migrated_schema_matches_the_models(app):
    assert _drift(app) == []


def test_downgrade_to_nothing_and_upgrade_again(app):
    with app.app_context():
        flask_migrate.downgrade(revision="base")
        db.engine.dispose()
        flask_migrate.upgrade()
        db.engine.dispose()
    assert _drift(app) == []
