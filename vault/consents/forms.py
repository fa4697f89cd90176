"""Parse the /consents form into one ``ConsentChanges``, with a message per bad field.

The page posts every field. A section is read when its fields (or its hidden marker) are
present, so a checkbox that is absent from a posted section means "off":

- ``channels=1`` and ``channel_<channel>=on`` for each channel left on;
- ``quiet_start``, ``quiet_end`` (HH:MM, both empty: no quiet hours) and ``timezone``;
- ``vendor-<vendor_id>=1``, ``block-<vendor_id>=on``, ``cap_day-<vendor_id>`` and
  ``cap_week-<vendor_id>`` (empty: no limit; absent: unchanged);
- ``topic-<topic_id>-<channel>=granted|withdrawn|default`` and
  ``expires-<topic_id>-<channel>=YYYY-MM-DD`` (only for granted; empty: no expiry).

Cells posted unchanged are left out, so re-posting a consent that has already expired
with its old date is not an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import cache
from zoneinfo import available_timezones

from werkzeug.datastructures import MultiDict

from consent.engine import CHANNELS, State
from vault.consents.operations import ConsentChanges, TopicChoice, VendorSettings
from vault.consents.overview import Overview

TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(:[0-5]\d)?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
WHOLE = re.compile(r"^\d{1,4}$")
CAP_MAX = 1000
STATES = {"granted": State.GRANTED, "withdrawn": State.WITHDRAWN, "default": None}


@cache
def timezones() -> list[str]:
    return sorted(available_timezones())


@dataclass
class Parsed:
    changes: ConsentChanges = field(default_factory=ConsentChanges)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _time(value: str) -> time | None:
    match = TIME.match(value)
    return time(int(match.group(1)), int(match.group(2))) if match else None


def _cap(parsed: Parsed, name: str, value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not WHOLE.match(value) or int(value) > CAP_MAX:
        parsed.errors[name] = f"Enter a whole number from 0 to {CAP_MAX}, or leave it empty."
        return None
    return int(value)


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def parse(form: MultiDict[str, str], overview: Overview) -> Parsed:
    parsed = Parsed()
    _channels(form, parsed)
    _quiet_hours(form, parsed, overview)
    _vendors(form, parsed, overview)
    _topics(form, parsed, overview)
    return parsed


def _channels(form: MultiDict[str, str], parsed: Parsed) -> None:
    posted = {key[len("channel_") :] for key in form if key.startswith("channel_")}
    unknown = posted - set(CHANNELS)
    if unknown:
        parsed.errors["channels"] = f"Unknown channel: {', '.join(sorted(unknown))}."
        return
    if "channels" in form or posted:
        parsed.changes.channels = {
            channel: form.get(f"channel_{channel}") == "on" for channel in CHANNELS
        }


def _quiet_hours(form: MultiDict[str, str], parsed: Parsed, overview: Overview) -> None:
    if not {"quiet_start", "quiet_end", "timezone"} & set(form):
        return
    start_text = form.get("quiet_start", overview.quiet_start).strip()
    end_text = form.get("quiet_end", overview.quiet_end).strip()
    zone = form.get("timezone", overview.timezone).strip()
    errors = parsed.errors
    if zone and zone not in timezones():
        errors["timezone"] = "Choose a time zone from the list, e.g. Europe/Berlin."
    if not start_text and not end_text:
        parsed.changes.clear_quiet_hours = True
        return
    start, end = _time(start_text), _time(end_text)
    for name, text, value in (("quiet_start", start_text, start), ("quiet_end", end_text, end)):
        if not text:
            errors[name] = "Give both a start and an end, or leave both empty."
        elif value is None:
            errors[name] = "Enter a time of day like 22:00."
    if start is not None and end is not None and start == end:
        errors["quiet_end"] = "The end must differ from the start."
    if not zone:
        errors.setdefault("timezone", "Choose the time zone your quiet hours are in.")
    if start is not None and end is not None and not {"quiet_end", "timezone"} & set(errors):
        parsed.changes.quiet_hours = (start, end, zone)


def _vendors(form: MultiDict[str, str], parsed: Parsed, overview: Overview) -> None:
    prefixes = ("vendor-", "block-", "cap_day-", "cap_week-")
    vendor_ids: dict[str, str] = {}
    for key in form:
        for prefix in prefixes:
            if key.startswith(prefix):
                vendor_ids.setdefault(key[len(prefix) :], key)
    for vendor_id, key in vendor_ids.items():
        business = overview.business(vendor_id)
        if business is None:
            parsed.errors[key] = "Unknown business."
            continue
        day_key, week_key = f"cap_day-{vendor_id}", f"cap_week-{vendor_id}"
        cap_day = _cap(parsed, day_key, form[day_key]) if day_key in form else business.cap_per_day
        cap_week = (
            _cap(parsed, week_key, form[week_key]) if week_key in form else business.cap_per_week
        )
        parsed.changes.vendors[vendor_id] = VendorSettings(
            blocked=form.get(f"block-{vendor_id}") == "on",
            cap_per_day=cap_day,
            cap_per_week=cap_week,
        )


def _topics(form: MultiDict[str, str], parsed: Parsed, overview: Overview) -> None:
    cells: dict[tuple[str, str], str] = {}
    for key in form:
        for prefix in ("topic-", "expires-"):
            if key.startswith(prefix):
                topic_id, _, channel = key[len(prefix) :].rpartition("-")
                cells.setdefault((topic_id, channel), key)
    topics = overview.topics
    current = overview.settings
    today = overview.now.date()
    for (topic_id, channel), key in cells.items():
        if topic_id not in topics:
            parsed.errors[key] = "Unknown topic."
            continue
        if channel not in CHANNELS:
            parsed.errors[key] = f"Unknown channel {channel!r}."
            continue
        state_key, expires_key = f"topic-{topic_id}-{channel}", f"expires-{topic_id}-{channel}"
        row = current.get((topic_id, channel))
        state_text = form.get(state_key, row.state if row is not None else "default")
        if state_text not in STATES:
            parsed.errors[state_key] = "Choose allowed, withdrawn or default."
            continue
        state = STATES[state_text]
        expires_at = None
        expires_text = form.get(expires_key, "").strip() if state == State.GRANTED else ""
        if state == State.GRANTED and expires_key not in form and row is not None:
            expires_at = row.expires_at  # not posted: keep the expiry it has
        elif expires_text:
            try:
                if not DATE.match(expires_text):
                    raise ValueError
                expires_at = _end_of_day(date.fromisoformat(expires_text))
            except ValueError:
                parsed.errors[expires_key] = "Enter a date like 2030-12-31."
                continue
        before = (State(row.state), row.expires_at) if row is not None else (None, None)
        if (state, expires_at) == before:
            continue
        if expires_at is not None and expires_at.date() < today:
            parsed.errors[expires_key] = "The expiry date must lie in the future."
            continue
        parsed.changes.topics[(topic_id, channel)] = TopicChoice(state, expires_at)
