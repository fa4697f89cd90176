"""No profile value is stored in plaintext: read the raw storage of each backend and look.

SQLite: the database file's bytes (and its -wal/-journal files if any), after the app's
engine has let go of it. PostgreSQL: every row of every table in the test schema as text.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import sqlalchemy as sa

from tests import factories
from vault.extensions import db
from vault.profile.operations import load_profile, save_profile
from vault.profile.schemas import ProfileSchema
from vault.services import keys

EMAIL = "Quintessa.Vandermolen@Example.org"

# Distinctive values, unlikely to appear in a database file by chance.
FORM = {
    "email": EMAIL,
    "given_name": "Quintessa",
    "middle_name": "Ottoline",
    "family_name": "Vandermolen",
    "nickname": "Quinnzy",
    "phone_number": "+14155550123",
    "address": {
        "street_address": "742 Zwieback Terrace",
        "locality": "Grimsbyfjord",
        "region": "Xanthoria",
        "postal_code": "ZX9 8QW",
        "country": "Ruritania",
    },
    "birthdate": "1987-06-05",
    "gender": "nonbinaryish",
    "locale": "pt-BR",
    "zoneinfo": "Pacific/Chatham",
    "website": "https://quintessa-vandermolen.example.net/home",
    "interests": ["xylophonics", "Zymurgy Club"],
}


def _needles() -> dict[str, bytes]:
    needles: dict[str, str] = {}
    for claim, value in FORM.items():
        if isinstance(value, dict):
            needles.update({f"address.{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            needles.update({f"interests[{i}]": v for i, v in enumerate(value)})
        else:
            needles[claim] = value
    needles["email (lower case)"] = EMAIL.lower()
    needles["email local part"] = "quintessa.vandermolen"
    needles["phone digits"] = "4155550123"
    needles["birthdate, compact"] = "19870605"
    return {name: value.encode() for name, value in needles.items()}


def _plaintexts_in(raw: bytes) -> list[str]:
    lowered = raw.lower()
    # Also UTF-16, in case a backend stored text that way.
    return [
        name
        for name, needle in _needles().items()
        if needle.lower() in lowered or needle.decode().encode("utf-16-le") in raw
    ]


def _save(app) -> tuple[str, dict]:
    data = ProfileSchema().load(FORM)
    user = factories.customer(app, email=EMAIL)
    with app.app_context():
        save_profile(db.session, keys(), factories.CreatedUser.load(user), data)
        db.session.commit()
    with app.app_context():
        stored = load_profile(db.session, keys(), user.id)
    return user.id, stored


def _raw_sqlite(database) -> bytes:
    path = Path(database.url.removeprefix("sqlite:///"))
    raw = path.read_bytes()
    for suffix in ("-wal", "-journal"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            raw += extra.read_bytes()
    return raw


def _raw_postgresql(database) -> bytes:
    engine = database.engine()
    try:
        with engine.connect() as conn:
            tables = conn.scalars(
                sa.text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = :schema AND table_type = 'BASE TABLE'"
                ),
                {"schema": database.schema},
            ).all()
            assert {"users", "data_keys", "profile_fields"} <= set(tables), tables
            rows = []
            for table in tables:
                rows += conn.scalars(
                    sa.text(f'SELECT t::text FROM "{database.schema}"."{table}" t')
                ).all()
    finally:
        engine.dispose()
    assert rows, "no rows read: the check would pass vacuously"
    return "\n".join(rows).encode()


def test_no_profile_value_is_stored_in_plaintext(app, database):
    user_id, stored = _save(app)

    # The profile did get saved and reads back whole, so an empty store cannot pass.
    expected = ProfileSchema().load(FORM)
    assert stored == {**expected, "birthdate": "1987-06-05"}
    assert expected["birthdate"] == date(1987, 6, 5)

    with app.app_context():
        db.engine.dispose()  # let SQLite checkpoint and close the file
    raw = _raw_sqlite(database) if database.backend == "sqlite" else _raw_postgresql(database)

    assert user_id.encode() in raw  # the probe does see the stored rows
    assert _plaintexts_in(raw) == []


def test_the_probe_finds_plaintext_when_it_is_there(app, database):
    # Counter-check of the probe: a value stored unencrypted on purpose is found.
    user_id, _ = _save(app)
    with app.app_context():
        db.session.execute(
            sa.text("UPDATE users SET role = :role WHERE id = :id"),
            {"role": "Xanthoria", "id": user_id},
        )
        db.session.commit()
        db.engine.dispose()
    raw = _raw_sqlite(database) if database.backend == "sqlite" else _raw_postgresql(database)
    assert _plaintexts_in(raw) == ["address.region"]
