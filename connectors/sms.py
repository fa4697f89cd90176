"""SMS: an adapter for Twilio's Messages resource, and a development connector writing files.

``VAULT_SMS_URL`` names the provider, its credentials and the sender in one URL::

    https://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com?from=%2B15005550006
    https://API_KEY_SID:API_KEY_SECRET@api.twilio.com?account=ACCOUNT_SID&from=%2B15005550006
    https://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com?messaging_service=MGXXXXXXXX

- scheme, host, port and path are the API's base URL (any provider or proxy speaking the
  same shape); ``http`` only on loopback (a local stand-in), since the credentials travel
  with each request;
- user and password are HTTP Basic credentials, percent-decoded: an account SID and its
  auth token, or an API key SID and its secret, which then needs ``account``;
- ``from`` (an E.164 number, short code or alphanumeric sender ID, ``+`` written ``%2B``)
  or ``messaging_service`` (a Messaging Service SID), exactly one of them;
- ``timeout``: seconds for connecting and for each read (default 10).

Each message is ``POST {base}/2010-04-01/Accounts/{account}/Messages.json`` with the form
fields ``To``, ``From`` or ``MessagingServiceSid``, and ``Body``; a ``201`` carries the
message's ``sid``. ``TwilioConnector`` says what its outcomes mean.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import secrets
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from connectors.base import Delivery, Message, Outcome
from connectors.httpclient import post
from connectors.segments import count_segments

DEFAULT_TIMEOUT = 10.0
API_VERSION = "2010-04-01"
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SID = re.compile(r"[A-Za-z0-9]{2,64}")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Wrong credentials, account or base URL: the operator's to fix, and the message waits.
_SETUP_STATUSES = frozenset({401, 403, 404})


class SmsConfigError(ValueError):
    """An SMS URL that cannot work; the message says what to fix (never the secret)."""


@dataclass(frozen=True)
class SmsSettings:
    base_url: str  # scheme://host[:port][/path], without credentials
    username: str
    password: str = field(repr=False)
    account: str
    sender: str | None = None  # the From field
    messaging_service: str | None = None  # the MessagingServiceSid field, instead
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_url(cls, url: str) -> SmsSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http"):
            raise SmsConfigError("an SMS URL starts with https://, e.g. https://SID:TOKEN@api...")
        if not parts.hostname:
            raise SmsConfigError("an SMS URL names the API's host, e.g. api.twilio.com")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
            raise SmsConfigError("refusing to send SMS credentials without TLS: use https://")
        if not parts.username or not parts.password:
            raise SmsConfigError("an SMS URL carries the credentials: https://SID:SECRET@host")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"from", "messaging_service", "account", "timeout"}
        if unknown:
            raise SmsConfigError(f"unknown SMS URL parameters: {', '.join(sorted(unknown))}")
        if ("from" in query) == ("messaging_service" in query):
            raise SmsConfigError("an SMS URL needs either ?from= or ?messaging_service=")
        username = unquote(parts.username)
        account = query.get("account", username)
        if username.startswith("SK") and "account" not in query:
            raise SmsConfigError("an API key (SK...) needs the account SID: ?account=AC...")
        if not _SID.fullmatch(account):
            raise SmsConfigError("the account SID is letters and digits only")
        try:
            port = f":{parts.port}" if parts.port else ""
            timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
        except ValueError as exc:
            raise SmsConfigError(f"bad port or timeout in the SMS URL: {exc}") from exc
        if timeout <= 0:
            raise SmsConfigError("the SMS timeout must be positive")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls(
            base_url=f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}",
            username=username,
            password=unquote(parts.password),
            account=account,
            sender=query.get("from"),
            messaging_service=query.get("messaging_service"),
            timeout=timeout,
        )

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account}/Messages.json"


def _refusal(message: Message) -> Delivery | None:
    """What no provider would take, said before anything is sent."""
    if not _E164.fullmatch(message.recipient):
        return Delivery(Outcome.PERMANENT_FAILURE, "the recipient is not an E.164 number")
    if not message.text.strip():
        return Delivery(Outcome.PERMANENT_FAILURE, "the text is empty")
    return None


def _error_code(body: bytes) -> int | None:
    """Twilio's numeric error ``code`` from an error answer; its ``message`` may quote the
    number, so nothing else of the answer is kept."""
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


class TwilioConnector:
    """Sends each message's ``text`` to ``recipient`` (E.164) through Twilio's Messages API.

    ``subject``, ``html``, ``headers`` and the e-mail-only fields of ``Message`` are not
    sent. Outcomes:

    - ``SENT``: a 2xx answer; ``message_id`` is the provider's sid (``SM...``), ``detail``
      the status it gave (``accepted``, ``queued``...). A 2xx without a sid is still
      ``SENT``: the provider took the message, and sending it again would double it.
    - ``TEMPORARY_FAILURE``: 429, 5xx, time-outs, refused or dropped connections, TLS
      failures, and 401, 403 and 404, which mean wrong credentials, account or base URL:
      the operator's to fix, the message waits. A time-out after the request went out may
      hide a message the provider took: delivery is at least once, as for every channel.
    - ``PERMANENT_FAILURE``: any other 4xx (the number is invalid, unreachable or has
      opted out...); a recipient that is not E.164 or an empty text, before any request.

    ``detail`` is safe to log: the HTTP status and the provider's numeric error ``code``
    (``HTTP 400, provider error 21211``), never the number or the text.
    """

    channel = "sms"

    def __init__(self, settings: SmsSettings, *, ssl_context: ssl.SSLContext | None = None):
        self.settings = settings
        self._ssl_context = ssl_context

    @classmethod
    def from_url(cls, url: str, *, ssl_context: ssl.SSLContext | None = None) -> TwilioConnector:
        return cls(SmsSettings.from_url(url), ssl_context=ssl_context)

    def _form(self, message: Message) -> bytes:
        settings = self.settings
        fields = {"To": message.recipient, "Body": message.text}
        if settings.messaging_service:
            fields["MessagingServiceSid"] = settings.messaging_service
        else:
            fields["From"] = settings.sender or ""
        return urlencode(fields).encode("ascii")

    def _authorization(self) -> str:
        pair = f"{self.settings.username}:{self.settings.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def deliver(self, message: Message) -> Delivery:
        refusal = _refusal(message)
        if refusal is not None:
            return refusal
        headers = {
            "Authorization": self._authorization(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        try:
            answer = post(
                self.settings.endpoint,
                self._form(message),
                headers,
                timeout=self.settings.timeout,
                ssl_context=self._ssl_context,
            )
        except ssl.SSLError as exc:
            return Delivery(Outcome.TEMPORARY_FAILURE, f"TLS failed: {exc.reason or 'error'}")
        except (OSError, http.client.HTTPException) as exc:
            return Delivery(Outcome.TEMPORARY_FAILURE, f"connection failed: {type(exc).__name__}")
        status = answer.status
        if 200 <= status < 300:
            return _accepted(answer.body)
        code = _error_code(answer.body)
        detail = f"HTTP {status}" + (f", provider error {code}" if code is not None else "")
        if 400 <= status < 500 and status != 429 and status not in _SETUP_STATUSES:
            return Delivery(Outcome.PERMANENT_FAILURE, detail)
        return Delivery(Outcome.TEMPORARY_FAILURE, detail)


def _accepted(body: bytes) -> Delivery:
    try:
        created = json.loads(body)
        sid, state = created.get("sid"), created.get("status")
    except (ValueError, AttributeError):
        sid = state = None
    sid = sid if isinstance(sid, str) and _SID.fullmatch(sid) else None
    state = state if isinstance(state, str) and re.fullmatch(r"[a-z_]{1,20}", state) else None
    return Delivery(Outcome.SENT, state or "accepted", message_id=sid)


class SmsFileConnector:
    """Development without a provider: each SMS becomes a ``.txt`` file to read.

    It refuses what the provider adapter refuses (a recipient not in E.164, an empty text),
    so development meets the same errors. Files are mode 0600 in ``folder``.
    """

    channel = "sms"

    def __init__(self, folder: str | os.PathLike[str], sender: str = "CMR Vault") -> None:
        self.folder = Path(folder)
        self.sender = sender

    def deliver(self, message: Message) -> Delivery:
        refusal = _refusal(message)
        if refusal is not None:
            return refusal
        segments = count_segments(message.text)
        sid = f"file-{secrets.token_hex(8)}"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = self.folder / f"{stamp}-{sid}.txt"
        content = (
            f"From: {self.sender}\nTo: {message.recipient}\n"
            f"Segments: {segments.count} ({segments.encoding})\n\n{message.text}\n"
        )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
        except OSError as exc:
            return Delivery(Outcome.TEMPORARY_FAILURE, f"could not write: {type(exc).__name__}")
        return Delivery(Outcome.SENT, "written", message_id=sid, location=str(path))
