"""SMS segment counting: GSM-7 (160 in one, 153 per part) and UCS-2 (70, 67)."""

from __future__ import annotations

import pytest

from connectors.segments import GSM7, UCS2, SmsBodyError, check_sms_body, count_segments


@pytest.mark.parametrize(
    ("text", "encoding", "units", "count"),
    [
        ("", GSM7, 0, 0),
        ("a", GSM7, 1, 1),
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),
        ("a" * 306, GSM7, 306, 2),
        ("a" * 307, GSM7, 307, 3),
        ("é£¥@\r\nÄäÑ§¿Δ", GSM7, 12, 1),  # the basic table is more than ASCII
        ("€" * 80, GSM7, 160, 1),  # an extension character takes two septets
        ("€" * 81, GSM7, 162, 2),
        ("{[]}" * 40, GSM7, 320, 3),
        # An escape pair is never split: 152 + (2) does not fit in 153.
        ("a" * 152 + "€" + "a" * 152, GSM7, 306, 3),
        ("ç" * 70, UCS2, 70, 1),  # lower-case c cedilla is not in GSM 03.38
        ("ç" * 71, UCS2, 71, 2),
        ("ç" * 134, UCS2, 134, 2),
        ("ç" * 135, UCS2, 135, 3),
        ("😀" * 35, UCS2, 70, 1),  # an emoji is a surrogate pair: two UTF-16 units
        ("😀" * 36, UCS2, 72, 2),
        ("a" * 66 + "😀" + "a" * 66, UCS2, 134, 3),  # the pair is not split either
        ("Hello “quoted”", UCS2, 14, 1),
    ],
)
def test_count_segments(text, encoding, units, count):
    segments = count_segments(text)
    assert (segments.encoding, segments.units, segments.count) == (encoding, units, count)


def test_the_character_that_forces_ucs2_is_named():
    assert count_segments("Price: 5 € — now").non_gsm == "—"
    assert count_segments("Price: 5 €").non_gsm is None


def test_check_sms_body_refuses_too_many_segments_and_empty_texts():
    assert check_sms_body("a" * 306, max_segments=2).count == 2
    with pytest.raises(SmsBodyError, match="needs 3 SMS segments; at most 2"):
        check_sms_body("a" * 307, max_segments=2)
    with pytest.raises(SmsBodyError, match=r"needs 2 SMS segments \(UCS-2 because of '😀'\)"):
        check_sms_body("😀" * 36, max_segments=1)
    for empty in ("", "  \n"):
        with pytest.raises(SmsBodyError, match="empty"):
            check_sms_body(empty, max_segments=3)
