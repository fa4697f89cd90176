"""consent.ledger_verify on its own: a chain of events held in memory, as an auditor holds
an export, verified with no database and no vault."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from consent import ledger
from consent.ledger_verify import Anchor, verify_chain


def _chain(count: int) -> list[tuple[int, str, str]]:
    events, prev = [], ledger.GENESIS
    for seq in range(1, count + 1):
        body, digest = ledger.new_event(
            seq, prev, event_type="topic_consent", subject=f"s{seq}", actor="a", source="ui"
        )
        events.append((seq, digest, body))
        prev = digest
    return events


def _head(events):
    return (events[-1][0], events[-1][1]) if events else (0, ledger.GENESIS)


def test_an_intact_chain_verifies_and_reports_its_head():
    events = _chain(5)
    progress = []
    result = verify_chain(events, _head(events), on_progress=progress.append, progress_every=2)
    assert result.ok and (result.count, result.head_seq, result.head_hash) == (5, *_head(events))
    assert sum(progress) == 5


def test_the_empty_chain_verifies_against_the_genesis_head():
    assert verify_chain([], (0, ledger.GENESIS)).ok
    assert not verify_chain([], None).ok  # a store without a head record


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda e: (e[0], e[1], e[2].replace('"s3"', '"s9"')), "hash does not match"),
        (lambda e: (e[0], "0" * 64, e[2]), "hash does not match"),
        (lambda e: (7, e[1], e[2]), "sequence gap"),
    ],
)
def test_a_changed_event_is_named(mangle, words):
    events = _chain(5)
    events[2] = mangle(events[2])
    result = verify_chain(events, _head(events))
    assert not result.ok and result.broken_seq == 3 and words in result.problem
    assert (result.count, result.head_seq, result.head_hash) == (2, 2, events[1][1])


def test_bodies_that_hash_right_but_say_the_wrong_thing_are_named():
    import hashlib

    def forged(seq, fields_or_text):
        text = fields_or_text if isinstance(fields_or_text, str) else json.dumps(fields_or_text)
        return (seq, hashlib.sha256(text.encode()).hexdigest(), text)

    cases = [
        ("not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ({"seq": 1, "prev_hash": "f" * 64}, "prev_hash"),
        ({"seq": 2, "prev_hash": ledger.GENESIS}, "seq"),
        ({"seq": True, "prev_hash": ledger.GENESIS}, "seq"),
    ]
    for body, words in cases:
        event = forged(1, body)
        result = verify_chain([event], (1, event[1]))
        assert not result.ok and result.broken_seq == 1 and words in result.problem, body


def test_fields_kept_beside_the_body_must_say_what_it_says():
    events = [(*event, f"s{event[0]}") for event in _chain(3)]
    assert verify_chain(events, _head(events), beside=("subject",)).ok
    events[1] = (*events[1][:3], "someone-else")
    result = verify_chain(events, _head(events), beside=("subject",))
    assert result.broken_seq == 2 and "subject" in result.problem


def test_a_deleted_tail_and_anchors():
    events = _chain(5)
    tail_gone = verify_chain(events[:4], _head(events))
    assert tail_gone.broken_seq == 5 and "head" in tail_gone.problem
    good = Anchor(2, events[1][1])
    assert verify_chain(events, _head(events), anchors=[good]).ok
    wrong = verify_chain(events, _head(events), anchors=[good, Anchor(4, "a" * 64)])
    assert wrong.broken_seq == 4 and "rewritten" in wrong.problem
    beyond = verify_chain(events, _head(events), anchors=[Anchor(9, "a" * 64)])
    assert beyond.broken_seq == 9 and "ends at 5" in beyond.problem


def test_the_library_imports_without_the_vault_or_flask():
    code = (
        "import sys, consent.ledger, consent.ledger_verify; "
        "bad = sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('vault', 'flask', 'sqlalchemy')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
