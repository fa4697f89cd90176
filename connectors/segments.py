"""How many SMS segments a text is sent as, so the API can refuse a body that is too long.

A text made only of the GSM 03.38 alphabet (3GPP TS 23.038: the basic table, and the
extension table whose characters ``^ { } \\ [ ~ ] | €`` and form feed take two septets
each) goes as GSM-7: 160 septets in one SMS, or 153 per segment once it must be split (the
other 7 carry the concatenation header). Any other character makes the whole text UCS-2:
70 UTF-16 code units in one SMS, or 67 per segment. A split never cuts an extension
character's escape pair or a surrogate pair (an emoji), so a segment can hold one unit
less than its size.

This counts what providers send without rewriting the text: Twilio's optional "Smart
Encoding" (curly quotes to straight ones...) is not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7 = "GSM-7"
UCS2 = "UCS-2"
_SINGLE = {GSM7: 160, UCS2: 70}
_PART = {GSM7: 153, UCS2: 67}


class SmsBodyError(ValueError):
    """A body the SMS channel refuses; the message is a sentence for the sender."""


@dataclass(frozen=True)
class Segments:
    encoding: str  # GSM7 or UCS2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int  # segments the text is sent as; 0 for an empty text
    non_gsm: str | None = None  # the first character that made the text UCS-2


def count_segments(text: str) -> Segments:
    """The encoding, length and number of segments of ``text`` as one SMS message."""
    non_gsm = next((c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENSION), None)
    if non_gsm is None:
        encoding = GSM7
        widths = [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:
        encoding = UCS2
        widths = [2 if ord(char) > 0xFFFF else 1 for char in text]
    units = sum(widths)
    if units == 0:
        return Segments(encoding, 0, 0, non_gsm)
    if units <= _SINGLE[encoding]:
        return Segments(encoding, units, 1, non_gsm)
    count, used = 1, 0
    for width in widths:
        if used + width > _PART[encoding]:
            count, used = count + 1, 0
        used += width
    return Segments(encoding, units, count, non_gsm)


def check_sms_body(text: str, *, max_segments: int) -> Segments:
    """``count_segments(text)``, or ``SmsBodyError`` for an empty or too long text."""
    segments = count_segments(text)
    if segments.count == 0 or not text.strip():
        raise SmsBodyError("the text is empty")
    if segments.count > max_segments:
        why = f" (UCS-2 because of {segments.non_gsm!r})" if segments.non_gsm else ""
        raise SmsBodyError(
            f"the text needs {segments.count} SMS segments{why}; at most {max_segments} "
            f"are allowed: {_SINGLE[GSM7]} GSM-7 characters or {_SINGLE[UCS2]} others "
            f"in one, {_PART[GSM7]} or {_PART[UCS2]} per segment beyond"
        )
    return segments
