"""Grant lifecycle: approve, look up, narrow, revoke; and the access log."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vault.crypto.keyring import KeyProvider
from vault.logs import audit
from vault.models import utcnow
from vault.oauth.models import (
    AccessEvent,
    AuthorizationCode,
    Grant,
    OAuthClient,
    PairwiseSubject,
    Token,
)
from vault.oauth.scopes import pairwise_sub

DURATIONS: dict[str, timedelta | None] = {
    "30d": timedelta(days=30),
    "1y": timedelta(days=365),
    "forever": None,
}
DURATION_LABELS = {"30d": "30 days", "1y": "1 year", "forever": "Until I revoke it"}


@dataclass(frozen=True)
class AuthorizationDecision:
    """What the customer approved on the consent screen: the grant and the scopes the
    authorization code will carry."""

    grant_id: str
    scope: str


def active_grant(session: Session, user_id: str, client_id: str) -> Grant | None:
    now = utcnow()
    for grant in session.scalars(
        select(Grant)
        .where(Grant.user_id == user_id, Grant.client_id == client_id, Grant.revoked_at.is_(None))
        .order_by(Grant.created_at.desc())
    ):
        if grant.is_active(now):
            return grant
    return None


def grant_covers(grant: Grant | None, scopes: list[str]) -> bool:
    return grant is not None and set(scopes) <= set(grant.scopes)


def remember_subject(session: Session, keys: KeyProvider, vendor_id: str, user_id: str) -> str:
    """Keep the customer's pairwise ``sub`` for the vendor (once; a concurrent first grant
    of the same pair is no error) and return it."""
    sub = pairwise_sub(keys, vendor_id, user_id)
    dialect = session.get_bind().dialect.name  # the vault runs on SQLite or PostgreSQL
    upsert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    session.execute(
        upsert(PairwiseSubject)
        .values(vendor_id=vendor_id, sub=sub, user_id=user_id, created_at=utcnow())
        .on_conflict_do_nothing()
    )
    return sub


# Bound parameters per IN list: well under SQLite's 32,766 and cheap for PostgreSQL.
_SUBJECTS_PER_QUERY = 5000
# Built once: for a one-item call of the consent API, building the statement cost more than
# running it (the key's index lookup).
_SUBJECTS = select(PairwiseSubject.sub, PairwiseSubject.user_id).where(
    PairwiseSubject.vendor_id == bindparam("vendor_id"),
    PairwiseSubject.sub.in_(bindparam("subs", expanding=True)),
)
_SUBJECTS_OF_USER = _SUBJECTS.where(PairwiseSubject.user_id == bindparam("user_id"))


def resolve_subjects(
    session: Session, vendor_id: str, subs: Collection[str], only_user: str | None = None
) -> dict[str, str]:
    """``sub -> user_id`` for those of ``subs`` that are (or were) the vendor's customers;
    with ``only_user`` (a token issued for one customer), at most that customer."""
    wanted = list(dict.fromkeys(subs))
    query = _SUBJECTS if only_user is None else _SUBJECTS_OF_USER
    connection = session.connection()
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _SUBJECTS_PER_QUERY):
        chunk = wanted[start : start + _SUBJECTS_PER_QUERY]
        params = {"vendor_id": vendor_id, "subs": chunk, "user_id": only_user}
        found.update((sub, user_id) for sub, user_id in connection.execute(query, params))
    return found


def approve(
    session: Session,
    keys: KeyProvider,
    user_id: str,
    client: OAuthClient,
    scopes: list[str],
    duration: str,
    now: datetime | None = None,
    declined: list[str] | None = None,
) -> AuthorizationDecision:
    """Record the customer's approval: widen the active grant, or start a new one.

    ``declined`` are scopes shown on this consent screen and left unticked: if the grant
    held them from an earlier approval, they are withdrawn, from live tokens too."""
    if duration not in DURATIONS:
        raise ValueError(f"unknown grant duration {duration!r}")
    now = now or utcnow()
    length = DURATIONS[duration]
    expires_at = now + length if length is not None else None
    grant = active_grant(session, user_id, client.client_id)
    if grant is None:
        grant = Grant(
            user_id=user_id,
            client_id=client.client_id,
            vendor_id=client.vendor_id,
            scope=" ".join(scopes),
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
        )
        session.add(grant)
        remember_subject(session, keys, client.vendor_id, user_id)
    else:
        withdrawn = set(declined or ()) - set(scopes) - {"openid"}
        if withdrawn & set(grant.scopes):
            narrow_grant(session, grant, [s for s in grant.scopes if s not in withdrawn])
        grant.scope = " ".join(dict.fromkeys([*grant.scopes, *scopes]))
        grant.updated_at = now
        grant.expires_at = expires_at
    session.flush()
    return AuthorizationDecision(grant.id, " ".join(scopes))


def revoke_tokens(session: Session, *conditions: object) -> None:
    session.execute(
        update(Token)
        .where(Token.revoked_at.is_(None), *conditions)  # type: ignore[arg-type]
        .values(revoked_at=utcnow())
    )


def revoke_tokens_of_code(session: Session, code_id: str) -> None:
    revoke_tokens(session, Token.code_id == code_id)


def _claim(session: Session, table: Table, row_id: str, used: Column[datetime]) -> bool:
    """Set ``used`` on one row if nobody has yet, as one conditional UPDATE: the database
    lets exactly one of any number of concurrent claims change the row (PostgreSQL
    re-checks the condition after waiting for the first claim's row lock; SQLite runs
    one writer at a time), so exactly one caller gets True."""
    result = session.execute(
        update(table).where(table.c.id == row_id, used.is_(None)).values({used.name: utcnow()})
    )
    return result.rowcount == 1


def claim_code(session: Session, code_id: str) -> bool:
    """Spend an authorization code; False if it was already spent."""
    codes = AuthorizationCode.__table__
    return _claim(session, codes, code_id, codes.c.used_at)


def claim_refresh_token(session: Session, token_id: str) -> bool:
    """Spend a refresh token (and end its access token); False if it was already spent."""
    tokens = Token.__table__
    if not _claim(session, tokens, token_id, tokens.c.refresh_used_at):
        return False
    revoke_tokens(session, Token.id == token_id)
    return True


def revoke_grant(session: Session, grant: Grant, reason: str = "customer") -> None:
    """End the grant and every access and refresh token issued under it, at once."""
    if grant.revoked_at is None:
        grant.revoked_at = utcnow()
        grant.revoked_reason = reason
        audit(
            "grant_revoked",
            grant_id=grant.id,
            client_id=grant.client_id,
            user_id=grant.user_id,
            by=reason,
        )
    revoke_tokens(session, Token.grant_id == grant.id)
    session.flush()


def narrow_grant(session: Session, grant: Grant, keep: list[str]) -> None:
    """Drop scopes from a grant. Codes and tokens already issued under it lose them too:
    what they may reveal is limited to the grant's scopes whenever they are used
    (``vault.oauth.models.effective_scope``)."""
    grant.scope = " ".join(s for s in grant.scopes if s in keep or s == "openid")
    grant.updated_at = utcnow()
    session.flush()


def customer_grants(session: Session, user_id: str) -> list[Grant]:
    return list(
        session.scalars(
            select(Grant).where(Grant.user_id == user_id).order_by(Grant.created_at.desc())
        )
    )


_INSERT_ACCESS_EVENT = insert(AccessEvent.__table__)  # built once: every API read runs it


def record_access(
    session: Session, token: Token | AuthorizationCode, claims: list[str], endpoint: str
) -> None:
    """Append one row to the access log for a read with ``token`` (or the code an id_token
    was issued for): a plain INSERT, as this is on every API read's path; "last access" is
    derived from the log rather than kept on the grant."""
    session.connection().execute(
        _INSERT_ACCESS_EVENT,
        {
            "user_id": token.user_id,
            "grant_id": token.grant_id,
            "vendor_id": token.client.vendor_id,
            "client_id": token.client_id,
            "claims": claims,
            "endpoint": endpoint,
            "at": utcnow(),
        },
    )


def last_access_by_grant(session: Session, user_id: str) -> dict[str, datetime]:
    rows = session.execute(
        select(AccessEvent.grant_id, func.max(AccessEvent.at))
        .where(AccessEvent.user_id == user_id, AccessEvent.grant_id.is_not(None))
        .group_by(AccessEvent.grant_id)
    )
    return {grant_id: at for grant_id, at in rows}


def access_events(session: Session, user_id: str, limit: int | None = 500) -> list[AccessEvent]:
    query = (
        select(AccessEvent)
        .where(AccessEvent.user_id == user_id)
        .order_by(AccessEvent.at.desc(), AccessEvent.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
