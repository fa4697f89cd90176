"""Schemathesis fuzzes every operation of ``/api/openapi.json`` against a live vault.

Two callers, each with a real token: a business with a client-credentials token carrying
every consent and messages scope, and a customer's token from the authorization code flow (profile
scopes). For each, Schemathesis runs its examples, coverage and fuzzing phases over every
operation (schema-valid and schema-violating bodies, paths and headers, wrong methods, no
token) with all of its checks: never a 5xx, status codes, content types, headers and bodies
as the document describes them, valid data accepted and invalid data refused, ``Allow`` on
405. Runs on SQLite and on PostgreSQL, with a fixed seed and a small example count, well
under a minute.

It drives ``schemathesis run`` (the engine and report of the command line) in its own
process rather than the pytest plugin, whose lazy fixture loader needs a pytest internal
(``Function._nodeid``) that pytest 9.2 no longer has.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.vault.oauth.conftest import Vault
from vault.oauth.scopes import pairwise_sub
from vault.services import keys

CONSENT_SCOPES = "consent:read consent:check consent:request messages:send messages:permit"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@dataclass(frozen=True)
class Callers:
    business: str
    customer: str
    sub: str  # the customer's subject for the business, so calls reach real data


# - NUL characters are refused by design (vault/inputs.py; the document lists the 400), so
#   schema-valid data is generated without them.
# - GET /api/v1/consents/{sub} also matches /api/v1/consents/check with sub "check", so the
#   Allow header of that literal path rightly names GET, which the check would call
#   undocumented.
# - POST /api/v1/messages checks content JSON Schema cannot state exactly (an e-mail needs
#   a subject and an SMS has none; an SMS's length is counted in segments, which depend on
#   its characters): schema-valid bodies may rightly get 422.
CONFIG = """
[generation]
allow-x00 = false

[parameters]
"path.sub" = "{sub}"

[[operations]]
include-path = "/api/v1/consents/check"
checks.allow_header_conformance.enabled = false

[[operations]]
include-path = "/api/v1/messages"
checks.positive_data_acceptance.expected-statuses = [202, 401, 403, 404, 409, 422, 429]
"""


@pytest.fixture
def live_config_overrides() -> dict[str, Any]:
    # Hundreds of calls from one client within a minute are the point here.
    return {"VAULT_API_RATE_LIMIT": "100000 per minute"}


@pytest.fixture
def callers(vault: Vault) -> Callers:
    shop = vault.vendor(
        "Fuzz Shop", scopes=("openid", "profile", "email", "phone", *CONSENT_SCOPES.split())
    )
    business = requests.post(
        vault.meta["token_endpoint"],
        data={"grant_type": "client_credentials", "scope": CONSENT_SCOPES},
        auth=(shop.client_id, shop.client_secret),
        timeout=10,
    )
    assert business.status_code == 200, business.text
    customer = vault.customer(given_name="Fuzz", family_name="Tester", phone_number="+14155550123")
    _, tokens = vault.connect(shop, vault.browser(customer), "openid profile email phone")
    with vault.app.app_context():
        sub = pairwise_sub(keys(), shop.vendor_id, customer.id)
    return Callers(business.json()["access_token"], tokens["access_token"], sub)


def _schemathesis(vault: Vault, callers: Callers, token: str, tmp_path: Path) -> Any:
    (tmp_path / "schemathesis.toml").write_text(CONFIG.replace("{sub}", callers.sub))
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            vault.base + "/api/openapi.json",
            "--phases=examples,coverage,fuzzing",
            "--mode=all",
            "--max-examples=20",
            "--seed=9",
            "--workers=1",
            "--request-timeout=10",
            "--max-response-time=5",
            "--no-color",
            "--generation-database=none",
            f"--report-dir={tmp_path}",
            "--header",
            f"Authorization: Bearer {token}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,  # where it finds CONFIG
    )


@pytest.mark.parametrize("caller", ["business", "customer"])
def test_every_operation_answers_as_documented(vault, callers, caller, tmp_path):
    result = _schemathesis(vault, callers, getattr(callers, caller), tmp_path)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    # Every operation of the document was exercised, not skipped or filtered away.
    assert "Selected: 8/8" in report and "Tested: 8" in report, report
