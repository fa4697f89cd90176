"""Reading and writing the encrypted profile. Callers own the transaction."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from vault.accounts.models import User
from vault.crypto.aead import FieldCipher
from vault.crypto.keyed_hash import blind_index
from vault.crypto.keyring import KeyProvider, WrappedKey
from vault.errors import VaultError
from vault.keys.models import DataKey
from vault.keys.operations import DataKeyShredded, cipher_for
from vault.profile.models import ProfileField
from vault.profile.phone import clear_if_changed

# The order the profile page and the export present them in.
PROFILE_CLAIMS = (
    "given_name",
    "middle_name",
    "family_name",
    "nickname",
    "email",
    "phone_number",
    "address",
    "birthdate",
    "gender",
    "locale",
    "zoneinfo",
    "website",
    "interests",
)
ADDRESS_PARTS = ("street_address", "locality", "region", "postal_code", "country")


class EmailInUse(VaultError):
    """Another account already signs in with this e-mail address (which the error never
    carries: its text may reach a log or a page)."""

    status = 409
    code = "email-in-use"
    title = "Address in use"
    oauth_error = "invalid_request"

    def __init__(self) -> None:
        super().__init__("Another account uses this e-mail address.")


def _encode(value: Any) -> bytes:
    if isinstance(value, date):
        value = value.isoformat()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


_data_keys = DataKey.__table__
_fields = ProfileField.__table__
# Built once: the wrapped key and every field in one round trip, on each API read.
_PROFILE_QUERY = (
    select(
        _data_keys.c.master_key_id, _data_keys.c.wrapped_key, _fields.c.name, _fields.c.ciphertext
    )
    .select_from(_data_keys)
    .outerjoin(_fields, _fields.c.user_id == _data_keys.c.user_id)
    .where(_data_keys.c.user_id == bindparam("user_id"))
)


_decode_json = json.JSONDecoder().decode  # plaintexts are UTF-8 (``_encode``)


def load_profile(session: Session, keys: KeyProvider, user_id: str) -> dict[str, Any]:
    """Decrypt every stored claim of one customer (absent claims are left out)."""
    if session.autoflush:
        session.flush()  # what session.execute would do; nothing when nothing is pending
    rows = session.connection().execute(_PROFILE_QUERY, {"user_id": user_id}).all()
    if not rows:
        raise DataKeyShredded(f"customer {user_id} has no data key (account deleted)")
    master_key_id, wrapped_key = rows[0][0], rows[0][1]
    cipher = FieldCipher(keys.unwrap(user_id, WrappedKey(master_key_id, wrapped_key)), user_id)
    profile = {
        name: _decode_json(cipher.decrypt(name, ciphertext).decode())
        for _, _, name, ciphertext in rows
        if name is not None
    }
    return {claim: profile[claim] for claim in PROFILE_CLAIMS if claim in profile}


def email_index_in_use(session: Session, index: bytes, except_user_id: str | None = None) -> bool:
    query = select(User.id).where(User.email_index == index)
    if except_user_id is not None:
        query = query.where(User.id != except_user_id)
    return session.scalar(query.limit(1)) is not None


def save_profile(session: Session, keys: KeyProvider, user: User, values: dict[str, Any]) -> None:
    """Replace the customer's claims with ``values`` (validated by ``ProfileSchema``).

    Claims that are absent or ``None`` are deleted. The e-mail is also the login name, so
    changing it moves the blind index, refusing an address another account uses. A phone
    number other than the confirmed one clears the confirmation (``vault.profile.phone``).
    """
    unknown = set(values) - set(PROFILE_CLAIMS)
    if unknown:
        raise ValueError(f"not profile claims: {', '.join(sorted(unknown))}")
    email = values.get("email")
    if email:
        index = blind_index(keys.secret("blind_index"), email)
        if index != user.email_index:
            if email_index_in_use(session, index, except_user_id=user.id):
                raise EmailInUse()
            user.email_index = index
    # A number other than the confirmed one (or none) is unconfirmed from now on.
    clear_if_changed(keys, user, values.get("phone_number") or None)
    cipher = cipher_for(session, keys, user.id)
    existing = {
        row.name: row
        for row in session.scalars(select(ProfileField).where(ProfileField.user_id == user.id))
    }
    for claim in PROFILE_CLAIMS:
        value = values.get(claim)
        if value in (None, "", [], {}):
            if claim in existing:
                session.delete(existing[claim])
            continue
        ciphertext = cipher.encrypt(claim, _encode(value))
        if claim in existing:
            existing[claim].ciphertext = ciphertext
        else:
            session.add(ProfileField(user_id=user.id, name=claim, ciphertext=ciphertext))
    session.flush()


def change_login_email(session: Session, keys: KeyProvider, user: User, email: str) -> None:
    """Make ``email`` (confirmed by its owner: ``vault.accounts.confirmations``) the
    customer's login and profile e-mail; refused if another account uses it by now."""
    index = blind_index(keys.secret("blind_index"), email)
    if email_index_in_use(session, index, except_user_id=user.id):
        raise EmailInUse()
    user.email_index = index
    ciphertext = cipher_for(session, keys, user.id).encrypt("email", _encode(email))
    row = session.get(ProfileField, (user.id, "email"))
    if row is None:
        session.add(ProfileField(user_id=user.id, name="email", ciphertext=ciphertext))
    else:
        row.ciphertext = ciphertext
    session.flush()


def delete_profile(session: Session, user_id: str) -> None:
    session.execute(delete(ProfileField).where(ProfileField.user_id == user_id))
