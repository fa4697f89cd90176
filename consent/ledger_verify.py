"""Verifying a consent ledger from its events alone: no database, no vault.

Give ``verify_chain`` the events in seq order -- as a vault reads them from its database,
or as an auditor reads them from an export -- and the head the store claims. Every event's
body is parsed and hashed here; nothing the store computed is trusted:

* the events run 1, 2, 3, ... without a gap, and each body names its own seq;
* SHA-256 of the body is the event's stored hash;
* the body names the hash of the event before as ``prev_hash`` (64 zeros for the first);
* any field the store keeps beside the body (a column it filters by) says what the body says;
* the head names the last event, so a deleted tail shows;
* each anchor (a seq and hash recorded earlier, outside the store: a head printed by an
  earlier verify, a signed receipt's ledger seq and hash) still has its hash. The chain
  alone cannot show that someone rewrote every event from some seq to the head, hashes and
  all; an anchor kept elsewhere can.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from consent.ledger import GENESIS


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int  # events checked and found good, from seq 1 on
    head_seq: int  # the last good event's seq (0: none)
    head_hash: str  # and its hash (GENESIS: none)
    broken_seq: int | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Anchor:
    """An event's seq and hash as recorded earlier, outside the store."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``SEQ:HASH``, e.g. ``1042:9f86d0...`` (64 lowercase hex digits)."""
        seq_text, colon, digest = text.strip().partition(":")
        if not colon or not seq_text.isdigit() or int(seq_text) < 1:
            raise ValueError(f"{text!r}: expected SEQ:HASH with a seq of 1 or more")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"{text!r}: the hash must be 64 lowercase hex digits")
        return cls(int(seq_text), digest)


def _event_problem(
    seq: Any, expected: int, prev: str, digest: Any, body: Any, fields_beside: Sequence[Any],
    beside_names: Sequence[str],
) -> str | None:  # fmt: skip
    """What is wrong with one event (None: nothing), checked in the order a reader of the
    report needs: where it is, whether its bytes are what was hashed, then its links."""
    if seq != expected:
        return f"sequence gap: expected {expected}, found {seq}"
    data = body.encode() if isinstance(body, str) else bytes(body)
    if hashlib.sha256(data).hexdigest() != digest:
        return "hash does not match the event's body"
    try:
        fields = json.loads(data)
    except ValueError:
        return "the event's body is not valid JSON text"
    if not isinstance(fields, dict):
        return "the event's body is not a JSON object"
    if fields.get("prev_hash") != prev:
        return "prev_hash does not match the previous event's hash"
    if type(fields.get("seq")) is not int or fields["seq"] != seq:
        return "the body's seq is not the event's seq"
    for name, value in zip(beside_names, fields_beside, strict=True):
        if fields.get(name) != value:
            return f"the stored {name} differs from the event's body"
    return None


def verify_chain(
    events: Iterable[Sequence[Any]],
    head: tuple[int, str] | None,
    *,
    beside: Sequence[str] = (),
    anchors: Iterable[Anchor] = (),
    on_progress: Callable[[int], None] = lambda count: None,
    progress_every: int = 10_000,
) -> Verification:
    """Verify ``events``, each ``(seq, hash, body, *values)`` in seq order, where ``values``
    are the fields named by ``beside`` as the store keeps them outside the body; ``head``
    is the (seq, hash) the store says is last (None: the store has no head record).
    Stops at the first broken event and names it."""
    wanted = {anchor.seq: anchor.hash for anchor in anchors}
    expected, prev, count = 1, GENESIS, 0
    sha256, loads = hashlib.sha256, json.loads
    for seq, digest, body, *values in events:
        data = body.encode() if isinstance(body, str) else bytes(body)
        try:
            fields = loads(data)
        except ValueError:
            fields = None
        # The common case in as few steps as possible; _event_problem says what is wrong.
        if (
            seq != expected
            or sha256(data).hexdigest() != digest
            or type(fields) is not dict
            or fields.get("prev_hash") != prev
            or type(fields.get("seq")) is not int
            or fields["seq"] != seq
            or [fields.get(name) for name in beside] != values
            or wanted.get(seq, digest) != digest
        ):
            problem = _event_problem(seq, expected, prev, digest, body, values, beside) or (
                f"anchor {seq}: the ledger holds hash {digest}, not {wanted[seq]}: "
                f"events up to {seq} were rewritten since the anchor was taken"
            )
            return Verification(False, count, expected - 1, prev, expected, problem)
        prev, expected, count = digest, expected + 1, count + 1
        if count % progress_every == 0:
            on_progress(progress_every)
    on_progress(count % progress_every)
    if head != (count, prev):
        return Verification(
            False, count, count, prev, count + 1,
            "ledger head does not match the last event (events deleted?)",
        )  # fmt: skip
    beyond = sorted(seq for seq in wanted if seq > count)
    if beyond:
        return Verification(
            False, count, count, prev, beyond[0],
            f"anchor {beyond[0]}: the ledger ends at {count} "
            "(events deleted since the anchor was taken?)",
        )  # fmt: skip
    return Verification(True, count, count, prev)
