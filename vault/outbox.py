"""What every outbox of the vault shares: claiming due rows with a lease, and the back-off
between attempts. The messages outbox (``vault.messages.worker``) and the webhook
deliveries (``vault.webhooks.delivery``) both claim through ``claim_due``.

A claimable model has ``id``, ``status``, ``not_before``, ``claim_token`` and
``lease_until`` columns.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vault.models import utcnow


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling from
    ``base`` up to ``cap``, then "equal jitter" (half fixed, half random), so messages that
    failed together (a provider outage) do not all come back at the same instant."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311  (timing, not a secret)


def claim_due(
    session: Session, model: Any, pending: Sequence[str], *, batch: int, lease: timedelta
) -> tuple[str, list[Any]]:
    """Take up to ``batch`` due rows of ``model`` (a status in ``pending``, ``not_before``
    passed, no live lease) for one worker; commits the claim and returns (token, rows).

    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers on several machines take disjoint
    rows without waiting for each other; on SQLite one conditional ``UPDATE ... RETURNING``,
    atomic under its write lock. A worker killed mid-delivery leaves its rows to whoever
    looks after the lease ran out."""
    now = utcnow()
    token = secrets.token_hex(16)
    due = (
        select(model.id)
        .where(
            model.status.in_(pending),
            model.not_before <= now,
            (model.lease_until.is_(None)) | (model.lease_until <= now),
        )
        .order_by(model.not_before)
        .limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Rows another worker is claiming right now are skipped, not waited for.
        due = due.with_for_update(skip_locked=True)
    ids = list(
        session.scalars(
            update(model)
            .where(model.id.in_(due.scalar_subquery()))
            .values(claim_token=token, lease_until=now + lease)
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    if not ids:
        return token, []
    rows = list(
        session.scalars(
            select(model)
            .where(model.id.in_(ids), model.claim_token == token)
            .order_by(model.not_before)
        )
    )
    return token, rows


def release(session: Session, model: Any, token: str, ids: list[str]) -> None:
    """Give claimed rows back at once (stopping, or a row that raised)."""
    if not ids:
        return
    session.execute(
        update(model)
        .where(model.id.in_(ids), model.claim_token == token)
        .values(claim_token=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
